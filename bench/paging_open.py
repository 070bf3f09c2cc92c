"""Page lateness with many open incidents on one worker, each with a live escalation chain.

One fresh stack per set (incidents, cadence): the worker runs the paging policy with every
level `cadence` after the one before, repeated, so pages keep falling due (bench_policy). The
incidents are started as open incidents carried over continue-as-new are: declared earlier, in
triage, their thread in Slack, level 1 paged, the chain at its next step (IncidentInput.carried).
That starts thousands in minutes where declaring each (its Slack post, its first page) would
take the worker most of an hour; what is measured is the same either way: the chain's pages.

Their declaration times are spread so that from the window's start their next steps fall due
evenly, `incidents / cadence` pages a second, while nothing else happens. Lateness is when the
page reached the PagerDuty sandbox (its own clock) minus when it was due (declared + the step's
offset, as the workflow computes it), for every PagerDuty page due in the window. Its floor: bare
timers due at moments spread over the same window on the same server (bench/floor.py
BenchFloorTimer), timer due -> its no-op activity ran.

Measured beside it, over the window: CPU of the worker, the dev server, the sandboxes and the
bench itself (% of one core), the worker's memory, and its SDK counters (sticky cache hits,
misses and forced evictions: an incident that is not in the worker's cache replays its history
before it can page).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import percentile, summarise
from bench.floor import Floor
from bench.paging_cost import first_page_cost
from bench.paging_stack import PagingStack, bench_policy
from starter.declare import start_options
from workflows.incident import IncidentWorkflow
from workflows.incident_input import IncidentInput
from workflows.models import (
    Conversation,
    IncidentDeclaration,
    IncidentState,
    Phase,
    Severity,
    TimelineEntry,
)
from workflows.paging_models import PagingState
from workflows.policy import format_duration, load_policy

SEVERITY = Severity.P1
FIRST_STEP = 1  # the step (of PagingPolicy.steps()) that falls due first in the window: level 1 was paged


@dataclass(frozen=True)
class OpenSet:
    incidents: int
    cadence: timedelta

    @property
    def label(self) -> str:
        return f"{self.incidents:,} open, every {format_duration(self.cadence)}"

    @property
    def pages_per_s(self) -> float:
        return self.incidents / self.cadence.total_seconds()


@dataclass
class OpenSettings:
    window: float  # seconds of due pages measured
    grace: float  # seconds after the window a page may still arrive
    create_rate: float  # incidents started a second (the window starts once all are)
    concurrency: int  # starts in flight
    floor_timers: int
    cache: int | None = None  # the worker's WORKER_MAX_CACHED_WORKFLOWS (None: its default)


def carried(key: str, declared_at: datetime, channel: str, thread: str) -> IncidentInput:
    """An open P1 as continue-as-new carries it: in triage, in its thread, level 1 paged."""
    declaration = IncidentDeclaration(
        key=key, severity=SEVERITY, title=f"bench open incident {key}", declared_at=declared_at
    )
    state = IncidentState(
        key=key,
        workflow_id=declaration.workflow_id,
        severity=SEVERITY,
        title=declaration.title,
        reporter="bench",
        phase=Phase.triage,
        declared_at=declared_at,
        conversation=Conversation(channel=channel, thread=thread),
        paging=PagingState(next_step=FIRST_STEP),
        timeline=[TimelineEntry(at=declared_at, kind="declared", actor="bench", text=declaration.title)],
    )
    return IncidentInput(declaration=declaration, carried=state)


async def start_incidents(
    stack: PagingStack, inputs: list[IncidentInput], rate: float, concurrency: int
) -> None:
    """`rate` starts a second, at most `concurrency` in flight. Paced, not all at once: an incident
    sets its next page's timer as (due - now) at the start of its workflow task, so a task that
    waits behind thousands of others sets a timer that fires late by that wait, and the window
    would measure the creation's backlog instead of the chain."""
    limit = asyncio.Semaphore(concurrency)
    began = time.time()

    async def start(n: int, incident: IncidentInput) -> None:
        await asyncio.sleep(max(0.0, began + n / rate - time.time()))
        async with limit:
            await stack.client.start_workflow(
                IncidentWorkflow.run, incident, **start_options(incident.declaration, stack.queue)
            )

    await asyncio.gather(*(start(n, i) for n, i in enumerate(inputs)))


def lateness_row(name: str, late_ms: list[float], missing: int, floor: dict) -> dict:
    """Lateness over every page due in the window; a page not at PagerDuty by the end counts as
    later than any that came (its percentile then reads None: "not paged by the end")."""
    values = sorted(late_ms) + [float("inf")] * missing
    row: dict[str, Any] = {
        "measure": name,
        "n": len(values),
        "paged": len(late_ms),
        "not_paged_by_the_end": missing,
    }
    for q in (50, 90, 99):
        value = percentile(values, q) if values else float("inf")
        row[f"p{q}_ms"] = None if value == float("inf") else round(value, 1)
    row["max_ms"] = round(max(late_ms), 1) if late_ms and not missing else None
    row["mean_ms"] = round(statistics.fmean(late_ms), 1) if late_ms else None
    for tail in ("p50", "p99"):
        if row[f"{tail}_ms"] is not None and floor.get(f"{tail}_ms"):
            row[f"ratio_{tail}"] = round(row[f"{tail}_ms"] / floor[f"{tail}_ms"], 1)
    return row


async def measure(
    source: Path, workdir: Path, which: OpenSet, settings: OpenSettings, worker_root: Path
) -> dict[str, Any]:
    policy_file = bench_policy(source, workdir, which.cadence)
    policy = load_policy(str(policy_file))
    chain = policy.for_severity(SEVERITY).paging
    assert chain is not None, f"{SEVERITY.value} has no escalation chain in {source}"
    offsets = {(loop, index + 1): offset for loop, index, offset in chain.steps()}
    first_offset = chain.steps()[FIRST_STEP][2]
    cadence = which.cadence.total_seconds()
    async with (
        PagingStack(
            policy_file,
            worker_root=worker_root,
            worker_env={"WORKER_MAX_CACHED_WORKFLOWS": str(settings.cache)} if settings.cache else None,
        ) as stack,
        Floor(stack.client) as floor,
    ):
        channel, thread = await stack.slack_thread(policy.channel(SEVERITY), "bench: open incidents")
        started = time.time()
        planned_start = started + which.incidents / settings.create_rate + 20
        declared = {}
        inputs = []
        for n in range(which.incidents):
            key = f"open-{n}"
            # Step FIRST_STEP of incident n is due n/incidents of a cadence after the window starts.
            due = planned_start + cadence * n / which.incidents
            declared[key] = datetime.fromtimestamp(due, UTC) - first_offset
            inputs.append(carried(key, declared[key], channel, thread))
        await start_incidents(stack, inputs, settings.create_rate, settings.concurrency)
        created = time.time()
        # The creation's own workflow tasks run behind the starts: give them time, then measure.
        window_start = max(planned_start, created + 20)
        window_end = window_start + settings.window
        expected = {
            (key, loop, level): (at + offset).timestamp()
            for key, at in declared.items()
            for (loop, level), offset in offsets.items()
            if window_start <= (at + offset).timestamp() < window_end
        }
        dues = [
            window_start + settings.window * (k + 0.5) / settings.floor_timers
            for k in range(settings.floor_timers)
        ]
        floor_task = asyncio.create_task(floor.timers(dues))
        usage = stack.usage()
        await asyncio.sleep(max(0.0, window_start - time.time()))
        start_mark, start_metrics = usage.mark(), await stack.metrics.read()
        while time.time() < window_end:
            await asyncio.sleep(5)
            usage.mark()
            await stack.pagerduty.poll()
        end_mark, end_metrics = usage.mark(), await stack.metrics.read()
        late = _lateness(stack, expected)
        while len(late) < len(expected) and time.time() < window_end + settings.grace:
            await asyncio.sleep(2)
            await stack.pagerduty.poll()
            late = _lateness(stack, expected)
        floor_late = await floor_task
        cost = await first_page_cost(stack.client, *_sample_pages(expected, late), later=True)
    floor_row = summarise("floor: bare timers due in the window, due -> activity ran", floor_late)
    row = lateness_row(
        f"{which.label}: page due -> at PagerDuty", list(late.values()), len(expected) - len(late), floor_row
    )
    return {
        "set": which.label + (f", cache {settings.cache:,}" if settings.cache else ""),
        "worker_max_cached_workflows": settings.cache or 1000,
        "incidents": which.incidents,
        "cadence_s": cadence,
        "pages_due_per_s": round(which.pages_per_s, 1),
        "policy": str(policy_file.name),
        "created_s": round(created - started, 1),
        "starts_per_s": round(which.incidents / (created - started), 1),
        "window_s": settings.window,
        "window_started_late_s": round(window_start - planned_start, 1),
        "pages_due": len(expected),
        "pages_delivered_per_s": round(len(late) / (settings.window + settings.grace), 1)
        if len(late) < len(expected)
        else None,
        "lateness": row,
        "floor": floor_row,
        "usage": usage.between(start_mark, end_mark),
        "sdk": stack.metrics.delta(start_metrics, end_metrics),
        "page_cost": cost,
        "cpu_ms_per_page": {
            name: round(1000 * usage_row["cpu_s"] / max(1, len(late)), 1)
            for name, usage_row in usage.between(start_mark, end_mark).items()
            if name in ("worker", "temporal server")
        },
    }


def _sample_pages(
    expected: dict[tuple[str, int, int], float], late: dict[tuple, float]
) -> tuple[dict[str, float], dict[str, float]]:
    """Per incident, its first page due in the window that came: (workflow id -> due, -> at PagerDuty)."""
    due: dict[str, float] = {}
    paged: dict[str, float] = {}
    for step in sorted(late, key=lambda s: expected[s]):
        workflow_id = f"incident-{step[0]}"
        if workflow_id not in due:
            due[workflow_id] = expected[step]
            paged[workflow_id] = expected[step] + late[step] / 1000
    return due, paged


def _lateness(stack: PagingStack, expected: dict[tuple[str, int, int], float]) -> dict[tuple, float]:
    """ms late of each expected page that reached PagerDuty (its first trigger for that step)."""
    found: dict[tuple, float] = {}
    for event in stack.pagerduty.events:
        if event["event_action"] != "trigger":
            continue
        details = ((event.get("event") or {}).get("payload") or {}).get("custom_details") or {}
        step = (event["dedup_key"], int(details.get("loop", 0)), int(details.get("level", 0)))
        if step in expected and step not in found:
            found[step] = (event["at"] - expected[step]) * 1000
    return found
