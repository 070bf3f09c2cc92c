"""What an email service must do for an incident: the interface every email backend implements.

SMTP (smtp.py) is the one there is; an HTTP mail API (SES, SendGrid, Graph) would be another
module with the same two methods, and the activity (activities.py) would not change.

`send` runs inside the `send_email` activity and is retried there, so it is safe to repeat: the
message it gets is the same on every attempt (same bytes, same Message-ID), and the activity
only asks it again for the recipients no earlier attempt delivered to. A failure of the whole
transaction is an ApplicationError: retryable when it may heal (a 4xx reply, the server
unreachable, a timeout, the connection dropped, in which case the server may have taken the
message and the retry is a second copy of the same message), non-retryable when a person must
change something (a 5xx for the whole message, credentials, TLS the server does not offer),
saying what. Recipients refused one by one come back in the Delivery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Protocol


@dataclass(frozen=True)
class Delivery:
    """One transaction's outcome, recipient by recipient."""

    accepted: list[str] = field(default_factory=list)
    deferred: dict[str, str] = field(
        default_factory=dict
    )  # 4xx: the server may take it later ("451 4.3.0 ...")
    refused: dict[str, str] = field(default_factory=dict)  # 5xx: it will not ("550 5.1.1 ...")


class EmailBackend(Protocol):
    name: str  # "smtp"
    sender: str  # the From header: "Incident Response <incidents@example.com>" or a bare address
    envelope_sender: str  # MAIL FROM: the bare address

    async def send(self, message: EmailMessage, recipients: list[str]) -> Delivery:
        """Send `message` to `recipients` (the envelope; its To header may name more)."""
        ...

    async def aclose(self) -> None: ...
