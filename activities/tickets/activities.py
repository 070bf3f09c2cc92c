"""The ticket activities the worker registers, over one TicketBackend, or none: tickets off.

The workflow calls two activities by name, `open_ticket` and `update_ticket`
(workflows/ticket_models.py). Without a backend tickets are off: `open_ticket`
answers with a `TicketRef` whose `enabled` is False and whose `reason` says why,
and `update_ticket` does nothing.

Exactly once: a ticket carries a `correlation_id` of its incident: `<key>#<run>`
(the incident key and its workflow run; older incidents: the bare key), one per
occurrence of a key. `open_ticket` looks that up before it creates anything, on
every attempt, so a create retried after a timeout (the ticket was made, the
answer was lost) finds the first ticket instead of opening a second. A retried
change is the backend's to recognise (`apply_change(..., retried=True)`).
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from workflows.ticket_models import TicketChange, TicketChanged, TicketOpen, TicketRef

from .backend import TicketBackend


class TicketActivities:
    def __init__(self, backend: TicketBackend | None, off_reason: str | None = None) -> None:
        self._backend = backend
        self._off_reason = off_reason

    @property
    def enabled(self) -> bool:
        return self._backend is not None

    async def aclose(self) -> None:
        if self._backend is not None:
            await self._backend.aclose()

    # ---------------------------------------------------------- activities

    @activity.defn(name="open_ticket")
    async def open_ticket(self, ticket: TicketOpen) -> TicketRef:
        """Open the incident's ticket, or return the one already open for its key.

        Idempotent: the correlation id (the incident key) is looked up first, on
        every attempt, so a retry after a lost answer finds the ticket it made.
        With tickets off, returns `TicketRef.off()` (enabled False, with a reason).
        """
        if self._backend is None:
            return TicketRef.off(self._off_reason) if self._off_reason else TicketRef.off()
        existing = await self._backend.find_by_correlation(ticket.correlation_id or ticket.incident_key)
        if existing is not None:
            activity.logger.info("ticket %s is already open for %s", existing.number, ticket.incident_key)
            return existing
        return await self._backend.open(ticket)

    @activity.defn(name="update_ticket")
    async def update_ticket(self, change: TicketChange) -> TicketChanged:
        """Write one change.

        Idempotent: a retry (attempt > 1) asks the backend to check first whether
        the change was already written (ServiceNow: its `[ref: <idempotency key>]`
        tag in the work notes), and skips it if so.
        With tickets off, or no ticket, returns `applied=False` and writes nothing.
        """
        if self._backend is None or not change.ticket.enabled:
            return TicketChanged(kind=change.kind, number=change.ticket.number, applied=False)
        if change.ticket.system != self._backend.system:
            raise ApplicationError(
                f"ticket {change.ticket.number} is in {change.ticket.system}, "
                f"but this worker writes tickets to {self._backend.system}",
                type="TicketSystemMismatch",
                non_retryable=True,
            )
        return await self._backend.apply_change(change, retried=activity.info().attempt > 1)
