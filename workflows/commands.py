"""The commands people give an incident, and the rules that refuse them.

A command arrives as a Temporal update (answered to the caller) or as a signal of
the same name (the Temporal CLI and UI, older starters). Both are checked by the
same pure rules here: the update's validator refuses a command at once, leaving
nothing in history, and the workflow checks again when the command's turn comes
in its inbox (something queued before it may have changed the incident).

Pure data and functions: imported once by the worker (passed through the sandbox).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ValidationError

from .action_models import ActionItemDoneSignal, ActionItemSignal
from .models import (
    ROLES,
    UPDATE_STATUSES,
    AcknowledgeSignal,
    ClaimSignal,
    IncidentState,
    Phase,
    ResolveSignal,
    ReviewDoneSignal,
    RoleSignal,
    Severity,
    SeveritySignal,
    Signal,
    SnoozeSignal,
    StakeholderSignal,
    TimelineNote,
    UpdateSignal,
    WarRoomSignal,
    role_name,
)
from .policy import format_duration, parse_duration

# Every command, by its update (and signal) name.
COMMAND_MODELS: dict[str, type[Signal]] = {
    "claim": ClaimSignal,
    "acknowledge": AcknowledgeSignal,
    "snooze": SnoozeSignal,
    "update": UpdateSignal,
    "resolve": ResolveSignal,
    "set_severity": SeveritySignal,
    "review_done": ReviewDoneSignal,
    "add_to_timeline": TimelineNote,
    "assign_role": RoleSignal,
    "open_war_room": WarRoomSignal,
    "stakeholder_update": StakeholderSignal,
    "add_action_item": ActionItemSignal,
    "complete_action_item": ActionItemDoneSignal,
}
# What a stakeholder update may say (the seed's words, and the responders' fixing/waiting).
STAKEHOLDER_STATUSES = ("investigating", "identified", "mitigating", "fixing", "waiting", "monitoring")
OPEN_PHASES = (Phase.declared, Phase.triage, Phase.investigating, Phase.monitoring)
# Why an update's caller was refused (the ApplicationError's type): the CLI and the Slack
# handler tell it from a Temporal failure.
REFUSED = "CommandRefused"


def refusal(kind: str, command: BaseModel, state: IncidentState) -> str | None:
    """Why the incident cannot take this command now, or None when it can."""
    phase = state.phase
    closed = phase not in OPEN_PHASES
    if isinstance(command, ClaimSignal):
        if closed:
            return f"the incident is already {phase.value}; it cannot be claimed"
        if state.commander == command.user:
            return f"{command.user} is already the Incident Commander"
    elif isinstance(command, AcknowledgeSignal):
        if closed:
            return f"the incident is already {phase.value}; there is nothing to acknowledge"
        if state.paging.acknowledged_at is not None:
            by = state.paging.acknowledged_by or "someone"
            return f"already acknowledged by {by} at {state.paging.acknowledged_at:%H:%M} UTC"
    elif isinstance(command, SnoozeSignal):
        if closed:
            return f"the incident is already {phase.value}; there is nothing to snooze"
        problem = snooze_problem(command.duration)
        if problem:
            return problem
    elif isinstance(command, UpdateSignal):
        if command.status.strip().lower() not in UPDATE_STATUSES:
            return f"unknown status {command.status!r}: use one of {', '.join(UPDATE_STATUSES)}"
        if closed:
            return f"the incident is already {phase.value}; post-resolution notes go in the review"
    elif isinstance(command, ResolveSignal):
        if closed:
            return f"the incident is already {phase.value}"
    elif isinstance(command, SeveritySignal):
        try:
            new = Severity.parse(command.severity)
        except ValueError as exc:
            return str(exc)
        if closed:
            return f"the incident is already {phase.value}"
        if new == state.severity:
            return f"the incident is already {new.value}"
    elif isinstance(command, RoleSignal):
        return role_problem(command, state)
    elif isinstance(command, StakeholderSignal):
        if closed:
            return f"the incident is already {phase.value}; its resolution went to the stakeholders"
        if command.status.strip().lower() not in STAKEHOLDER_STATUSES:
            return f"unknown status {command.status!r}: use one of {', '.join(STAKEHOLDER_STATUSES)}"
    elif isinstance(command, WarRoomSignal):
        if closed:
            return f"the incident is already {phase.value}"
        if state.war_room is not None:
            return f"the war room is #{state.war_room.name}"
        if state.war_room_opening:
            return "its war room is being opened"
    elif isinstance(command, ReviewDoneSignal):
        if phase != Phase.review:
            return f"there is no open review (phase is {phase.value})"
    return None


def role_problem(command: RoleSignal, state: IncidentState) -> str | None:
    """Why this role cannot be given (or taken back) now, or None."""
    role = role_name(command.role)
    if role is None:
        if command.role.strip().lower() in ("ic", "commander", "incident-commander"):
            return "the Incident Commander takes over with `claim`"
        return f"unknown role {command.role!r}: use one of {', '.join(ROLES)}"
    if state.phase not in OPEN_PHASES:
        return f"the incident is already {state.phase.value}"
    who = command.assignee
    if role == "sme":
        if command.remove and who not in state.experts:
            return f"{who} is not a subject-matter expert on this incident"
        if not command.remove and who in state.experts:
            return f"{who} is already a subject-matter expert"
    elif command.remove:
        if state.roles.get(role) != who:
            return f"{who} is not the {ROLES[role]}"
    elif state.roles.get(role) == who:
        return f"{who} is already the {ROLES[role]}"
    return None


MAX_SNOOZE = timedelta(hours=24)


def snooze_problem(duration: str) -> str | None:
    """Why `duration` is no snooze (`30m`, `2h`, at most a day), or None."""
    try:
        value = parse_duration(duration)
    except ValueError as exc:
        return str(exc)
    if value > MAX_SNOOZE:
        return f"a snooze is at most {format_duration(MAX_SNOOZE)}; {duration!r} is longer"
    return None


def parse(kind: str, raw: Any) -> tuple[Signal | None, str]:
    """A signal's raw input as its model, or None and what is wrong with it (field and reason)."""
    model = COMMAND_MODELS.get(kind)
    if model is None:
        return None, f"unknown command {kind!r}"
    try:
        return model.model_validate(raw), ""
    except ValidationError as exc:
        return None, validation_problem(exc)


def validation_problem(exc: ValidationError) -> str:
    """`field user: Field required; field status: ...` (at most three, each short)."""
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(p) for p in error["loc"]) or "input"
        parts.append(f"field {where}: {error['msg']}")
    return "; ".join(parts)


def raw_user(raw: Any) -> str:
    """Who sent a malformed command, when that much can be read."""
    user = raw.get("user") if isinstance(raw, dict) else None
    return user[:100] if isinstance(user, str) else ""
