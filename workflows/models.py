"""Pydantic models for everything that crosses the Temporal boundary.

Workflow input, signals, query results and activity inputs/outputs are all
defined here, each as ONE object so fields can be added later without
breaking running incidents. Every field added later must have a default.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator, model_validator
from temporalio.common import SearchAttributeKey

from .action_state import ActionItem
from .device_models import Baseline, Verification
from .limits import http_url_problem
from .paging_state import PageRecord, PagingState
from .review_models import ReviewSchedule

WORKFLOW_ID_PREFIX = "incident-"
# A Slack user id (U..., or W... in Enterprise Grid): what can be mentioned, paged or invited.
SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
TASK_QUEUE_DEFAULT = "incidents"

_KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+=-]{0,199}$")


class Severity(str, Enum):
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"

    @classmethod
    def parse(cls, value: str | Severity) -> Severity:
        """P1..P4, SEV1..SEV4 and 1..4, any case; ValueError names the choices."""
        if isinstance(value, Severity):
            return value
        text = str(value).strip().upper()
        for prefix in ("SEV", "S", "P"):
            if text.startswith(prefix) and text[len(prefix) :].isdigit():
                text = text[len(prefix) :]
                break
        if text in {"1", "2", "3", "4"}:
            return cls("P" + text)
        raise ValueError(f"unknown severity {value!r}: use P1, P2, P3 or P4 (SEV1..SEV4 also accepted)")

    @property
    def rank(self) -> int:
        """1 is the most severe."""
        return int(self.value[1])


class Phase(str, Enum):
    declared = "declared"
    triage = "triage"
    investigating = "investigating"
    monitoring = "monitoring"
    resolved = "resolved"
    review = "review"


class UpdateStatus(str, Enum):
    investigating = "investigating"
    identified = "identified"
    fixing = "fixing"
    waiting = "waiting"
    monitoring = "monitoring"


UPDATE_STATUSES = [s.value for s in UpdateStatus]


def _severity(value: Any) -> Severity:
    return Severity.parse(value)


class Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


# --------------------------------------------------------------------- input


class IncidentDeclaration(Model):
    """What is known when an incident is declared (by a person or an alert)."""

    key: str
    severity: Severity
    title: str = Field(min_length=1, max_length=200)
    service: str = ""
    symptoms: list[str] = Field(default_factory=list)
    impact: list[str] = Field(default_factory=list)
    links: list[str] = Field(default_factory=list)
    reporter: str = "incident-cli"
    detected_at: datetime | None = None
    # Network devices the incident is about, and each one's upstream neighbour
    # (device -> upstream), for the automated investigation.
    devices: list[str] = Field(default_factory=list)
    upstream: dict[str, str] = Field(default_factory=dict)
    # When the declaration (or its first alert) was accepted by the CLI, the Slack handler or a
    # receiver: the incident's `declared` time and the start of its MTTA, however late a worker
    # picks it up. None (older starters): when the workflow first ran.
    declared_at: datetime | None = None
    # The severity framework's triggers (policy `triggers`): reported by customers with paying
    # accounts affected (at least P2), a data-integrity concern (P1 at once).
    customer_impact: bool = False
    data_integrity: bool = False
    # The runbook to follow: an http(s) URL (`incident declare --runbook`, an alert's `runbook_url`
    # annotation). Empty: the policy's runbook for the service, if it has one.
    runbook: str = ""

    _severity = field_validator("severity", mode="before")(_severity)

    @field_validator("runbook")
    @classmethod
    def _runbook_is_a_link(cls, value: str) -> str:
        value = value.strip()
        problem = http_url_problem(value) if value else None
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("declared_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        """A time without a zone is UTC (it is compared with the workflow's own clock)."""
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value

    @field_validator("key")
    @classmethod
    def _key_is_safe(cls, value: str) -> str:
        if not _KEY_PATTERN.match(value):
            raise ValueError(
                "incident key must be 1-200 characters of letters, digits and . _ : / @ + = -, "
                "starting with a letter or digit"
            )
        return value

    @property
    def workflow_id(self) -> str:
        return workflow_id_for(self.key)


def workflow_id_for(key_or_id: str) -> str:
    """`R1-outage` and `incident-R1-outage` both name workflow `incident-R1-outage`."""
    if key_or_id.startswith(WORKFLOW_ID_PREFIX):
        return key_or_id
    return WORKFLOW_ID_PREFIX + key_or_id


# ------------------------------------------------------------------- signals


class Signal(Model):
    """Base of every signal: who sent it and, optionally, an id to find its outcome."""

    user: str = Field(min_length=1)
    request_id: str | None = None


class ClaimSignal(Signal):
    pass


class SnoozeSignal(Signal):
    """Hold reminders, escalation and paging for `duration` (`30m`, `2h`); a new alert ends it."""

    duration: str = Field(min_length=1, max_length=20)
    reason: str = ""


class AcknowledgeSignal(Signal):
    """Stop paging: somebody is on it (not necessarily taking IC; the policy says)."""

    source: str = ""  # "slack", "pagerduty", "opsgenie", "cli": where it came from


# The roles besides the Incident Commander (seed 003): each held by one person, and any number
# of subject-matter experts. The names people type, by role.
ROLES: dict[str, str] = {
    "comms": "communications lead",
    "tech": "technical lead",
    "scribe": "scribe",
    "sme": "subject-matter expert",
}
ROLE_ALIASES: dict[str, str] = {
    "communications": "comms",
    "communication": "comms",
    "technical": "tech",
    "tl": "tech",
    "expert": "sme",
    "experts": "sme",
}


def role_name(text: str) -> str | None:
    """`Comms`, `communications` -> `comms`; None for no role."""
    word = text.strip().lower().removesuffix("-lead").removesuffix("_lead")
    word = ROLE_ALIASES.get(word, word)
    return word if word in ROLES else None


class RoleSignal(Signal):
    """Give `role` to `assignee` (or, with `remove`, take it back; an expert is one of several)."""

    # A str, not an enum: an unknown role must reach the workflow to be refused with a reason.
    role: str = Field(min_length=1, max_length=40)
    assignee: str = Field(min_length=1, max_length=100)
    remove: bool = False


class UpdateSignal(Signal):
    # A str, not UpdateStatus: an unknown status must reach the workflow so it
    # can be rejected in the timeline with a reason, not dropped by the decoder.
    status: str
    message: str = Field(min_length=1)
    eta: str | None = None
    # What the update says about the impact, for the severity triggers (policy `triggers`).
    scope_doubled: bool = False
    customer_impact: bool = False
    data_integrity: bool = False


class ResolveSignal(Signal):
    resolution: str = Field(min_length=1)
    root_cause: str = ""


class SeveritySignal(Signal):
    severity: str
    reason: str = ""


class StakeholderSignal(Signal):
    """Publish a stakeholder update (the communications lead): the stakeholder channel and email."""

    status: str  # investigating, identified, mitigating (fixing/waiting), monitoring
    understanding: str = Field(min_length=1)  # Current Understanding
    actions: list[str] = Field(default_factory=list)  # Actions Taken
    next_steps: list[str] = Field(default_factory=list)
    impact: str = ""  # for the initial notification, when this is the first


class WarRoomSignal(Signal):
    """Open the incident's war room now (a P1 gets one when declared)."""


class ReviewDoneSignal(Signal):
    notes: str = ""


class AlertEvent(Model):
    """One alert from a monitoring system, normalised by the receivers."""

    source: str  # alertmanager, grafana, pagerduty, generic
    status: str = "firing"  # firing or resolved
    fingerprint: str
    name: str
    summary: str = ""
    severity: Severity | None = None
    devices: list[str] = Field(default_factory=list)
    upstream: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime | None = None


class AlertBatch(Signal):
    """Alerts for one incident that arrived together (the receivers batch per key)."""

    alerts: list[AlertEvent] = Field(min_length=1)


class TimelineNote(Signal):
    """A Slack message someone marked (:stopwatch: or a pin) for the incident's timeline."""

    text: str
    author: str = ""
    channel: str = ""
    message_ts: str = ""


# --------------------------------------------------------------------- state


class TimelineEntry(Model):
    at: datetime
    kind: str  # declared, claimed, handover, update, reminder, escalation, severity, resolved, review, rejected, ...
    actor: str = ""
    text: str = ""
    request_id: str | None = None


class WarRoomRef(Model):
    """The incident's war room: its channel, and who has been asked in so far."""

    channel: str  # the channel's id
    name: str
    summary_ts: str = ""  # the pinned summary, kept current
    invited: list[str] = Field(default_factory=list)
    archived: bool = False
    bookmarked: list[str] = Field(default_factory=list)  # "ticket", "runbook": bookmarked so far


class Conversation(Model):
    """Where the incident's thread lives: its chat system, the channel and the thread's first message."""

    system: str = "slack"
    channel: str
    thread: str


class TicketReference(Model):
    """The incident's ticket in its ticket system: the system's own id and the number people use."""

    system: str = "servicenow"
    id: str = ""  # ServiceNow's sys_id, a Jira issue id
    number: str  # INC0010001, OPS-123
    url: str = ""


class DeadlineEntry(Model):
    """One row of the incident's deadline table (workflows/deadlines.py), as the state shows it."""

    purpose: str
    due: datetime
    label: str


class IncidentState(Model):
    """Everything the incident knows; the `state` query returns this."""

    key: str
    workflow_id: str
    severity: Severity
    title: str
    service: str = ""
    symptoms: list[str] = Field(default_factory=list)
    impact: list[str] = Field(default_factory=list)
    links: list[str] = Field(default_factory=list)
    # The runbook the declaration named, else the policy's for the service: an http(s) URL, or a
    # path in the repository when the policy has no runbooks.base_url. Empty: none known.
    runbook: str = ""
    reporter: str = ""
    devices: list[str] = Field(default_factory=list)
    upstream: dict[str, str] = Field(default_factory=dict)
    alerts_firing: dict[str, str] = Field(default_factory=dict)  # fingerprint -> alert name
    alerts_received: int = 0
    # Alerts counted but not listed in the timeline or tracked for clearing (past limits.TIMELINE_ALERTS
    # and limits.TRACKED_ALERTS), so that a storm of any length keeps the state small.
    alerts_unlisted: int = 0
    phase: Phase = Phase.declared
    status: str | None = None  # the last update's status
    commander: str | None = None
    roles: dict[str, str] = Field(default_factory=dict)  # comms, tech, scribe -> who holds it
    experts: list[str] = Field(default_factory=list)  # subject-matter experts, in order of assignment
    ticket_ref: TicketReference | None = None  # once it is open
    # Why there is no ticket number yet or at all: "opening", "tickets are off: ...", a failure.
    ticket_status: str = ""
    baseline: Baseline | None = None  # device health at declaration, for verification
    verification: Verification | None = None  # at resolution, against the baseline
    investigation: str = ""  # the automated investigation's analysis, one line
    # The children that keep the ticket and run the investigation (None: not started).
    ticket_workflow_id: str | None = None
    investigation_workflow_id: str | None = None
    # The investigation verifies the devices when told the incident is resolved (slack-outbox
    # and later); pending: told, and its verification_done not heard yet.
    investigation_verifies: bool = False
    verification_pending: bool = False
    ticket_changes: int = 0  # changes sent to the ticket, for their idempotency keys
    conversation: Conversation | None = None  # once the declaration is posted
    declared_at: datetime
    detected_at: datetime | None = None
    claimed_at: datetime | None = None
    resolved_at: datetime | None = None
    reviewed_at: datetime | None = None
    last_update_at: datetime | None = None
    last_update: str | None = None
    last_reminder_at: datetime | None = None
    last_escalation_at: datetime | None = None
    next_reminder_at: datetime | None = None
    next_escalation_at: datetime | None = None
    review_due_at: datetime | None = None
    # The review's meeting, reminder and artifacts (review-document patch and later).
    review: ReviewSchedule | None = None
    # The deadline table, earliest first: what the incident will do next, and when.
    deadlines: list[DeadlineEntry] = Field(default_factory=list)
    resolution: str | None = None
    root_cause: str | None = None
    updates: int = 0
    reminders: int = 0
    escalations: int = 0
    messages_posted: int = 0  # also the sequence for idempotency keys
    paging: PagingState = Field(default_factory=PagingState)  # the escalation chain's progress
    snoozed_at: datetime | None = None  # reminders, escalation and paging held from ...
    snoozed_until: datetime | None = None  # ... until this (None: not snoozed)
    # Its service's maintenance window (a paging severity declared in one): paging held until then.
    maintenance_until: datetime | None = None
    # The severity triggers (incident_triggers.py): on for incidents of their release; what set
    # them off so far; the impact's size when the severity was last set (alerts firing, devices).
    triggers_on: bool = False
    customer_impact: bool = False
    data_integrity: bool = False
    scope_at_severity: tuple[int, int] | None = None
    identified_at: datetime | None = None  # the first update saying identified (or later)
    no_root_cause_fired: bool = False
    # The "Incident Team Formed" message, its checklist edited as its items happen (on for
    # incidents of their release: `checklist_on`), and how many stakeholder updates went out.
    checklist_on: bool = False
    team_formed_ts: str | None = None
    stakeholder_updates: int = 0
    stakeholders_since: datetime | None = None  # when its severity first called for stakeholder updates
    stakeholder_last_at: datetime | None = None
    stakeholder_reminded_at: datetime | None = None
    # Its own channel (issue 13), once opened; opening: asked for, not yet there.
    war_room: WarRoomRef | None = None
    war_room_opening: bool = False
    # Follow-up work out of the incident (issue 14: workflows/incident_actions.py), numbered from 1.
    action_items: list[ActionItem] = Field(default_factory=list)
    timeline: list[TimelineEntry] = Field(default_factory=list)

    @property
    def summary_line(self) -> str:
        return f"{self.severity.value} · {self.title}"

    # The chat and ticket systems' own words for the same, read by the templates, the CLI and the
    # Slack handler, and still written out (computed) for workers and readers from before.

    @computed_field  # type: ignore[prop-decorator]
    @property
    def slack_channel(self) -> str | None:
        return self.conversation.channel if self.conversation else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def slack_thread_ts(self) -> str | None:
        return self.conversation.thread if self.conversation else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ticket(self) -> str | None:
        return self.ticket_ref.number if self.ticket_ref else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ticket_url(self) -> str:
        return self.ticket_ref.url if self.ticket_ref else ""

    @model_validator(mode="before")
    @classmethod
    def _from_flat_fields(cls, data: Any) -> Any:
        """A state carried over from before (continue-as-new, an older worker's payload)."""
        if not isinstance(data, dict):
            return data
        if data.get("conversation") is None and data.get("slack_channel") and data.get("slack_thread_ts"):
            data = {
                **data,
                "conversation": {"channel": data["slack_channel"], "thread": data["slack_thread_ts"]},
            }
        if data.get("ticket_ref") is None and data.get("ticket"):
            data = {**data, "ticket_ref": {"number": data["ticket"], "url": data.get("ticket_url") or ""}}
        return data


class IncidentSummary(Model):
    """What the workflow returns when it completes."""

    key: str
    severity: Severity
    title: str
    commander: str | None
    declared_at: datetime
    claimed_at: datetime | None
    resolved_at: datetime | None
    time_to_acknowledge_seconds: float | None
    time_to_resolve_seconds: float | None
    # review-document and later (workflows/figures.py defines each): None before, or not known.
    time_to_mitigate_seconds: float | None = None
    time_to_detect_seconds: float | None = None
    updates: int
    reminders: int
    escalations: int
    resolution: str | None = None
    root_cause: str | None = None
    timeline: list[TimelineEntry] = Field(default_factory=list)
    review: ReviewSchedule | None = None  # the review's meeting and artifacts (review-document)
    # For `incident report` (starter/report.py); absent from the results of incidents closed before.
    service: str = ""
    reporter: str = ""
    detected_at: datetime | None = None  # an alert's own start (Alertmanager startsAt, PagerDuty timestamp)
    review_due_at: datetime | None = None
    pages: list[PageRecord] = Field(default_factory=list)
    # As they were when the incident completed (those still open go on in incident-<key>-actions).
    action_items: list[ActionItem] = Field(default_factory=list)


# ---------------------------------------------------------------- activities


class SlackPost(Model):
    """One message for the incident's channel or thread.

    `idempotency_key` is stable across retries and replays; the activity tags
    the message with it as Slack message metadata and looks for it before
    posting again.
    """

    channel: str
    thread_ts: str | None = None
    idempotency_key: str
    template: str
    incident: IncidentState
    extra: dict[str, Any] = Field(default_factory=dict)
    mentions: list[str] = Field(default_factory=list)


class SlackHeaderUpdate(Model):
    channel: str
    ts: str
    incident: IncidentState
    # The message to rewrite: the declaration (the thread's header), or "team_formed" (its checklist).
    template: str = "declaration"


class SlackReaction(Model):
    channel: str
    ts: str
    name: str


class PostedMessage(Model):
    channel: str
    ts: str
    duplicate: bool = False  # True when a retry found the message already posted


class SlackFileUpload(Model):
    """A text file for the incident's thread: a long command output, a document.

    `title` must be unique in the thread: a retried upload looks for a file
    with this title among the thread's recent replies and returns it instead
    of uploading it again (Slack files carry no message metadata).
    """

    channel: str
    thread_ts: str
    filename: str = Field(min_length=1)  # "R2-show-logging.txt"
    title: str = Field(min_length=1)  # "R2 show logging (step 4/5)"
    content: str
    initial_comment: str = ""


class UploadedFile(Model):
    channel: str
    file_id: str
    ts: str | None = None  # the thread reply that shares it, when known
    duplicate: bool = False  # True when a retry found the file already in the thread


# --------------------------------------------------------- search attributes

SEVERITY_ATTR = SearchAttributeKey.for_keyword("IncidentSeverity")
PHASE_ATTR = SearchAttributeKey.for_keyword("IncidentPhase")
COMMANDER_ATTR = SearchAttributeKey.for_keyword("IncidentCommander")
SERVICE_ATTR = SearchAttributeKey.for_keyword("IncidentService")
TICKET_ATTR = SearchAttributeKey.for_keyword("IncidentTicket")
SEARCH_ATTRIBUTES = [SEVERITY_ATTR, PHASE_ATTR, COMMANDER_ATTR, SERVICE_ATTR, TICKET_ATTR]
