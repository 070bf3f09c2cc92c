"""Acknowledgements from PagerDuty and Opsgenie, end to end over real HTTP.

The real dev server and a worker paging through the PagerDuty and Opsgenie sandboxes; a
person acknowledges in a sandbox (its `/_sandbox/acknowledge`, as the app's button does),
the sandbox sends its signed webhook to the alert receiver's /webhooks/... endpoint, and the
incident's own state and timeline show who acknowledged and through which service.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowHandle
from typer.testing import CliRunner

from activities.settings import Settings
from sandbox import opsgenie as og_sandbox
from sandbox import pagerduty as pd_sandbox
from sandbox.slack import serve_in_background
from starter.alerts import create_app
from starter.cli import app
from workflows import limits
from workflows.incident import IncidentWorkflow
from workflows.models import IncidentState, Phase, Severity
from workflows.paging_models import PagingService
from workflows.policy import Policy

from .stack import eventually, incident_worker

PD_SECRET = "webhook-test-pagerduty-secret"
OG_TOKEN = "webhook-test-opsgenie-token"


def paging_everywhere(policy: Policy) -> Policy:
    """The default policy (config/policy.yaml) with P1 paged through Slack, PagerDuty and Opsgenie."""
    severities = dict(policy.severities)
    p1 = severities[Severity.P1]
    assert p1.paging is not None
    via = [PagingService.slack, PagingService.pagerduty, PagingService.opsgenie]
    severities[Severity.P1] = p1.model_copy(update={"paging": p1.paging.model_copy(update={"via": via})})
    return policy.model_copy(update={"severities": severities})


@dataclass
class Stack:
    declare: Any
    receiver: httpx.AsyncClient  # the alert receiver, where the webhooks go
    pagerduty: httpx.AsyncClient  # the sandboxes' control APIs
    opsgenie: httpx.AsyncClient

    async def paged(self, handle: WorkflowHandle) -> str:
        """The incident's key, once both services have an open alert for it."""
        key = handle.id.removeprefix("incident-")

        async def both() -> bool:
            pd = (await self.pagerduty.get("/_sandbox/alerts", params={"dedup_key": key})).json()
            og = [a for a in (await self.opsgenie.get("/_sandbox/alerts")).json() if a["alias"] == key]
            return bool(pd) and bool(og)

        await eventually(both, what="the incident's pages at PagerDuty and Opsgenie")
        return key

    async def acknowledge_in_pagerduty(self, key: str, user: str) -> dict[str, Any]:
        """A person presses Acknowledge in PagerDuty; the webhook delivery's outcome."""
        answer = (
            await self.pagerduty.post("/_sandbox/acknowledge", json={"dedup_key": key, "user": user})
        ).json()
        assert answer["ok"], answer
        return answer["webhook"]

    async def acknowledge_in_opsgenie(self, key: str, user: str) -> dict[str, Any]:
        answer = (await self.opsgenie.post("/_sandbox/acknowledge", json={"alias": key, "user": user})).json()
        assert answer["ok"], answer
        return answer["webhook"]


@pytest.fixture(scope="module")
async def stack(local_env, slack_sandbox, policy, tmp_path_factory) -> AsyncIterator[Stack]:
    pd_app = pd_sandbox.create_app(tmp_path_factory.mktemp("pagerduty"), webhook_secret=PD_SECRET)
    og_app = og_sandbox.create_app(tmp_path_factory.mktemp("opsgenie"), webhook_token=OG_TOKEN)
    async with serve_in_background(pd_app) as pd_url, serve_in_background(og_app) as og_url:
        async with incident_worker(
            local_env.client,
            slack_sandbox.api_url,
            paging_everywhere(policy),
            paging_backends="slack,pagerduty,opsgenie",
            pagerduty_events_url=pd_url,
            opsgenie_api_url=og_url,
        ) as declare:
            settings = Settings(
                temporal_task_queue=declare.task_queue,
                pagerduty_webhook_secret=PD_SECRET,
                opsgenie_webhook_token=OG_TOKEN,
            )
            app = create_app(settings, policy, client=local_env.client, token="", rollup=False)
            async with (
                serve_in_background(app) as receiver_url,
                httpx.AsyncClient(base_url=receiver_url, timeout=30) as receiver,
                httpx.AsyncClient(base_url=pd_url, timeout=30) as pagerduty,
                httpx.AsyncClient(base_url=og_url, timeout=30) as opsgenie,
            ):
                await pagerduty.post(
                    "/_sandbox/config", json={"webhook_url": f"{receiver_url}/webhooks/pagerduty"}
                )
                await opsgenie.post(
                    "/_sandbox/config", json={"webhook_url": f"{receiver_url}/webhooks/opsgenie"}
                )
                yield Stack(declare, receiver, pagerduty, opsgenie)


async def state_of(handle: WorkflowHandle) -> IncidentState:
    return await handle.query(IncidentWorkflow.state)


def answer_of(delivery: dict[str, Any]) -> dict[str, Any]:
    return json.loads(delivery["body"])


def pagerduty_webhook(key: str, event_type: str = "incident.acknowledged", **agent: str) -> dict[str, Any]:
    return {
        "event": {
            "id": "01DEN2UMUCW5J0XXUTQNP0ZJ7Y",
            "event_type": event_type,
            "resource_type": "incident",
            "agent": {"id": "PXYZ123", "summary": "Alice Schmidt", "type": "user_reference", **agent},
            "data": {"id": "Q1ABCDE", "type": "incident", "incident_key": key, "title": "R1 down"},
        }
    }


def signed(body: dict[str, Any] | bytes, secret: str = PD_SECRET) -> tuple[bytes, dict[str, str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return raw, {
        "X-PagerDuty-Signature": pd_sandbox.pagerduty_signature(secret, raw),
        "Content-Type": "application/json",
    }


# ------------------------------------------------------------- end to end


async def test_acknowledged_in_pagerduty_stops_paging_and_says_who_and_how(stack: Stack) -> None:
    handle = await stack.declare("P1", title="R1 unreachable, acknowledged in PagerDuty")
    key = await stack.paged(handle)

    delivery = await stack.acknowledge_in_pagerduty(key, "Alice Schmidt")

    assert delivery["status"] == 202, delivery
    assert answer_of(delivery) | {"text": ""} == {
        "ok": True,
        "incident_id": handle.id,
        "acknowledged": True,
        "text": "",
    }
    state = await state_of(handle)
    assert state.paging.acknowledged_by == "Alice Schmidt"
    acknowledged = [e for e in state.timeline if e.kind == "acknowledged"]
    assert len(acknowledged) == 1 and "via pagerduty" in acknowledged[0].text, state.timeline
    assert acknowledged[0].actor == "Alice Schmidt"

    # The acknowledgement reaches the other paging service too: its alert is acknowledged.
    async def acknowledged_in_opsgenie() -> bool:
        alerts = (await stack.opsgenie.get("/_sandbox/alerts")).json()
        return any(a["alias"] == key and a["acknowledged"] for a in alerts)

    await eventually(acknowledged_in_opsgenie, what="the acknowledgement at Opsgenie")

    # PagerDuty's own echo (or a second person) is answered 200, never an error PagerDuty retries.
    again = await stack.acknowledge_in_pagerduty(key, "Bob Meyer")
    assert again["status"] == 200, again
    refused = answer_of(again)
    assert refused["acknowledged"] is False and refused["incident_id"] == handle.id
    assert refused["reason"].startswith("already acknowledged by Alice Schmidt"), refused
    state = await state_of(handle)
    assert state.paging.acknowledged_by == "Alice Schmidt"
    assert [e.kind for e in state.timeline].count("acknowledged") == 1


async def test_acknowledged_in_opsgenie_stops_paging_and_says_who_and_how(stack: Stack) -> None:
    handle = await stack.declare("P1", title="R1 unreachable, acknowledged in Opsgenie")
    key = await stack.paged(handle)

    delivery = await stack.acknowledge_in_opsgenie(key, "bob@example.com")

    assert delivery["status"] == 202, delivery
    assert answer_of(delivery)["acknowledged"] is True
    state = await state_of(handle)
    assert state.paging.acknowledged_by == "bob@example.com"
    acknowledged = [e for e in state.timeline if e.kind == "acknowledged"]
    assert len(acknowledged) == 1 and "via opsgenie" in acknowledged[0].text, state.timeline

    async def acknowledged_in_pagerduty() -> bool:
        alerts = (await stack.pagerduty.get("/_sandbox/alerts", params={"dedup_key": key})).json()
        return any(a["status"] == "acknowledged" for a in alerts)

    await eventually(acknowledged_in_pagerduty, what="the acknowledgement at PagerDuty")

    again = await stack.acknowledge_in_opsgenie(key, "carol@example.com")
    assert again["status"] == 200, again
    assert answer_of(again)["acknowledged"] is False
    assert "already acknowledged by bob@example.com" in answer_of(again)["reason"]


async def test_a_wrong_signature_or_token_is_401_and_leaves_the_incident_alone(stack: Stack) -> None:
    handle = await stack.declare("P1", title="R1 unreachable, forged acknowledgements")
    key = await stack.paged(handle)
    try:
        await stack.pagerduty.post("/_sandbox/config", json={"webhook_secret": "not-the-secret"})
        await stack.opsgenie.post("/_sandbox/config", json={"webhook_token": "not-the-token"})
        pd = await stack.acknowledge_in_pagerduty(key, "Mallory")
        og = await stack.acknowledge_in_opsgenie(key, "mallory@example.com")
    finally:
        await stack.pagerduty.post("/_sandbox/config", json={"webhook_secret": PD_SECRET})
        await stack.opsgenie.post("/_sandbox/config", json={"webhook_token": OG_TOKEN})
    assert pd["status"] == 401 and "no v1 signature matches" in answer_of(pd)["error"], pd
    assert og["status"] == 401 and "does not match OPSGENIE_WEBHOOK_TOKEN" in answer_of(og)["error"], og
    unsigned = await stack.receiver.post("/webhooks/pagerduty", json=pagerduty_webhook(key))
    assert unsigned.status_code == 401 and "X-PagerDuty-Signature is missing" in unsigned.json()["error"]
    no_token = await stack.receiver.post(
        "/webhooks/opsgenie", json={"action": "Acknowledge", "alert": {"alias": key, "username": "m"}}
    )
    assert no_token.status_code == 401 and "X-Opsgenie-Webhook-Token is missing" in no_token.json()["error"]

    state = await state_of(handle)
    assert state.paging.acknowledged_at is None
    assert not [e for e in state.timeline if e.kind in ("acknowledged", "rejected", "refused")]


async def test_resolved_or_closed_at_the_service_is_ignored(stack: Stack) -> None:
    handle = await stack.declare("P1", title="R1 unreachable, resolved in PagerDuty")
    key = await stack.paged(handle)

    resolved = (
        await stack.pagerduty.post("/_sandbox/resolve", json={"dedup_key": key, "user": "Alice"})
    ).json()
    closed = (await stack.opsgenie.post("/_sandbox/close", json={"alias": key, "user": "alice"})).json()

    assert resolved["webhook"]["status"] == 200, resolved
    assert answer_of(resolved["webhook"]) == {"ok": True, "ignored": "incident.resolved"}
    assert closed["webhook"]["status"] == 200, closed
    assert answer_of(closed["webhook"]) == {"ok": True, "ignored": "Close"}
    state = await state_of(handle)
    assert state.phase not in (Phase.resolved, Phase.review)
    assert state.paging.acknowledged_at is None


async def test_an_unknown_incident_key_is_404_naming_it(stack: Stack) -> None:
    raw, headers = signed(pagerduty_webhook("no-such-incident-4711"))
    response = await stack.receiver.post("/webhooks/pagerduty", content=raw, headers=headers)
    assert response.status_code == 404
    assert response.json()["error"].startswith("event.data.incident_key: no incident no-such-incident-4711")

    response = await stack.receiver.post(
        "/webhooks/opsgenie",
        json={"action": "Acknowledge", "alert": {"alias": "x" * (limits.MAX_KEY + 1)}},
        headers={"X-Opsgenie-Webhook-Token": OG_TOKEN},
    )
    assert response.status_code == 404 and response.json()["error"].startswith("alert.alias: no incident")


async def test_a_closed_incident_refuses_with_200_and_its_reason(stack: Stack) -> None:
    handle = await stack.declare("P1", title="R1 unreachable, already over")
    key = await stack.paged(handle)
    await handle.terminate("test: the incident is over")

    raw, headers = signed(pagerduty_webhook(key))
    response = await stack.receiver.post("/webhooks/pagerduty", content=raw, headers=headers)

    assert response.status_code == 200
    assert response.json() == {
        "ok": True,
        "incident_id": handle.id,
        "acknowledged": False,
        "reason": f"incident {key} is closed (terminated)",
    }


# ------------------------------------------------------- the edge alone


def receivers(**settings: Any):
    """The receivers with no Temporal behind them: everything answered before Temporal is asked."""
    base = {
        "temporal_address": "127.0.0.1:1",
        "pagerduty_webhook_secret": PD_SECRET,
        "opsgenie_webhook_token": OG_TOKEN,
    }
    app = create_app(Settings(**(base | settings)), token="")
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://receiver")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "body is not JSON"),
        (b"[]", "body must be a JSON object"),
        (b"{}", "event: Field required"),
        (b'{"event": {"data": {}}}', "event.event_type: Field required"),
        (
            b'{"event": {"event_type": "incident.acknowledged"}}',
            "event.data: required for incident.acknowledged",
        ),
        (
            b'{"event": {"event_type": "incident.acknowledged", "data": {"title": "x"}}}',
            "event.data.incident_key: required",
        ),
        (
            b'{"event": {"event_type": "incident.acknowledged", "data": {"incident_key": 7}}}',
            "event.data.incident_key: Input should be a valid string",
        ),
    ],
)
async def test_a_malformed_pagerduty_webhook_is_400_naming_the_field(body: bytes, message: str) -> None:
    raw, headers = signed(body)
    async with receivers() as http:
        response = await http.post("/webhooks/pagerduty", content=raw, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(message), response.json()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"alert": {"alias": "k"}}, "action: Field required"),
        ({"action": "Acknowledge"}, "alert: required for action Acknowledge"),
        ({"action": "Acknowledge", "alert": {"username": "bob"}}, "alert.alias: required"),
    ],
)
async def test_a_malformed_opsgenie_callback_is_400_naming_the_field(body: dict, message: str) -> None:
    async with receivers() as http:
        response = await http.post(
            "/webhooks/opsgenie", json=body, headers={"X-Opsgenie-Webhook-Token": OG_TOKEN}
        )
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(message), response.json()


async def test_without_a_configured_secret_nothing_is_trusted() -> None:
    raw, headers = signed(pagerduty_webhook("k"))
    async with receivers(pagerduty_webhook_secret="", opsgenie_webhook_token="") as http:
        pd = await http.post("/webhooks/pagerduty", content=raw, headers=headers)
        og = await http.post(
            "/webhooks/opsgenie",
            json={"action": "Acknowledge", "alert": {"alias": "k"}},
            headers={"X-Opsgenie-Webhook-Token": ""},
        )
    assert pd.status_code == 401 and pd.json()["error"].startswith(
        "PAGERDUTY_WEBHOOK_SECRET is not set on the receiver"
    )
    assert og.status_code == 401 and og.json()["error"].startswith(
        "OPSGENIE_WEBHOOK_TOKEN is not set on the receiver"
    )


async def test_temporal_unreachable_is_503_with_retry_after_and_other_events_are_still_answered() -> None:
    async with receivers() as http:
        raw, headers = signed(pagerduty_webhook("k"))
        down = await http.post("/webhooks/pagerduty", content=raw, headers=headers)
        raw, headers = signed(pagerduty_webhook("k", event_type="incident.annotated"))
        ignored = await http.post("/webhooks/pagerduty", content=raw, headers=headers)
        ping = {
            "event": {"event_type": "pagey.ping", "agent": None, "data": {"message": "Hello", "type": "ping"}}
        }
        raw, headers = signed(ping)
        pinged = await http.post("/webhooks/pagerduty", content=raw, headers=headers)
        too_big = await http.post(
            "/webhooks/opsgenie",
            content=b"x" * (limits.MAX_BODY_BYTES + 1),
            headers={"X-Opsgenie-Webhook-Token": OG_TOKEN},
        )
    assert down.status_code == 503 and down.headers["Retry-After"], down.text
    assert "Temporal is unreachable" in down.json()["error"]
    assert ignored.status_code == 200 and ignored.json() == {"ok": True, "ignored": "incident.annotated"}
    assert pinged.status_code == 200 and pinged.json() == {"ok": True, "ignored": "pagey.ping"}
    assert too_big.status_code == 413 and too_big.json()["error"].startswith("body: the body is over")


# ------------------------------------------------------------- maintenance windows


async def test_a_maintenance_window_holds_paging_until_incident_maintenance_end(
    stack: Stack, local_env
) -> None:
    """`incident maintenance start`, an alert's incident for that service pages nobody and says so;
    `incident maintenance end`: the chain starts, PagerDuty is paged."""
    service = f"maint-{uuid.uuid4().hex[:8]}"
    env = {
        "TEMPORAL_ADDRESS": local_env.client.service_client.config.target_host,
        "TEMPORAL_TASK_QUEUE": stack.declare.task_queue,
        "INCIDENT_USER": "U0OPS",
    }
    runner = CliRunner()

    async def cli(args: list[str], env: dict[str, str]) -> Any:  # the CLI runs its own event loop
        return await asyncio.to_thread(runner.invoke, app, args, env=env)

    started = await cli(
        ["maintenance", "start", "--service", service, "--for", "1h", "--reason", "upgrade"], env=env
    )
    assert started.exit_code == 0 and f"maintenance of {service} started" in started.output, started.output
    listed = await cli(["maintenance", "list"], env=env)
    assert service in listed.output and "upgrade" in listed.output, listed.output

    handle = await stack.declare("P1", title="R1 down during its upgrade", service=service)

    async def held() -> IncidentState | None:
        state = await state_of(handle)
        return state if any(e.kind == "maintenance" for e in state.timeline) else None

    state = await eventually(held, what="the incident to hold its paging")
    assert state.maintenance_until is not None
    assert any("paging held" in e.text for e in state.timeline if e.kind == "maintenance")
    key = handle.id.removeprefix("incident-")
    assert (await stack.pagerduty.get("/_sandbox/alerts", params={"dedup_key": key})).json() == []

    ended = await cli(["maintenance", "end", "--service", service], env=env)
    assert ended.exit_code == 0, ended.output
    await stack.paged(handle)  # PagerDuty and Opsgenie both paged once the window is over
    state = await state_of(handle)
    assert state.maintenance_until is None
    assert (await cli(["maintenance", "end", "--service", service], env=env)).exit_code == 1
