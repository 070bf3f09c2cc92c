"""Action items (issue 14): added during and after the incident, reminded daily past their due date,
each filed once as a ticket of its own, linked to the incident's.

Mixed into IncidentWorkflow. `add_action_item` and `complete_action_item` are commands like the
others (an update with a validator, and a signal of the same name); they are taken in every phase,
review included. The owner of an item past its due date is reminded by DM (a post of the outbox,
once by its idempotency key) the day after it and then each business day (or every day: the
policy's `action_items.remind_on`) at the policy's business hour, until it is done. Each item is
filed in the background by `file_action_item` (retried as long as it takes, never holding up the
incident's loop); the tracker finds an item it filed before by its label, so a retry whose answer
was lost files nothing twice.

When the incident completes with items still open (or not yet filed), they go on in a follow-up
workflow, `incident-<key>-actions` (workflows/action_followup.py), which the incident starts as an
abandoned child: the incident closes when its review is done, as people expect (its metrics, the
status page), and its follow-up work keeps reminding until done, as Dispatch does.

Incidents declared before this release never take action items (the run's marker, read in
`_read_patches`): their commands are refused, and nothing here is scheduled for them.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from temporalio import workflow
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from .action_followup import ActionFollowUpWorkflow, action_ticket, file_item, stop_filing
    from .action_models import (
        ActionFollowUpInput,
        ActionItemDoneSignal,
        ActionItemSignal,
        action_followup_id,
        action_problem,
        done_problem,
        earliest_reminder,
        new_item,
    )
    from .action_state import ActionItem, ActionStatus
    from .deadlines import Deadline
    from .incident_base import IncidentParts
    from .incident_commands import Rejected
    from .ticket_models import TicketRef

# Gates everything here (asked in _read_patches, before the policy's local activity).
ACTION_ITEMS_PATCH = "action-items"


class ActionItems(IncidentParts):
    """Mixed into IncidentWorkflow."""

    _actions_on: bool
    _patches_read: bool  # _read_patches has run (the flags above mean something)

    def _add_action_deadlines(self) -> None:
        self._filing: dict[int, asyncio.Task[None]] = {}
        self._deadline_table.add("action_reminder", self._action_reminder_due, self._remind_owners)

    # ------------------------------------------------------------ the commands

    def _action_refusal(self, command: ActionItemSignal | ActionItemDoneSignal) -> str | None:
        s = self._state
        # An update can be validated before the run has read its patches (it came with the start):
        # then only the handler, which runs after, can tell an incident from before action items.
        if not self._actions_on and self._patches_read:
            return "this incident was declared before action items: add them in the tracker"
        if isinstance(command, ActionItemSignal):
            return action_problem(command, s.action_items, workflow.now().date())
        return done_problem(command, s.action_items)

    async def _on_action_item(self, signal: ActionItemSignal) -> None:
        s = self._state
        self._refuse("add_action_item", signal)
        if (problem := self._action_refusal(signal)) is not None:
            raise Rejected(problem)
        settings = self._require_policy().action_items
        item = new_item(signal, len(s.action_items) + 1, workflow.now(), settings)
        s.action_items.append(item)
        self._record(
            "action_item",
            signal.user,
            f"action item {item.number} for {item.owner} ({item.priority}, due {item.due:%Y-%m-%d}): {item.text}",
            signal.request_id,
        )
        self._schedule()
        self._publish()
        await self._post(
            "action_item_added", extra={"item": item.model_dump(mode="json")}, mentions=[item.owner]
        )
        if settings.file_tickets:
            item.filing = True
            self._file_beside(item)

    async def _on_action_done(self, signal: ActionItemDoneSignal) -> None:
        s = self._state
        self._refuse("complete_action_item", signal)
        if (problem := self._action_refusal(signal)) is not None:
            raise Rejected(problem)
        item = next(i for i in s.action_items if i.number == signal.number)
        item.status, item.done_by, item.done_at = ActionStatus.done, signal.user, workflow.now()
        self._record(
            "action_item_done", signal.user, f"action item {item.number} done: {item.text}", signal.request_id
        )
        self._schedule()
        self._publish()
        await self._post("action_item_done", extra={"item": item.model_dump(mode="json")})

    # ------------------------------------------------------------ the reminders

    def _action_reminder_due(self) -> Deadline | None:
        if not self._actions_on:
            return None
        policy = self._require_policy()
        found = earliest_reminder(self._state.action_items, policy.action_items, policy.business_hours)
        if found is None:
            return None
        due, items = found
        numbers = ", ".join(str(i.number) for i in items)
        return Deadline("action_reminder", due, f"action item {numbers} overdue: remind the owner")

    async def _remind_owners(self, now: datetime) -> None:
        policy = self._require_policy()
        pending = earliest_reminder(self._state.action_items, policy.action_items, policy.business_hours)
        assert pending is not None  # the table fired this purpose: an item is due
        for item in pending[1]:
            item.reminders += 1
            item.last_reminded_at = now
            days = (now.date() - item.due).days
            self._record(
                "action_reminder", "", f"action item {item.number} is {days} d overdue: reminded {item.owner}"
            )
            await self._post(
                "action_item_reminder",
                extra={"item": item.model_dump(mode="json"), "overdue_days": days},
                channel=item.owner,
                in_thread=False,
            )
        self._schedule()
        self._publish()

    # ------------------------------------------------------------ the tickets

    def _correlation_id_for_actions(self) -> str:
        """The incident's ticket's correlation id (`<key>#<first run>`): the same in every run of it."""
        return f"{self._state.key}#{workflow.info().first_execution_run_id[:8]}"

    def _file_beside(self, item: ActionItem) -> None:
        self._filing[item.number] = asyncio.create_task(self._file_when_ticketed(item))

    async def _file_when_ticketed(self, item: ActionItem) -> None:
        s = self._state
        try:
            # The incident's ticket may still be opening: the item is linked to it, so it waits.
            await workflow.wait_condition(lambda: s.ticket_ref is not None or s.ticket_workflow_id is None)
            if s.ticket_ref is None:
                item.filing = False
                item.ticket_problem = (
                    f"not filed: the incident has no ticket ({s.ticket_status or 'tickets off'})"
                )
                self._record("action_item_ticket", "", f"action item {item.number} {item.ticket_problem}")
                return
            ref = TicketRef(
                system=s.ticket_ref.system,
                sys_id=s.ticket_ref.id,
                number=s.ticket_ref.number,
                url=s.ticket_ref.url,
            )
            said = await file_item(item, action_ticket(item, ref, s.key, self._correlation_id_for_actions()))
            self._record("action_item_ticket", "", said)
            self._publish()
        finally:
            self._filing.pop(item.number, None)

    def _resume_filing(self) -> None:
        """A run continued as new files what the last one had not filed yet (found, not filed twice)."""
        if self._actions_on:
            for item in self._state.action_items:
                if item.filing and item.number not in self._filing:
                    self._file_beside(item)

    async def _pause_filing(self) -> None:
        """Before continue-as-new or completion: the filing in flight stops (the next run, or the
        follow-up workflow, files the items again, and the tracker finds those already filed)."""
        await stop_filing(self._filing)

    # ------------------------------------------------------------ after the incident

    async def _hand_over_action_items(self) -> None:
        """Items still open (or not yet filed) go on in the follow-up workflow, which outlives the incident."""
        s = self._state
        if not self._actions_on:
            return
        await self._pause_filing()
        if not any(i.is_open or i.filing for i in s.action_items):
            return
        policy = self._require_policy()
        ticket = None
        if s.ticket_ref is not None:
            ticket = TicketRef(
                system=s.ticket_ref.system,
                sys_id=s.ticket_ref.id,
                number=s.ticket_ref.number,
                url=s.ticket_ref.url,
            )
        follow_up = action_followup_id(s.workflow_id)
        try:
            await workflow.start_child_workflow(
                ActionFollowUpWorkflow.run,
                ActionFollowUpInput(
                    incident=self._snapshot(),
                    settings=policy.action_items,
                    business_hours=policy.business_hours,
                    ticket=ticket,
                    correlation_id=self._correlation_id_for_actions(),
                    max_history_events=policy.max_history_events,
                    started_at=workflow.now(),
                ),
                id=follow_up,
                parent_close_policy=ParentClosePolicy.ABANDON,
                static_summary=f"Action items · {s.summary_line}"[:200],
            )
        except WorkflowAlreadyStartedError:
            # An earlier occurrence of this key (an alert that fired again) still has items open there.
            self._record(
                "action_items_followed",
                "",
                f"not followed up: {follow_up} still runs for an earlier occurrence",
            )
            return
        open_ = sum(1 for i in s.action_items if i.is_open)
        self._record(
            "action_items_followed", "", f"{open_} action item(s) still open: followed up in {follow_up}"
        )
