"""Email over SMTP: the SMTP sandbox spoken to with aiosmtplib, and `send_email` against it.

The sandbox (sandbox/smtp.py) runs in-process on free ports, SMTP and its page on this test's
event loop, as the other sandboxes are served here; one test runs it as `python -m sandbox.smtp`
and kills it. The activity runs in Temporal's ActivityEnvironment (an attempt at a time, its
heartbeat handed on as Temporal would) and on a real dev server through `worker.build_worker`,
where the retries and the heartbeat between attempts are Temporal's own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email import policy as email_policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx
import pytest
from temporalio import workflow
from temporalio.client import WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities.backends import BackendError, Backends
from activities.email import EmailActivities, SmtpEmail
from activities.email.message import message_id_for
from activities.settings import Settings
from sandbox import smtp as smtp_sandbox
from workflows.email_models import SEND_EMAIL, EmailSent, EmailToSend
from workflows.models import Severity
from workflows.stakeholder_models import StakeholderInitial

from .conftest import ROOT

SENDER = "Incident Response <incidents@example.com>"
DECIDED = datetime(2026, 12, 1, 14, 40, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def an_email(key: str = "r1-outage", *recipients: str, **fields: Any) -> EmailToSend:
    values: dict[str, Any] = {
        "incident_workflow_id": f"incident-{key}",
        "idempotency_key": f"incident-{key}/stakeholder/initial",
        "recipients": list(recipients) or ["ops@example.com"],
        "decided_at": DECIDED,
    }
    if "subject" not in fields and "update" not in fields:
        values["update"] = StakeholderInitial(
            incident_key=key,
            severity=Severity.P1,
            service="wan-site-a",
            impact_brief="Site A has no WAN connectivity",
            impact="100% of users at Site A are experiencing no connectivity",
            next_update_minutes=15,
        )
    return EmailToSend(**{**values, **fields})


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
async def smtp(tmp_path_factory) -> AsyncIterator[smtp_sandbox.RunningSmtpSandbox]:
    async with smtp_sandbox.run_sandbox(tmp_path_factory.mktemp("smtp")) as running:
        yield running


@pytest.fixture
async def control(smtp: smtp_sandbox.RunningSmtpSandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=smtp.http_url, timeout=10, trust_env=False) as client:
        (await client.post("/_sandbox/reset")).raise_for_status()
        yield client


@pytest.fixture
def backend(smtp: smtp_sandbox.RunningSmtpSandbox) -> SmtpEmail:
    return SmtpEmail(smtp.host, smtp.smtp_port, SENDER, starttls=False, timeout=5)


class Attempts:
    """`send_email` one attempt at a time, each given the last one's heartbeat, as Temporal does."""

    def __init__(self, backend: SmtpEmail | None) -> None:
        self.activities = EmailActivities(backend)
        self.attempt = 0
        self.heartbeat: list[Any] = []

    async def run(self, email: EmailToSend) -> EmailSent:
        self.attempt += 1
        env = ActivityEnvironment()
        env.info = dataclasses.replace(env.info, attempt=self.attempt, heartbeat_details=self.heartbeat)
        env.on_heartbeat = lambda *details: setattr(self, "heartbeat", list(details))
        return await env.run(self.activities.send_email, email)


async def messages(control: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await control.get("/_sandbox/messages", params=params)
    response.raise_for_status()
    return response.json()


async def fault(control: httpx.AsyncClient, **spec: Any) -> None:
    (await control.post("/_sandbox/faults", json=spec)).raise_for_status()


async def parsed(control: httpx.AsyncClient, record: dict[str, Any]):
    """The message as received, parsed: its headers as a mail client reads them."""
    raw = (await control.get(f"/_sandbox/messages/{record['id']}/raw")).content
    return BytesParser(policy=email_policy.default).parsebytes(raw)


# ------------------------------------------------------------------ the sandbox, with the real client


async def test_sandbox_takes_mail_over_smtp_and_keeps_envelope_headers_and_text(smtp, control) -> None:
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.com", "b@example.com", "Hello — über"
    message["Message-ID"] = "<hello-1@example.com>"
    message.set_content("line one\nline two — ünïcode\n")
    errors, reply = await aiosmtplib.send(
        message, hostname=smtp.host, port=smtp.smtp_port, start_tls=False, timeout=5
    )
    assert errors == {} and reply.startswith("2.0.0 Ok: queued as m-")
    [got] = await messages(control)
    assert got["mail_from"] == "a@example.com" and got["rcpt_to"] == ["b@example.com"]
    assert got["subject"] == "Hello — über" and got["message_id"] == "<hello-1@example.com>"
    assert got["text"] == "line one\nline two — ünïcode\n"
    assert got["duplicate_of"] is None and "raw" not in got
    full = (await control.get(f"/_sandbox/messages/{got['id']}")).json()
    assert "Message-ID: <hello-1@example.com>" in full["raw"]
    raw = await control.get(f"/_sandbox/messages/{got['id']}/raw")
    assert raw.headers["content-type"].startswith("message/rfc822")


async def test_sandbox_page_escapes_a_script_in_a_subject_and_a_body(smtp, control) -> None:
    await aiosmtplib.send(
        "Subject: <script>alert(1)</script>\r\nMessage-ID: <x@example.com>\r\n\r\n<img src=x onerror=alert(2)>\r\n",
        sender="a@example.com",
        recipients=["b@example.com"],
        hostname=smtp.host,
        port=smtp.smtp_port,
        start_tls=False,
        timeout=5,
    )
    page = (await control.get("/", params={"refresh": "0"})).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    assert "<script>alert" not in page and "<img src=x" not in page


async def test_sandbox_keeps_its_messages_across_a_kill(tmp_path: Path) -> None:
    smtp_port, http_port = free_port(), free_port()
    command = [sys.executable, "-m", "sandbox.smtp", "--smtp-port", str(smtp_port)]
    command += ["--http-port", str(http_port), "--data-dir", str(tmp_path)]

    async def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        async with httpx.AsyncClient(trust_env=False, timeout=2) as http:
            for _ in range(100):
                try:
                    if (await http.get(f"http://127.0.0.1:{http_port}/_sandbox/health")).status_code == 200:
                        return proc
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
        proc.kill()
        raise AssertionError("python -m sandbox.smtp did not answer")

    mail = "Subject: kept\r\nMessage-ID: <kept@example.com>\r\n\r\nstill here\r\n"
    send = dict(sender="a@example.com", recipients=["b@example.com"], hostname="127.0.0.1", port=smtp_port)
    proc = await start()
    try:
        await aiosmtplib.send(mail, **send, start_tls=False, timeout=5)
        proc.send_signal(signal.SIGKILL)  # no clean shutdown: what the 250 promised must be on disk
        proc.wait(10)
        proc = await start()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", trust_env=False) as http:
            [kept] = (await http.get("/_sandbox/messages")).json()
            assert kept["subject"] == "kept" and kept["text"] == "still here\n"
            await aiosmtplib.send(mail, **send, start_tls=False, timeout=5)  # the same message again
            first, again = (await http.get("/_sandbox/messages")).json()
            assert again["duplicate_of"] == first["id"] and again["repeated_to"] == ["b@example.com"]
            assert "kept" in (await http.get("/")).text
    finally:
        proc.kill()
        proc.wait(10)


# ------------------------------------------------------------------ send_email against the sandbox


async def test_send_email_sends_one_message_whose_message_id_comes_from_the_incident_and_key(
    backend, control
) -> None:
    email = an_email("r1-outage", "ops@example.com", "noc@example.com")
    sent = await Attempts(backend).run(email)
    expected_id = message_id_for(
        "incident-r1-outage", "incident-r1-outage/stakeholder/initial", "example.com"
    )
    assert sent.sent and sent.message_id == expected_id and sent.attempt == 1
    assert sent.delivered_to == ["ops@example.com", "noc@example.com"] and sent.delivered_earlier == []
    [got] = await messages(control)
    assert got["message_id"] == expected_id
    assert (
        got["rcpt_to"] == ["ops@example.com", "noc@example.com"]
        and got["mail_from"] == "incidents@example.com"
    )
    assert got["subject"] == "[P1] wan-site-a — Site A has no WAN connectivity"
    assert got["text"].startswith("Current Status: We are investigating an issue affecting wan-site-a.\n")
    headers = await parsed(control, got)
    assert headers["From"] == SENDER and headers["To"] == "ops@example.com, noc@example.com"
    assert headers["Auto-Submitted"] == "auto-generated" and headers["X-Incident"] == "incident-r1-outage"
    assert headers["Date"].datetime == DECIDED


async def test_a_retry_after_a_lost_answer_is_a_second_copy_of_the_same_message_not_a_second_message(
    backend, control
) -> None:
    # The server keeps the message, then the connection drops before its 250: nobody can know.
    await fault(control, stage="data", perform=True, drop=True)
    attempts = Attempts(backend)
    with pytest.raises(ApplicationError) as lost:
        await attempts.run(an_email())
    assert lost.value.type == "SmtpDisconnected" and not lost.value.non_retryable
    assert "same Message-ID" in lost.value.message
    sent = await attempts.run(an_email())  # what Temporal does next
    assert sent.attempt == 2 and sent.delivered_to == ["ops@example.com"]

    first, second = await messages(control)
    assert first["message_id"] == second["message_id"] == sent.message_id
    assert second["duplicate_of"] == first["id"] and second["repeated_to"] == ["ops@example.com"]
    raw = [(await control.get(f"/_sandbox/messages/{m['id']}")).json()["raw"] for m in (first, second)]
    assert raw[0] == raw[1]  # byte for byte: same Date, same Message-ID, same text
    [one] = await messages(control, distinct=1)
    assert one["copies"] == 2 and one["copy_ids"] == [first["id"], second["id"]]
    page = (await control.get("/", params={"refresh": "0"})).text
    assert page.count("<h2 ") == 1 and "received 2&times;" in page and "again to ops@example.com" in page


async def test_451_for_one_recipient_retries_that_recipient_alone(backend, control) -> None:
    await fault(control, code=451, recipient="noc@example.com")
    attempts = Attempts(backend)
    email = an_email("r1-outage", "ops@example.com", "noc@example.com")
    with pytest.raises(ApplicationError) as deferred:
        await attempts.run(email)
    assert deferred.value.type == "SmtpRecipientDeferred" and not deferred.value.non_retryable
    assert "noc@example.com (451 4.3.0" in deferred.value.message
    assert "delivered to ops@example.com" in deferred.value.message
    sent = await attempts.run(email)
    assert sent.delivered_to == ["ops@example.com", "noc@example.com"]
    assert sent.delivered_earlier == ["ops@example.com"]
    first, second = await messages(control)
    assert first["rcpt_to"] == ["ops@example.com"] and second["rcpt_to"] == ["noc@example.com"]
    assert second["duplicate_of"] == first["id"] and second["repeated_to"] == []  # nobody got it twice
    [one] = await messages(control, distinct=1)
    assert one["copies"] == 2 and one["repeated_to"] == []
    page = (await control.get("/", params={"refresh": "0"})).text
    assert "in 2 deliveries to different recipients" in page and "received 2&times;" not in page


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ({"code": 421, "stage": "connect"}, "SmtpUnavailable"),
        ({"code": 421}, "SmtpRecipientDeferred"),
        ({"code": 451, "stage": "data"}, "SmtpUnavailable"),
        ({"code": 451, "stage": "mail"}, "SmtpUnavailable"),
    ],
)
async def test_421_and_451_are_retryable_and_the_retry_delivers_once(backend, control, spec, kind) -> None:
    await fault(control, **spec)
    attempts = Attempts(backend)
    with pytest.raises(ApplicationError) as failed:
        await attempts.run(an_email())
    assert failed.value.type == kind and not failed.value.non_retryable
    assert str(spec["code"]) in failed.value.message
    assert (await attempts.run(an_email())).attempt == 2
    assert len(await messages(control)) == 1


async def test_550_is_not_retryable_names_the_recipient_and_the_others_get_the_message(
    backend, control
) -> None:
    await fault(control, code=550, recipient="nobody@example.com")
    attempts = Attempts(backend)
    email = an_email("r1-outage", "ops@example.com", "nobody@example.com")
    with pytest.raises(ApplicationError) as refused:
        await attempts.run(email)
    assert refused.value.type == "SmtpRecipientRefused" and refused.value.non_retryable
    assert "refused nobody@example.com (550 5.1.1 <nobody@example.com>:" in refused.value.message
    assert "delivered to ops@example.com" in refused.value.message
    [got] = await messages(control)
    assert got["rcpt_to"] == ["ops@example.com"]


async def test_a_message_refused_with_554_after_data_is_not_retryable(backend, control) -> None:
    await fault(control, code=554, stage="data")
    with pytest.raises(ApplicationError) as refused:
        await Attempts(backend).run(an_email())
    assert refused.value.type == "SmtpRejected" and refused.value.non_retryable
    assert "refused the message: 554" in refused.value.message
    assert await messages(control) == []


async def test_connection_refused_is_retryable() -> None:
    closed = SmtpEmail("127.0.0.1", free_port(), SENDER, starttls=False, timeout=2)
    with pytest.raises(ApplicationError) as unreachable:
        await Attempts(closed).run(an_email())
    assert unreachable.value.type == "SmtpUnreachable" and not unreachable.value.non_retryable
    assert "127.0.0.1" in unreachable.value.message


async def test_a_server_that_never_answers_is_a_retryable_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # no greeting, ever: until the client gives up and hangs up
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        silent = SmtpEmail("127.0.0.1", port, SENDER, starttls=False, timeout=0.5)
        with pytest.raises(ApplicationError) as late:
            await Attempts(silent).run(an_email())
        assert late.value.type == "SmtpTimeout" and not late.value.non_retryable
    finally:
        server.close()


async def test_a_title_with_cr_lf_cannot_add_a_header(backend, control) -> None:
    email = an_email(
        "r1-outage",
        "ops@example.com",
        subject="R1 down\r\nBcc: evil@example.com\r\n\r\nforged body",
        body="the body\n",
    )
    assert email.subject == "R1 down Bcc: evil@example.com forged body"
    await Attempts(backend).run(email)
    [got] = await messages(control)
    assert got["rcpt_to"] == ["ops@example.com"] and got["text"] == "the body\n"
    names = [name.lower() for name, _ in got["headers"]]
    assert "bcc" not in names and names.count("subject") == 1
    assert got["subject"] == "R1 down Bcc: evil@example.com forged body"


async def test_an_update_follows_the_first_notification_in_the_same_thread(backend, control) -> None:
    first = await Attempts(backend).run(an_email())
    update = an_email(
        idempotency_key="incident-r1-outage/stakeholder/update/1",
        follows_key="incident-r1-outage/stakeholder/initial",
        subject="[P1 UPDATE] wan-site-a — R1 reloaded",
        body="Status: Identified\n",
    )
    second = await Attempts(backend).run(update)
    assert second.message_id != first.message_id
    _, got = await messages(control)
    assert (
        got["in_reply_to"] == first.message_id
        and (await parsed(control, got))["References"].strip() == first.message_id
    )


# ------------------------------------------------------------------ AUTH and STARTTLS


async def test_auth_when_the_sandbox_requires_it(tmp_path: Path) -> None:
    async with smtp_sandbox.run_sandbox(tmp_path, credentials=("relay", "s3cret")) as running:

        def relay(**login: str) -> SmtpEmail:
            return SmtpEmail(running.host, running.smtp_port, SENDER, starttls=False, timeout=5, **login)

        with pytest.raises(ApplicationError) as anonymous:
            await Attempts(relay()).run(an_email())
        assert (
            anonymous.value.non_retryable and "set SMTP_USERNAME and SMTP_PASSWORD" in anonymous.value.message
        )
        with pytest.raises(ApplicationError) as wrong:
            await Attempts(relay(username="relay", password="nope")).run(an_email())
        assert wrong.value.non_retryable and "535" in wrong.value.message
        assert "check SMTP_USERNAME and SMTP_PASSWORD" in wrong.value.message
        sent = await Attempts(relay(username="relay", password="s3cret")).run(an_email())
        assert sent.sent
        [got] = running.sandbox.messages
        assert got["authenticated_as"] == "relay"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make a self-signed certificate")
async def test_starttls_when_the_sandbox_requires_it(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    server_tls = smtp_sandbox.tls_context_for(str(cert), str(key))
    trusted = ssl.create_default_context(cafile=str(cert))
    async with smtp_sandbox.run_sandbox(tmp_path, tls_context=server_tls, require_starttls=True) as running:
        plain = SmtpEmail(running.host, running.smtp_port, SENDER, starttls=False, timeout=5)
        with pytest.raises(ApplicationError) as before:
            await Attempts(plain).run(an_email())
        assert before.value.non_retryable and "set SMTP_STARTTLS=true" in before.value.message
        untrusted = SmtpEmail(running.host, running.smtp_port, SENDER, starttls=True, timeout=5)
        with pytest.raises(ApplicationError) as unknown_ca:
            await Attempts(untrusted).run(an_email())
        assert unknown_ca.value.type == "SmtpTlsRejected" and unknown_ca.value.non_retryable
        secure = SmtpEmail(
            running.host, running.smtp_port, SENDER, starttls=True, timeout=5, tls_context=trusted
        )
        assert (await Attempts(secure).run(an_email())).sent
        [got] = running.sandbox.messages
        assert got["tls"] is True


# ------------------------------------------------------------------ settings and the worker


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


async def test_without_smtp_host_email_is_off_and_send_email_says_so() -> None:
    backends = Backends.from_settings(settings())
    assert backends.email is None and backends.email_off_because == "email is off: SMTP_HOST is not set"
    sent = await Attempts(None).run(an_email())
    assert not sent.sent and sent.off_because == "email is off: SMTP_HOST is not set"


def test_an_smtp_from_that_is_not_an_address_stops_the_worker_at_start() -> None:
    with pytest.raises(BackendError, match="SMTP_FROM='incidents' is not an email address"):
        Backends.from_settings(settings(smtp_host="mail.example.com", smtp_from="incidents"))
    backend = Backends.from_settings(settings(smtp_host="mail.example.com", smtp_from=SENDER)).email
    assert isinstance(backend, SmtpEmail) and backend.envelope_sender == "incidents@example.com"
    assert backend.port == 587 and backend.starttls is True  # the submission port's defaults


def test_recipients_must_be_plain_addresses() -> None:
    for bad in (
        "ops",
        "ops@example.com\r\nRCPT TO:<evil@example.com>",
        "Ops <ops@example.com>",
        "ö@example.com",
    ):
        with pytest.raises(ValueError, match="is not an email address"):
            an_email("k", bad)
    assert an_email("k", "Ops@Example.com", "ops@example.com").recipients == ["Ops@Example.com"]


@workflow.defn(sandboxed=False)
class SendOneEmail:
    """Only what the incident will do: run `send_email` by name, with its retry policy."""

    @workflow.run
    async def run(self, request: dict[str, Any]) -> EmailSent:
        return await workflow.execute_activity(
            SEND_EMAIL,
            EmailToSend.model_validate(request["email"]),
            task_queue=request["task_queue"],
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_attempts=5),
            result_type=EmailSent,
        )


async def run_on_the_worker(local_env, policy, smtp, email: EmailToSend) -> EmailSent:
    """`email` sent by worker.build_worker's `send_email`, configured only by SMTP_* settings."""
    from worker import build_worker

    queue = f"email-{uuid.uuid4().hex[:8]}"
    config = settings(
        smtp_host=smtp.host,
        smtp_port=smtp.smtp_port,
        smtp_starttls=False,
        smtp_from=SENDER,
        temporal_task_queue=queue,
    )
    async with (
        build_worker(local_env.client, config, policy),
        Worker(local_env.client, task_queue=f"{queue}-wf", workflows=[SendOneEmail]),
    ):
        return await local_env.client.execute_workflow(
            SendOneEmail.run,
            {"email": email.model_dump(mode="json"), "task_queue": queue},
            id=f"send-email-{uuid.uuid4().hex[:8]}",
            task_queue=f"{queue}-wf",
            result_type=EmailSent,
        )


async def test_the_worker_retries_send_email_through_421_and_451_and_delivers_once(
    local_env, policy, smtp, control
) -> None:
    await fault(control, code=421, stage="connect")
    await fault(control, code=451, recipient="noc@example.com")
    email = an_email(f"w-{uuid.uuid4().hex[:6]}", "ops@example.com", "noc@example.com")
    sent = await run_on_the_worker(local_env, policy, smtp, email)
    # 1: 421 at the greeting; 2: ops@ taken, noc@ deferred; 3: noc@ alone (the heartbeat said so).
    assert sent.attempt == 3 and sent.delivered_earlier == ["ops@example.com"]
    assert sent.delivered_to == ["ops@example.com", "noc@example.com"]
    first, second = await messages(control)
    assert first["rcpt_to"] == ["ops@example.com"] and second["rcpt_to"] == ["noc@example.com"]
    assert first["message_id"] == second["message_id"] == sent.message_id


async def test_the_worker_does_not_retry_a_550_and_the_failure_names_the_recipient(
    local_env, policy, smtp, control
) -> None:
    await fault(control, code=550, recipient="gone@example.com", count=-1)
    email = an_email(f"w-{uuid.uuid4().hex[:6]}", "gone@example.com")
    started = time.monotonic()
    with pytest.raises(WorkflowFailureError) as failed:
        await run_on_the_worker(local_env, policy, smtp, email)
    cause = failed.value.cause
    assert isinstance(cause, ActivityError) and isinstance(cause.cause, ApplicationError)
    assert cause.cause.type == "SmtpRecipientRefused" and cause.retry_state is not None
    assert (
        "gone@example.com (550 5.1.1" in cause.cause.message and "delivered to nobody" in cause.cause.message
    )
    assert time.monotonic() - started < 10
    assert await messages(control) == []


def test_python_m_sandbox_smtp_takes_its_user_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("SMTP_SANDBOX_USER", "nocolon")
    with pytest.raises(SystemExit, match="SMTP_SANDBOX_USER is user:password"):
        smtp_sandbox.main(["--smtp-port", "1", "--http-port", "1"])
    assert os.environ["SMTP_SANDBOX_USER"] == "nocolon"
