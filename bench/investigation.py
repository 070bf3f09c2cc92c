"""How long the default diagnostic plan takes on 1, 10 and 50 mock devices.

    .venv/bin/python -m bench.investigation [--sizes 1 10 50] [--sequential-up-to 10]

For each size n, writes a synthetic testbed of n sites that are down, each
behind its own upstream router (a unicon mock of R2 in the outage; see
sandbox/devices), plans `unreachable-device` for all n sites (5 steps each,
one group per upstream) and runs it the way the workflow does: every group
at once, the steps of a group one after another. Real pyATS connections,
Genie parsing and checks, through the activities (temporalio's
ActivityEnvironment), with cold sessions: every upstream is connected to
during the run, as on an incident's first investigation.

Reported per size: the wall time of the parallel run; the slowest group
(the sum of its steps' times in the same run: the floor for any schedule)
and the wall time as a ratio to it; the sum of all steps' times (what
one-after-another would cost); and, up to --sequential-up-to devices, a
measured sequential run for comparison. Above that size the sequential time
(and the speed-up) is estimated from the per-device time of the largest
measured sequential run, and says so: "estimate" in the table,
`"estimated": true` in the JSON.
Prints a table and writes JSON to bench/results/investigation.json (--output).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from temporalio.testing import ActivityEnvironment

from activities.devices import DeviceActivities
from bench.common import RESULTS, ROOT, machine, percentile, write_json
from sandbox.devices import write_synthetic_testbed
from workflows.device_models import InvestigationPlan, InvestigationRequest, StepRequest, StepResult

PLANS = ROOT / "config" / "plans"


async def run_groups(
    env: ActivityEnvironment, devices: DeviceActivities, plan: InvestigationPlan, parallel: bool
) -> tuple[list[StepResult], dict[str, float]]:
    """Run the plan; returns the results and each group's own elapsed time."""
    elapsed: dict[str, float] = {}

    async def group(indexes: list[int]) -> list[StepResult]:
        started = time.perf_counter()
        results = []
        for index in indexes:
            request = StepRequest(incident_key=plan.incident_key, step=plan.step(index))
            results.append(await env.run(devices.run_investigation_step, request))
        elapsed[plan.step(indexes[0]).group] = time.perf_counter() - started
        return results

    if parallel:
        done = await asyncio.gather(*(group(g) for g in plan.groups))
    else:
        done = [await group(g) for g in plan.groups]
    return [r for g in done for r in g], elapsed


async def measure(size: int, folder: Path, parallel: bool) -> dict[str, Any]:
    testbed = write_synthetic_testbed(size, folder / f"synthetic-{size}.yaml")
    devices = DeviceActivities(
        testbed, PLANS, connect_timeout=60, command_timeout=60, max_threads=max(64, 2 * size)
    )
    env = ActivityEnvironment()
    try:
        await devices.warm_up()  # the worker does this at start: parsers and testbed loaded
        sites = [f"S{i:0{max(2, len(str(size)))}d}" for i in range(1, size + 1)]
        plan = await env.run(
            devices.plan_investigation, InvestigationRequest(incident_key=f"bench-{size}", devices=sites)
        )
        cpu_self, cpu_children = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        results, groups = await run_groups(env, devices, plan, parallel)
        wall = time.perf_counter() - started
    finally:
        await devices.close()  # also waits for the mock processes to be collected: their CPU counts
    cpu_self = _cpu(resource.RUSAGE_SELF) - cpu_self
    cpu_children = _cpu(resource.RUSAGE_CHILDREN) - cpu_children
    by_group: dict[str, float] = {}
    for step, result in zip(plan.steps, results, strict=False):
        by_group[step.group] = by_group.get(step.group, 0.0) + result.duration_seconds
    wrong = [r for r in results if r.finding != expected_finding(r)]
    return {
        "devices": size,
        "steps": len(plan.steps),
        "groups": len(plan.groups),
        "mode": "parallel" if parallel else "sequential",
        "wall_seconds": round(wall, 2),
        "slowest_group_seconds": round(max(by_group.values()), 2),
        "sum_of_steps_seconds": round(sum(r.duration_seconds for r in results), 2),
        "group_elapsed_max_seconds": round(max(groups.values()), 2),
        "first_step_p50_seconds": round(
            _median([r.duration_seconds for r in results if r.index % 5 == 1]), 2
        ),
        "other_steps_p50_seconds": round(
            _median([r.duration_seconds for r in results if r.index % 5 != 1]), 2
        ),
        "worker_cpu_seconds": round(cpu_self, 2),
        "mock_devices_cpu_seconds": round(cpu_children, 2),
        "steps_with_unexpected_findings": len(wrong),
    }


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def expected_finding(result: StepResult) -> str:
    """Every synthetic site looks like R1 in the outage; a wrong finding means the run went wrong."""
    site = result.target
    return {
        "ping_reachability": f"0% success — {site} unreachable from {result.device}",
        "interface_health": "up/up, 0 CRC errors, last input 4 min ago",
        "ospf_neighbor": f"{site} (1.1.1.1) missing from the neighbor table (1/1 neighbors FULL)",
    }.get(result.check, result.finding)


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per size: the parallel run against its floor (the slowest group, same run) and
    against the sequential one (measured, or estimated from the per-device time: `estimated`)."""
    sequential = {r["devices"]: r["wall_seconds"] for r in rows if r["mode"] == "sequential"}
    per_device = sequential[max(sequential)] / max(sequential) if sequential else None
    out = []
    for run in (r for r in rows if r["mode"] == "parallel"):
        n = run["devices"]
        measured = n in sequential
        seq = sequential[n] if measured else (per_device * n if per_device else None)
        out.append(
            {
                "devices": n,
                "steps": run["steps"],
                "groups": run["groups"],
                "parallel_wall_seconds": run["wall_seconds"],
                "slowest_group_seconds": run["slowest_group_seconds"],
                "parallel_x_slowest_group": round(run["wall_seconds"] / run["slowest_group_seconds"], 2),
                "sequential_seconds": round(seq, 2) if seq is not None else None,
                "sequential_measured": measured,
                "speed_up": round(seq / run["wall_seconds"], 2) if seq is not None else None,
                # sequential_seconds and speed_up: the largest measured sequential run, per device, times n
                "estimated": not measured and seq is not None,
                "first_step_p50_seconds": run["first_step_p50_seconds"],
                "other_steps_p50_seconds": run["other_steps_p50_seconds"],
                "worker_cpu_seconds": run["worker_cpu_seconds"],
                "mock_devices_cpu_seconds": run["mock_devices_cpu_seconds"],
            }
        )
    return out


def _median(values: list[float]) -> float:
    return percentile(values, 50) if values else 0.0


async def main_async(sizes: list[int], sequential_up_to: int) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-investigation-") as tmp:
        for size in sizes:
            rows.append(await measure(size, Path(tmp), parallel=True))
            if size <= sequential_up_to:
                rows.append(await measure(size, Path(tmp), parallel=False))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument(
        "--sequential-up-to", type=int, default=10, help="also run sequentially up to this size"
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "investigation.json")
    args = parser.parse_args()

    console = Console(width=160)
    console.print(
        f"[bold]Default plan (unreachable-device) on {', '.join(map(str, args.sizes))} mock devices[/bold]"
    )
    rows = asyncio.run(main_async(args.sizes, args.sequential_up_to))

    summary = summarise(rows)
    table = Table(
        title="Default plan: every group at once vs one step after another (real pyATS, mock devices)"
    )
    for column in (
        "devices",
        "steps",
        "parallel wall s",
        "slowest group s (floor)",
        "× floor",
        "sequential s",
        "speed-up",
        "1st step (connect) p50 s",
        "next steps p50 s",
        "worker CPU s",
        "mock devices CPU s",
    ):
        table.add_column(column, justify="right")
    for row in summary:
        estimate = " (estimate)" if row["estimated"] else ""
        table.add_row(
            str(row["devices"]),
            str(row["steps"]),
            f"{row['parallel_wall_seconds']:.2f}",
            f"{row['slowest_group_seconds']:.2f}",
            f"{row['parallel_x_slowest_group']:.2f}×",
            "n/a" if row["sequential_seconds"] is None else f"{row['sequential_seconds']:.1f}{estimate}",
            "n/a" if row["speed_up"] is None else f"{row['speed_up']:.1f}×{estimate}",
            f"{row['first_step_p50_seconds']:.2f}",
            f"{row['other_steps_p50_seconds']:.2f}",
            f"{row['worker_cpu_seconds']:.1f}",
            f"{row['mock_devices_cpu_seconds']:.1f}",
        )
    console.print(table)
    console.print(
        "floor: the slowest group, the sum of its steps in the same parallel run (contention included): "
        "no schedule of the plan is faster; × floor = parallel wall / slowest group. "
        "sequential: measured, or an estimate (the largest measured sequential run, per device, times n). "
        "mock devices CPU: the simulated routers (one Python process each) on this machine's "
        f"{os.cpu_count()} cores; real routers bring their own."
    )
    bad = sum(row["steps_with_unexpected_findings"] for row in rows)
    if bad:
        console.print(f"[red]{bad} steps had unexpected findings[/red]")

    write_json(
        args.output,
        {
            "benchmark": "investigation",
            "plan": "unreachable-device",
            "machine": {
                **machine(),
                "pyats": version("pyats"),
                "genie": version("genie"),
                "unicon": version("unicon"),
            },
            "summary": summary,
            "runs": rows,
        },
        console,
    )
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown (pyATS threads); all results are written


if __name__ == "__main__":
    main()
