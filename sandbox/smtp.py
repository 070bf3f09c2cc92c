"""A local stand-in for an SMTP relay: it takes mail as a real one does, keeps it, and shows it.

The email backend (activities/email/smtp.py, aiosmtplib) and any other SMTP client talk to it::

    python -m sandbox.smtp --smtp-port 8925 --http-port 8905 --data-dir .data/smtp
    python - <<'EOF'
    import smtplib; smtplib.SMTP("127.0.0.1", 8925).sendmail("a@example.com", ["b@example.com"],
        "Subject: hello\\r\\nMessage-ID: <1@example.com>\\r\\n\\r\\nbody")
    EOF
    curl http://127.0.0.1:8905/_sandbox/messages

SMTP, as RFC 5321 has it, served by aiosmtpd on the same event loop as the page: EHLO/HELO,
MAIL FROM, RCPT TO, DATA, RSET, NOOP, QUIT; 8BITMIME and SMTPUTF8 are taken. Off by default, as
a development relay usually is:

- AUTH (PLAIN, LOGIN) is required once credentials are given: env SMTP_SANDBOX_USER=user:password
  (never on the command line, which `ps` shows). A wrong password is 535. Over plain SMTP,
  which is fine on loopback and nowhere else.
- STARTTLS is offered with --tls-certfile/--tls-keyfile; --require-starttls refuses mail
  before it (530).

Every message it accepts is appended to ``<data dir>/smtp-messages.jsonl`` (one JSON object a
line: envelope, parsed headers and text, the raw message) and fsynced before the 250, so a
message the client was told was taken survives a kill -9; a restart reads the file back, and a
torn last line (a crash mid-write) is skipped with a warning.

Retries: SMTP has no idempotency key, so a client that lost the answer to DATA can only send
again. The email backend gives every message a Message-ID derived from the incident and the
message's idempotency key, the same on every attempt; the sandbox marks a message whose
Message-ID it already has as ``duplicate_of`` the first one (``repeated_to``: the recipients
who had it already), and its page and ``?distinct=1`` show one message with its copies.

Faults, as the other sandboxes' (``POST /_sandbox/faults``): ``{"code": 451}`` makes the next
RCPT TO answer 451; the fields:

- ``code``: the reply code (400-599); 421 also closes the connection, as RFC 5321 says;
- ``stage``: ``connect`` (instead of the 220 greeting), ``mail``, ``rcpt`` (default), ``data``
  (after the message's final dot);
- ``recipient``: only RCPT TO this address (any case);
- ``count`` (default 1; -1: until ``DELETE /_sandbox/faults``), or ``seconds``: for that long;
- ``message``: the reply's text (default: what a relay says for that code);
- ``perform`` (``data`` stage): keep the message, then answer with the fault;
- ``drop``: close the connection instead of answering. ``{"stage": "data", "perform": true,
  "drop": true}`` is the lost answer: the message is kept, the client never hears the 250.

HTTP (``--http-port``): ``GET /`` lists the messages, newest first (``?refresh=0`` stops the
page reloading); ``GET /_sandbox/messages`` (``?to=``, ``?message_id=``, ``?distinct=1``),
``GET /_sandbox/messages/{id}`` (with the raw message), ``GET /_sandbox/messages/{id}/raw``
(``message/rfc822``), ``GET|POST|DELETE /_sandbox/faults``, ``POST /_sandbox/reset``,
``GET /_sandbox/health``.

Not modelled: delivery onwards (nothing leaves this machine), DSNs and bounces, VRFY (always
252) and EXPN (502), PIPELINING, CHUNKING, size limits beyond aiosmtpd's 32 MiB, SPF/DKIM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import json
import logging
import os
import ssl
import time
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import uvicorn
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .paging_common import PAGE_STYLE, bad_request, control_json, control_reset, iso

log = logging.getLogger("sandbox.smtp")

DEFAULT_SMTP_PORT = 8925
DEFAULT_HTTP_PORT = 8905
USER_ENV = "SMTP_SANDBOX_USER"  # user:password; set: AUTH is required
MESSAGES_FILE = "smtp-messages.jsonl"
HOSTNAME = "smtp.sandbox.local"  # what the greeting and EHLO answer say (no getfqdn lookup)
KEPT = 10_000  # messages held in memory and shown; the file keeps them all
STAGES = ("connect", "mail", "rcpt", "data")
DROP_WAIT = 5.0  # seconds a dropped connection's handler waits to be cancelled by connection_lost

# What a relay typically says for each code (Postfix's wording, mostly); any other code: "Sandbox fault".
REPLIES = {
    421: "4.3.2 Service not available, closing transmission channel",
    450: "4.2.1 Mailbox unavailable, try again later",
    451: "4.3.0 Requested action aborted: local error in processing",
    452: "4.3.1 Insufficient system storage",
    454: "4.7.0 Temporary authentication failure",
    550: "5.1.1 Recipient address rejected: User unknown in virtual mailbox table",
    551: "5.1.6 User not local",
    552: "5.3.4 Message size exceeds fixed limit",
    553: "5.1.3 Mailbox name not allowed",
    554: "5.7.1 Transaction failed",
}


# ------------------------------------------------------------------ faults


class SmtpFaults:
    """Faults for the next SMTP commands, oldest first (``POST /_sandbox/faults``)."""

    def __init__(self) -> None:
        self.faults: list[dict[str, Any]] = []

    def add(self, spec: Any) -> dict[str, Any]:
        if not isinstance(spec, dict):
            raise ValueError("a fault is a JSON object: {'code': 451, 'stage'?: 'rcpt', 'count'?: n}")
        code = spec.get("code", spec.get("status"))
        drop = bool(spec.get("drop", False))
        if code is None and not drop:
            raise ValueError("a fault needs 'code' (400-599) or 'drop': true")
        stage = str(spec.get("stage") or "rcpt").lower()
        if stage not in STAGES:
            raise ValueError(f"'stage' must be one of {', '.join(STAGES)}")
        seconds = spec.get("seconds")
        fault: dict[str, Any] = {
            "code": int(code) if code is not None else None,
            "stage": stage,
            "recipient": str(spec["recipient"]).lower() if spec.get("recipient") else None,
            "count": int(spec.get("count", -1 if seconds is not None else 1)),
            "until": time.time() + float(seconds) if seconds is not None else None,
            "message": str(spec.get("message") or ""),
            "perform": bool(spec.get("perform", False)),
            "drop": drop,
        }
        if fault["code"] is not None and not 400 <= fault["code"] <= 599:
            raise ValueError("'code' must be an SMTP error reply code (400-599)")
        if fault["count"] == 0:
            raise ValueError("'count' must be >= 1 (or -1: until cleared)")
        if fault["perform"] and stage != "data":
            raise ValueError("'perform' is for the data stage: keep the message, then answer the fault")
        if any(ch in fault["message"] for ch in "\r\n"):
            raise ValueError("'message' is one line")
        self.faults.append(fault)
        return fault

    def take(self, stage: str, recipient: str | None = None) -> dict[str, Any] | None:
        """The first fault for this stage (and recipient), used up by one; expired ones go."""
        now = time.time()
        self.faults = [f for f in self.faults if f["until"] is None or f["until"] > now]
        for i, fault in enumerate(self.faults):
            if fault["stage"] != stage:
                continue
            if fault["recipient"] and (recipient or "").lower() != fault["recipient"]:
                continue
            if fault["count"] > 0:
                fault["count"] -= 1
                if fault["count"] == 0:
                    del self.faults[i]
            return dict(fault)
        return None

    def clear(self) -> None:
        self.faults.clear()

    def view(self) -> list[dict[str, Any]]:
        return [{**f, "until": iso(f["until"]) if f["until"] else None} for f in self.faults]


def reply_for(fault: dict[str, Any], recipient: str | None = None) -> str:
    code = fault["code"]
    text = fault["message"] or REPLIES.get(code, "Sandbox fault")
    if recipient and code in (550, 551, 553) and not fault["message"]:
        text = f"{text.split(' ', 1)[0]} <{recipient}>: {text.split(' ', 1)[1]}"
    return f"{code} {text} (sandbox fault)"


# ------------------------------------------------------------------ the mailbox


class SmtpSandbox:
    """What the sandbox received: every message, in order, and the faults to answer with."""

    def __init__(
        self, data_dir: str | Path | None = None, credentials: tuple[str, str] | None = None
    ) -> None:
        self.path = Path(data_dir) / MESSAGES_FILE if data_dir else None
        self.credentials = credentials
        self.faults = SmtpFaults()
        self.messages: list[dict[str, Any]] = []
        self.sequence = 0
        self._first: dict[str, dict[str, Any]] = {}  # Message-ID -> its first record
        self._load()

    # .......................................................... disk

    def _load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        with self.path.open("r", encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    if not isinstance(record, dict) or "id" not in record:
                        raise ValueError("not a message record")
                except ValueError as exc:
                    log.warning("smtp sandbox: %s line %d skipped (%s)", self.path, number, exc)
                    continue
                self._remember(record)

    def _append(self, record: dict[str, Any]) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
            fh.flush()
            os.fsync(fh.fileno())  # before the 250: a message the client was told we took is on disk

    def reset(self) -> None:
        self.messages.clear()
        self._first.clear()
        self.faults.clear()
        if self.path is not None and self.path.exists():
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            tmp.write_text("", encoding="utf-8")
            os.replace(tmp, self.path)

    # .......................................................... messages

    def _remember(self, record: dict[str, Any]) -> None:
        self.sequence = max(self.sequence, int(str(record["id"]).rsplit("-", 1)[-1] or 0))
        self.messages.append(record)
        if len(self.messages) > KEPT:
            del self.messages[0]
        message_id = record.get("message_id") or ""
        if message_id and message_id not in self._first:
            self._first[message_id] = record

    def receive(self, envelope: Envelope, session: Session) -> dict[str, Any]:
        """Keep one message as received (parsed for the page), marked when its Message-ID came before."""
        raw = envelope.original_content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        self.sequence += 1
        record: dict[str, Any] = {
            "id": f"m-{self.sequence:06d}",
            "received_at": iso(time.time()),
            "peer": _peer(session.peer),
            "authenticated_as": _login(session),
            "tls": session.ssl is not None,
            "mail_from": envelope.mail_from or "",
            "rcpt_to": list(envelope.rcpt_tos),
            "size": len(raw),
            **parse_message(raw),
            "raw": raw.decode("utf-8", "replace"),
        }
        first = self._first.get(record["message_id"]) if record["message_id"] else None
        if first is not None:
            had = {
                r.lower()
                for m in self.messages
                if m.get("message_id") == record["message_id"]
                for r in m["rcpt_to"]
            }
            record["duplicate_of"] = first["id"]
            record["repeated_to"] = [r for r in record["rcpt_to"] if r.lower() in had]
        else:
            record["duplicate_of"] = None
            record["repeated_to"] = []
        self._append(record)
        self._remember(record)
        return record

    def distinct(self) -> list[dict[str, Any]]:
        """One entry per Message-ID (a message without one is its own): its copies, who got it, who twice."""
        seen: dict[str, dict[str, Any]] = {}
        out: list[dict[str, Any]] = []
        for record in self.messages:
            key = record.get("message_id") or record["id"]
            entry = seen.get(key)
            if entry is None:
                entry = {**summary(record), "copies": 0, "delivered_to": [], "copy_ids": []}
                seen[key] = entry
                out.append(entry)
            entry["copies"] += 1
            entry["copy_ids"].append(record["id"])
            entry["repeated_to"] = [*entry["repeated_to"], *record["repeated_to"]]
            for rcpt in record["rcpt_to"]:
                if rcpt.lower() not in {d.lower() for d in entry["delivered_to"]}:
                    entry["delivered_to"].append(rcpt)
        return out

    def find(self, message_id: str) -> dict[str, Any] | None:
        return next((m for m in self.messages if m["id"] == message_id), None)

    def authenticate(self, login: str, password: str) -> bool:
        return self.credentials is not None and (login, password) == self.credentials


def parse_message(raw: bytes) -> dict[str, Any]:
    """What the page and the tests read: headers decoded (RFC 2047), the text part."""
    try:
        msg = BytesParser(policy=policy.default).parsebytes(raw)
        headers = [[name, str(value)] for name, value in msg.items()]
        body = _text_of(msg).replace("\r\n", "\n")
    except Exception as exc:  # noqa: BLE001 - a message we cannot parse is still kept, raw
        return {
            "message_id": "",
            "subject": "",
            "from": "",
            "to": "",
            "date": "",
            "in_reply_to": "",
            "headers": [],
            "text": "",
            "parse_error": f"{type(exc).__name__}: {exc}",
        }
    first = {name.lower(): value.strip() for name, value in reversed(headers)}
    return {
        "message_id": first.get("message-id", ""),
        "subject": first.get("subject", ""),
        "from": first.get("from", ""),
        "to": first.get("to", ""),
        "date": first.get("date", ""),
        "in_reply_to": first.get("in-reply-to", ""),
        "headers": headers,
        "text": body,
    }


def _text_of(msg: Any) -> str:
    if isinstance(msg, EmailMessage):
        part = msg.get_body(preferencelist=("plain",))
        if part is not None:
            return str(part.get_content())
        if not msg.is_multipart():
            content = msg.get_content()
            return content if isinstance(content, str) else ""
    return ""


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """A record without its raw message: what the message list answers."""
    return {key: value for key, value in record.items() if key != "raw"}


def _peer(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer or "")


def _login(session: Session) -> str | None:
    data = session.auth_data
    if isinstance(data, LoginPassword):
        return data.login.decode("utf-8", "replace")
    return None


# ------------------------------------------------------------------ SMTP


class _Handler:
    """aiosmtpd's hooks: faults first, then what a relay does."""

    def __init__(self, sandbox: SmtpSandbox) -> None:
        self.sandbox = sandbox

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        fault = self.sandbox.faults.take("mail")
        if fault is not None:
            return await _answer_fault(server, fault)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        fault = self.sandbox.faults.take("rcpt", address)
        if fault is not None:
            return await _answer_fault(server, fault, address)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        fault = self.sandbox.faults.take("data")
        record = None
        if fault is None or fault["perform"]:
            record = self.sandbox.receive(envelope, session)
            log.info(
                "smtp sandbox: %s from %s to %s: %s%s",
                record["id"],
                record["mail_from"],
                ", ".join(record["rcpt_to"]),
                record["subject"][:120],
                f" (duplicate of {record['duplicate_of']})" if record["duplicate_of"] else "",
            )
        if fault is not None:
            return await _answer_fault(server, fault)
        assert record is not None
        return f"250 2.0.0 Ok: queued as {record['id']}"


async def _answer_fault(server: SMTP, fault: dict[str, Any], recipient: str | None = None) -> str:
    if fault["drop"] and server.transport is not None:
        server.transport.abort()  # connection_lost cancels this handler before it answers
        await asyncio.sleep(DROP_WAIT)
    return reply_for(fault, recipient)


class _SandboxSMTP(SMTP):
    """aiosmtpd's SMTP with two additions: a fault instead of the greeting, and 421 closing the line."""

    def __init__(self, sandbox: SmtpSandbox, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sandbox = sandbox
        self._greeted = False

    async def push(self, status: Any) -> None:
        close = False
        if not self._greeted:
            self._greeted = True
            fault = self._sandbox.faults.take("connect")
            if fault is not None:
                if fault["drop"] or fault["code"] is None:
                    if self.transport is not None:
                        self.transport.abort()
                    return
                status, close = reply_for(fault), True  # no service: say why, then hang up
        await super().push(status)
        text = status.decode("ascii", "replace") if isinstance(status, bytes) else str(status)
        # RFC 5321 4.2.2: with 421 the server closes the transmission channel.
        if (close or text.startswith("421")) and self.transport is not None:
            self.transport.close()


def _authenticator(sandbox: SmtpSandbox):
    def check(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        ok = sandbox.authenticate(
            auth_data.login.decode("utf-8", "replace"), auth_data.password.decode("utf-8", "replace")
        )
        if not ok:  # handled=False: aiosmtpd answers 535 5.7.8 itself
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=auth_data)

    return check


def smtp_factory(
    sandbox: SmtpSandbox, tls_context: ssl.SSLContext | None = None, require_starttls: bool = False
):
    """What loop.create_server needs: one protocol per connection, on the running loop."""
    loop = asyncio.get_running_loop()
    handler = _Handler(sandbox)

    def build() -> SMTP:
        with warnings.catch_warnings():
            # "Requiring AUTH while not requiring TLS": a sandbox on loopback, by choice (the docstring).
            warnings.simplefilter("ignore")
            return _SandboxSMTP(
                sandbox,
                handler,
                hostname=HOSTNAME,
                ident="sandbox ESMTP",
                enable_SMTPUTF8=True,
                tls_context=tls_context,
                require_starttls=require_starttls,
                auth_required=sandbox.credentials is not None,
                auth_require_tls=tls_context is not None,
                authenticator=_authenticator(sandbox),
                loop=loop,
            )

    return build


def tls_context_for(certfile: str | None, keyfile: str | None) -> ssl.SSLContext | None:
    if not certfile:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    return context


# ------------------------------------------------------------------ HTTP


async def control_messages(request: Request) -> Response:
    """Every message, oldest first, without the raw text; ?to= ?message_id= filter, ?distinct=1 groups."""
    sb: SmtpSandbox = request.app.state.sandbox
    to = (request.query_params.get("to") or "").lower()
    message_id = request.query_params.get("message_id")
    distinct = request.query_params.get("distinct", "").lower() in ("1", "true", "yes")
    found = sb.distinct() if distinct else [summary(m) for m in sb.messages]
    if to:
        key = "delivered_to" if distinct else "rcpt_to"
        found = [m for m in found if to in {r.lower() for r in m[key]}]
    if message_id:
        found = [m for m in found if m.get("message_id") == message_id]
    return JSONResponse(found)


async def control_message(request: Request) -> Response:
    sb: SmtpSandbox = request.app.state.sandbox
    record = sb.find(request.path_params["id"])
    if record is None:
        return bad_request(f"no message {request.path_params['id']!r}", status=404)
    if request.url.path.endswith("/raw"):
        return PlainTextResponse(record["raw"], media_type="message/rfc822")
    return JSONResponse(record)


async def control_faults(request: Request) -> Response:
    """POST a fault (or a list); DELETE clears; GET lists."""
    sb: SmtpSandbox = request.app.state.sandbox
    if request.method == "DELETE":
        sb.faults.clear()
    elif request.method == "POST":
        try:
            spec = await control_json(request)
            for item in spec if isinstance(spec, list) else [spec]:
                sb.faults.add(item)
        except (ValueError, TypeError) as exc:
            return bad_request(str(exc))
    return JSONResponse({"ok": True, "faults": sb.faults.view()})


async def control_health(request: Request) -> Response:
    return JSONResponse({"ok": True, "smtp_port": request.app.state.smtp_port})


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">{refresh}
<title>SMTP sandbox</title>
<style>{style} header {{ background: #33518f; }} .dup {{ color: #c98a00; font-weight: 600; }}</style></head><body>
<header>SMTP sandbox <small>{where} &middot; {distinct} message(s), {received} received</small></header>
<main>{body}</main></body></html>"""


def _message_html(entry: dict[str, Any]) -> str:
    e = html.escape
    copies, ids = entry["copies"], e(", ".join(entry["copy_ids"]))
    again = ""
    if entry["repeated_to"]:  # the same message twice to someone: a retry after a lost answer
        twice = e(", ".join(dict.fromkeys(entry["repeated_to"])))
        again = (
            f" <span class='dup'>received {copies}&times; (same Message-ID: {ids}; again to {twice})</span>"
        )
    elif copies > 1:  # a retry for the recipients an earlier attempt could not reach
        again = f" <span class='muted'>in {copies} deliveries to different recipients ({ids})</span>"
    return (
        f"<h2 id='{e(entry['id'])}'>{e(entry['subject'] or '(no subject)')}{again}</h2>"
        "<table>"
        f"<tr><th>From</th><td>{e(entry['from'] or entry['mail_from'])}</td></tr>"
        f"<tr><th>To</th><td>{e(', '.join(entry['delivered_to']))}</td></tr>"
        f"<tr><th>Received</th><td>{e(entry['received_at'])} from {e(entry['peer'])}"
        f"{' over TLS' if entry.get('tls') else ''}"
        f"{' as ' + e(entry['authenticated_as']) if entry.get('authenticated_as') else ''}</td></tr>"
        f"<tr><th>Message-ID</th><td>{e(entry['message_id'] or '(none)')}"
        f" &middot; <a href='/_sandbox/messages/{e(entry['id'])}/raw'>raw</a></td></tr>"
        f"<tr><td colspan='2'><pre>{e(entry['text'])}</pre></td></tr>"
        "</table>"
    )


async def index_page(request: Request) -> Response:
    sb: SmtpSandbox = request.app.state.sandbox
    refresh = request.query_params.get("refresh", "5")
    entries = sb.distinct()
    body = "\n".join(_message_html(m) for m in reversed(entries)) or "<p class='muted'>No mail yet.</p>"
    page = _PAGE.format(
        refresh=f'<meta http-equiv="refresh" content="{html.escape(refresh)}">' if refresh != "0" else "",
        style=PAGE_STYLE,
        where=html.escape(f"SMTP on port {request.app.state.smtp_port}"),
        distinct=len(entries),
        received=len(sb.messages),
        body=body,
    )
    return HTMLResponse(page)


def create_app(sandbox: SmtpSandbox, smtp_port: int | None = None) -> Starlette:
    """The page and control API over `sandbox`; ``app.state.sandbox`` is it."""
    app = Starlette(
        routes=[
            Route("/", index_page, methods=["GET"]),
            Route("/_sandbox/health", control_health, methods=["GET"]),
            Route("/_sandbox/messages", control_messages, methods=["GET"]),
            Route("/_sandbox/messages/{id}", control_message, methods=["GET"]),
            Route("/_sandbox/messages/{id}/raw", control_message, methods=["GET"]),
            Route("/_sandbox/faults", control_faults, methods=["GET", "POST", "DELETE"]),
            Route("/_sandbox/reset", control_reset, methods=["POST"]),
        ]
    )
    app.state.sandbox = sandbox
    app.state.smtp_port = smtp_port
    return app


# ------------------------------------------------------------------ running it


@dataclass(frozen=True)
class RunningSmtpSandbox:
    host: str
    smtp_port: int
    http_url: str
    sandbox: SmtpSandbox


@contextlib.asynccontextmanager
async def run_sandbox(
    data_dir: str | Path | None = None,
    credentials: tuple[str, str] | None = None,
    host: str = "127.0.0.1",
    smtp_port: int = 0,
    http_port: int = 0,
    tls_context: ssl.SSLContext | None = None,
    require_starttls: bool = False,
) -> AsyncIterator[RunningSmtpSandbox]:
    """The SMTP sandbox on this event loop for the length of the block (port 0: a free one)."""
    from .slack import serve_in_background

    sandbox = SmtpSandbox(data_dir, credentials)
    server = await asyncio.get_running_loop().create_server(
        smtp_factory(sandbox, tls_context, require_starttls), host, smtp_port
    )
    bound = server.sockets[0].getsockname()[1]
    try:
        async with serve_in_background(create_app(sandbox, bound), host=host, port=http_port) as url:
            yield RunningSmtpSandbox(host, bound, url, sandbox)
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)


async def serve(opts: argparse.Namespace, credentials: tuple[str, str] | None) -> None:
    sandbox = SmtpSandbox(opts.data_dir, credentials)
    tls = tls_context_for(opts.tls_certfile, opts.tls_keyfile)
    smtp = await asyncio.get_running_loop().create_server(
        smtp_factory(sandbox, tls, opts.require_starttls), opts.host, opts.smtp_port
    )
    config = uvicorn.Config(
        create_app(sandbox, opts.smtp_port),
        host=opts.host,
        port=opts.http_port,
        log_level="warning",
        timeout_graceful_shutdown=2,
    )
    try:
        await uvicorn.Server(config).serve()  # until SIGINT/SIGTERM
    finally:
        smtp.close()


def _credentials(value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user:
        raise SystemExit(f"{USER_ENV} is user:password")
    return user, password


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.smtp", description="Local SMTP relay sandbox")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--smtp-port", type=int, default=int(os.environ.get("SMTP_SANDBOX_PORT") or DEFAULT_SMTP_PORT)
    )
    parser.add_argument(
        "--http-port",
        type=int,
        default=int(os.environ.get("SMTP_SANDBOX_HTTP_PORT") or DEFAULT_HTTP_PORT),
        help="the page and the /_sandbox control API",
    )
    parser.add_argument("--data-dir", default=None, help="keep the messages here; nothing kept if omitted")
    parser.add_argument("--tls-certfile", default=None, help="offer STARTTLS with this certificate (PEM)")
    parser.add_argument("--tls-keyfile", default=None)
    parser.add_argument("--require-starttls", action="store_true", help="refuse mail before STARTTLS")
    opts = parser.parse_args(argv)
    credentials = _credentials(os.environ.get(USER_ENV))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's per-command log
    print(
        f"SMTP sandbox: smtp://{opts.host}:{opts.smtp_port} (AUTH {'required' if credentials else 'off'}, "
        f"STARTTLS {'offered' if opts.tls_certfile else 'off'}); page http://{opts.host}:{opts.http_port}/",
        flush=True,
    )
    asyncio.run(serve(opts, credentials))


if __name__ == "__main__":
    main()
