"""Action items from the CLI and the Slack handler: to the incident while it runs, else to its follow-up.

An incident takes `add_action_item` and `complete_action_item` in every phase. Once it has
completed, its items still open live in the follow-up workflow `incident-<key>-actions`
(workflows/action_followup.py), which takes the same commands: `send_action_command` sends them
where the items are, and `action_items` reads them from there.
"""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from starter.declare import (
    CommandRefused,
    IncidentClosed,
    describe_incident,
    incident_key,
    query_state,
    send_command,
)
from workflows.action_models import action_followup_id
from workflows.action_state import ActionItem
from workflows.models import IncidentState, Signal, TimelineEntry, workflow_id_for

ACTION_COMMANDS = ("add_action_item", "complete_action_item")


async def send_action_command(
    client: Client, ident: str, name: str, command: Signal, wait: float = 10.0, task_queue: str = ""
) -> TimelineEntry:
    """Add or complete an action item; CommandRefused names the field, IncidentClosed when none is open."""
    if name not in ACTION_COMMANDS:
        raise ValueError(f"unknown action item command {name!r}")
    try:
        return await send_command(client, ident, name, command, wait=wait, task_queue=task_queue)
    except IncidentClosed:
        pass
    key = incident_key(workflow_id_for(ident))
    handle = client.get_workflow_handle(action_followup_id(workflow_id_for(ident)))
    try:
        desc = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise IncidentClosed(f"incident {key} is closed and had no action item open") from None
        raise
    if desc.status != WorkflowExecutionStatus.RUNNING:
        raise IncidentClosed(f"incident {key} is closed, and every one of its action items is closed too")
    try:
        return await asyncio.wait_for(
            handle.execute_update(name, command, result_type=TimelineEntry), timeout=wait
        )
    except WorkflowUpdateFailedError as exc:
        if isinstance(exc.cause, ApplicationError):
            raise CommandRefused(name, exc.cause.message) from None
        raise


async def action_items(client: Client, ident: str, wait: float = 5.0) -> tuple[IncidentState, bool]:
    """The incident's state with its action items as they are now, and whether its follow-up has them."""
    handle, _ = await describe_incident(client, ident)
    state = await query_state(handle, wait=wait)
    follow_up = client.get_workflow_handle(action_followup_id(handle.id))
    try:
        later = await follow_up.query("state", result_type=IncidentState, rpc_timeout=timedelta(seconds=wait))
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return state, False
        raise
    return state.model_copy(update={"action_items": later.action_items}), True


def overdue(item: ActionItem, today: date) -> bool:
    return item.is_open and item.due < today
