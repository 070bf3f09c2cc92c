"""The `send_email` activity: one email, to every recipient, once each as far as SMTP allows.

Exactly once, as near as SMTP lets anyone come to it:

- Every attempt builds the same message (message.py): the Message-ID is derived from the
  incident and the email's idempotency key, the Date is when the incident decided to send it
  (else when the activity was first scheduled), so a repeat is a copy of one message.
- After each transaction the attempt records, as its heartbeat, who the server took and who it
  refused for good; Temporal hands that to the next attempt (after a failure, and after a worker
  crash once the heartbeat went out), which sends only to the rest. A 451 for one recipient
  re-sends to that recipient, not to all.
- What no one can know is whether a server that dropped the connection after the message's
  final dot took it: then the retry sends it again, with the same Message-ID, and the copy is
  recognisably the same message (the SMTP sandbox marks it `duplicate_of`).

Recipients deferred (4xx) make the attempt fail so that it is retried; recipients refused for
good (5xx) are a non-retryable ApplicationError naming each with the server's reply, raised once
everyone else has the message. Without a backend (no SMTP_HOST), email is off: the activity
answers `sent=False` with the reason and sends nothing.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from workflows.email_models import SEND_EMAIL, EmailSent, EmailToSend

from ..rendering import email_text
from ..stakeholder import stakeholder_email
from .backend import EmailBackend
from .message import build_message, message_id_for

EMAIL_OFF = "email is off: SMTP_HOST is not set"


class EmailProgress(BaseModel):
    """What earlier attempts of one email achieved: the activity's heartbeat details."""

    message_id: str
    delivered: list[str] = Field(default_factory=list)
    refused: dict[str, str] = Field(default_factory=dict)  # recipient -> the server's 5xx reply


class EmailActivities:
    def __init__(self, backend: EmailBackend | None, off_reason: str | None = None) -> None:
        self._backend = backend
        self._off_reason = off_reason or EMAIL_OFF

    @property
    def enabled(self) -> bool:
        return self._backend is not None

    @property
    def activities(self) -> list:
        return [self.send_email]

    async def aclose(self) -> None:
        if self._backend is not None:
            await self._backend.aclose()

    @activity.defn(name=SEND_EMAIL)
    async def send_email(self, email: EmailToSend) -> EmailSent:
        """Send one email to its recipients; a retry sends only to those no attempt delivered to.

        Idempotent as far as SMTP allows (the module's docstring says how): the same message on
        every attempt, and the heartbeat names who already has it.
        """
        backend = self._backend
        if backend is None:
            return EmailSent(sent=False, off_because=self._off_reason)
        info = activity.info()
        if email.update is not None:
            text = stakeholder_email(email.update)
            subject, body = text.subject, text.body
        else:
            subject, body = email.subject, email_text(email.body)
        domain = backend.envelope_sender.rsplit("@", 1)[1]
        message_id = message_id_for(email.incident_workflow_id, email.idempotency_key, domain)
        message = build_message(
            email,
            subject,
            body,
            backend.sender,
            backend.envelope_sender,
            email.decided_at or info.scheduled_time,
        )
        progress = _progress(info.heartbeat_details, message_id)
        earlier = list(progress.delivered)
        done = {r.lower() for r in [*progress.delivered, *progress.refused]}
        pending = [r for r in email.recipients if r.lower() not in done]
        if pending:
            delivery = await backend.send(message, pending)
            progress.delivered += delivery.accepted
            progress.refused.update(delivery.refused)
            activity.heartbeat(progress.model_dump())
            activity.logger.info(
                "email %s (%s): delivered to %s%s%s",
                message_id,
                email.idempotency_key,
                ", ".join(delivery.accepted) or "nobody",
                f"; deferred {_replies(delivery.deferred)}" if delivery.deferred else "",
                f"; refused {_replies(delivery.refused)}" if delivery.refused else "",
            )
            if delivery.deferred:
                raise ApplicationError(
                    f"the mail server deferred {_replies(delivery.deferred)}; retrying for "
                    f"{'them' if len(delivery.deferred) > 1 else 'it'} alone"
                    + (f" (delivered to {', '.join(progress.delivered)})" if progress.delivered else ""),
                    {"deferred": delivery.deferred, "delivered": progress.delivered},
                    type="SmtpRecipientDeferred",
                )
        if progress.refused:
            raise ApplicationError(
                f"the mail server refused {_replies(progress.refused)}"
                + (
                    f"; delivered to {', '.join(progress.delivered)}"
                    if progress.delivered
                    else "; delivered to nobody"
                ),
                {"refused": progress.refused, "delivered": progress.delivered, "message_id": message_id},
                type="SmtpRecipientRefused",
                non_retryable=True,
            )
        return EmailSent(
            sent=True,
            message_id=message_id,
            subject=subject,
            delivered_to=progress.delivered,
            delivered_earlier=earlier,
            attempt=info.attempt,
        )


def _progress(details: Any, message_id: str) -> EmailProgress:
    """The last heartbeat of an earlier attempt of this email, or a fresh start."""
    for item in reversed(list(details or [])):
        try:
            found = EmailProgress.model_validate(item)
        except ValidationError:
            continue
        if found.message_id == message_id:
            return found
    return EmailProgress(message_id=message_id)


def _replies(by_recipient: dict[str, str]) -> str:
    return "; ".join(f"{rcpt} ({reply})" for rcpt, reply in by_recipient.items())
