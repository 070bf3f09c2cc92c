"""The post-incident review's models: its schedule, and what drafting and attaching it needs.

Kept apart from workflows/models.py (the incident's state holds one `ReviewSchedule`) so the
review's fields can grow without touching the rest of the state.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

# The review's artifacts, in the order the announcement lists them and the thread gets them
# (seed 000's Phase 6). Device outputs come between the timeline and the audit trail, one per
# output the investigation captured.
ARTIFACT_REVIEW = "Post-incident review (draft)"
ARTIFACT_TIMELINE = "Timeline of events"
ARTIFACT_AUDIT = "Audit trail (from the workflow's history)"
ARTIFACT_HEALTH = "Pre/post health check comparison"


class Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ReviewScheduleRequest(Model):
    """What the `schedule_review` local activity computes the meeting from (the policy's parts)."""

    resolved_at: datetime
    review_within: timedelta
    hour: int = 10
    reminder_hour: int = 17
    grace: timedelta = timedelta(days=1)
    timezone: str = ""  # IANA; empty: utc_offset_hours
    utc_offset_hours: int = 0
    weekdays: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4])


class ReviewSchedule(Model):
    """When the review is held, reminded, due, and given up (all UTC), and in which zone."""

    meeting_at: datetime
    reminder_at: datetime | None = None  # None: the business day before had passed already
    deadline: datetime  # the severity's review_within, in business time
    closes_at: datetime  # the deadline plus the policy's grace: closed without a review then
    timezone: str  # the zone the meeting was placed in: "Europe/Zurich", "UTC+02:00"
    meeting_local: str  # "Monday 2024-02-26 10:00 Europe/Zurich"
    reminded: bool = False
    # The artifacts the announcement lists (and the thread gets), and what came of attaching them.
    artifacts: list[str] = Field(default_factory=list)
    attached: list[str] = Field(default_factory=list)  # titles of the files in the thread
    attach_problems: list[str] = Field(default_factory=list)
