"""The escalation chain's progress in the incident's state (imported by models.py, so it imports none)."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, Field


class Model(BaseModel):
    pass


class PagingService(StrEnum):
    slack = "slack"  # a direct message from the bot, with Claim / Acknowledge buttons
    pagerduty = "pagerduty"  # Events API v2
    opsgenie = "opsgenie"  # Alert API


class PageRecord(Model):
    """One page the incident sent (or held back), for its timeline, `incident status` and the tests."""

    level: int
    loop: int = 0
    user_id: str
    service: PagingService
    due: datetime
    at: datetime  # when the incident decided it
    outcome: str  # "sent", "delivered", "skipped: Do Not Disturb", "held: acknowledged", "failed: ..."
    rule: str = ""  # "unresolved 30m" for the time-based rules


class PagingState(Model):
    """Where the incident's escalation chain is."""

    next_step: int = 0  # index into PagingPolicy.steps()
    # How much earlier than its offsets the rest of the chain runs: a level whose people were all
    # in Do Not Disturb hands over to the next at once.
    advanced: timedelta = timedelta(0)
    held: timedelta = timedelta(0)  # snoozed so far: the time-based rules move by it too
    unresolved_fired: int = 0  # rules of PagingPolicy.unresolved already paged
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    turns: dict[int, int] = Field(default_factory=dict)  # level index -> round-robin turns taken
    # The chain started again for a new severity (paging-follows-severity): how often, and why,
    # for the new pages' idempotency keys and the first page's reason.
    restarts: int = 0
    restart_reason: str = ""
    pages: list[PageRecord] = Field(default_factory=list)
