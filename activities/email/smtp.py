"""Email over SMTP with aiosmtplib: one connection per message, EHLO, STARTTLS and AUTH as configured.

SMTP_HOST, SMTP_PORT, SMTP_STARTTLS, SMTP_USERNAME/SMTP_PASSWORD, SMTP_FROM and SMTP_TIMEOUT
(activities/settings.py). What a failure means (backend.py): a reply code 4xx, a refused or
dropped connection and a timeout may heal and are retried; a 5xx is the server's final word
and is not, with what to change. Recipients refused one by one are returned, not raised: the
others got the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from email.message import EmailMessage
from typing import Any

import aiosmtplib
from temporalio.exceptions import ApplicationError

from .backend import Delivery
from .message import parse_sender

QUIT_TIMEOUT = 2.0  # seconds for a polite QUIT once the message is through; its answer changes nothing


class SmtpEmail:
    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        username: str = "",
        password: str = "",
        starttls: bool = True,
        timeout: float = 10.0,
        tls_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.sender, self.envelope_sender = parse_sender(sender)
        self.username = username
        self.password = password
        self.starttls = starttls
        self.timeout = timeout
        self.tls_context = tls_context
        # EHLO's name: the sender's domain, not socket.getfqdn() (a DNS lookup that can hang offline).
        self.local_hostname = local_hostname or self.envelope_sender.rsplit("@", 1)[1]

    @classmethod
    def from_settings(cls, settings: Any) -> SmtpEmail:
        return cls(
            settings.smtp_host.strip(),
            settings.smtp_port,
            settings.smtp_from,
            username=settings.smtp_username,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
            timeout=settings.smtp_timeout,
        )

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    async def send(self, message: EmailMessage, recipients: list[str]) -> Delivery:
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            username=self.username or None,
            password=self.password or None,
            start_tls=self.starttls,
            timeout=self.timeout,
            tls_context=self.tls_context,
            local_hostname=self.local_hostname,
        )
        try:
            await client.connect()
            errors, _ = await client.send_message(message, sender=self.envelope_sender, recipients=recipients)
            refusals = {rcpt: (reply.code, reply.message) for rcpt, reply in errors.items()}
        except aiosmtplib.SMTPRecipientsRefused as exc:  # every recipient refused
            refusals = {r.recipient: (r.code, r.message) for r in exc.recipients}
        except Exception as exc:  # noqa: BLE001 - sorted into retry-later and give-up below
            raise self._failure(exc) from None
        finally:
            await self._quit(client)
        return Delivery(
            accepted=[r for r in recipients if r not in refusals],
            deferred={r: f"{code} {text}" for r, (code, text) in refusals.items() if code < 500},
            refused={r: f"{code} {text}" for r, (code, text) in refusals.items() if code >= 500},
        )

    async def aclose(self) -> None:
        return None  # a connection per message: nothing held between them

    @staticmethod
    async def _quit(client: aiosmtplib.SMTP) -> None:
        if client.is_connected:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.quit(), QUIT_TIMEOUT)
            client.close()

    def _failure(self, exc: Exception) -> ApplicationError:
        """The whole transaction failed: retry later, or a person must change something."""
        where = f"the mail server {self.where}"
        code = getattr(exc, "code", None)
        if isinstance(exc, aiosmtplib.SMTPTimeoutError):
            return _retry(f"{where} did not answer in time ({exc})", "SmtpTimeout")
        if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
            return _retry(
                f"{where} closed the connection ({exc}); it may have taken the message, and the retry "
                "sends the same message again (same Message-ID)",
                "SmtpDisconnected",
            )
        if isinstance(exc, aiosmtplib.SMTPResponseException) and isinstance(code, int):
            reply = f"{code} {exc.message}"
            what, fix = "the message", ""
            if isinstance(exc, aiosmtplib.SMTPConnectResponseError):
                what = "the connection"
            elif isinstance(exc, aiosmtplib.SMTPAuthenticationError):
                what, fix = f"the login as {self.username!r}", "check SMTP_USERNAME and SMTP_PASSWORD"
            elif code == 530:  # RFC 4954 / 3207: authentication (or STARTTLS) required first
                needs_tls = "starttls" in exc.message.lower()
                what = "mail before " + ("STARTTLS" if needs_tls else "AUTH")
                fix = "set SMTP_STARTTLS=true" if needs_tls else "set SMTP_USERNAME and SMTP_PASSWORD"
            elif isinstance(exc, aiosmtplib.SMTPSenderRefused):
                what, fix = f"the sender {self.envelope_sender}", "check SMTP_FROM"
            if code < 500:
                return _retry(f"{where} deferred {what}: {reply}", "SmtpUnavailable", code)
            return ApplicationError(
                f"{where} refused {what}: {reply}" + (f" ({fix})" if fix else ""),
                {"code": code},
                type="SmtpRejected",
                non_retryable=True,
            )
        if isinstance(exc, aiosmtplib.SMTPNotSupported):
            return ApplicationError(
                f"{where} does not offer what this worker is configured to use: {exc} "
                "(check SMTP_STARTTLS, SMTP_USERNAME)",
                type="SmtpMisconfigured",
                non_retryable=True,
            )
        if _cert_problem(exc):
            return ApplicationError(
                f"{where}'s TLS certificate is not trusted: {exc} (check SMTP_HOST and the CA bundle)",
                type="SmtpTlsRejected",
                non_retryable=True,
            )
        if isinstance(exc, aiosmtplib.SMTPConnectError | OSError):
            return _retry(f"{where} is unreachable: {type(exc).__name__}: {exc}", "SmtpUnreachable")
        if isinstance(exc, ValueError):  # aiosmtplib: an address or message it cannot send
            return ApplicationError(
                f"cannot send this message: {exc}", type="SmtpBadMessage", non_retryable=True
            )
        return _retry(f"{where}: {type(exc).__name__}: {exc}", "SmtpError")


def _retry(message: str, kind: str, code: int | None = None) -> ApplicationError:
    return ApplicationError(message, {"code": code}, type=kind)


def _cert_problem(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
