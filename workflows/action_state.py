"""An incident's action items in its state (imported by models.py, so it imports none of the project).

An action item is follow-up work out of an incident: a text, an owner (a Slack user id), a
priority of its own (P1-P4, not the incident's severity), a due date and a status. Numbered
from 1 within the incident, the number people use: `incident action done KEY 2`.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, field_validator

PRIORITIES = ("P1", "P2", "P3", "P4")


def action_priority(value: object) -> str:
    """P1..P4 (any case; SEV1.., 1..4 too); ValueError names the choices."""
    text = str(value).strip().upper()
    for prefix in ("SEV", "P"):
        if text.startswith(prefix) and text[len(prefix) :].isdigit():
            text = text[len(prefix) :]
            break
    if text in ("1", "2", "3", "4"):
        return "P" + text
    raise ValueError(f"unknown priority {value!r}: use P1, P2, P3 or P4")


class ActionStatus(StrEnum):
    open = "open"
    done = "done"


class ActionItem(BaseModel):
    number: int
    text: str
    owner: str  # a Slack user id: the reminders are DMs to them
    priority: str = "P3"
    due: date
    status: ActionStatus = ActionStatus.open
    added_by: str = ""
    added_at: datetime
    done_by: str = ""
    done_at: datetime | None = None
    # Its ticket in the policy's tracker (tickets.system), once filed; why not, when it cannot be.
    ticket: str = ""
    ticket_url: str = ""
    ticket_problem: str = ""
    filing: bool = False  # filed in the background; True until its ticket (or problem) is known
    reminders: int = 0  # DMs sent to its owner since it fell due
    last_reminded_at: datetime | None = None

    _priority = field_validator("priority", mode="before")(lambda cls, v: action_priority(v))

    @property
    def is_open(self) -> bool:
        return self.status == ActionStatus.open
