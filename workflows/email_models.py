"""What the incident asks of email, and what comes back: the `send_email` activity's words.

One email is one message (one Message-ID) to a list of recipients, sent over SMTP by the email
backend (activities/email/). Its Message-ID is derived from the incident and the email's
idempotency key, so every attempt sends the same message, recognisably: a retry after a lost
answer is a second copy of one message, never a second message. The content is either a
stakeholder update (rendered by the activity from the templates) or a ready subject and body.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Self

from pydantic import Field, field_validator, model_validator

from .limits import email_address as email_address  # re-exported: the policy checks addresses too
from .models import Model
from .stakeholder_models import StakeholderUpdate, one_line

# Activity name, registered by worker.py (workflow code must not import activities/).
SEND_EMAIL = "send_email"

MAX_RECIPIENTS = 100  # RFC 5321 4.5.3.1.8: a server must take at least 100 RCPT TO per message
MAX_SUBJECT = 250
MAX_BODY = 100_000


class EmailToSend(Model):
    """One email: the `send_email` activity's whole input."""

    incident_workflow_id: str = Field(min_length=1)
    # incident-<key>/stakeholder/initial, .../stakeholder/update/3: stable across retries and replays.
    idempotency_key: str = Field(min_length=1, max_length=500)
    recipients: list[str] = Field(min_length=1, max_length=MAX_RECIPIENTS)
    # A stakeholder update, rendered by the activity; or, without one, subject and body as given.
    update: StakeholderUpdate | None = None
    subject: str = Field(default="", max_length=MAX_SUBJECT)
    body: str = Field(default="", max_length=MAX_BODY)
    # The idempotency key of the incident's email this one follows (its first notification):
    # In-Reply-To and References name that email's Message-ID, so mail clients thread them.
    follows_key: str | None = Field(default=None, max_length=500)
    # The Date header: when the incident decided to send it (workflow.now()); None: when the
    # activity was first scheduled. Either way the same on every attempt.
    decided_at: datetime | None = None

    @field_validator("recipients")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        seen: dict[str, str] = {}
        for item in value:
            address = email_address(item)
            seen.setdefault(address.lower(), address)
        return list(seen.values())

    @field_validator("subject")
    @classmethod
    def _one_line(cls, value: str) -> str:
        return one_line(value)

    @field_validator("decided_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value

    @model_validator(mode="after")
    def _content(self) -> Self:
        if self.update is None and not (self.subject and self.body):
            raise ValueError("an email needs a stakeholder update, or a subject and a body")
        if self.update is not None and (self.subject or self.body):
            raise ValueError("an email has a stakeholder update or a subject and body, not both")
        return self


class EmailSent(Model):
    """What became of one email. `sent` False: email is off, and `off_because` says why."""

    sent: bool
    message_id: str = ""
    subject: str = ""
    delivered_to: list[str] = Field(default_factory=list)  # every recipient the server took, any attempt
    # Taken by an earlier attempt whose outcome this one learned (its heartbeat), so not sent again.
    delivered_earlier: list[str] = Field(default_factory=list)
    attempt: int = 1
    off_because: str | None = None
