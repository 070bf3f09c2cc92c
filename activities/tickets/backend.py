"""What a ticket system must do for an incident: the interface every ticket backend implements.

TicketActivities (activities.py) does the rest the same way for every backend: it
looks the incident's correlation id up before it opens anything, leaves tickets
off when there is no backend, and refuses a change for another system's ticket.
TICKET_BACKEND chooses the implementation (activities/backends.py).

Each method runs inside a Temporal activity and is retried there. A failure
retrying cannot fix (credentials, permissions, a rejected field) is a
non-retryable ApplicationError whose message says what the system said;
anything else is raised to be retried, with `next_retry_delay` when the system
asked for one.
"""

from __future__ import annotations

from typing import Protocol

from workflows.ticket_models import TicketChange, TicketChanged, TicketOpen, TicketRef


class TicketBackend(Protocol):
    system: str  # "servicenow"; a TicketRef names the system it belongs to

    async def open(self, ticket: TicketOpen) -> TicketRef:
        """Create the ticket, carrying `correlation_id` (no look-up first; TicketActivities does that)."""
        ...

    async def find_by_correlation(self, correlation_id: str) -> TicketRef | None:
        """The oldest open ticket carrying this incident's correlation id, if any."""
        ...

    async def apply_change(self, change: TicketChange, *, retried: bool) -> TicketChanged:
        """Write one change; with `retried`, first check whether an earlier attempt wrote it."""
        ...

    async def aclose(self) -> None: ...
