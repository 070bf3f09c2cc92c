"""What a ticket system must do for an incident: the interface every ticket backend implements.

TicketActivities (activities.py) does the rest the same way for every backend: it
looks the incident's correlation id up before it opens anything, leaves tickets
off when there is no backend, and refuses a change for another system's ticket.
TICKET_BACKEND chooses the implementations (activities/backends.py), and the
policy's `tickets.system` which one an incident's ticket is in.

Each method runs inside a Temporal activity and is retried there. A failure
retrying cannot fix (credentials, permissions, a rejected field) is a
non-retryable ApplicationError whose message says what the system said;
anything else is raised to be retried, with `next_retry_delay` when the system
asked for one.
"""

from __future__ import annotations

from typing import Protocol

from workflows.ticket_models import (
    ActionItemFiled,
    ActionItemTicket,
    TicketChange,
    TicketChanged,
    TicketOpen,
    TicketRef,
)


class TicketBackend(Protocol):
    system: str  # "servicenow", "jira"; a TicketRef names the system it belongs to
    display: str  # how people name it: "ServiceNow", "Jira"

    async def open(self, ticket: TicketOpen) -> TicketRef:
        """Create the ticket, carrying `correlation_id` (no look-up first; TicketActivities does that)."""
        ...

    async def find_by_correlation(self, correlation_id: str) -> TicketRef | None:
        """The oldest open ticket carrying this incident's correlation id, if any."""
        ...

    async def apply_change(self, change: TicketChange, *, retried: bool) -> TicketChanged:
        """Write one change; with `retried`, first check whether an earlier attempt wrote it.

        A claim assigns the ticket to the Incident Commander's account in this system, found by
        their email (activities/people.py); with none, the rest is written and `problem` says so.
        """
        ...

    async def file_action_item(self, item: ActionItemTicket) -> ActionItemFiled:
        """File an action item as its own ticket linked to the incident's; found, not filed, on a retry."""
        ...

    async def aclose(self) -> None: ...
