"""What the paging bench runs on: the stack as `incident dev` runs it, its policy, and what it reads.

- `PagingStack`: the Temporal dev server (SQLite file, `incident dev`'s pragmas), the Slack and
  PagerDuty sandboxes, the worker (and, for alert storms, the alert receiver) as processes;
  the worker pages through Slack and PagerDuty and serves the SDK's metrics.
- `bench_policy`: the paging policy file (PAGING_POLICY, the one place the bench names it) with
  its chains' levels a set cadence apart and repeated, written into the bench's temp dir.
- `PagerDutyWatch`: the PagerDuty sandbox's event log, read as it grows; the clock of every page.
- `Usage`: CPU seconds and memory of the stack's processes between two moments.
- `SdkMetrics`: the worker's sticky cache and slot counters (Prometheus text).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

from bench.common import ROOT, Stack, start_server, wait_http
from workflows.policy import load_policy

# The policy the paging bench runs on, and derives its own from: one place to change it.
PAGING_POLICY = ROOT / "config" / "policy.yaml"
SLACK_PORT, PAGERDUTY_PORT, RECEIVER_PORT, METRICS_PORT = 18921, 18923, 18924, 18925
SLACK_TOKEN = {"Authorization": "Bearer xoxb-bench"}


def bench_policy(source: Path, workdir: Path, cadence: timedelta | None = None, repeat: int = 9) -> Path:
    """`source` as is (cadence None), or with every level of every chain `cadence` after the one
    before and the chain run `repeat` more times, so pages keep falling due; written to `workdir`."""
    if cadence is None:
        return source
    policy = yaml.safe_load(source.read_text(encoding="utf-8"))
    seconds = f"{int(cadence.total_seconds())}s"
    for severity in policy["severities"].values():
        chain = severity.get("paging")
        if not chain:
            continue
        for level in chain["levels"]:
            level["escalate_after"] = seconds
        chain["repeat"] = repeat
    path = workdir / f"policy-every-{seconds}.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
    load_policy(str(path))  # refuses a file the worker would refuse
    return path


class PagerDutyWatch:
    """The sandbox's events, read as they come (`?since=`): a busy sandbox is asked only for the new."""

    def __init__(self, url: str) -> None:
        self.http = httpx.AsyncClient(base_url=url, timeout=120)
        self.events: list[dict[str, Any]] = []
        self._since = 0.0
        self._seen: set[str] = set()

    async def poll(self) -> list[dict[str, Any]]:
        """The events received since the last poll (triggers, acknowledgements, resolves)."""
        response = await self.http.get("/_sandbox/events", params={"since": repr(self._since)})
        response.raise_for_status()
        new = [e for e in response.json() if e["id"] not in self._seen]
        for event in new:
            self._seen.add(event["id"])
            self._since = max(self._since, event["at"])
        self.events += new
        return new

    def first_pages(self) -> dict[str, float]:
        """Each dedup key's (incident key's) first trigger: when its first page reached PagerDuty."""
        first: dict[str, float] = {}
        for event in self.events:
            if event["event_action"] == "trigger" and event["dedup_key"] not in first:
                first[event["dedup_key"]] = event["at"]
        return first

    async def wait_first_pages(
        self, keys: set[str], timeout: float, interval: float = 0.5, strict: bool = True
    ) -> dict[str, float]:
        """Each key's first page, once all are there; after `timeout`, an error (`strict`) or those
        that came (the caller says how many did not)."""
        deadline = time.time() + timeout
        while True:
            await self.poll()
            found = {k: t for k, t in self.first_pages().items() if k in keys}
            if len(found) == len(keys):
                return found
            if time.time() > deadline:
                if not strict:
                    return found
                raise RuntimeError(f"{len(keys) - len(found)} of {len(keys)} incidents never paged PagerDuty")
            await asyncio.sleep(interval)

    async def aclose(self) -> None:
        await self.http.aclose()


class Usage:
    """CPU seconds and resident memory of named processes; `between` two marks as % of one core."""

    def __init__(self, processes: dict[str, psutil.Process]) -> None:
        self.processes = processes
        self.peak_rss: dict[str, int] = dict.fromkeys(processes, 0)

    def mark(self) -> dict[str, Any]:
        mark: dict[str, Any] = {"at": time.time()}
        for name, process in self.processes.items():
            try:
                cpu = process.cpu_times()
                rss = process.memory_info().rss
            except psutil.Error:
                continue
            mark[name] = (cpu.user + cpu.system, rss)
            self.peak_rss[name] = max(self.peak_rss[name], rss)
        return mark

    def between(self, start: dict[str, Any], end: dict[str, Any]) -> dict[str, dict[str, float]]:
        seconds = end["at"] - start["at"]
        out = {}
        for name in self.processes:
            if name in start and name in end:
                out[name] = {
                    "cpu_pct_of_one_core": round(100 * (end[name][0] - start[name][0]) / seconds, 1),
                    "cpu_s": round(end[name][0] - start[name][0], 1),
                    "rss_mb": round(end[name][1] / 2**20, 1),
                    "peak_rss_mb": round(self.peak_rss[name] / 2**20, 1),
                }
        return out


class SdkMetrics:
    """The worker's SDK metrics (Prometheus text at WORKER_METRICS_ADDRESS): counters by name."""

    WANTED = (
        "temporal_sticky_cache_hit",
        "temporal_sticky_cache_miss",
        "temporal_sticky_cache_size",
        "temporal_sticky_cache_total_forced_eviction",
        "temporal_workflow_task_execution_latency_count",
        "temporal_workflow_task_replay_latency_count",
        "temporal_workflow_task_replay_latency_sum",
        "temporal_activity_execution_latency_count",
    )

    def __init__(self, url: str) -> None:
        self.url = url

    async def read(self) -> dict[str, float]:
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                text = (await http.get(self.url)).text
        except httpx.HTTPError:
            return {}
        found: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in self.WANTED:
                found[name] = found.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
        return found

    @staticmethod
    def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        gauges = {"temporal_sticky_cache_size"}
        return {
            name.removeprefix("temporal_"): round(
                after[name] - (0 if name in gauges else before.get(name, 0)), 3
            )
            for name in after
        }


class PagingStack:
    """The dev server, the Slack and PagerDuty sandboxes, the worker and (optionally) the alert receiver.

    async with PagingStack(policy, receiver=True) as stack:
        stack.client, stack.queue, stack.pagerduty, stack.usage()
    """

    def __init__(
        self,
        policy: Path,
        *,
        receiver: bool = False,
        worker_env: dict[str, str] | None = None,
        worker_root: Path = ROOT,
    ) -> None:
        self.policy = policy
        self.receiver = receiver
        self.worker_env = worker_env or {}
        self.worker_root = worker_root  # another checkout's worker, to compare releases
        self.workdir = Path(tempfile.mkdtemp(prefix="paging-bench-"))
        self.queue = f"bench-{uuid.uuid4().hex[:6]}"
        self.slack_url = f"http://127.0.0.1:{SLACK_PORT}"
        self.pagerduty_url = f"http://127.0.0.1:{PAGERDUTY_PORT}"
        self.receiver_url = f"http://127.0.0.1:{RECEIVER_PORT}"
        self.metrics = SdkMetrics(f"http://127.0.0.1:{METRICS_PORT}/metrics")

    async def __aenter__(self) -> PagingStack:
        self.env = await start_server(self.workdir, log_level="error")
        self.client = self.env.client
        address = self.client.service_client.config.target_host
        self.stack = Stack(self.workdir)
        try:
            await self._spawn(address)
        except BaseException:
            self.stack.stop()
            await self.env.shutdown()
            raise
        self.pagerduty = PagerDutyWatch(self.pagerduty_url)
        return self

    async def _spawn(self, address: str) -> None:
        common = {"TEMPORAL_ADDRESS": address, "TEMPORAL_TASK_QUEUE": self.queue, "LOG_LEVEL": "WARNING"}
        self.stack.spawn("slack", [sys.executable, "-m", "sandbox.slack", "--port", str(SLACK_PORT)], {})
        self.stack.spawn(
            "pagerduty", [sys.executable, "-m", "sandbox.pagerduty", "--port", str(PAGERDUTY_PORT)], {}
        )
        self.stack.spawn(
            "worker",
            [sys.executable, "-m", "worker"],
            {
                **common,
                "SLACK_API_URL": f"{self.slack_url}/api/",
                "INCIDENT_POLICY": str(self.policy),
                "PAGING_BACKENDS": "slack,pagerduty",
                "PAGERDUTY_EVENTS_URL": self.pagerduty_url,
                "WORKER_METRICS_ADDRESS": f"127.0.0.1:{METRICS_PORT}",
                **self.worker_env,
            },
            cwd=self.worker_root,
        )
        names = ["slack", "pagerduty", "worker"]
        if self.receiver:
            self.stack.spawn(
                "receiver",
                [sys.executable, "-m", "starter.alerts", "--port", str(RECEIVER_PORT)],
                {**common, "INCIDENT_POLICY": str(self.policy)},
            )
            names.append("receiver")
        await wait_http(f"{self.slack_url}/_sandbox/health")
        await wait_http(f"{self.pagerduty_url}/_sandbox/health")
        if self.receiver:
            await wait_http(f"{self.receiver_url}/healthz")
        self.processes = {n: psutil.Process(p.pid) for n, p in zip(names, self.stack.processes, strict=True)}
        self.processes["temporal server"] = self._server_process()
        self.processes["bench"] = psutil.Process()

    def _server_process(self) -> psutil.Process:
        database = str(self.workdir / "temporal.db")
        for child in psutil.Process().children(recursive=True):
            try:
                if database in " ".join(child.cmdline()):
                    return child
            except psutil.Error:
                continue
        raise RuntimeError("the dev server's process was not found")

    @property
    def worker_pid(self) -> int:
        return self.processes["worker"].pid

    def usage(self) -> Usage:
        return Usage(self.processes)

    async def slack_thread(self, channel: str, text: str) -> tuple[str, str]:
        """A top-level message in `channel` (by name): (channel id, ts), a thread to post into."""
        async with httpx.AsyncClient(base_url=self.slack_url, timeout=30) as http:
            answer = (
                await http.post(
                    "/api/chat.postMessage", data={"channel": channel, "text": text}, headers=SLACK_TOKEN
                )
            ).json()
        if not answer.get("ok"):
            raise RuntimeError(f"Slack sandbox refused the thread's parent: {answer}")
        return answer["channel"], answer["ts"]

    async def __aexit__(self, *exc: object) -> None:
        await self.pagerduty.aclose()
        self.stack.stop()
        await self.env.shutdown()
