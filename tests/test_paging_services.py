"""The PagerDuty and Opsgenie backends against their sandboxes, over real HTTP.

Each sandbox is served in-process on a free port (as the Slack and ServiceNow sandboxes are);
a small receiver stands in for the alert receiver's webhook endpoints.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from temporalio.exceptions import ApplicationError

from activities.backends import BackendError, Backends, paging_backend_names
from activities.paging.opsgenie import OpsgeniePaging
from activities.paging.pagerduty import PagerDutyPaging, verify_pagerduty_signature
from activities.settings import OPSGENIE_SANDBOX_API_KEY, PAGERDUTY_SANDBOX_ROUTING_KEY, Settings
from sandbox import opsgenie as og_sandbox
from sandbox import pagerduty as pd_sandbox
from sandbox.slack import serve_in_background
from workflows.models import Severity
from workflows.paging_models import Page, PagedPerson, PagingAction, PagingService, PagingUpdate

PD_SECRET = "test-pagerduty-secret"
OG_TOKEN = "test-opsgenie-token"
ALICE = PagedPerson(user_id="U0ALICE", name="Alice", email="alice@example.com")
BOB = PagedPerson(user_id="U0BOB", name="Bob")


def a_page(
    service: PagingService, key: str, person: PagedPerson = ALICE, level: int = 1, **extra: Any
) -> Page:
    return Page(
        service=service,
        incident_workflow_id=f"incident-{key}",
        incident_key=key,
        severity=extra.pop("severity", Severity.P1),
        title=extra.pop("title", "R1 unreachable, WAN outage Site A"),
        summary="R1 does not answer ping",
        link="http://localhost:8233/namespaces/default/workflows/incident-" + key,
        level=level,
        person=person,
        reason=f"level {level}, primary on call (network-primary)",
        idempotency_key=f"incident-{key}/page/0/{level}/{person.user_id}/{service.value}",
        **extra,
    )


# ------------------------------------------------------------------ fixtures


class Receiver:
    """What the alert receiver would get: each webhook's raw body and headers."""

    def __init__(self) -> None:
        self.received: list[tuple[str, bytes, dict[str, str]]] = []
        self.url = ""

    def app(self) -> Starlette:
        async def hook(request: Request) -> JSONResponse:
            self.received.append((request.url.path, await request.body(), dict(request.headers)))
            return JSONResponse({"ok": True})

        return Starlette(routes=[Route("/webhooks/{name}", hook, methods=["POST"])])


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    async with serve_in_background(found.app()) as url:
        found.url = url
        yield found


@pytest.fixture(scope="module")
async def pd_url(tmp_path_factory, receiver: Receiver) -> AsyncIterator[str]:
    app = pd_sandbox.create_app(
        tmp_path_factory.mktemp("pagerduty"),
        webhook_url=f"{receiver.url}/webhooks/pagerduty",
        webhook_secret=PD_SECRET,
    )
    async with serve_in_background(app) as url:
        yield url


@pytest.fixture(scope="module")
async def og_url(tmp_path_factory, receiver: Receiver) -> AsyncIterator[str]:
    app = og_sandbox.create_app(
        tmp_path_factory.mktemp("opsgenie"),
        webhook_url=f"{receiver.url}/webhooks/opsgenie",
        webhook_token=OG_TOKEN,
    )
    async with serve_in_background(app) as url:
        yield url


@pytest.fixture
async def pd(pd_url: str) -> AsyncIterator[tuple[PagerDutyPaging, httpx.AsyncClient]]:
    async with httpx.AsyncClient(base_url=pd_url, timeout=10) as control:
        (await control.post("/_sandbox/reset")).raise_for_status()
        backend = PagerDutyPaging(pd_url, PAGERDUTY_SANDBOX_ROUTING_KEY, timeout=5)
        yield backend, control
        await backend.aclose()


@pytest.fixture
async def og(og_url: str) -> AsyncIterator[tuple[OpsgeniePaging, httpx.AsyncClient]]:
    genie_key = {"Authorization": f"GenieKey {OPSGENIE_SANDBOX_API_KEY}"}  # the control API ignores it
    async with httpx.AsyncClient(base_url=og_url, timeout=10, headers=genie_key) as control:
        (await control.post("/_sandbox/reset")).raise_for_status()
        backend = OpsgeniePaging(og_url, OPSGENIE_SANDBOX_API_KEY, timeout=5)
        yield backend, control
        await backend.aclose()


async def got(control: httpx.AsyncClient, path: str, **params: str) -> Any:
    response = await control.get(path, params=params)
    response.raise_for_status()
    return response.json()


# ------------------------------------------------------------------ PagerDuty


async def test_pagerduty_page_opens_one_alert_keyed_by_the_incident(pd) -> None:
    backend, control = pd
    delivered = await backend.page(a_page(PagingService.pagerduty, "inc-1"))
    assert delivered.reference == "inc-1" and not delivered.duplicate
    [alert] = await got(control, "/_sandbox/alerts")
    assert alert["dedup_key"] == "inc-1" and alert["status"] == "triggered"
    assert alert["severity"] == "critical"
    assert alert["summary"] == "[P1] R1 unreachable, WAN outage Site A — paging Alice (level 1)"
    details = alert["custom_details"]
    assert details["level"] == 1 and details["loop"] == 0 and details["person"]["user_id"] == "U0ALICE"
    assert details["idempotency_key"] == "incident-inc-1/page/0/1/U0ALICE/pagerduty"
    assert details["link"].endswith("incident-inc-1")


async def test_pagerduty_second_page_of_an_incident_dedups_into_its_alert(pd) -> None:
    backend, control = pd
    await backend.page(a_page(PagingService.pagerduty, "inc-2", severity=Severity.P3))
    await backend.page(a_page(PagingService.pagerduty, "inc-2", BOB, level=2, severity=Severity.P3))
    [alert] = await got(control, "/_sandbox/alerts")
    assert alert["severity"] == "warning" and alert["dedup_count"] == 1 and alert["notifications"] == 1
    events = await got(control, "/_sandbox/events", dedup_key="inc-2")
    assert [e["outcome"] for e in events] == ["created", "deduplicated"]
    assert events[1]["event"]["payload"]["custom_details"]["person"]["user_id"] == "U0BOB"


async def test_pagerduty_sandbox_lists_only_the_events_since_a_moment(pd) -> None:
    backend, control = pd
    await backend.page(a_page(PagingService.pagerduty, "inc-since-1"))
    [first] = await got(control, "/_sandbox/events")
    await backend.page(a_page(PagingService.pagerduty, "inc-since-2"))
    newer = await got(control, "/_sandbox/events", since=repr(first["at"] + 1e-6))
    assert [e["dedup_key"] for e in newer] == ["inc-since-2"]
    assert len(await got(control, "/_sandbox/events", since=repr(first["at"]))) == 2
    assert (await control.get("/_sandbox/events", params={"since": "soon"})).status_code == 400


async def test_pagerduty_acknowledge_then_resolve_and_a_new_trigger_opens_a_new_alert(pd) -> None:
    backend, control = pd
    await backend.page(a_page(PagingService.pagerduty, "inc-3"))
    await backend.update(
        PagingUpdate(service=PagingService.pagerduty, incident_key="inc-3", action=PagingAction.acknowledge)
    )
    assert [a["status"] for a in await got(control, "/_sandbox/alerts")] == ["acknowledged"]
    await backend.update(
        PagingUpdate(service=PagingService.pagerduty, incident_key="inc-3", action=PagingAction.resolve)
    )
    await backend.update(
        PagingUpdate(service=PagingService.pagerduty, incident_key="inc-3", action=PagingAction.resolve)
    )
    assert [a["status"] for a in await got(control, "/_sandbox/alerts")] == ["resolved"]
    outcomes = [e["outcome"] for e in await got(control, "/_sandbox/events")]
    assert outcomes == ["created", "acknowledged", "resolved", "dropped"]
    await backend.page(a_page(PagingService.pagerduty, "inc-3", level=2))
    assert [a["status"] for a in await got(control, "/_sandbox/alerts")] == ["resolved", "triggered"]


async def test_pagerduty_retried_page_pages_once(pd) -> None:
    backend, control = pd
    page = a_page(PagingService.pagerduty, "inc-4")
    first = await backend.page(page)
    again = await backend.page(page)
    assert not first.duplicate and again.duplicate and again.reference == first.reference
    assert len(await got(control, "/_sandbox/events")) == 1
    # A worker that lost the answer (another process) sends it again: PagerDuty dedups, nobody is notified twice.
    other = PagerDutyPaging(backend.url, PAGERDUTY_SANDBOX_ROUTING_KEY)
    try:
        await other.page(page)
    finally:
        await other.aclose()
    [alert] = await got(control, "/_sandbox/alerts")
    assert alert["notifications"] == 1 and alert["dedup_count"] == 1


async def test_pagerduty_500_is_retryable_then_the_retry_pages(pd) -> None:
    backend, control = pd
    await control.post("/_sandbox/faults", json={"status": 500})
    page = a_page(PagingService.pagerduty, "inc-5")
    with pytest.raises(ApplicationError) as failed:
        await backend.page(page)
    assert not failed.value.non_retryable and "500" in str(failed.value)
    assert await got(control, "/_sandbox/alerts") == []
    assert not (await backend.page(page)).duplicate
    assert len(await got(control, "/_sandbox/alerts")) == 1


async def test_pagerduty_429_carries_retry_after(pd) -> None:
    backend, control = pd
    await control.post("/_sandbox/faults", json={"status": 429, "retry_after": 7})
    with pytest.raises(ApplicationError) as failed:
        await backend.page(a_page(PagingService.pagerduty, "inc-6"))
    assert not failed.value.non_retryable
    assert failed.value.next_retry_delay == timedelta(seconds=7)


async def test_pagerduty_400_is_not_retryable_and_names_the_field(pd) -> None:
    backend, _ = pd
    wrong = PagerDutyPaging(backend.url, "R0UTINGKEY000000000000000000NOPE")
    try:
        with pytest.raises(ApplicationError) as failed:
            await wrong.page(a_page(PagingService.pagerduty, "inc-7"))
    finally:
        await wrong.aclose()
    assert failed.value.non_retryable
    assert "400" in str(failed.value) and "'routing_key' is invalid" in str(failed.value)


async def test_pagerduty_sandbox_rejects_bad_events_as_pagerduty_does(pd) -> None:
    _, control = pd
    response = await control.post(
        "/v2/enqueue",
        json={
            "routing_key": "short",
            "event_action": "trigger",
            "payload": {"summary": "x" * 1025, "source": "r1", "severity": "fatal"},
        },
    )
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "invalid event" and body["message"] == "Event object is invalid"
    assert any("routing_key" in e for e in body["errors"])
    assert any("payload.summary" in e for e in body["errors"])
    assert any("payload.severity" in e for e in body["errors"])
    generated = await control.post(
        "/v2/enqueue",
        json={
            "routing_key": PAGERDUTY_SANDBOX_ROUTING_KEY,
            "event_action": "trigger",
            "payload": {"summary": "no key", "source": "r1", "severity": "info"},
        },
    )
    assert generated.status_code == 202 and len(generated.json()["dedup_key"]) == 32


async def test_pagerduty_acknowledgement_in_the_app_sends_a_signed_v3_webhook(pd, receiver: Receiver) -> None:
    backend, control = pd
    await backend.page(a_page(PagingService.pagerduty, "inc-8"))
    receiver.received.clear()
    answer = (
        await control.post("/_sandbox/acknowledge", json={"dedup_key": "inc-8", "user": "Alice"})
    ).json()
    assert answer["webhook"]["status"] == 200 and answer["alert"]["status"] == "acknowledged"
    [(path, body, headers)] = receiver.received
    assert path == "/webhooks/pagerduty"
    assert verify_pagerduty_signature(PD_SECRET, body, headers["x-pagerduty-signature"])
    assert not verify_pagerduty_signature("another secret", body, headers["x-pagerduty-signature"])
    assert not verify_pagerduty_signature(PD_SECRET, body + b" ", headers["x-pagerduty-signature"])
    event = json.loads(body)["event"]
    assert event["event_type"] == "incident.acknowledged" and event["resource_type"] == "incident"
    assert event["data"]["incident_key"] == "inc-8" and event["data"]["status"] == "acknowledged"
    assert event["agent"]["summary"] == "Alice"


def test_pagerduty_signature_accepts_any_of_several_during_rotation() -> None:
    body = b'{"event":{}}'
    old, new = pd_sandbox.pagerduty_signature("old", body), pd_sandbox.pagerduty_signature("new", body)
    assert verify_pagerduty_signature("new", body, f"{old},{new}")
    assert verify_pagerduty_signature("old", body, f"{old}, {new}")
    assert not verify_pagerduty_signature("third", body, f"{old},{new}")
    assert not verify_pagerduty_signature("new", body, new.replace("v1=", "v0="))
    assert not verify_pagerduty_signature("new", body, None) and not verify_pagerduty_signature("", body, new)


async def test_pagerduty_sandbox_keeps_its_state_across_a_restart(tmp_path: Path) -> None:
    async with pd_sandbox.run_sandbox(tmp_path) as url:
        backend = PagerDutyPaging(url, PAGERDUTY_SANDBOX_ROUTING_KEY)
        await backend.page(a_page(PagingService.pagerduty, "kept"))
        await backend.aclose()
    async with pd_sandbox.run_sandbox(tmp_path) as url, httpx.AsyncClient(base_url=url) as control:
        [alert] = await got(control, "/_sandbox/alerts")
        assert alert["dedup_key"] == "kept" and alert["status"] == "triggered"
        assert len(await got(control, "/_sandbox/events")) == 1


async def test_pagerduty_page_escapes_a_script_in_a_summary(pd) -> None:
    backend, control = pd
    await backend.page(a_page(PagingService.pagerduty, "<b>key</b>", title="<script>alert(1)</script>"))
    text = (await control.get("/")).text
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<b>key</b>" not in text


# ------------------------------------------------------------------ Opsgenie


async def test_opsgenie_page_creates_one_alert_with_the_person_as_responder(og) -> None:
    backend, control = og
    delivered = await backend.page(a_page(PagingService.opsgenie, "inc-1"))
    assert not delivered.duplicate
    status = await got(control, f"/v2/alerts/requests/{delivered.reference}")
    assert status["data"]["isSuccess"] and status["data"]["alias"] == "inc-1"
    [alert] = await got(control, "/_sandbox/alerts")
    assert alert["alias"] == "inc-1" and alert["priority"] == "P1" and alert["status"] == "open"
    assert alert["message"] == "[P1] R1 unreachable, WAN outage Site A"
    assert alert["responders"] == [{"type": "user", "username": "alice@example.com"}]
    assert alert["details"]["idempotency_key"] == "incident-inc-1/page/0/1/U0ALICE/opsgenie"


async def test_opsgenie_second_page_adds_a_responder_to_the_same_alert(og) -> None:
    backend, control = og
    await backend.page(a_page(PagingService.opsgenie, "inc-2"))
    await backend.page(a_page(PagingService.opsgenie, "inc-2", BOB, level=2))
    [alert] = await got(control, "/_sandbox/alerts")
    assert alert["responders"] == [
        {"type": "user", "username": "alice@example.com"},
        {"type": "user", "id": "U0BOB"},
    ]
    assert alert["count"] == 1


async def test_opsgenie_retried_page_pages_once(og) -> None:
    backend, control = og
    page = a_page(PagingService.opsgenie, "inc-3")
    first = await backend.page(page)
    again = await backend.page(page)
    assert not first.duplicate and again.duplicate
    [alert] = await got(control, "/_sandbox/alerts")
    assert len(alert["responders"]) == 1 and alert["notified"] == [["user", "alice@example.com"]]


async def test_opsgenie_page_retried_after_a_lost_answer_pages_once(og) -> None:
    backend, control = og
    # The create is done, but its answer is a 503: the retry finds Alice already a responder.
    await control.post("/_sandbox/faults", json={"status": 503, "perform": True, "method": "POST"})
    with pytest.raises(ApplicationError):
        await backend.page(a_page(PagingService.opsgenie, "inc-4"))
    delivered = await backend.page(a_page(PagingService.opsgenie, "inc-4"))
    assert delivered.duplicate  # the lost create had paged Alice
    await backend.page(a_page(PagingService.opsgenie, "inc-4", BOB))
    [alert] = await got(control, "/_sandbox/alerts")
    assert [r.get("username") or r.get("id") for r in alert["responders"]] == ["alice@example.com", "U0BOB"]


async def test_opsgenie_two_people_paged_at_once_for_a_new_incident_both_become_responders(og) -> None:
    backend, control = og
    # Both look up (no alert), both create: Opsgenie dedups the second create without its
    # responder, so that page reads the alert back and adds its person.
    await asyncio.gather(
        backend.page(a_page(PagingService.opsgenie, "inc-9")),
        backend.page(a_page(PagingService.opsgenie, "inc-9", BOB)),
    )
    [alert] = await got(control, "/_sandbox/alerts")
    assert sorted(r.get("username") or r.get("id") for r in alert["responders"]) == [
        "U0BOB",
        "alice@example.com",
    ]


async def test_opsgenie_acknowledge_then_close(og) -> None:
    backend, control = og
    await backend.page(a_page(PagingService.opsgenie, "inc-5"))
    ack = PagingUpdate(
        service=PagingService.opsgenie, incident_key="inc-5", action=PagingAction.acknowledge, by="alice"
    )
    await backend.update(ack)
    await backend.update(ack)
    [alert] = await got(control, "/_sandbox/alerts")
    assert alert["acknowledged"] and alert["acknowledgedBy"] == "alice" and alert["status"] == "open"
    await backend.update(
        PagingUpdate(service=PagingService.opsgenie, incident_key="inc-5", action=PagingAction.resolve)
    )
    [alert] = await got(control, "/_sandbox/alerts")
    assert alert["status"] == "closed"
    assert [e["action"] for e in alert["log"]] == ["Alert created", "Acknowledged", "Closed"]
    # A new page after the close opens a new alert.
    await backend.page(a_page(PagingService.opsgenie, "inc-5", level=2))
    assert [a["status"] for a in await got(control, "/_sandbox/alerts")] == ["closed", "open"]


async def test_opsgenie_500_is_retryable_and_429_carries_retry_after(og) -> None:
    backend, control = og
    await control.post("/_sandbox/faults", json=[{"status": 500}, {"status": 429, "retry_after": 3}])
    page = a_page(PagingService.opsgenie, "inc-6")
    with pytest.raises(ApplicationError) as failed:
        await backend.page(page)
    assert not failed.value.non_retryable
    with pytest.raises(ApplicationError) as limited:
        await backend.page(page)
    assert not limited.value.non_retryable and limited.value.next_retry_delay == timedelta(seconds=3)
    assert not (await backend.page(page)).duplicate
    assert len(await got(control, "/_sandbox/alerts")) == 1


async def test_opsgenie_wrong_key_and_unprocessable_body_are_not_retryable(og, og_url: str) -> None:
    _, control = og
    wrong = OpsgeniePaging(og_url, "not-the-key")
    try:
        with pytest.raises(ApplicationError) as failed:
            await wrong.page(a_page(PagingService.opsgenie, "inc-7"))
    finally:
        await wrong.aclose()
    assert (
        failed.value.non_retryable
        and "401" in str(failed.value)
        and "Could not authenticate" in str(failed.value)
    )
    response = await control.post(
        "/v2/alerts", json={"alias": "x"}, headers={"Authorization": f"GenieKey {OPSGENIE_SANDBOX_API_KEY}"}
    )
    assert response.status_code == 422 and response.json()["errors"] == {
        "message": "Message can not be empty."
    }


async def test_opsgenie_acknowledgement_in_the_app_sends_the_webhook_callback(og, receiver: Receiver) -> None:
    backend, control = og
    await backend.page(a_page(PagingService.opsgenie, "inc-8"))
    receiver.received.clear()
    answer = (
        await control.post("/_sandbox/acknowledge", json={"alias": "inc-8", "user": "alice@example.com"})
    ).json()
    assert answer["webhook"]["status"] == 200
    [(path, body, headers)] = receiver.received
    assert path == "/webhooks/opsgenie" and headers["x-opsgenie-webhook-token"] == OG_TOKEN
    callback = json.loads(body)
    assert callback["action"] == "Acknowledge"
    assert callback["alert"]["alias"] == "inc-8" and callback["alert"]["username"] == "alice@example.com"
    assert callback["source"]["type"] == "web"


async def test_opsgenie_sandbox_keeps_its_state_and_escapes_its_page(tmp_path: Path) -> None:
    async with og_sandbox.run_sandbox(tmp_path) as url:
        backend = OpsgeniePaging(url, OPSGENIE_SANDBOX_API_KEY)
        await backend.page(a_page(PagingService.opsgenie, "kept", title="<script>alert(1)</script>"))
        await backend.aclose()
    async with og_sandbox.run_sandbox(tmp_path) as url, httpx.AsyncClient(base_url=url) as control:
        [alert] = await got(control, "/_sandbox/alerts")
        assert alert["alias"] == "kept"
        text = (await control.get("/")).text
        assert "<script>alert(1)</script>" not in text and "&lt;script&gt;" in text


# ------------------------------------------------------------------ settings and registry


def test_paging_backends_default_is_slack_plus_each_service_whose_url_is_set() -> None:
    assert paging_backend_names(Settings(_env_file=None)) == ["slack"]
    chosen = Settings(_env_file=None, pagerduty_events_url="https://events.pagerduty.com")
    assert paging_backend_names(chosen) == ["slack", "pagerduty"]
    both = Settings(_env_file=None, paging_backends="pagerduty, opsgenie")
    backends = Backends.from_settings(both)
    assert set(backends.paging) == {PagingService.pagerduty, PagingService.opsgenie}
    assert "paging pagerduty+opsgenie" in backends.names
    with pytest.raises(BackendError, match="PAGING_BACKENDS='pagerdoody'"):
        paging_backend_names(Settings(_env_file=None, paging_backends="slack,pagerdoody"))


def test_sandbox_defaults_agree_with_the_settings() -> None:
    assert (
        pd_sandbox.DEFAULT_ROUTING_KEY == PAGERDUTY_SANDBOX_ROUTING_KEY
        and len(PAGERDUTY_SANDBOX_ROUTING_KEY) == 32
    )
    assert og_sandbox.DEFAULT_API_KEY == OPSGENIE_SANDBOX_API_KEY
    settings = Settings(_env_file=None)
    assert settings.pagerduty_events_url.endswith(f":{pd_sandbox.DEFAULT_PORT}")
    assert settings.opsgenie_api_url.endswith(f":{og_sandbox.DEFAULT_PORT}")
