"""Pydantic models for the incident's ticket, as they cross the Temporal boundary.

The workflow calls two activities by name (`open_ticket`, `update_ticket`),
each with ONE of these objects, and gets one back. Nothing here knows which
ticketing system is behind them: ServiceNow today, Jira Service Management
as a second backend later. Every field added later must have a default.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from enum import Enum
from typing import Any, Self

from pydantic import BaseModel, Field, field_validator, model_validator

from .models import Model, Severity

# Activity names, registered by worker.py (workflow code must not import activities/).
OPEN_TICKET = "open_ticket"
UPDATE_TICKET = "update_ticket"
FILE_ACTION_ITEM = "file_action_item"
INCIDENT_IS_RUNNING = "incident_is_running"


class TicketOpen(Model):
    """What a new ticket is opened with, at declaration."""

    incident_key: str = Field(min_length=1)
    # The ticket's correlation id: `<key>#<run>`, one ticket per occurrence of a key (an alert that
    # fires again after its incident closed is a new incident with a new ticket). Empty (tickets
    # opened by older workflows): the incident key.
    correlation_id: str = ""
    workflow_id: str = ""
    severity: Severity
    title: str = Field(min_length=1)
    service: str = ""
    symptoms: list[str] = Field(default_factory=list)
    impact: list[str] = Field(default_factory=list)
    links: list[str] = Field(default_factory=list)
    devices: list[str] = Field(default_factory=list)
    reporter: str = ""
    declared_at: datetime | None = None
    # Empty: the backend's default (SERVICENOW_ASSIGNMENT_GROUP; none if unset).
    assignment_group: str = ""
    category: str = "network"
    # Which ticket system (the policy's `tickets.system`: "servicenow", "jira"); empty: the
    # worker's default (TICKET_BACKEND). The workflow passes it on and never looks at it.
    system: str = ""

    @field_validator("severity", mode="before")
    @classmethod
    def _severity(cls, value: Any) -> Severity:
        return Severity.parse(value)


class TicketRef(Model):
    """The ticket an incident follows. `enabled=False`: tickets are off (no backend configured)."""

    system: str = "servicenow"  # which backend: "servicenow", later "jira"; "none" when off
    sys_id: str = ""
    number: str = ""  # INC0010001
    url: str = ""  # the ticket's page, for people
    created: bool = False  # True when this call opened it; False when a retry found it already open
    enabled: bool = True
    reason: str = ""  # why there is no ticket, when enabled is False

    @classmethod
    def off(cls, reason: str = "tickets are off: SERVICENOW_URL is not set") -> TicketRef:
        return cls(system="none", enabled=False, reason=reason)

    @model_validator(mode="after")
    def _enabled_has_an_id(self) -> TicketRef:
        if self.enabled and not self.sys_id:
            raise ValueError("an enabled ticket reference needs its sys_id")
        return self


class TicketChangeKind(str, Enum):
    claim = "claim"  # someone became Incident Commander: assigned to, In Progress
    update = "update"  # a status update: a work note
    severity = "severity"  # urgency and impact follow the new severity
    escalation = "escalation"  # a tier was paged: a work note
    note = "note"  # anything else for the ticket's work notes (alerts changed, a timeline note)
    resolve = "resolve"  # Resolved, with close code and close notes (resolution and root cause)
    close = "close"  # Closed, after the post-incident review


class _TicketChangeFields(Model):
    """What a change says, whichever side holds the ticket reference."""

    incident_key: str
    kind: TicketChangeKind
    idempotency_key: str = Field(min_length=1, max_length=300)
    at: datetime | None = None
    actor: str = ""  # who did it
    text: str = ""  # update message, escalation summary, note or review notes
    status: str | None = None  # update: investigating, identified, fixing, waiting, monitoring
    eta: str | None = None  # update
    assigned_to: str | None = None  # claim: the Incident Commander
    severity: Severity | None = None  # severity: the new one
    previous_severity: Severity | None = None  # severity
    reason: str = ""  # severity
    resolution: str = ""  # resolve
    root_cause: str = ""  # resolve
    close_code: str = "Solution provided"  # resolve

    @field_validator("severity", "previous_severity", mode="before")
    @classmethod
    def _severity(cls, value: Any) -> Severity | None:
        return None if value in (None, "") else Severity.parse(value)

    @model_validator(mode="after")
    def _has_what_its_kind_needs(self) -> Self:
        needs = {
            TicketChangeKind.claim: ("assigned_to", self.assigned_to),
            TicketChangeKind.update: ("text", self.text),
            TicketChangeKind.severity: ("severity", self.severity),
            TicketChangeKind.escalation: ("text", self.text),
            TicketChangeKind.note: ("text", self.text),
            TicketChangeKind.resolve: ("resolution", self.resolution),
        }
        if self.kind in needs:
            field, value = needs[self.kind]
            if not value:
                raise ValueError(f"a {self.kind.value} change needs {field!r}")
        return self


class TicketChange(_TicketChangeFields):
    """One change to the incident's ticket; the workflow sends them in order.

    `idempotency_key` is stable across retries and replays (for example
    `<workflow id>/ticket/<n>/<kind>`): the activity tags the work note it
    writes with it and, on a retry, looks for it before writing again.
    `at` is when it happened in the incident; the note says so, because a
    ticket that catches up after an outage is written later than that.
    """

    ticket: TicketRef


class TicketEvent(_TicketChangeFields):
    """A change as the incident sends it to its TicketWorkflow (signal `change`).

    The same fields and checks as `TicketChange`, without the ticket: the
    incident does not wait for the ticket to exist before it says what
    happened, and the TicketWorkflow adds the reference once it has one.
    """

    def to_change(self, ref: TicketRef) -> TicketChange:
        return TicketChange.model_validate({**dict(self), "ticket": ref})


class TicketProblem(Model):
    """A change the ticket will not get: the backend refused it and retrying cannot help.

    The TicketWorkflow tells the incident (signal `ticket_problem`), which
    says so in the thread; the incident itself goes on.
    """

    what: str  # the change's kind ("update", "resolve", ...), or "open" when no ticket could be opened
    reason: str  # "ServiceNow rejected the update: 403 Operation Failed (ACL Exception ...)"
    at: datetime  # when the TicketWorkflow gave up on it
    idempotency_key: str = ""  # the change's, to match it with the incident's own record
    # True: the change was written, but not all of it (a claim whose person has no account
    # in the ticket system: the note is there, the ticket is not assigned).
    partial: bool = False


class TicketChanged(Model):
    """What `update_ticket` did."""

    kind: TicketChangeKind
    number: str = ""
    sys_id: str = ""
    state: str = ""  # the ticket's state afterwards, as the backend names it (ServiceNow: "6" ...)
    applied: bool = True  # False when tickets are off or the incident has no ticket
    duplicate: bool = False  # True when a retry found the change already written
    # What of the change could not be written, though the rest was: "no Jira account for
    # alice@example.com (U0ALICE)" (the claim is noted, the ticket unassigned). Empty: all of it.
    problem: str = ""


class ActionItemTicket(Model):
    """An action item filed as a ticket of its own, linked to the incident's ticket.

    Exactly once: the backend finds it by the incident's correlation id and
    `number` (Jira: label `incident-<correlation id>-action-<number>`) before it
    creates anything, and links it to the incident's ticket if it is not yet.
    """

    incident: TicketRef  # the incident's ticket: the system, and what to link to
    incident_key: str = Field(min_length=1)
    correlation_id: str = ""  # the incident's (TicketOpen.correlation_id); empty: the key
    number: int = Field(ge=1)  # the action item's number within the incident
    text: str = Field(min_length=1)
    owner: str = ""  # as the incident knows them (a Slack user id)
    priority: Severity = Severity.P3
    due: date | None = None

    @field_validator("priority", mode="before")
    @classmethod
    def _priority(cls, value: Any) -> Severity:
        return Severity.parse(value)


class ActionItemFiled(Model):
    """What `file_action_item` did: the item's own ticket, linked to the incident's."""

    ticket: TicketRef
    linked_to: str = ""  # the incident ticket's number it is linked to
    problem: str = ""  # what could not be done, though the ticket exists (no account for the owner)


def ticket_workflow_id(incident_workflow_id: str) -> str:
    """`incident-R1-outage` -> `incident-R1-outage-ticket`."""
    return f"{incident_workflow_id}-ticket"


class TicketInput(Model):
    open: TicketOpen
    incident_workflow_id: str = Field(min_length=1)  # who hears `ticket_opened` and `ticket_problem`
    # One call to the ticketing system, and the backoff between attempts; tests make them short.
    start_to_close: timedelta = timedelta(seconds=15)
    initial_retry_interval: timedelta = timedelta(seconds=1)
    max_retry_interval: timedelta = timedelta(minutes=5)
    # Continue as new past this many history events (or when Temporal suggests it).
    max_history_events: int = Field(default=10_000, ge=50)
    # Idle this long, ask Temporal whether the incident still runs: one ended by hand
    # (terminated) never sends `close`, and its ticket child would wait forever.
    idle_check_every: timedelta = timedelta(days=1)
    # Set only by continue-as-new.
    ref: TicketRef | None = None
    pending: list[TicketEvent] = Field(default_factory=list)
    applied: int = 0
    dropped: int = 0
    problems: list[TicketProblem] = Field(default_factory=list)


class TicketProgress(BaseModel):
    """The `progress` query's answer, and what the workflow returns when the ticket is closed."""

    ref: TicketRef | None = None  # None: not opened yet
    pending: list[TicketEvent] = Field(default_factory=list)  # received, not yet applied, in order
    applied: int = 0  # changes the ticket has (written now or found written by an earlier attempt)
    dropped: int = 0  # changes accepted without a ticket to write them to (tickets off)
    problems: list[TicketProblem] = Field(default_factory=list)  # the latest PROBLEMS_KEPT
    closed: bool = False
    ended_because: str = ""  # ended without `close`: why (the incident is gone)
