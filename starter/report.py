"""`incident report`: how response is doing, from the completed incidents' own results.

Temporal's visibility lists the completed `IncidentWorkflow` runs (started since `--since`);
each one's result is its `IncidentSummary` (times, timeline, pages). Everything below
`fetch_closed_incidents` is pure: `figures_of` derives one incident's numbers from its
summary, `build_report` adds them up per severity, per service and per week, and the
renderers print them (text, JSON, HTML with charts: starter/report_html.py).

The definitions (DEFINITIONS) are printed with the figures, so nobody has to guess which
timestamps a mean is taken between.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from statistics import mean
from typing import Any

from pydantic import BaseModel, Field
from temporalio.client import Client, WorkflowExecutionStatus

from starter.declare import build_list_query
from workflows.models import SERVICE_ATTR, IncidentSummary, Severity

READ_AT_ONCE = 16  # results fetched in parallel
NO_SERVICE = "(none)"
# Declarations from these reporters carry the alert's own start as detected_at
# (starter/alerts.py: Alertmanager and Grafana `startsAt`, PagerDuty `payload.timestamp`).
# The CLI's detected_at is the moment a person declared, the generic receiver and Slack set none.
ALERT_REPORTERS = ("alertmanager", "grafana", "pagerduty")
# An action item counts as completed in one of these states (the `action_items` of a result).
DONE_STATES = {"done", "closed", "completed", "resolved"}

DEFINITIONS: dict[str, str] = {
    "MTTA": "mean time to acknowledge: declared -> the first acknowledgement or claim "
    "(timeline `acknowledged` or `claimed`), over incidents acknowledged",
    "MTTD": "mean time to detect: the alert's own start (Alertmanager/Grafana startsAt, PagerDuty "
    "payload.timestamp) -> declared, over incidents declared by such an alert; n/a without one",
    "MTTM": "mean time to mitigate: declared -> the first update with status `monitoring` (the fix is "
    "in, being watched), else the resolution when no such update came first",
    "MTTR": "mean time to resolve: declared -> resolved (the `resolve` command)",
    "declared": "when the first alert or the declaration was accepted by a receiver, the CLI or Slack",
    "reviews on time": "share of incidents whose severity has a post-incident review (policy review_within) "
    "marked done (`review_done`) by its due time; a review that expired counts as not on time",
    "action items": "share of the incidents' action items completed; n/a while results carry none",
    "escalations": "per incident: escalations by mention plus pages of the escalation chain past "
    "its first level (later levels, repeats, unresolved rules)",
    "pages": "a page is one person paged at one level of one incident and sent, however many services "
    "(Slack, PagerDuty, Opsgenie) carried it; per person counted in the ISO week (Monday, UTC) it was sent",
    "recurring root causes": "root causes (compared ignoring case and spacing) given for two or more incidents",
}


# ----------------------------------------------------------------- one incident


class ClosedIncident(BaseModel):
    """A completed incident as the report reads it: its result, and what visibility adds."""

    workflow_id: str
    run_id: str = ""
    summary: IncidentSummary
    service: str = ""  # the IncidentService search attribute, for results from before summary.service
    action_items: list[dict[str, Any]] | None = None  # the result's `action_items`, once it has them


class PageSent(BaseModel):
    person: str
    at: datetime


class IncidentFigures(BaseModel):
    """One incident's numbers (seconds), each None where it does not apply."""

    key: str
    severity: Severity
    service: str
    declared_at: datetime
    time_to_acknowledge: float | None
    time_to_detect: float | None
    time_to_mitigate: float | None
    time_to_resolve: float | None
    review_due: bool  # its severity has a review
    review_on_time: bool
    escalations: int
    pages: list[PageSent] | None  # None: the result predates pages in the summary
    root_cause: str | None
    action_items: int | None
    action_items_done: int | None


def _seconds(start: datetime, end: datetime | None) -> float | None:
    return None if end is None else (end - start).total_seconds()


def _first(summary: IncidentSummary, kinds: Iterable[str], prefix: str = "") -> datetime | None:
    wanted = set(kinds)
    for entry in summary.timeline:
        if entry.kind in wanted and entry.text.startswith(prefix):
            return entry.at
    return None


def detected_by_alert(summary: IncidentSummary) -> bool:
    reporter = summary.reporter or next((e.actor for e in summary.timeline if e.kind == "declared"), "")
    return summary.detected_at is not None and reporter.split(" ")[0].lower() in ALERT_REPORTERS


def pages_of(summary: IncidentSummary) -> list[PageSent]:
    """Each person paged at each level once, however many services carried it, when first sent."""
    first: dict[tuple[int, int, str, str], datetime] = {}
    for page in summary.pages:
        if page.outcome != "sent":
            continue
        key = (page.level, page.loop, page.rule, page.user_id)
        first[key] = min(first.get(key, page.at), page.at)
    return [PageSent(person=key[3], at=at) for key, at in sorted(first.items(), key=lambda kv: kv[1])]


def figures_of(incident: ClosedIncident) -> IncidentFigures:
    s = incident.summary
    acknowledged = _first(s, ("acknowledged", "claimed"))
    monitoring = _first(s, ("update",), "[monitoring]")
    mitigated = (
        monitoring
        if monitoring is not None and (s.resolved_at is None or monitoring <= s.resolved_at)
        else s.resolved_at
    )
    detect = (
        (s.declared_at - s.detected_at).total_seconds()
        if detected_by_alert(s) and s.detected_at is not None and s.detected_at <= s.declared_at
        else None
    )
    review_due = s.review_due_at is not None or any(e.kind == "review_scheduled" for e in s.timeline)
    done = _first(s, ("review_done",))
    on_time = review_due and done is not None and (s.review_due_at is None or done <= s.review_due_at)
    escalations = sum(1 for e in s.timeline if e.kind == "escalation") + sum(
        1 for e in s.timeline if e.kind == "paging" and not e.text.startswith("paging level 1:")
    )
    items = incident.action_items
    root = " ".join((s.root_cause or "").split())
    return IncidentFigures(
        key=s.key,
        severity=s.severity,
        service=s.service or incident.service or NO_SERVICE,
        declared_at=s.declared_at,
        time_to_acknowledge=_seconds(s.declared_at, acknowledged),
        time_to_detect=detect,
        time_to_mitigate=_seconds(s.declared_at, mitigated),
        time_to_resolve=_seconds(s.declared_at, s.resolved_at),
        review_due=review_due,
        review_on_time=on_time,
        escalations=escalations,
        pages=pages_of(s) if "pages" in s.model_fields_set else None,
        root_cause=root or None,
        action_items=None if items is None else len(items),
        action_items_done=None
        if items is None
        else sum(1 for i in items if str(i.get("status", "")).lower() in DONE_STATES),
    )


# ----------------------------------------------------------------- adding up


class Mean(BaseModel):
    seconds: float | None  # None: no incident it applies to
    n: int


class ReviewShare(BaseModel):
    on_time: int
    due: int
    share: float | None


class ActionItemRate(BaseModel):
    done: int
    total: int
    rate: float | None  # None: "n/a", no result carried action items


class Group(BaseModel):
    count: int
    mtta: Mean
    mttd: Mean
    mttm: Mean
    mttr: Mean
    reviews_on_time: ReviewShare
    action_items: ActionItemRate
    escalations_per_incident: float | None
    pages_per_incident: float | None  # None: no result carried its pages


class PersonWeek(BaseModel):
    person: str
    week: str  # ISO week, 2026-W49
    week_start: date  # its Monday
    pages: int
    over_limit: bool


class RootCause(BaseModel):
    root_cause: str
    count: int
    incidents: list[str]


class WeekTrend(BaseModel):
    week: str
    week_start: date
    count: int
    by_severity: dict[str, int]
    mtta: Mean
    mttr: Mean


class Report(BaseModel):
    generated_at: datetime
    since: datetime
    filters: dict[str, str]
    definitions: dict[str, str] = Field(default_factory=lambda: dict(DEFINITIONS))
    max_pages_per_person_week: int
    overall: Group
    by_severity: dict[str, Group]
    by_service: dict[str, Group]
    pages_per_person_week: list[PersonWeek]
    over_limit: list[PersonWeek]
    recurring_root_causes: list[RootCause]
    trends: list[WeekTrend]
    incidents: list[IncidentFigures]


def _mean(values: Iterable[float | None]) -> Mean:
    got = [v for v in values if v is not None]
    return Mean(seconds=mean(got) if got else None, n=len(got))


def group_of(figures: list[IncidentFigures]) -> Group:
    due = [f for f in figures if f.review_due]
    with_items = [f for f in figures if f.action_items is not None]
    total = sum(f.action_items or 0 for f in with_items)
    done = sum(f.action_items_done or 0 for f in with_items)
    with_pages = [f for f in figures if f.pages is not None]
    return Group(
        count=len(figures),
        mtta=_mean(f.time_to_acknowledge for f in figures),
        mttd=_mean(f.time_to_detect for f in figures),
        mttm=_mean(f.time_to_mitigate for f in figures),
        mttr=_mean(f.time_to_resolve for f in figures),
        reviews_on_time=ReviewShare(
            on_time=sum(1 for f in due if f.review_on_time),
            due=len(due),
            share=sum(1 for f in due if f.review_on_time) / len(due) if due else None,
        ),
        action_items=ActionItemRate(done=done, total=total, rate=done / total if total else None),
        escalations_per_incident=mean(f.escalations for f in figures) if figures else None,
        pages_per_incident=mean(len(f.pages or []) for f in with_pages) if with_pages else None,
    )


def iso_week(when: datetime) -> tuple[str, date]:
    day = when.astimezone(UTC).date()
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}", day - timedelta(days=day.weekday())


def _normalised(cause: str) -> str:
    return re.sub(r"\s+", " ", cause).strip().casefold()


def build_report(
    incidents: list[ClosedIncident],
    *,
    since: datetime,
    now: datetime,
    max_pages_per_person_week: int,
    severity: Severity | None = None,
    service: str | None = None,
) -> Report:
    figures = [figures_of(i) for i in incidents]
    figures = [
        f
        for f in figures
        if f.declared_at >= since
        and (severity is None or f.severity == severity)
        and (service is None or f.service == service)
    ]
    figures.sort(key=lambda f: f.declared_at)
    by_severity: dict[str, list[IncidentFigures]] = defaultdict(list)
    by_service: dict[str, list[IncidentFigures]] = defaultdict(list)
    by_week: dict[tuple[str, date], list[IncidentFigures]] = defaultdict(list)
    for f in figures:
        by_severity[f.severity.value].append(f)
        by_service[f.service].append(f)
        by_week[iso_week(f.declared_at)].append(f)

    paged: Counter[tuple[str, str, date]] = Counter()
    for f in figures:
        for page in f.pages or []:
            week, monday = iso_week(page.at)
            paged[(page.person, week, monday)] += 1
    person_weeks = [
        PersonWeek(
            person=person,
            week=week,
            week_start=monday,
            pages=n,
            over_limit=n > max_pages_per_person_week,
        )
        for (person, week, monday), n in sorted(paged.items(), key=lambda kv: (kv[0][2], -kv[1], kv[0][0]))
    ]

    causes: dict[str, list[IncidentFigures]] = defaultdict(list)
    for f in figures:
        if f.root_cause:
            causes[_normalised(f.root_cause)].append(f)
    recurring = [
        RootCause(root_cause=group[0].root_cause or cause, count=len(group), incidents=[g.key for g in group])
        for cause, group in causes.items()
        if len(group) >= 2
    ]
    recurring.sort(key=lambda r: (-r.count, r.root_cause))

    trends = [
        WeekTrend(
            week=week,
            week_start=monday,
            count=len(group),
            by_severity=dict(Counter(f.severity.value for f in group)),
            mtta=_mean(f.time_to_acknowledge for f in group),
            mttr=_mean(f.time_to_resolve for f in group),
        )
        for (week, monday), group in sorted(by_week.items(), key=lambda kv: kv[0][1])
    ]
    filters = {"since": since.isoformat()}
    if severity is not None:
        filters["severity"] = severity.value
    if service is not None:
        filters["service"] = service
    return Report(
        generated_at=now,
        since=since,
        filters=filters,
        max_pages_per_person_week=max_pages_per_person_week,
        overall=group_of(figures),
        by_severity={k: group_of(v) for k, v in sorted(by_severity.items())},
        by_service={k: group_of(v) for k, v in sorted(by_service.items())},
        pages_per_person_week=person_weeks,
        over_limit=[p for p in person_weeks if p.over_limit],
        recurring_root_causes=recurring,
        trends=trends,
        incidents=figures,
    )


# ----------------------------------------------------------------- reading Temporal


def report_query(since: datetime, severity: Severity | None = None) -> str:
    """Completed incidents started since `since` (a declaration back-dated by its alert's receiver
    is at most a little older than its run: a day's slack; `build_report` filters exactly)."""
    started = (since - timedelta(days=1)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        build_list_query(severity=severity) + f" AND ExecutionStatus='Completed' AND StartTime >= '{started}'"
    )


async def fetch_closed_incidents(
    client: Client, since: datetime, severity: Severity | None = None
) -> list[ClosedIncident]:
    """Every completed incident since `since`, with its result (read in parallel)."""
    runs = [
        run
        async for run in client.list_workflows(report_query(since, severity))
        if run.status == WorkflowExecutionStatus.COMPLETED
    ]
    gate = asyncio.Semaphore(READ_AT_ONCE)

    async def read(run: Any) -> ClosedIncident:
        async with gate:
            raw = await client.get_workflow_handle(run.id, run_id=run.run_id).result()
        raw = raw if isinstance(raw, dict) else {}
        items = raw.get("action_items")
        return ClosedIncident(
            workflow_id=run.id,
            run_id=run.run_id,
            summary=IncidentSummary.model_validate(raw),
            service=run.typed_search_attributes.get(SERVICE_ATTR) or "",
            action_items=[i for i in items if isinstance(i, dict)] if isinstance(items, list) else None,
        )

    return list(await asyncio.gather(*(read(run) for run in runs)))


# ----------------------------------------------------------------- text


def fmt_seconds(seconds: float | None) -> str:
    """`4m 30s`, `2h 05m`, `3d 4h`; `n/a` for None."""
    if seconds is None:
        return "n/a"
    total = round(seconds)
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def fmt_share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def fmt_number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def group_row(name: str, g: Group) -> list[str]:
    reviews = (
        f"{fmt_share(g.reviews_on_time.share)} ({g.reviews_on_time.on_time}/{g.reviews_on_time.due})"
        if g.reviews_on_time.due
        else "n/a"
    )
    items = (
        f"{fmt_share(g.action_items.rate)} ({g.action_items.done}/{g.action_items.total})"
        if g.action_items.rate is not None
        else "n/a"
    )
    return [
        name,
        str(g.count),
        fmt_seconds(g.mtta.seconds),
        fmt_seconds(g.mttd.seconds) + (f" ({g.mttd.n})" if g.mttd.n else ""),
        fmt_seconds(g.mttm.seconds),
        fmt_seconds(g.mttr.seconds),
        reviews,
        items,
        fmt_number(g.escalations_per_incident),
        fmt_number(g.pages_per_incident),
    ]


GROUP_COLUMNS = [
    "",
    "Incidents",
    "MTTA",
    "MTTD (n)",
    "MTTM",
    "MTTR",
    "Reviews on time",
    "Action items done",
    "Escalations/inc",
    "Pages/inc",
]
