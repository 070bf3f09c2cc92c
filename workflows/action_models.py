"""Action items (issue 14): the commands that add and close them, when their owners are reminded,
and what the follow-up workflow carries once the incident is over.

Pure data and functions: imported once by the worker (passed through the sandbox).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

from pydantic import Field

from .action_state import ActionItem, action_priority
from .models import SLACK_USER_ID, IncidentState, Model, Signal
from .policy import ActionItemSettings, BusinessHours, parse_duration
from .ticket_models import TicketRef

# Activity names, registered by worker.py (workflow code must not import activities/).
POST_SLACK_MESSAGE = "post_slack_message"
MAX_ACTION_TEXT = 500  # one line in Slack, a Jira summary (255) and its description
MAX_ACTION_ITEMS = 100  # per incident: the state (and every Slack post's snapshot) stays small
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def action_followup_id(incident_workflow_id: str) -> str:
    """`incident-R1-outage` -> `incident-R1-outage-actions`: its action items after it completed."""
    return f"{incident_workflow_id}-actions"


class ActionItemSignal(Signal):
    """Add an action item: `incident action add KEY "text" --owner U0BOB [--priority P2] [--due 7d]`."""

    text: str = Field(min_length=1, max_length=MAX_ACTION_TEXT)
    owner: str = Field(min_length=1, max_length=100)  # a Slack user id (U0BOB): the reminders are DMs
    priority: str = ""  # P1..P4; empty: P3
    due: str = ""  # 2026-12-10, or how long from now (7d, 2w); empty: the policy's due_within


class ActionItemDoneSignal(Signal):
    """Mark action item `number` done: `incident action done KEY 2`."""

    number: int = Field(ge=1)


def due_date(due: str, today: date, default: timedelta) -> date:
    """`2026-12-10` or `7d` (from today) or empty (the policy's default) as a date; ValueError says why."""
    text = due.strip()
    if not text:
        return today + timedelta(days=max(1, round(default / timedelta(days=1))))
    if _DATE.match(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise ValueError(f"due: {text!r} is no date (YYYY-MM-DD)") from None
    try:
        span = parse_duration(text)
    except ValueError:
        raise ValueError(
            f"due: {text!r} is neither a date (2026-12-10) nor a time from now (7d, 2w)"
        ) from None
    return today + timedelta(days=max(1, -(-span // timedelta(days=1))))


def action_problem(command: ActionItemSignal, items: list[ActionItem], today: date) -> str | None:
    """Why this action item cannot be added, naming the field, or None."""
    if not SLACK_USER_ID.match(command.owner):
        return f"owner: {command.owner!r} is not a Slack user id (U0BOB): the reminders are DMs to the owner"
    if command.priority:
        try:
            action_priority(command.priority)
        except ValueError as exc:
            return f"priority: {exc}"
    if command.due:
        try:
            due = due_date(command.due, today, timedelta(days=1))
        except ValueError as exc:
            return str(exc)
        if due < today:
            return f"due: {due.isoformat()} is in the past"
    if len(items) >= MAX_ACTION_ITEMS:
        return f"an incident keeps at most {MAX_ACTION_ITEMS} action items"
    return None


def done_problem(command: ActionItemDoneSignal, items: list[ActionItem]) -> str | None:
    """Why action item `number` cannot be marked done, or None."""
    item = next((i for i in items if i.number == command.number), None)
    if item is None:
        known = ", ".join(str(i.number) for i in items) or "none yet"
        return f"number: there is no action item {command.number} (the incident's: {known})"
    if not item.is_open:
        return f"action item {item.number} is already done (by {item.done_by or 'someone'})"
    return None


def new_item(
    command: ActionItemSignal, number: int, now: datetime, settings: ActionItemSettings
) -> ActionItem:
    return ActionItem(
        number=number,
        text=" ".join(command.text.split()),
        owner=command.owner,
        priority=command.priority or "P3",
        due=due_date(command.due, now.date(), settings.due_within),
        added_by=command.user,
        added_at=now,
    )


def next_reminder(item: ActionItem, settings: ActionItemSettings, hours: BusinessHours) -> datetime | None:
    """When the item's owner is reminded next: the day after its due date and then each (business)
    day at the policy's hour, until it is done or `remind_for` after its due date."""
    if not item.is_open:
        return None
    offset = timedelta(hours=hours.utc_offset_hours)
    day = item.due + timedelta(days=1)
    if item.last_reminded_at is not None:
        day = max(day, (item.last_reminded_at + offset).date() + timedelta(days=1))
    if settings.remind_on == "business_days" and hours.weekdays:
        for _ in range(7):
            if day.weekday() in hours.weekdays:
                break
            day += timedelta(days=1)
    if day > item.due + timedelta(days=max(1, settings.remind_for.days)):
        return None
    return datetime.combine(day, time(hours.start_hour), tzinfo=UTC) - offset


def earliest_reminder(
    items: list[ActionItem], settings: ActionItemSettings, hours: BusinessHours
) -> tuple[datetime, list[ActionItem]] | None:
    """The next reminder time, and the items due a reminder then."""
    due = [(t, i) for i in items if (t := next_reminder(i, settings, hours)) is not None]
    if not due:
        return None
    first = min(t for t, _ in due)
    return first, [i for t, i in due if t == first]


def filed_ticket(item: ActionItem, ref: TicketRef) -> None:
    item.ticket, item.ticket_url, item.filing = ref.number, ref.url, False


class ActionFollowUpInput(Model):
    """What the incident hands its follow-up workflow when it completes with items still open."""

    incident: IncidentState  # as it completed: its key, title, thread and ticket, for the DMs
    settings: ActionItemSettings
    business_hours: BusinessHours
    ticket: TicketRef | None = None  # the incident's ticket: what new items are linked to
    correlation_id: str = ""
    system: str = ""
    max_history_events: int = 10_000
    started_at: datetime | None = None
