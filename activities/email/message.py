"""The email as it goes on the wire: headers, and the Message-ID that every attempt shares.

The Message-ID is derived from the incident's workflow id and the email's idempotency key, so
an attempt after a lost answer sends the very same message (same Message-ID, same Date, same
bytes): mail clients and archives see one message with a second copy, never two messages, and
the SMTP sandbox marks the copy as a duplicate. An email that follows another of the incident
(`follows_key`) names that one's Message-ID in In-Reply-To and References, so clients thread
the incident's notification, updates and resolution.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from workflows.email_models import EmailToSend, email_address

_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_-]+")
READABLE = 60  # characters of the idempotency key kept readable in the Message-ID


class SenderError(ValueError):
    """SMTP_FROM is not an address (or a "Name <address>")."""


def parse_sender(value: str) -> tuple[str, str]:
    """(the From header, the bare address for MAIL FROM) of SMTP_FROM."""
    name, address = parseaddr(value.strip())
    try:
        bare = email_address(address)
    except ValueError:
        raise SenderError(f"SMTP_FROM={value!r} is not an email address (incidents@example.com)") from None
    if any(ch in value for ch in "\r\n"):
        raise SenderError("SMTP_FROM is one line")
    header = str(Address(display_name=name, addr_spec=bare)) if name else bare
    return header, bare


def message_id_for(incident_workflow_id: str, idempotency_key: str, domain: str) -> str:
    """`<incident-r1-outage-stakeholder-initial.3f2a...@example.com>`: the same for the same email.

    The key, made safe, keeps it readable; the digest of the workflow id and the key makes it unique.
    """
    digest = hashlib.sha256(f"{incident_workflow_id}\n{idempotency_key}".encode()).hexdigest()[:24]
    readable = _UNSAFE_ID.sub("-", idempotency_key).strip("-")[:READABLE]
    return f"<{readable}.{digest}@{domain}>" if readable else f"<{digest}@{domain}>"


def build_message(
    email: EmailToSend, subject: str, body: str, sender: str, envelope_sender: str, date: datetime
) -> EmailMessage:
    """The message for every attempt of `email` (identical given the same arguments)."""
    domain = envelope_sender.rsplit("@", 1)[1]
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(email.recipients)
    message["Subject"] = subject  # one line (EmailToSend and the subject template make it so)
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id_for(email.incident_workflow_id, email.idempotency_key, domain)
    if email.follows_key:
        first = message_id_for(email.incident_workflow_id, email.follows_key, domain)
        message["In-Reply-To"] = first
        message["References"] = first
    # RFC 3834: no vacation responder should answer a notification.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Incident"] = email.incident_workflow_id
    message.set_content(body, cte="quoted-printable")  # 7-bit on the wire whatever the text
    return message
