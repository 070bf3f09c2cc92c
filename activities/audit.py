"""An incident's audit trail, read from its Temporal history: who did what, when, from where.

Nothing here is recorded on the side: every entry is an event of the incident's own
history (or of its ticket and investigation children), so the trail cannot disagree
with what happened. Commands are the signals and accepted updates (who: the command's
`user`; from where: the identity of the client that sent it, see `client_identity`);
pages, Slack messages, emails and ticket writes are the activities the workflows ran,
with their input and their result; the start is the declaration, the end the summary.

`derive_audit` is a pure function over fetched histories (tests run it on the recorded
ones in tests/histories/); `fetch_histories` is the I/O: every run of the incident
(continue-as-new) and of its children. Used by `incident audit` and, for the review, by
whatever drafts it (an activity may import this module; starter/ imports it too).

The project uses no payload codec; with one, payloads would have to be decoded by it first.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import socket
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.enums.v1 import EventType
from temporalio.api.history import v1 as history_pb
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import decode_search_attributes
from temporalio.service import RPCError, RPCStatusCode

from workflows.commands import COMMAND_MODELS

# ------------------------------------------------------------------ where commands come from

# The client identity of each part that gives incidents commands (starter/connect.py sets it),
# and the source the audit trail names for it. The worker keeps the SDK's `pid@host` (incident
# dev's supervisor and the two-worker test tell workers apart by it).
CLI_CLIENT = "incident-cli"
SLACK_CLIENT = "slack-handler"
ALERT_CLIENT = "alert-receiver"
CLIENT_SOURCES = {CLI_CLIENT: "cli", SLACK_CLIENT: "slack", ALERT_CLIENT: "alert"}
# What the Temporal server writes for a workflow signalling another (a child reporting back).
SERVER_IDENTITY = "history-service"
PAGING_SERVICES = ("pagerduty", "opsgenie")


def client_identity(role: str) -> str:
    """`incident-cli:alice@host` (the login name: who ran the command) for the CLI;
    `slack-handler:4242@host` (the process) for the long-running handlers."""
    host = socket.gethostname()
    if role == CLI_CLIENT:
        try:
            who = getpass.getuser()
        except Exception:  # noqa: BLE001 - no passwd entry in some containers
            who = str(os.getpid())
        return f"{role}:{who}@{host}"
    return f"{role}:{os.getpid()}@{host}"


_SDK_DEFAULT = re.compile(r"^\d+@")


def source_of(identity: str) -> str:
    """Where a command came from, by the identity of the client that sent it.

    `cli`, `slack`, `alert` (this project's parts); `temporal-cli` (`temporal workflow
    signal`, identity `temporal-cli:user@host`); `workflow` (another workflow: the ticket
    or investigation child, a maintenance window); `temporal-ui` (the UI sends no identity
    of its own unless it has a signed-in user; with one, it is that user's email);
    `client` (a Temporal SDK client with its default `pid@host` identity: a script, a test,
    this project before it named its clients); else `other`.
    """
    role = identity.split(":", 1)[0]
    if role in CLIENT_SOURCES and ":" in identity:
        return CLIENT_SOURCES[role]
    if identity.startswith("temporal-cli:"):
        return "temporal-cli"
    if identity == SERVER_IDENTITY:
        return "workflow"
    if identity in ("", "webui") or ("@" in identity and "." in identity.split("@", 1)[1]):
        return "temporal-ui"
    if _SDK_DEFAULT.match(identity):
        return "client"
    return "other"


# ------------------------------------------------------------------ the entries


class AuditEntry(BaseModel):
    """One line of the audit trail (one JSON Lines object)."""

    time: datetime  # UTC, as the Temporal server recorded the event
    actor: str  # who: the person (a command's user), the alert source, or the workflow itself
    source: str  # from where: cli, slack, alert, pagerduty, temporal-ui, temporal-cli, workflow, ...
    kind: str  # declared, command, acknowledgement, alert, page, message, ticket, ...
    what: str  # one line
    detail: str = ""
    identity: str = ""  # the client's (commands) or the worker's (activities) Temporal identity
    workflow_id: str = ""
    event_id: int = 0


ACTORS = {
    "IncidentWorkflow": "incident",
    "TicketWorkflow": "ticket",
    "InvestigationWorkflow": "investigation",
}
# Signals from the children and other workflows, and what the audit trail calls them.
REPORTS = {
    "ticket_opened": ("ticket", "ticket"),
    "ticket_problem": ("ticket", "ticket"),
    "baseline_captured": ("investigation", "investigation"),
    "investigation_done": ("investigation", "investigation"),
    "verification_done": ("investigation", "verification"),
    "maintenance": ("maintenance", "maintenance"),
}
COMMAND_NAMES = frozenset(COMMAND_MODELS)  # the commands, as signals and as updates
# Search attributes worth a line when the workflow sets them.
STATE_ATTRIBUTES = {
    "IncidentPhase": "phase",
    "IncidentSeverity": "severity",
    "IncidentCommander": "commander",
    "IncidentTicket": "ticket",
}
MAX_DETAIL = 500
# A ticket change's fields that are bookkeeping, not what changed.
TICKET_PLUMBING = ("incident_key", "kind", "idempotency_key", "ticket", "at", "close_code")


def _decode(payloads: Iterable[Payload]) -> list[Any]:
    """Payloads as plain JSON values (dicts, lists, strings); one that does not decode as its repr."""
    values: list[Any] = []
    for payload in payloads:
        try:
            values.append(pydantic_data_converter.payload_converter.from_payloads([payload])[0])
        except Exception:  # noqa: BLE001 - an old or foreign payload must not hide the rest
            values.append(f"<{payload.metadata.get('encoding', b'?').decode(errors='replace')} payload>")
    return values


def _first(payloads: Payloads) -> Any:
    values = _decode(payloads.payloads)
    return values[0] if values else None


def _time(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _short(text: Any, limit: int = MAX_DETAIL) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _fields(raw: dict[str, Any], skip: Iterable[str] = ("user", "request_id")) -> str:
    """`status=fixing, message=replacing PSU`: the fields that say something."""
    parts = []
    for name, value in raw.items():
        if name in skip or value in (None, "", [], {}, False):
            continue
        parts.append(f"{name}={value if not isinstance(value, (dict, list)) else json.dumps(value)}")
    return _short(", ".join(parts))


def _summary(event: HistoryEvent) -> str:
    if not event.HasField("user_metadata") or not event.user_metadata.HasField("summary"):
        return ""
    value = _decode([event.user_metadata.summary])[0]
    return value if isinstance(value, str) else ""


# ------------------------------------------------------------------ what each activity did


def _describe_activity(
    kind_name: str, arg: dict[str, Any], result: Any, summary: str
) -> tuple[str, str, str]:
    """(kind, what, detail) for an activity that completed with `result`."""
    res = _dict(result)
    dup = " (found already done by an earlier attempt)" if res.get("duplicate") else ""
    if kind_name == "post_slack_message":
        where = res.get("channel") or arg.get("channel", "")
        thread = " thread" if arg.get("thread_ts") else ""
        return (
            "message",
            f"posted {arg.get('template', '?')} in {where}{thread}",
            f"ts {res.get('ts', '')}{dup}",
        )
    if kind_name == "update_slack_header":
        what = "declaration header" if arg.get("template", "declaration") == "declaration" else "checklist"
        return "message", f"edited the {what} in {arg.get('channel', '')}", f"ts {arg.get('ts', '')}"
    if kind_name == "add_slack_reaction":
        return (
            "message",
            f"reacted :{arg.get('name', '')}: in {arg.get('channel', '')}",
            f"ts {arg.get('ts', '')}",
        )
    if kind_name == "upload_slack_file":
        return (
            "message",
            f"attached {arg.get('title') or arg.get('filename', '')}",
            f"file {res.get('file_id', '')}{dup}",
        )
    if kind_name == "send_email":
        to = arg.get("recipients") or []
        return (
            "message",
            f"emailed {len(to)} recipient(s): {arg.get('subject', summary)}",
            _short(", ".join(map(str, to))),
        )
    if kind_name == "send_page":
        person = _dict(arg.get("person"))
        who = person.get("user_id", "?") + (f" ({person['name']})" if person.get("name") else "")
        if res.get("held"):
            return (
                "page",
                f"page to {who} via {arg.get('service', '?')} held: already acknowledged",
                _short(arg.get("reason", "")),
            )
        detail = str(arg.get("reason") or f"level {arg.get('level', '?')}")
        detail += (
            f", repeat {arg['loop']}" if arg.get("loop") else ""
        ) + f"; reference {res.get('reference', '')}{dup}"
        return "page", f"paged {who} via {arg.get('service', '?')}", _short(detail)
    if kind_name == "update_paging_service":
        by = f" (by {arg['by']})" if arg.get("by") else ""
        return (
            "page",
            f"{arg.get('action', '?')} at {arg.get('service', '?')}{by}",
            _short(arg.get("note", "")),
        )
    if kind_name == "resolve_page_targets":
        people = [_dict(_dict(p).get("person")).get("user_id", "?") for p in res.get("people", [])]
        problems = "; ".join(map(str, res.get("problems", [])))
        return (
            "page",
            f"who to page: {', '.join(people) or 'nobody'}",
            _short(summary + (f"; {problems}" if problems else "")),
        )
    if kind_name == "open_ticket":
        if res.get("enabled") is False:
            return "ticket", "no ticket", _short(res.get("reason", ""))
        verb = "opened" if res.get("created", True) else "found already open"
        return (
            "ticket",
            f"{verb} {res.get('system', 'ticket')} {res.get('number', '')}".rstrip(),
            res.get("url", ""),
        )
    if kind_name == "update_ticket":
        change = _fields(arg, skip=TICKET_PLUMBING)
        state = f" (state {res['state']})" if res.get("state") else ""
        applied = "" if res.get("applied", True) else ", not applied: no ticket"
        return (
            "ticket",
            f"ticket {res.get('number', '')} {arg.get('kind', '?')}{state}".replace("  ", " "),
            _short(change + applied + dup),
        )
    if kind_name in ("open_war_room", "invite_to_war_room", "update_war_room_summary", "archive_war_room"):
        target = arg.get("name") or arg.get("channel") or res.get("name", "")
        extra = ", ".join(arg.get("users") or arg.get("members") or [])
        return "war room", f"{kind_name.replace('_', ' ')} {target}".strip(), _short(extra)
    if kind_name == "capture_baseline":
        devices = _dict(res.get("devices"))
        down = [name for name, health in devices.items() if not _dict(health).get("reachable", True)]
        return (
            "investigation",
            "captured the baseline",
            _short(f"{len(devices)} device(s)" + (f", unreachable: {', '.join(down)}" if down else "")),
        )
    if kind_name == "plan_investigation":
        return (
            "investigation",
            f"planned {res.get('plan', 'the investigation')}",
            f"{len(res.get('steps', []))} step(s)",
        )
    if kind_name == "run_investigation_step":
        return (
            "investigation",
            summary or f"step {res.get('index', '?')}",
            _short(f"{res.get('status', '')}: {res.get('finding', '')}"),
        )
    if kind_name == "analyse_investigation":
        return (
            "investigation",
            "analysed the findings",
            _short(f"{res.get('likely_cause', '')} (confidence {res.get('confidence', '?')})"),
        )
    if kind_name == "verify_against_baseline":
        if not res:
            return "verification", "verified against the baseline", ""
        verdict = "passed" if res.get("passed") else "FAILED"
        return "verification", f"verification against the baseline {verdict}", _short(res.get("summary", ""))
    return "activity", summary or kind_name.replace("_", " "), ""


def _report_detail(name: str, raw: dict[str, Any]) -> str:
    """The one thing a child's report says (the rest is in the child's own lines)."""
    if name == "ticket_opened":
        return f"{raw.get('system', '')} {raw.get('number', '')}".strip() or _short(raw.get("reason", ""))
    if name == "ticket_problem":
        return _short(f"{raw.get('what', '')}: {raw.get('reason', '')}")
    if name == "baseline_captured":
        return f"{len(_dict(raw.get('devices')))} device(s)"
    if name == "investigation_done":
        return _short(raw.get("likely_cause", ""))
    if name == "verification_done":
        verification = _dict(raw.get("verification"))
        if not verification:
            return _short(raw.get("problem", ""))
        return _short(
            ("passed: " if verification.get("passed") else "FAILED: ") + str(verification.get("summary", ""))
        )
    return _fields(raw)


def _command_entry(name: str, raw: Any, identity: str, mode: str) -> tuple[str, str, str, str, str]:
    """(actor, source, kind, what, detail) for a command or alert sent as a signal or update."""
    data = _dict(raw)
    actor = str(data.get("user", "")) or "?"
    source = source_of(identity)
    if name == "alerts":
        alerts = [_dict(a) for a in data.get("alerts", [])]
        names = ", ".join(f"{a.get('name', '?')} ({a.get('status', '?')})" for a in alerts[:5])
        more = f" and {len(alerts) - 5} more" if len(alerts) > 5 else ""
        return actor, source, "alert", f"{len(alerts)} alert(s): {names}{more}", ""
    if name == "acknowledge" and data.get("source") in PAGING_SERVICES:
        source = str(data["source"])  # PagerDuty's or Opsgenie's webhook, through the alert receiver
    kind = "acknowledgement" if name == "acknowledge" else "command"
    detail = _fields(data, skip=("user", "request_id", "source"))
    return actor, source, kind, f"{name} ({mode})", detail


# ------------------------------------------------------------------ the derivation


def _workflow_type(history: WorkflowHistory) -> str:
    for event in history.events:
        if event.HasField("workflow_execution_started_event_attributes"):
            return event.workflow_execution_started_event_attributes.workflow_type.name
    return ""


def derive_audit(histories: Sequence[WorkflowHistory]) -> list[AuditEntry]:
    """The audit trail of an incident from its histories: each run of the incident and of
    its children, in any order. Sorted by time; events at the same time keep their order."""
    written = {key for history in histories for key in _ticket_writes(history)}
    entries: list[AuditEntry] = []
    for history in histories:
        entries.extend(_HistoryReader(history, written).read())
    entries.sort(key=lambda e: e.time)
    return entries


def _ticket_writes(history: WorkflowHistory) -> Iterable[str]:
    """The idempotency keys of the ticket changes this history's workflow wrote."""
    scheduled: dict[int, str] = {}
    for event in history.events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            a = event.activity_task_scheduled_event_attributes
            if a.activity_type.name == "update_ticket":
                scheduled[event.event_id] = str(_dict(_first(a.input)).get("idempotency_key", ""))
        elif event.HasField("activity_task_completed_event_attributes"):
            key = scheduled.get(event.activity_task_completed_event_attributes.scheduled_event_id)
            if key:
                yield key


class _HistoryReader:
    """One history's audit lines: a method per kind of event that says something."""

    def __init__(self, history: WorkflowHistory, written: set[str]) -> None:
        self.history = history
        self.written = written  # ticket changes the ticket workflow's own history shows written
        workflow_type = _workflow_type(history)
        self.me = ACTORS.get(workflow_type, workflow_type or "workflow")
        self.child = workflow_type != "IncidentWorkflow"
        self.scheduled: dict[int, HistoryEvent] = {}
        self.attempts: dict[int, int] = {}
        self.timers: dict[int, HistoryEvent] = {}
        self.updates: dict[str, AuditEntry] = {}
        self.shown: dict[str, str] = {}  # the search attributes as last set: a line says what changed
        self.out: list[AuditEntry] = []
        self.event = HistoryEvent()

    def read(self) -> list[AuditEntry]:
        for event in self.history.events:
            which = event.WhichOneof("attributes") or ""
            handler = getattr(self, "_" + which.removesuffix("_event_attributes"), None)
            if handler is not None:
                self.event = event
                handler(getattr(event, which))
        return self.out

    def add(
        self,
        kind: str,
        what: str,
        detail: str = "",
        *,
        actor: str = "",
        source: str = "workflow",
        identity: str = "",
    ) -> AuditEntry:
        """A line for the event being read; by default the workflow's own doing."""
        entry = AuditEntry(
            time=_time(self.event.event_time),
            actor=actor or self.me,
            source=source,
            kind=kind,
            what=_short(what, 200),
            detail=_short(detail),
            identity=identity,
            workflow_id=self.history.workflow_id,
            event_id=self.event.event_id,
        )
        self.out.append(entry)
        return entry

    # The incident's start and end.

    def _workflow_execution_started(self, a: history_pb.WorkflowExecutionStartedEventAttributes) -> None:
        for name, values in decode_search_attributes(a.search_attributes).items():
            self.shown[name] = str(values[0]) if values else "—"
        if self.child:
            return
        if a.continued_execution_run_id:
            self.add("run", "continued as a new run", f"after run {a.continued_execution_run_id}")
            return
        declaration = _dict(_dict(_first(a.input)).get("declaration"))
        what = f"declared {declaration.get('severity', '?')}: {declaration.get('title', '')}"
        detail = _fields(declaration, skip=("key", "severity", "title", "reporter", "declared_at"))
        actor = str(declaration.get("reporter") or "") or "?"
        self.add("declared", what, detail, actor=actor, source=source_of(a.identity), identity=a.identity)

    def _workflow_execution_completed(self, a: history_pb.WorkflowExecutionCompletedEventAttributes) -> None:
        if self.child:
            return
        result = _dict(_first(a.result))
        parts = []
        if result.get("time_to_acknowledge_seconds") is not None:
            parts.append(f"time to acknowledge {round(result['time_to_acknowledge_seconds'])} s")
        if result.get("time_to_resolve_seconds") is not None:
            parts.append(f"time to resolve {round(result['time_to_resolve_seconds'])} s")
        parts.append(f"{result.get('updates', 0)} update(s), {result.get('escalations', 0)} escalation(s)")
        self.add("closed", "incident completed", ", ".join(parts))

    def _workflow_execution_continued_as_new(self, a: Any) -> None:
        if not self.child:
            self.add("run", "continued as new", f"next run {a.new_execution_run_id}")

    def _workflow_execution_failed(self, a: history_pb.WorkflowExecutionFailedEventAttributes) -> None:
        self.add("closed", f"{self.me} failed", a.failure.message)

    def _workflow_execution_timed_out(self, a: Any) -> None:
        self.add("closed", f"{self.me} timed out")

    def _workflow_execution_canceled(self, a: Any) -> None:
        self.add("closed", f"{self.me} canceled")

    def _workflow_execution_terminated(
        self, a: history_pb.WorkflowExecutionTerminatedEventAttributes
    ) -> None:
        who = a.identity or "?"
        self.add(
            "closed",
            f"{self.me} terminated",
            a.reason,
            actor=who,
            source=source_of(a.identity),
            identity=a.identity,
        )

    def _workflow_execution_cancel_requested(
        self, a: history_pb.WorkflowExecutionCancelRequestedEventAttributes
    ) -> None:
        who = a.identity or "?"
        self.add(
            "command",
            f"cancel {self.me}",
            a.cause,
            actor=who,
            source=source_of(a.identity),
            identity=a.identity,
        )

    # Commands, alerts and the children's reports.

    def _workflow_execution_signaled(self, a: history_pb.WorkflowExecutionSignaledEventAttributes) -> None:
        if self.child:
            return  # the parent's commands, already in the incident's own lines
        raw = _first(a.input)
        if a.signal_name in COMMAND_NAMES or a.signal_name == "alerts":
            actor, source, kind, what, detail = _command_entry(a.signal_name, raw, a.identity, "signal")
            self.add(kind, what, detail, actor=actor, source=source, identity=a.identity)
            return
        actor, kind = REPORTS.get(a.signal_name, (source_of(a.identity), "report"))
        what = f"told: {a.signal_name.replace('_', ' ')}"
        detail = _report_detail(a.signal_name, _dict(raw))
        self.add(kind, what, detail, actor=actor, source=source_of(a.identity), identity=a.identity)

    def _workflow_execution_update_accepted(
        self, a: history_pb.WorkflowExecutionUpdateAcceptedEventAttributes
    ) -> None:
        request = a.accepted_request
        identity = request.meta.identity
        actor, source, kind, what, detail = _command_entry(
            request.input.name, _first(request.input.args), identity, "update"
        )
        entry = self.add(kind, what, detail, actor=actor, source=source, identity=identity)
        self.updates[a.protocol_instance_id or request.meta.update_id] = entry

    def _workflow_execution_update_completed(
        self, a: history_pb.WorkflowExecutionUpdateCompletedEventAttributes
    ) -> None:
        """What the incident answered: added to the update's own line."""
        entry = self.updates.get(a.meta.update_id)
        if entry is None:
            return
        if a.outcome.HasField("failure"):
            outcome = f"refused: {a.outcome.failure.message}"
        else:
            recorded = _dict(_first(a.outcome.success))
            outcome = f"{recorded.get('kind', 'done')}: {recorded.get('text', '')}".rstrip(": ")
        entry.detail = _short("; ".join(p for p in (entry.detail, outcome) if p))

    # What the workflow did: activities (pages, messages, ticket writes), local activities,
    # what it told its children, the state it published and the deadlines that fell due.

    def _activity_task_scheduled(self, a: history_pb.ActivityTaskScheduledEventAttributes) -> None:
        self.scheduled[self.event.event_id] = self.event

    def _activity_task_started(self, a: history_pb.ActivityTaskStartedEventAttributes) -> None:
        self.attempts[a.scheduled_event_id] = a.attempt

    def _activity_task_completed(self, a: history_pb.ActivityTaskCompletedEventAttributes) -> None:
        self._activity_ended(a.scheduled_event_id, "completed", _first(a.result), "", a.identity)

    def _activity_task_failed(self, a: history_pb.ActivityTaskFailedEventAttributes) -> None:
        self._activity_ended(a.scheduled_event_id, "FAILED", None, a.failure.message, a.identity)

    def _activity_task_timed_out(self, a: history_pb.ActivityTaskTimedOutEventAttributes) -> None:
        self._activity_ended(a.scheduled_event_id, "TIMED OUT", None, a.failure.message, "")

    def _activity_task_canceled(self, a: history_pb.ActivityTaskCanceledEventAttributes) -> None:
        self._activity_ended(a.scheduled_event_id, "canceled", None, "", a.identity)

    def _activity_ended(
        self, scheduled_id: int, outcome: str, result: Any, failure: str, identity: str
    ) -> None:
        begun = self.scheduled.get(scheduled_id)
        if begun is None:
            return
        s = begun.activity_task_scheduled_event_attributes
        name, arg, summary = s.activity_type.name, _dict(_first(s.input)), _summary(begun)
        attempt = self.attempts.get(scheduled_id, 1)
        retried = f" (attempt {attempt})" if attempt > 1 else ""
        if outcome == "completed":
            kind, what, detail = _describe_activity(name, arg, result, summary)
            self.add(kind, what, detail + retried, identity=identity)
            return
        kind, _, _ = _describe_activity(name, arg, None, summary)
        self.add(
            kind, f"{outcome}: {summary or name.replace('_', ' ')}", failure + retried, identity=identity
        )

    def _marker_recorded(self, a: history_pb.MarkerRecordedEventAttributes) -> None:
        if a.marker_name != "core_local_activity":
            return  # patch markers: which code ran, not what happened
        data = _dict(_first(a.details["data"])) if "data" in a.details else {}
        name = str(data.get("activity_type", "local activity"))
        if a.HasField("failure"):
            self.add("activity", f"FAILED: {name.replace('_', ' ')}", a.failure.message)
            return
        if name == "load_incident_policy":
            self.add("activity", "loaded the incident policy")
            return
        result = _first(a.details["result"]) if "result" in a.details else None
        kind, what, detail = _describe_activity(name, {}, result, _summary(self.event))
        self.add(kind, what, detail)

    def _signal_external_workflow_execution_initiated(
        self, a: history_pb.SignalExternalWorkflowExecutionInitiatedEventAttributes
    ) -> None:
        if a.signal_name != "change":
            return  # what the investigation is told shows in its own lines
        raw = _dict(_first(a.input))
        if raw.get("idempotency_key") in self.written:
            return  # the ticket workflow's line for its write says it
        target = a.workflow_execution.workflow_id
        self.add(
            "ticket", f"ticket {raw.get('kind', '?')} sent to {target}", _fields(raw, skip=TICKET_PLUMBING)
        )

    def _upsert_workflow_search_attributes(
        self, a: history_pb.UpsertWorkflowSearchAttributesEventAttributes
    ) -> None:
        changes = []
        for name, values in decode_search_attributes(a.search_attributes).items():
            value = str(values[0]) if values else "—"
            if name in STATE_ATTRIBUTES and self.shown.get(name) != value:
                self.shown[name] = value
                changes.append(f"{STATE_ATTRIBUTES[name]} {value}")
        if changes:
            self.add("state", ", ".join(changes))

    def _timer_started(self, a: history_pb.TimerStartedEventAttributes) -> None:
        self.timers[self.event.event_id] = self.event

    def _timer_fired(self, a: history_pb.TimerFiredEventAttributes) -> None:
        timer = self.timers.get(a.started_event_id)
        label = _summary(timer) if timer is not None else ""
        if label:  # a timer without a label is a pause inside a step, not a deadline
            self.add("deadline", f"due: {label}")


def to_json_lines(entries: Iterable[AuditEntry]) -> str:
    """One JSON object a line; `time` in UTC ISO 8601 (`2026-12-01T14:32:05.123000Z`)."""
    return "".join(entry.model_dump_json() + "\n" for entry in entries)


# ------------------------------------------------------------------ fetching


MAX_RUNS = 200  # continue-as-new runs followed back, far more than an incident ever makes


async def fetch_histories(client: Client, workflow_id: str) -> list[WorkflowHistory]:
    """Every run of the workflow's latest execution chain (following continue-as-new back to
    the first run), and of the children those runs started. A child whose history is gone
    (retention) is left out: the incident's own lines still say what was sent to it."""
    histories = await _runs_back(client, workflow_id)
    children: list[tuple[str, str]] = []
    for history in histories:
        for event in history.events:
            if event.HasField("child_workflow_execution_started_event_attributes"):
                execution = event.child_workflow_execution_started_event_attributes.workflow_execution
                children.append((execution.workflow_id, execution.run_id))
    for child_id, run_id in children:
        histories.extend(await _runs_forward(client, child_id, run_id))
    return histories


async def _runs_back(client: Client, workflow_id: str) -> list[WorkflowHistory]:
    runs: list[WorkflowHistory] = []
    run_id: str | None = None
    for _ in range(MAX_RUNS):
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        runs.insert(0, history)
        first = history.events[0] if history.events else None
        if first is None or not first.HasField("workflow_execution_started_event_attributes"):
            break
        run_id = first.workflow_execution_started_event_attributes.continued_execution_run_id or None
        if run_id is None:
            break
    return runs


async def _runs_forward(client: Client, workflow_id: str, run_id: str) -> list[WorkflowHistory]:
    runs: list[WorkflowHistory] = []
    next_run: str | None = run_id
    while next_run and len(runs) < MAX_RUNS:
        try:
            history = await client.get_workflow_handle(workflow_id, run_id=next_run).fetch_history()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                break
            raise
        runs.append(history)
        last = history.events[-1] if history.events else None
        next_run = None
        if last is not None and last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            next_run = last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
    return runs
