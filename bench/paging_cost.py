"""What a new incident costs before its first page, and where the first page's time goes.

Read from the incidents' own histories (the server's clock) after a burst or a storm: for a
sample of incidents, each step of the path to the first PagerDuty page (the run started, its
first workflow task, the maintenance check, who is paged, the page activity) in seconds from
the moment the incident was accepted, and what the incident had done by the time its first
PagerDuty page was sent (workflow tasks, activities by name, local activities, children,
search-attribute upserts, markers, timers). A page activity that waited more than a second
before it started (or is a retry) also asks the incident one query (`paging_acknowledged`), which
is in no history: it is counted from the page activities' own times (before the first-page-first
patch every page asked; this count assumes the rule of the code being measured).
"""

from __future__ import annotations

import asyncio
import statistics
from collections import Counter
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from activities.paging.activities import ASK_IF_WAITED
from bench.common import percentile

E = EventType
STAGES = (
    ("run started", "started"),
    ("timer due to fire (as set: started + its duration)", "timer_planned"),
    ("timer fired", "timer_fired"),
    ("first workflow task started", "task1_started"),
    ("first workflow task completed", "task1_completed"),
    ("maintenance check completed", "maintenance_window_completed"),
    ("who is paged: scheduled", "resolve_page_targets_scheduled"),
    ("who is paged: started", "resolve_page_targets_started"),
    ("who is paged: completed", "resolve_page_targets_completed"),
    ("PagerDuty page: scheduled", "send_page_pagerduty_scheduled"),
    ("PagerDuty page: started", "send_page_pagerduty_started"),
    ("page reached PagerDuty", "paged"),
    ("PagerDuty page: completed", "send_page_pagerduty_completed"),
)


def _at(event: HistoryEvent) -> float:
    return event.event_time.ToDatetime().timestamp()


def _activity_tag(event: HistoryEvent) -> str:
    attributes = event.activity_task_scheduled_event_attributes
    name = attributes.activity_type.name
    if name == "send_page" and attributes.input.payloads:
        data = attributes.input.payloads[0].data
        return "send_page_pagerduty" if b'"pagerduty"' in data else "send_page_slack"
    return name


def path_to_first_page(
    events: list[HistoryEvent], accepted: float, paged: float, since: float | None = None
) -> tuple[dict, Counter]:
    """Stage -> seconds after `accepted`, and what the incident did until its first PagerDuty page
    completed. `since`: only what happened from then on (a later page of an open incident: its
    "first workflow task" is the first after its due time)."""
    stages: dict[str, float] = {"paged": paged - accepted}
    timers = {
        e.timer_started_event_attributes.timer_id: _at(e)
        + e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta().total_seconds()
        for e in events
        if e.event_type == E.EVENT_TYPE_TIMER_STARTED
    }
    if since is None:
        stages["started"] = _at(events[0]) - accepted
    else:
        events = [e for e in events if _at(e) >= since]
    scheduled: dict[int, str] = {}
    scheduled_at: dict[int, float] = {}
    done: Counter[str] = Counter()
    tasks_started = tasks_completed = 0
    for event in events:
        kind, at = event.event_type, _at(event) - accepted
        if kind == E.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            tasks_started += 1
            if tasks_started == 1:
                stages["task1_started"] = at
        elif kind == E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            tasks_completed += 1
            done["workflow tasks"] += 1
            if tasks_completed == 1:
                stages["task1_completed"] = at
        elif kind == E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            tag = _activity_tag(event)
            scheduled[event.event_id] = tag
            scheduled_at[event.event_id] = at
            done[f"activity {tag}"] += 1
            stages.setdefault(f"{tag}_scheduled", at)
        elif kind == E.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attributes = event.activity_task_started_event_attributes
            tag = scheduled.get(attributes.scheduled_event_id, "")
            stages.setdefault(f"{tag}_started", at)
            waited = at - scheduled_at.get(attributes.scheduled_event_id, at) > ASK_IF_WAITED.total_seconds()
            if tag.startswith("send_page") and (waited or attributes.attempt > 1):
                done["queries (page activities that waited)"] += 1
        elif kind == E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            tag = scheduled.get(event.activity_task_completed_event_attributes.scheduled_event_id, "")
            stages.setdefault(f"{tag}_completed", at)
            if tag == "send_page_pagerduty":
                break
        elif kind == E.EVENT_TYPE_MARKER_RECORDED:
            marker = event.marker_recorded_event_attributes.marker_name
            done["local activities" if marker == "core_local_activity" else f"marker {marker}"] += 1
        elif kind == E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            done["search-attribute upserts"] += 1
        elif kind == E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            done["children started"] += 1
        elif kind == E.EVENT_TYPE_TIMER_STARTED:
            done["timers started"] += 1
        elif kind == E.EVENT_TYPE_TIMER_FIRED and "timer_fired" not in stages:
            stages["timer_fired"] = at
            planned = timers.get(event.timer_fired_event_attributes.timer_id)
            if planned is not None:
                stages["timer_planned"] = planned - accepted
        elif kind == E.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            done["signals received"] += 1
        elif kind == E.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
            done["signals sent"] += 1
    return stages, done


async def first_page_cost(
    client: Client, accepted: dict[str, float], paged: dict[str, float], sample: int = 50, later: bool = False
) -> dict[str, Any]:
    """`accepted`, `paged`: incident workflow id -> epoch seconds. The stages (p50/p90/max seconds
    after accepted) and the median counts of what was done before the first PagerDuty page, over
    `sample` incidents spread over the burst (first accepted to last). `later`: `accepted` is a
    later page's due time, and only what happened from then on counts."""
    ids = sorted(accepted, key=accepted.get)  # type: ignore[arg-type]
    step = max(1, len(ids) // sample)
    chosen = ids[::step][:sample]

    async def one(workflow_id: str) -> tuple[dict, Counter]:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        since = accepted[workflow_id] - 0.5 if later else None  # a timer may fire a little early
        return path_to_first_page(list(history.events), accepted[workflow_id], paged[workflow_id], since)

    results = await asyncio.gather(*(one(w) for w in chosen))
    stages = []
    for label, key in STAGES:
        values = [r[0][key] for r in results if key in r[0]]
        if values:
            stages.append(
                {
                    "stage": label,
                    "n": len(values),
                    "p50_s": round(percentile(values, 50), 2),
                    "p90_s": round(percentile(values, 90), 2),
                    "max_s": round(max(values), 2),
                }
            )
    names = sorted({name for _, counts in results for name in counts})
    counts = {name: statistics.median([counts[name] for _, counts in results]) for name in names}
    return {"sample": len(chosen), "stages": stages, "before_first_page": counts}
