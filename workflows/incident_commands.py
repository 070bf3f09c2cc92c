"""How an incident takes commands: an update and a signal of each name, checked by workflows/commands.py.

Mixed into IncidentWorkflow. The update is answered to its caller: refused at once
by its validator (nothing in history), or, once accepted, with what the incident
recorded when the command's turn came in the inbox (in order with the signals).
The signal of the same name is for the Temporal CLI and UI: its input is read here,
not by the SDK, so input that does not parse is refused in the timeline with the
field and why, never dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from . import commands
    from .action_models import ActionItemDoneSignal, ActionItemSignal
    from .commands import REFUSED
    from .incident_base import IncidentParts
    from .models import (
        AcknowledgeSignal,
        ClaimSignal,
        ResolveSignal,
        ReviewDoneSignal,
        RoleSignal,
        SeveritySignal,
        Signal,
        SnoozeSignal,
        StakeholderSignal,
        TimelineEntry,
        TimelineNote,
        UpdateSignal,
        WarRoomSignal,
    )


class Rejected(Exception):
    """A command that cannot be applied; the reason goes to the timeline."""


class CommandSurface(IncidentParts):
    """Mixed into IncidentWorkflow: its commands, as signals and as updates."""

    _outcomes: dict[str, TimelineEntry]

    if TYPE_CHECKING:  # provided by IncidentWorkflow and the other mixins

        def _enqueue(self, kind: str, signal: BaseModel) -> None: ...

        def _details_markdown(self) -> str: ...

        def _finished(self) -> bool: ...

        def _action_refusal(self, command: ActionItemSignal | ActionItemDoneSignal) -> str | None: ...

    # Commands: a signal and an update of each name. The signal's input is read here, not by
    # the SDK, so input that does not parse is refused in the timeline (with the field and
    # why), never dropped; the update is answered to its caller (_command).

    @workflow.signal
    def claim(self, raw: Any) -> None:
        self._command_signal("claim", raw)

    @workflow.signal
    def acknowledge(self, raw: Any) -> None:
        self._command_signal("acknowledge", raw)

    @workflow.signal
    def snooze(self, raw: Any) -> None:
        self._command_signal("snooze", raw)

    @workflow.signal
    def update(self, raw: Any) -> None:
        self._command_signal("update", raw)

    @workflow.signal
    def resolve(self, raw: Any) -> None:
        self._command_signal("resolve", raw)

    @workflow.signal
    def set_severity(self, raw: Any) -> None:
        self._command_signal("set_severity", raw)

    @workflow.signal
    def review_done(self, raw: Any) -> None:
        self._command_signal("review_done", raw)

    @workflow.signal
    def assign_role(self, raw: Any) -> None:
        self._command_signal("assign_role", raw)

    @workflow.signal
    def open_war_room(self, raw: Any) -> None:
        self._command_signal("open_war_room", raw)

    @workflow.update(name="open_war_room")
    async def open_war_room_command(self, command: WarRoomSignal) -> TimelineEntry:
        return await self._command("open_war_room", command)

    @open_war_room_command.validator
    def _validate_open_war_room(self, command: WarRoomSignal) -> None:
        self._validate("open_war_room", command)

    @workflow.signal
    def stakeholder_update(self, raw: Any) -> None:
        self._command_signal("stakeholder_update", raw)

    @workflow.update(name="stakeholder_update")
    async def stakeholder_update_command(self, command: StakeholderSignal) -> TimelineEntry:
        return await self._command("stakeholder_update", command)

    @stakeholder_update_command.validator
    def _validate_stakeholder_update(self, command: StakeholderSignal) -> None:
        self._validate("stakeholder_update", command)

    # Action items (incident_actions.py): taken in every phase, review included.

    @workflow.signal
    def add_action_item(self, raw: Any) -> None:
        self._command_signal("add_action_item", raw)

    @workflow.update(name="add_action_item")
    async def add_action_item_command(self, command: ActionItemSignal) -> TimelineEntry:
        return await self._command("add_action_item", command)

    @add_action_item_command.validator
    def _validate_add_action_item(self, command: ActionItemSignal) -> None:
        self._validate("add_action_item", command)
        if (problem := self._action_refusal(command)) is not None:
            raise ApplicationError(problem, type=REFUSED, non_retryable=True)

    @workflow.signal
    def complete_action_item(self, raw: Any) -> None:
        self._command_signal("complete_action_item", raw)

    @workflow.update(name="complete_action_item")
    async def complete_action_item_command(self, command: ActionItemDoneSignal) -> TimelineEntry:
        return await self._command("complete_action_item", command)

    @complete_action_item_command.validator
    def _validate_complete_action_item(self, command: ActionItemDoneSignal) -> None:
        self._validate("complete_action_item", command)
        if (problem := self._action_refusal(command)) is not None:
            raise ApplicationError(problem, type=REFUSED, non_retryable=True)

    @workflow.update(name="claim")
    async def claim_command(self, command: ClaimSignal) -> TimelineEntry:
        return await self._command("claim", command)

    @workflow.update(name="acknowledge")
    async def acknowledge_command(self, command: AcknowledgeSignal) -> TimelineEntry:
        return await self._command("acknowledge", command)

    @workflow.update(name="snooze")
    async def snooze_command(self, command: SnoozeSignal) -> TimelineEntry:
        return await self._command("snooze", command)

    @workflow.update(name="update")
    async def update_command(self, command: UpdateSignal) -> TimelineEntry:
        return await self._command("update", command)

    @workflow.update(name="resolve")
    async def resolve_command(self, command: ResolveSignal) -> TimelineEntry:
        return await self._command("resolve", command)

    @workflow.update(name="set_severity")
    async def set_severity_command(self, command: SeveritySignal) -> TimelineEntry:
        return await self._command("set_severity", command)

    @workflow.update(name="review_done")
    async def review_done_command(self, command: ReviewDoneSignal) -> TimelineEntry:
        return await self._command("review_done", command)

    @workflow.update(name="add_to_timeline")
    async def add_to_timeline_command(self, command: TimelineNote) -> TimelineEntry:
        return await self._command("add_to_timeline", command)

    @workflow.update(name="assign_role")
    async def assign_role_command(self, command: RoleSignal) -> TimelineEntry:
        return await self._command("assign_role", command)

    @assign_role_command.validator
    def _validate_assign_role(self, command: RoleSignal) -> None:
        self._validate("assign_role", command)

    @claim_command.validator
    def _validate_claim(self, command: ClaimSignal) -> None:
        self._validate("claim", command)

    @acknowledge_command.validator
    def _validate_acknowledge(self, command: AcknowledgeSignal) -> None:
        self._validate("acknowledge", command)

    @snooze_command.validator
    def _validate_snooze(self, command: SnoozeSignal) -> None:
        self._validate("snooze", command)

    @update_command.validator
    def _validate_update(self, command: UpdateSignal) -> None:
        self._validate("update", command)

    @resolve_command.validator
    def _validate_resolve(self, command: ResolveSignal) -> None:
        self._validate("resolve", command)

    @set_severity_command.validator
    def _validate_set_severity(self, command: SeveritySignal) -> None:
        self._validate("set_severity", command)

    @review_done_command.validator
    def _validate_review_done(self, command: ReviewDoneSignal) -> None:
        self._validate("review_done", command)

    @add_to_timeline_command.validator
    def _validate_add_to_timeline(self, command: TimelineNote) -> None:
        self._validate("add_to_timeline", command)

    @workflow.signal
    def add_to_timeline(self, raw: Any) -> None:
        self._command_signal("add_to_timeline", raw)

    # From the children: the ticket and the investigation.

    def _command_signal(self, kind: str, raw: Any) -> None:
        command, problem = commands.parse(kind, raw)
        if command is None:
            self._record("refused", commands.raw_user(raw), f"{kind} refused: {problem}")
            workflow.set_current_details(self._details_markdown())
            return
        self._enqueue(kind, command)

    def _validate(self, kind: str, command: Signal) -> None:
        """An update's validator: refused now, with the reason, and nothing in history."""
        if self._finished():
            raise ApplicationError("the incident is closed", type=REFUSED, non_retryable=True)
        reason = commands.refusal(kind, command, self._state)
        if reason is not None:
            raise ApplicationError(reason, type=REFUSED, non_retryable=True)

    async def _command(self, kind: str, command: Signal) -> TimelineEntry:
        """An accepted update waits its turn in the inbox; it answers with what the incident recorded."""
        if not command.request_id:
            command.request_id = workflow.current_update_info().id  # type: ignore[union-attr]
        request_id = command.request_id
        if request_id not in self._outcomes:
            self._enqueue(kind, command)
        await workflow.wait_condition(lambda: request_id in self._outcomes)
        entry = self._outcomes[request_id]
        if entry.kind == "rejected":
            raise ApplicationError(entry.text.removeprefix(f"{kind}: "), type=REFUSED, non_retryable=True)
        return entry

    def _refuse(self, kind: str, command: Signal) -> None:
        reason = commands.refusal(kind, command, self._state)
        if reason is not None:
            raise Rejected(reason)
