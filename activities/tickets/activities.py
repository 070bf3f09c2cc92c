"""The ticket activities the worker registers, over its TicketBackends, or none: tickets off.

The workflow calls them by name, `open_ticket`, `update_ticket` and
`file_action_item` (workflows/ticket_models.py). Without a backend tickets are
off: `open_ticket` answers with a `TicketRef` whose `enabled` is False and
whose `reason` says why, and `update_ticket` does nothing.

Which backend: the worker has a default (the first of TICKET_BACKEND) and may
have more; an incident's `TicketOpen.system` (the policy's `tickets.system`)
names one, and every later call follows its `TicketRef.system`. A system the
worker has no backend for is a non-retryable error saying which setting is
missing: the incident says it in its thread and goes on without a ticket.

Exactly once: a ticket carries a `correlation_id` of its incident: `<key>#<run>`
(the incident key and its workflow run; older incidents: the bare key), one per
occurrence of a key. `open_ticket` looks that up before it creates anything, on
every attempt, so a create retried after a timeout (the ticket was made, the
answer was lost) finds the first ticket instead of opening a second. A retried
change is the backend's to recognise (`apply_change(..., retried=True)`), and
so is a retried action item (`file_action_item` finds it first).
"""

from __future__ import annotations

from collections.abc import Mapping

from temporalio import activity
from temporalio.exceptions import ApplicationError

from workflows.ticket_models import (
    ActionItemFiled,
    ActionItemTicket,
    TicketChange,
    TicketChanged,
    TicketOpen,
    TicketRef,
)

from .backend import TicketBackend

# The setting that gives a worker each system, for the message when it has none.
SETTING_FOR = {"servicenow": "SERVICENOW_URL", "jira": "JIRA_URL"}


class TicketActivities:
    def __init__(
        self,
        backend: TicketBackend | None,
        off_reason: str | None = None,
        *,
        others: Mapping[str, TicketBackend] | None = None,
    ) -> None:
        self._backend = backend
        self._off_reason = off_reason
        self._backends: dict[str, TicketBackend] = dict(others or {})
        if backend is not None:
            self._backends[backend.system] = backend

    @property
    def enabled(self) -> bool:
        return self._backend is not None or bool(self._backends)

    async def aclose(self) -> None:
        for backend in self._backends.values():
            await backend.aclose()

    def _backend_for(self, system: str) -> TicketBackend:
        backend = self._backends.get(system) if system else self._backend
        if backend is None:
            setting = SETTING_FOR.get(system, "TICKET_BACKEND")
            raise ApplicationError(
                f"the ticket is in {system or 'the default system'}, but this worker has no backend for it "
                f"(set {setting}; it has: {', '.join(self._backends) or 'none'})",
                type="TicketSystemMismatch",
                non_retryable=True,
            )
        return backend

    # ---------------------------------------------------------- activities

    @activity.defn(name="open_ticket")
    async def open_ticket(self, ticket: TicketOpen) -> TicketRef:
        """Open the incident's ticket, or return the one already open for its key.

        Idempotent: the correlation id (the incident key) is looked up first, on
        every attempt, so a retry after a lost answer finds the ticket it made.
        With tickets off, returns `TicketRef.off()` (enabled False, with a reason).
        """
        if not self.enabled:
            return TicketRef.off(self._off_reason) if self._off_reason else TicketRef.off()
        backend = self._backend_for(ticket.system)
        existing = await backend.find_by_correlation(ticket.correlation_id or ticket.incident_key)
        if existing is not None:
            activity.logger.info("ticket %s is already open for %s", existing.number, ticket.incident_key)
            return existing
        return await backend.open(ticket)

    @activity.defn(name="update_ticket")
    async def update_ticket(self, change: TicketChange) -> TicketChanged:
        """Write one change.

        Idempotent: a retry (attempt > 1) asks the backend to check first whether
        the change was already written (ServiceNow: its `[ref: <idempotency key>]`
        tag in the work notes; Jira: in a comment), and skips it if so.
        With tickets off, or no ticket, returns `applied=False` and writes nothing.
        """
        if not self.enabled or not change.ticket.enabled:
            return TicketChanged(kind=change.kind, number=change.ticket.number, applied=False)
        if change.ticket.system not in self._backends:
            raise ApplicationError(
                f"ticket {change.ticket.number} is in {change.ticket.system}, "
                f"but this worker writes tickets to {', '.join(self._backends)}",
                type="TicketSystemMismatch",
                non_retryable=True,
            )
        backend = self._backends[change.ticket.system]
        return await backend.apply_change(change, retried=activity.info().attempt > 1)

    @activity.defn(name="file_action_item")
    async def file_action_item(self, item: ActionItemTicket) -> ActionItemFiled:
        """File an action item as a ticket linked to the incident's, in the incident ticket's system.

        Idempotent: the backend finds the item's ticket by the incident and the item's number
        before it creates one, and links it only if the link is not there yet.
        """
        if not item.incident.enabled:
            raise ApplicationError(
                "the incident has no ticket to link the action item to",
                type="TicketsOff",
                non_retryable=True,
            )
        return await self._backend_for(item.incident.system).file_action_item(item)
