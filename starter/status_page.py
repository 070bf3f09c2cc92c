"""The status page: what the communications lead published, per service, for people outside the response.

    python -m starter.status_page --port 8080        (incident dev starts it too)

`GET /` is the page (HTML, no script, no outside asset; it reloads itself every 30 s),
`GET /api/status.json` the same as JSON, `GET /healthz` says it runs. Read-only: it only
lists incidents in Temporal's visibility (the open ones and those closed in the last 90 days)
and reads each one's state (the `state` query) or, once completed, its result.

What it shows of an incident is only what stakeholders were told: the timeline entries of kind
`stakeholder` (the initial notification, the status updates, the resolution;
workflows/incident_stakeholders.py), their times, the incident's service, severity, start and
resolution. Never its title, key, people, internal updates or notes: an incident whose
severity has no stakeholder updates (policy `stakeholders.severities`) is not on the page at
all. One component per service (the incidents' services and the policy's runbook services);
a service with nothing open is Operational.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus
from temporalio.service import RPCError

import activities.settings as ports
from activities.settings import Settings, get_settings
from starter.connect import TemporalUnreachable, connect
from starter.declare import build_list_query, query_state
from starter.edge import is_transient
from workflows.models import SERVICE_ATTR, IncidentSummary, Severity, TimelineEntry
from workflows.policy import format_duration, load_policy
from workflows.stakeholder_models import StakeholderStatus

log = logging.getLogger("incident.status_page")

HISTORY_DAYS = 90
RELOAD_SECONDS = 30  # the page reloads itself this often
FRESH_FOR = 2.0  # seconds one reading of Temporal serves every request
QUERY_TIMEOUT = 3.0  # seconds for one incident's state
READ_AT_ONCE = 10  # incidents read in parallel
NO_SERVICE = "Other"  # the component of incidents that name no service
TEMPLATES = Path(__file__).resolve().parent / "templates"


class PublicStatus(StrEnum):
    """An incident's status as status pages word it (statuspage.io's four)."""

    investigating = "investigating"
    identified = "identified"
    monitoring = "monitoring"
    resolved = "resolved"

    @property
    def label(self) -> str:
        return self.value.capitalize()


# The stakeholder statuses (incident stakeholder --status) in a status page's words: a fix in
# progress (mitigating) is "Identified".
_PUBLIC = {
    StakeholderStatus.investigating: PublicStatus.investigating,
    StakeholderStatus.identified: PublicStatus.identified,
    StakeholderStatus.mitigating: PublicStatus.identified,
    StakeholderStatus.monitoring: PublicStatus.monitoring,
    StakeholderStatus.resolved: PublicStatus.resolved,
}


class Impact(StrEnum):
    """What an open incident does to its component, from its severity; worst last."""

    operational = "operational"
    degraded_performance = "degraded_performance"
    partial_outage = "partial_outage"
    major_outage = "major_outage"

    @classmethod
    def of(cls, severity: Severity) -> Impact:
        return {Severity.P1: cls.major_outage, Severity.P2: cls.partial_outage}.get(
            severity, cls.degraded_performance
        )

    @property
    def label(self) -> str:
        return self.value.replace("_", " ").capitalize()

    @property
    def rank(self) -> int:
        return list(Impact).index(self)


class PublicUpdate(BaseModel):
    """One stakeholder update as published: when, the status it gave, and its words."""

    at: datetime
    kind: Literal["initial", "update", "resolved"]
    status: PublicStatus
    text: str


class PublicIncident(BaseModel):
    id: str  # opaque and stable (a hash of the workflow run): the incident key stays internal
    name: str  # the first update's first line: the initial notification's impact
    service: str
    severity: Severity
    impact: Impact
    status: PublicStatus
    started_at: datetime
    resolved_at: datetime | None = None
    duration: str = ""  # `38m`, `1d2h`; empty while open
    updates: list[PublicUpdate]  # newest first


class DayBar(BaseModel):
    day: date
    impact: Impact  # the worst of that day's published incidents; operational: none
    incidents: int = 0


class Component(BaseModel):
    name: str
    status: Impact
    label: str
    open: list[PublicIncident]
    history: list[PublicIncident]  # resolved in the last HISTORY_DAYS days, newest first
    days: list[DayBar]  # HISTORY_DAYS of them, oldest first


class StatusPage(BaseModel):
    title: str
    generated_at: datetime
    status: Impact
    label: str  # "All systems operational", "Major outage", ...
    components: list[Component]
    history_days: int = HISTORY_DAYS
    unread: int = 0  # open incidents that could not be read just now (no worker answered)


# ------------------------------------------------------------------ from the timeline

# The words workflows/incident_stakeholders.py records (`_send_stakeholder`, `_said`).
_INITIAL = "initial notification: "
_RESOLUTION = "resolution: "
_STATUS_UPDATE = re.compile(r"^status update: \[(?P<status>[a-z]+)\] (?P<text>.*)$", re.S)


def public_update(entry: TimelineEntry) -> PublicUpdate | None:
    """The published update a timeline entry records; None for every other entry."""
    if entry.kind != "stakeholder":
        return None
    if entry.text.startswith(_INITIAL):
        text = entry.text.removeprefix(_INITIAL)
        return PublicUpdate(at=entry.at, kind="initial", status=PublicStatus.investigating, text=text)
    if entry.text.startswith(_RESOLUTION):
        text = entry.text.removeprefix(_RESOLUTION)
        return PublicUpdate(at=entry.at, kind="resolved", status=PublicStatus.resolved, text=text)
    match = _STATUS_UPDATE.match(entry.text)
    if match is None:
        return None
    try:
        status = _PUBLIC[StakeholderStatus(match["status"])]
    except ValueError:
        status = PublicStatus.investigating
    return PublicUpdate(at=entry.at, kind="update", status=status, text=match["text"])


def public_incident(
    *,
    run: str,
    service: str,
    severity: Severity,
    timeline: Iterable[TimelineEntry],
    started_at: datetime,
    resolved_at: datetime | None,
    closed_at: datetime | None = None,
) -> PublicIncident | None:
    """What the page shows of one incident; None when nothing was published about it."""
    updates = [u for u in map(public_update, timeline) if u is not None]
    if not updates:
        return None
    ended = resolved_at or closed_at
    status = PublicStatus.resolved if ended else updates[-1].status
    first_line = updates[0].text.strip().splitlines()[0] if updates[0].text.strip() else ""
    return PublicIncident(
        id=hashlib.sha256(run.encode()).hexdigest()[:12],
        name=_shortened(first_line or "Service disruption", 120),
        service=service or NO_SERVICE,
        severity=severity,
        impact=Impact.of(severity),
        status=status,
        started_at=_utc(started_at),
        resolved_at=_utc(ended) if ended else None,
        duration=format_duration(ended - started_at, most=2) if ended else "",
        updates=list(reversed(updates)),
    )


def build_page(
    incidents: Iterable[PublicIncident],
    services: Iterable[str],
    now: datetime,
    title: str = "Service status",
    unread: int = 0,
) -> StatusPage:
    """The page from the published incidents: a component per service, worst first, then by name."""
    since = now - timedelta(days=HISTORY_DAYS)
    by_service: dict[str, list[PublicIncident]] = {name: [] for name in services if name}
    for incident in incidents:
        if incident.resolved_at is None or incident.resolved_at >= since:
            by_service.setdefault(incident.service, []).append(incident)
    components = [_component(name, found, now) for name, found in by_service.items()]
    components.sort(key=lambda c: (-c.status.rank, c.name.lower()))
    worst = max((c.status for c in components), key=lambda i: i.rank, default=Impact.operational)
    label = "All systems operational" if worst is Impact.operational else worst.label
    return StatusPage(
        title=title, generated_at=now, status=worst, label=label, components=components, unread=unread
    )


def _component(name: str, incidents: list[PublicIncident], now: datetime) -> Component:
    newest_first = sorted(incidents, key=lambda i: i.started_at, reverse=True)
    open_ = [i for i in newest_first if i.resolved_at is None]
    status = max((i.impact for i in open_), key=lambda i: i.rank, default=Impact.operational)
    history = sorted(
        (i for i in incidents if i.resolved_at is not None),
        key=lambda i: i.resolved_at or now,
        reverse=True,
    )
    return Component(
        name=name,
        status=status,
        label=status.label,
        open=open_,
        history=history,
        days=_days(incidents, now),
    )


def _days(incidents: list[PublicIncident], now: datetime) -> list[DayBar]:
    today = now.astimezone(UTC).date()
    bars = []
    for back in range(HISTORY_DAYS - 1, -1, -1):
        day = today - timedelta(days=back)
        on_day = [
            i
            for i in incidents
            if i.started_at.date() <= day and (i.resolved_at or now).astimezone(UTC).date() >= day
        ]
        worst = max((i.impact for i in on_day), key=lambda i: i.rank, default=Impact.operational)
        bars.append(DayBar(day=day, impact=worst, incidents=len(on_day)))
    return bars


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _shortened(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# ------------------------------------------------------------------ from Temporal


@dataclass
class IncidentReader:
    """Reads the published incidents from Temporal, remembering what cannot change.

    A completed run's result never changes, so it is read once. An open incident is read again
    each time (the `state` query, answered by a worker); when no worker answers, what was last
    read of it is shown, and an incident never read is counted as unread.
    """

    client: Client
    _known: dict[str, PublicIncident | None] = field(default_factory=dict)
    _final: set[str] = field(default_factory=set)

    async def read(self, now: datetime) -> tuple[list[PublicIncident], int]:
        query = build_list_query(closed_since=now - timedelta(days=HISTORY_DAYS))
        runs = [
            run
            async for run in self.client.list_workflows(query)
            if run.status != WorkflowExecutionStatus.CONTINUED_AS_NEW  # its next run is listed too
        ]
        gate = asyncio.Semaphore(READ_AT_ONCE)

        async def one(run: WorkflowExecution) -> tuple[PublicIncident | None, bool]:
            async with gate:
                return await self._incident(run)

        read = await asyncio.gather(*(one(run) for run in runs))
        listed = {run.run_id for run in runs}
        for gone in set(self._known) - listed:  # out of the 90 days
            self._known.pop(gone, None)
            self._final.discard(gone)
        return [i for i, _ in read if i is not None], sum(1 for _, ok in read if not ok)

    async def _incident(self, run: WorkflowExecution) -> tuple[PublicIncident | None, bool]:
        """(what is published of it, whether it could be read)."""
        if run.run_id in self._final:
            return self._known[run.run_id], True
        handle = self.client.get_workflow_handle(run.id, run_id=run.run_id, result_type=IncidentSummary)
        attrs = run.typed_search_attributes
        service = attrs.get(SERVICE_ATTR) or ""
        fields: dict[str, Any] = {"run": f"{run.id}/{run.run_id}", "closed_at": run.close_time}
        try:
            if run.status == WorkflowExecutionStatus.COMPLETED:
                summary = await handle.result()
                fields.update(
                    service=service,
                    severity=summary.severity,
                    timeline=summary.timeline,
                    started_at=summary.declared_at,
                    resolved_at=summary.resolved_at,
                )
            else:  # open, or ended by hand: its last state, from a worker
                state = await query_state(handle, wait=QUERY_TIMEOUT)
                fields.update(
                    service=state.service or service,
                    severity=state.severity,
                    timeline=state.timeline,
                    started_at=state.declared_at,
                    resolved_at=state.resolved_at,
                )
        except Exception as exc:  # noqa: BLE001 - one unreadable incident must not take the page down
            log.info("incident %s not read: %s", run.id, " ".join(str(exc).split())[:200])
            return self._known.get(run.run_id), False
        if run.status == WorkflowExecutionStatus.RUNNING:
            fields["closed_at"] = None
        incident = public_incident(**fields)
        self._known[run.run_id] = incident
        if run.status != WorkflowExecutionStatus.RUNNING:
            self._final.add(run.run_id)
        return incident, True


# ------------------------------------------------------------------ the web app


@lru_cache(maxsize=1)
def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=True,  # every text on the page came from people and alerts
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = lambda value: f"{value:%b %d, %H:%M} UTC"
    env.filters["span"] = _span
    return env


def _span(incident: PublicIncident) -> str:
    """`Dec 01, 14:32 to 15:10 UTC`; both dates when they differ."""
    start, end = incident.started_at, incident.resolved_at or incident.started_at
    until = f"{end:%H:%M}" if start.date() == end.date() else f"{end:%b %d, %H:%M}"
    return f"{start:%b %d, %H:%M} to {until} UTC"


def render_page(page: StatusPage) -> str:
    """The page as HTML (starter/templates/status_page.html.j2), every text escaped."""
    return _environment().get_template("status_page.html.j2").render(page=page, reload_seconds=RELOAD_SECONDS)


@dataclass
class StatusSource:
    """The page as of at most FRESH_FOR seconds ago; the last one read while Temporal is away."""

    settings: Settings
    services: list[str]
    client: Client | None = None
    _reader: IncidentReader | None = None
    _page: StatusPage | None = None
    _read_at: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def page(self) -> StatusPage:
        async with self._lock:
            if self._page is None or time.monotonic() - self._read_at > FRESH_FOR:
                try:
                    self._page = await self._read()
                    self._read_at = time.monotonic()
                except (TemporalUnreachable, RPCError) as exc:
                    if self._page is None or not is_transient(exc):
                        raise
                    log.warning("Temporal unreachable; showing the page of %s", self._page.generated_at)
            return self._page

    async def _read(self) -> StatusPage:
        if self.client is None:
            self.client = await connect(self.settings)
        if self._reader is None:
            self._reader = IncidentReader(self.client)
        now = datetime.now(UTC)
        incidents, unread = await self._reader.read(now)
        return build_page(incidents, self.services, now, self.settings.status_page_title, unread)


_UNAVAILABLE = (
    "<!doctype html><meta charset=utf-8><title>Status unavailable</title>"
    "<p>The status is unavailable for a moment; this page will be back shortly.</p>"
)


def create_app(
    settings: Settings | None = None, client: Client | None = None, services: Iterable[str] | None = None
) -> Starlette:
    """The status page's app. `services`: components shown even without incidents (default: the
    policy's runbook services); `client`: a connected client (default: connect on first request)."""
    settings = settings or get_settings()
    if services is None:
        services = load_policy(settings.incident_policy).runbooks.services
    source = StatusSource(settings, list(services), client)

    retry = {"Retry-After": "5"}

    async def html_page(request: Request) -> Response:
        try:
            page = await source.page()
        except (TemporalUnreachable, RPCError) as exc:
            log.warning("status page unavailable: %s", exc)
            return HTMLResponse(_UNAVAILABLE, status_code=503, headers=retry)
        return HTMLResponse(render_page(page), headers={"Cache-Control": "no-cache"})

    async def json_page(request: Request) -> Response:
        try:
            page = await source.page()
        except (TemporalUnreachable, RPCError) as exc:
            log.warning("status page unavailable: %s", exc)
            return JSONResponse({"ok": False, "error": "status temporarily unavailable"}, 503, headers=retry)
        return JSONResponse(page.model_dump(mode="json"), headers={"Cache-Control": "no-cache"})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[
            Route("/", html_page, methods=["GET"]),
            Route("/api/status.json", json_page, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


def main(argv: Iterable[str] | None = None) -> None:
    import uvicorn

    settings = get_settings()
    parser = argparse.ArgumentParser(description="The read-only status page of incidents")
    parser.add_argument("--host", default=settings.status_page_host)
    parser.add_argument("--port", type=int, default=settings.status_page_port or ports.STATUS_PAGE_PORT)
    args = parser.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
