"""ActionFollowUpWorkflow: an incident's action items after the incident completed.

Started by the incident (an abandoned child, `incident-<key>-actions`) when it completes with
items still open or not yet filed. It reminds each overdue item's owner daily, as the incident
did (workflows/action_models.py says when), files what the incident had not filed yet, and
takes the same commands (`add_action_item`, `complete_action_item`: the CLI and the Slack
handler send them here once the incident is closed). It completes when every item is done, or
when no open item is reminded any more (the policy's `remind_for` after its due date), saying so
in the incident's thread; continue-as-new keeps its history short over the weeks it may run.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from .action_models import (
        POST_SLACK_MESSAGE,
        ActionFollowUpInput,
        ActionItemDoneSignal,
        ActionItemSignal,
        action_problem,
        done_problem,
        earliest_reminder,
        new_item,
    )
    from .action_state import ActionItem, ActionStatus
    from .commands import REFUSED
    from .models import IncidentState, PostedMessage, Severity, SlackPost, TimelineEntry
    from .retries import failure_reason, history_too_long, unlimited_retries
    from .ticket_models import FILE_ACTION_ITEM, ActionItemFiled, ActionItemTicket, TicketRef


def action_ticket(item: ActionItem, incident: TicketRef, key: str, correlation_id: str) -> ActionItemTicket:
    return ActionItemTicket(
        incident=incident,
        incident_key=key,
        correlation_id=correlation_id,
        number=item.number,
        text=item.text,
        owner=item.owner,
        priority=Severity(item.priority),
        due=item.due,
    )


async def stop_filing(filing: dict[int, asyncio.Task[None]]) -> None:
    """The filing in flight cancelled, and waited for until each task has ended."""
    tasks = list(filing.values())
    for task in tasks:
        task.cancel()
    for task in tasks:
        try:
            await task
        except asyncio.CancelledError:
            pass


async def file_item(item: ActionItem, ticket: ActionItemTicket) -> str:
    """File one item (retried as long as it takes); what the timeline says of it."""
    try:
        filed = await workflow.execute_activity(
            FILE_ACTION_ITEM,
            ticket,
            result_type=ActionItemFiled,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=unlimited_retries(timedelta(minutes=10)),
            summary=f"file action item {item.number}",
        )
    except ActivityError as err:
        item.filing, item.ticket_problem = False, failure_reason(err)
        return f"action item {item.number} not filed: {item.ticket_problem}"
    item.filing, item.ticket, item.ticket_url = False, filed.ticket.number, filed.ticket.url
    item.ticket_problem = filed.problem
    found = "filed as" if filed.ticket.created else "found filed as"
    problem = f" ({filed.problem})" if filed.problem else ""
    return f"action item {item.number} {found} {filed.ticket.number}, linked to {filed.linked_to}{problem}"


@workflow.defn
class ActionFollowUpWorkflow:
    @workflow.init
    def __init__(self, input: ActionFollowUpInput) -> None:
        self._input = input
        self._incident: IncidentState = input.incident
        self._posts: list[
            tuple[str, str | None, str, dict[str, Any]]
        ] = []  # channel, thread, template, extra
        self._filing: dict[int, asyncio.Task[None]] = {}
        self._ended_because = ""

    @workflow.query
    def state(self) -> IncidentState:
        """The incident as it completed, with its action items as they are now."""
        return self._incident

    @property
    def _items(self) -> list[ActionItem]:
        return self._incident.action_items

    # ------------------------------------------------------------ the commands

    @workflow.update(name="add_action_item")
    async def add_action_item(self, command: ActionItemSignal) -> TimelineEntry:
        item = new_item(command, len(self._items) + 1, workflow.now(), self._input.settings)
        self._items.append(item)
        self._thread("action_item_added", item)
        if self._input.settings.file_tickets:
            item.filing = True
            self._file_beside(item)
        text = f"action item {item.number} for {item.owner} ({item.priority}, due {item.due:%Y-%m-%d}): {item.text}"
        return TimelineEntry(at=workflow.now(), kind="action_item", actor=command.user, text=text)

    @add_action_item.validator
    def _validate_add(self, command: ActionItemSignal) -> None:
        self._refuse(action_problem(command, self._items, workflow.now().date()))

    @workflow.update(name="complete_action_item")
    async def complete_action_item(self, command: ActionItemDoneSignal) -> TimelineEntry:
        item = next(i for i in self._items if i.number == command.number)
        item.status, item.done_by, item.done_at = ActionStatus.done, command.user, workflow.now()
        self._thread("action_item_done", item)
        text = f"action item {item.number} done: {item.text}"
        return TimelineEntry(at=workflow.now(), kind="action_item_done", actor=command.user, text=text)

    @complete_action_item.validator
    def _validate_done(self, command: ActionItemDoneSignal) -> None:
        self._refuse(done_problem(command, self._items))

    def _refuse(self, problem: str | None) -> None:
        if self._ended_because:
            problem = f"the incident's action items are closed: {self._ended_because}"
        if problem is not None:
            raise ApplicationError(problem, type=REFUSED, non_retryable=True)

    # ------------------------------------------------------------------- run

    @workflow.run
    async def run(self, input: ActionFollowUpInput) -> IncidentState:
        for item in self._items:
            if item.filing:
                self._file_beside(item)
        while True:
            await self._send_posts()
            await self._remind_due()
            if not any(i.is_open for i in self._items) and not self._filing:
                self._ended_because = "every action item is done"
                break
            found = earliest_reminder(self._items, input.settings, input.business_hours)
            if found is None and not self._filing:
                self._ended_because = (
                    f"reminders stopped {input.settings.remind_for.days} d after the items' due dates"
                )
                break
            if history_too_long(input.max_history_events):
                await workflow.wait_condition(workflow.all_handlers_finished)
                await self._pause_filing()
                workflow.continue_as_new(input.model_copy(update={"incident": self._incident}))
            timeout = None if found is None else max(found[0] - workflow.now(), timedelta(milliseconds=1))
            try:
                await workflow.wait_condition(
                    lambda: bool(self._posts) or not self._filing and not any(i.is_open for i in self._items),
                    timeout=timeout,
                    timeout_summary="remind the owners of overdue action items",
                )
            except TimeoutError:
                pass
        self._posts.append(
            (
                self._incident.slack_channel or "",
                self._incident.slack_thread_ts,
                "action_items_closed",
                {"because": self._ended_because},
            )
        )
        await self._send_posts()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._incident

    async def _remind_due(self) -> None:
        found = earliest_reminder(self._items, self._input.settings, self._input.business_hours)
        now = workflow.now()
        if found is None or found[0] > now:
            return
        for item in found[1]:
            item.reminders += 1
            item.last_reminded_at = now
            extra = {"item": item.model_dump(mode="json"), "overdue_days": (now.date() - item.due).days}
            self._posts.append((item.owner, None, "action_item_reminder", extra))
        await self._send_posts()

    def _thread(self, template: str, item: ActionItem) -> None:
        s = self._incident
        if s.slack_channel:
            self._posts.append(
                (s.slack_channel, s.slack_thread_ts, template, {"item": item.model_dump(mode="json")})
            )

    async def _send_posts(self) -> None:
        while self._posts:
            channel, thread, template, extra = self._posts.pop(0)
            if not channel:
                continue
            s = self._incident
            s.messages_posted += 1
            post = SlackPost(
                channel=channel,
                thread_ts=thread,
                idempotency_key=f"{workflow.info().workflow_id}/{s.messages_posted}/{template}",
                template=template,
                incident=s.model_copy(update={"timeline": [], "deadlines": []}),
                extra=extra,
            )
            try:
                await workflow.execute_activity(
                    POST_SLACK_MESSAGE,
                    post,
                    result_type=PostedMessage,
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=unlimited_retries(timedelta(minutes=5)),
                    summary=f"post {template.replace('_', ' ')}",
                )
            except ActivityError as err:
                workflow.logger.warning("%s not posted: %s", template, err)

    # ------------------------------------------------------------ the tickets

    def _file_beside(self, item: ActionItem) -> None:
        self._filing[item.number] = asyncio.create_task(self._file(item))

    async def _file(self, item: ActionItem) -> None:
        try:
            if self._input.ticket is None:
                item.filing, item.ticket_problem = False, "not filed: the incident has no ticket"
                return
            ticket = action_ticket(item, self._input.ticket, self._incident.key, self._input.correlation_id)
            await file_item(item, ticket)
        finally:
            self._filing.pop(item.number, None)

    async def _pause_filing(self) -> None:
        await stop_filing(self._filing)
