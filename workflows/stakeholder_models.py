"""What a stakeholder update says: the three messages people outside the response read.

The seed's formats (the commander's stakeholder templates), each rendered for a Slack
stakeholder channel and for email (activities/stakeholder.py, templates under
activities/templates/slack/stakeholder_*.md.j2 and activities/templates/email/):

- initial notification (within 10 minutes of a P1): Subject / Current Status / Impact / Next Update;
- status update, on the severity's cadence: Status / Current Understanding / Actions Taken /
  Next Steps / Next Update;
- resolution: Resolution / Duration / Impact Summary / Follow-up.

Independent of IncidentState: the incident fills one of these from what it knows, so the
wording of an update is the incident's decision (made once, replayed the same) and the
rendering is the activity's. Every text is the incident's own words; the templates escape it
for where it goes. Fields added later must have a default.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator

from . import limits
from .models import Model, Severity, UpdateStatus

_LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")  # CR, LF, NEL, LS, PS and the rest


def one_line(value: str) -> str:
    """Text for a subject or a header, on one line: line breaks and control characters become a space."""
    return " ".join(_LINE_BREAKS.sub(" ", value).split())


def _one_line(value: Any) -> Any:
    return one_line(value) if isinstance(value, str) else value


class StakeholderStatus(StrEnum):
    """The seed's statuses for stakeholders ([Investigating / Identified / Mitigating / Resolved])
    and Monitoring: a fix is in and being watched."""

    investigating = "investigating"
    identified = "identified"
    mitigating = "mitigating"
    monitoring = "monitoring"
    resolved = "resolved"

    @classmethod
    def of(cls, status: UpdateStatus | str) -> StakeholderStatus:
        """The stakeholder's word for a responder's status: fixing and waiting are both mitigating."""
        value = status.value if isinstance(status, UpdateStatus) else str(status)
        return {"fixing": cls.mitigating, "waiting": cls.mitigating}.get(value) or cls(value)


Text = Annotated[str, Field(max_length=limits.MAX_TEXT)]
# What goes into a subject line: one line (CR, LF and other control characters become spaces).
Brief = Annotated[str, BeforeValidator(_one_line), Field(min_length=1, max_length=limits.MAX_TITLE)]
Name = Annotated[str, BeforeValidator(_one_line), Field(max_length=limits.MAX_SERVICE)]


class _Stakeholder(Model):
    incident_key: str = Field(min_length=1, max_length=limits.MAX_KEY)
    severity: Severity
    service: Name = Field(min_length=1)  # [Service Name]
    link: str | None = Field(default=None, max_length=limits.MAX_LINK)  # where to follow: thread, status page

    @field_validator("severity", mode="before")
    @classmethod
    def _severity(cls, value: Any) -> Severity:
        return Severity.parse(value)

    @property
    def slack_template(self) -> str:
        """The template `post_slack_message` renders it with (SlackPost.template)."""
        kind: str = getattr(self, "kind")  # noqa: B009 - every subclass has one
        return f"stakeholder_{kind}"

    def slack_extra(self) -> dict[str, Any]:
        """SlackPost.extra for it: the update as JSON, as the template reads it either way."""
        return {"update": self.model_dump(mode="json")}


class StakeholderInitial(_Stakeholder):
    """SEV1 — Initial Notification: sent within minutes of declaration."""

    kind: Literal["initial"] = "initial"
    impact_brief: Brief  # Subject: [SEV1] [Service Name] — [Brief Impact Description]
    affected: Name = ""  # [service/feature]; empty: the service
    impact: Text = Field(min_length=1)  # "[X]% of users are experiencing [symptom]", as the incident says it
    next_update_minutes: int = Field(ge=1, le=7 * 24 * 60)


class StakeholderStatusUpdate(_Stakeholder):
    """SEV1 — Status Update: on the severity's update cadence."""

    kind: Literal["update"] = "update"
    current_state: Brief  # Subject: [SEV1 UPDATE] [Service Name] — [Current State]
    status: StakeholderStatus
    current_understanding: Text = Field(min_length=1)  # what we know about the cause
    actions_taken: list[Text] = Field(default_factory=list, max_length=limits.MAX_ITEMS)
    next_steps: list[Text] = Field(default_factory=list, max_length=limits.MAX_ITEMS)
    next_update_minutes: int = Field(ge=1, le=7 * 24 * 60)

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, value: Any) -> StakeholderStatus:
        return value if isinstance(value, StakeholderStatus) else StakeholderStatus.of(value)


class StakeholderResolution(_Stakeholder):
    """Incident Resolved."""

    kind: Literal["resolved"] = "resolved"
    brief: Brief  # Subject: [RESOLVED] [Service Name] — [Brief Description]
    resolution: Text = Field(min_length=1)  # what fixed the issue
    started_at: datetime
    resolved_at: datetime
    impact_summary: Text = Field(min_length=1)  # who was affected and how
    postmortem_on: date | None = None  # "Post-mortem scheduled for [date]"; None: not scheduled yet
    tracked_in: str | None = Field(default=None, max_length=limits.MAX_LINK)  # [link]: a ticket or a URL

    @field_validator("started_at", "resolved_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value


StakeholderUpdate = Annotated[
    StakeholderInitial | StakeholderStatusUpdate | StakeholderResolution, Field(discriminator="kind")
]
