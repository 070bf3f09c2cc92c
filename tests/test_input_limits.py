"""Bad input at the alert receivers' edge: bounded, answered with the right 4xx, never a 5xx.

These need no Temporal: everything here is refused (or answered) before an alert
would be delivered. The receivers point at a Temporal address that does not
answer, so a request that got past the edge would say 503.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest
from temporalio.service import RPCError, RPCStatusCode

from activities.settings import Settings
from starter.alerts import AlertBatcher, Delivery, Outcome, create_app, from_alertmanager
from workflows import limits
from workflows.models import AlertEvent, IncidentDeclaration, Severity

UNREACHABLE = Settings(temporal_address="127.0.0.1:1")


def am_body(alerts: list[dict], **common) -> dict:
    return {
        "version": "4",
        "status": "firing",
        "receiver": "incident",
        "groupKey": '{}:{alertname="R1Down"}',
        "groupLabels": {"alertname": "R1Down"},
        "commonLabels": {"alertname": "R1Down", "severity": "critical", **common.pop("labels", {})},
        "commonAnnotations": common.pop("annotations", {}),
        "alerts": alerts,
    }


def am_alert(n: int = 0, labels: dict | None = None, annotations: dict | None = None) -> dict:
    return {
        "status": "firing",
        "labels": {"alertname": "R1Down", "instance": f"r{n}", **(labels or {})},
        "annotations": {"summary": f"R1 lost {n}", **(annotations or {})},
        "fingerprint": f"fp{n}",
    }


@pytest.fixture
async def http(policy):
    app = create_app(UNREACHABLE, policy, token="")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as client:
        yield client


async def post(http: httpx.AsyncClient, path: str, body: object) -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await http.post(path, content=raw, headers={"content-type": "application/json"})


# -------------------------------------------------------------- over a limit


@pytest.mark.parametrize(
    ("path", "body", "status", "names"),
    [
        # Issue item 1: a 1 MiB symptom, a 41,000-character one, a 1 MiB device name.
        (
            "/alerts",
            {"title": "t", "severity": "P2", "dedup_key": "k", "symptoms": ["x" * limits.MIB]},
            413,
            "1 MiB",
        ),
        (
            "/alerts",
            {"title": "t", "severity": "P2", "dedup_key": "k", "symptoms": ["x" * 41_000]},
            422,
            "symptoms.0",
        ),
        (
            "/alerts",
            {"title": "t", "severity": "P2", "dedup_key": "k", "devices": ["R" * 10_000]},
            422,
            "devices.0",
        ),
        (
            "/alerts",
            {"title": "t", "severity": "P2", "dedup_key": "k", "symptoms": ["s"] * 26},
            422,
            "symptoms",
        ),
        # Issue item 2: a service over 2 KB (a search attribute), a 10,000-alert group, a 1 MiB label.
        (
            "/alerts",
            {"title": "t", "severity": "P2", "dedup_key": "k", "service": "s" * 2100},
            422,
            "service",
        ),
        ("/alerts/alertmanager", am_body([am_alert(n) for n in range(10_000)]), 413, "max_alerts"),
        ("/alerts/alertmanager", am_body([{"status": "firing", "labels": {"a": "b"}}] * 1001), 422, "1,000"),
        ("/alerts/alertmanager", am_body([am_alert(labels={"big": "x" * limits.MIB})]), 413, "1 MiB"),
        ("/alerts/alertmanager", am_body([am_alert(labels={"big": "x" * 5000})]), 422, "alerts.0.labels.big"),
        (
            "/alerts/alertmanager",
            am_body([am_alert(labels={"service": "s" * 900})]),
            422,
            "alerts[0].labels.service: 900 characters; a service is at most 200",
        ),
        (
            "/alerts/alertmanager",
            am_body([am_alert(labels={"device": "R" * 1000})]),
            422,
            "alerts[0].labels.device",
        ),
        (
            "/alerts/alertmanager",
            am_body([am_alert(annotations={"summary": "x" * 50_000})]),
            422,
            "alerts.0.annotations.summary",
        ),
        (
            "/alerts/pagerduty",
            {
                "routing_key": "r",
                "event_action": "trigger",
                "payload": {"summary": "s", "source": "x" * 300, "severity": "critical"},
            },
            422,
            "payload.source",
        ),
    ],
)
async def test_over_a_limit_is_413_or_422_naming_the_field(http, path, body, status, names):
    response = await post(http, path, body)
    assert response.status_code == status, response.text
    assert names in response.json()["error"], response.json()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"[" * 1000 + b"]" * 1000, "nested too deeply"),
        (b"[" * 100 + b"]" * 100, "body must be a JSON object"),
        (b'{"a": ' * 100_000 + b"1" + b"}" * 100_000, "nested too deeply"),
        (
            b'{"title": "t", "severity": "P2", "dedup_key": "k", "n": ' + b"9" * 5000 + b"}",
            "body is not JSON",
        ),
        (b"\xff\xff{}", "not UTF-8"),
        (b'{"title": NaN}', "title"),
    ],
)
async def test_json_the_parser_refuses_is_400_or_422_not_500(http, raw, reason):
    response = await post(http, "/alerts", raw)
    assert response.status_code in (400, 422), response.text
    assert reason in response.json()["error"]


async def test_deep_nesting_and_huge_numbers_inside_an_alert_are_not_a_500(http):
    def pagerduty(details: bytes) -> bytes:
        return (
            b'{"routing_key": "r", "event_action": "trigger", "dedup_key": "k", "payload": '
            b'{"summary": "s", "source": "R1", "severity": "info", "custom_details": ' + details + b"}}"
        )

    for details in (b'{"x": ' + b"9" * 5000 + b"}", b'{"d": ' * 2000 + b"1" + b"}" * 2000):
        response = await post(http, "/alerts/pagerduty", pagerduty(details))
        assert response.status_code == 400, response.text
    # Deep, but within what the parser takes: accepted as far as the edge goes (then 503: no Temporal).
    response = await post(http, "/alerts/pagerduty", pagerduty(b'{"d": ' * 200 + b"1" + b"}" * 200))
    assert response.status_code == 503, response.text


async def test_a_declared_body_length_over_the_limit_is_refused_before_reading(http):
    response = await http.post(
        "/alerts",
        content=b"{}",
        headers={"content-type": "application/json", "content-length": str(5 * limits.MIB)},
    )
    assert response.status_code == 413


# ------------------------------------------------------------ honest answers


async def test_unreachable_temporal_is_503_with_retry_after_and_a_lowercase_bearer_is_accepted(policy):
    app = create_app(UNREACHABLE, policy, token="s3cret")
    body = {"title": "t", "severity": "P2", "dedup_key": "x"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as http:
        for header in ("bearer s3cret", "BEARER s3cret", "Bearer  s3cret "):
            response = await http.post("/alerts", json=body, headers={"Authorization": header})
            assert response.status_code == 503, (header, response.text)
            assert response.headers["retry-after"] == "5"
        refused = await http.post("/alerts", json=body, headers={"Authorization": "Basic s3cret"})
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"


def _delivery(name: str) -> Delivery:
    declaration = IncidentDeclaration(key="k", severity=Severity.P2, title=name)
    return Delivery("k", AlertEvent(source="generic", fingerprint=name, name=name), declaration)


async def test_one_alert_temporal_refuses_does_not_fail_the_others_in_its_batch():
    """A refusal retrying cannot fix: the batch is delivered alone, alert by alert (a unit test of the
    batcher: with the edge's limits in place no alert reaches Temporal that it would refuse)."""
    delivered: list[list[str]] = []

    async def deliver(key: str, deliveries: list[Delivery]) -> Outcome:
        names = [d.event.name for d in deliveries]
        delivered.append(names)
        if "poison" in names:
            raise RPCError("blob size exceeds limit", RPCStatusCode.INVALID_ARGUMENT, b"")
        return Outcome("incident-k", new=len(delivered) == 1)

    batcher = AlertBatcher(deliver, window=0.01)
    import asyncio

    results = await asyncio.gather(
        *(batcher.submit(_delivery(n)) for n in ("a", "poison", "b")), return_exceptions=True
    )
    assert isinstance(results[1], RPCError)
    assert isinstance(results[0], Outcome) and isinstance(results[2], Outcome)
    assert delivered == [["a", "poison", "b"], ["a"], ["poison"], ["b"]]


async def test_a_transient_failure_of_a_batch_fails_it_whole_for_a_retry():
    async def deliver(key: str, deliveries: list[Delivery]) -> Outcome:
        raise RPCError("unavailable", RPCStatusCode.UNAVAILABLE, b"")

    import asyncio

    batcher = AlertBatcher(deliver, window=0.01)
    results = await asyncio.gather(*(batcher.submit(_delivery(n)) for n in "ab"), return_exceptions=True)
    assert all(isinstance(r, RPCError) for r in results)


# ------------------------------------------------------------------- titles


GRAFANA_DOCS_EXAMPLE = {
    # The example payload of Grafana's webhook notifier documentation, shortened.
    "receiver": "My Super Webhook",
    "status": "firing",
    "orgId": 1,
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "High memory usage", "team": "blue", "zone": "us-1"},
            "annotations": {
                "description": "The system has high memory usage",
                "runbook_url": "https://myrunbook.com/runbook/1234",
                "summary": "This alert was triggered for zone us-1",
            },
            "startsAt": "2021-10-12T09:51:03.157076+02:00",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "https://play.grafana.org/alerting/1afz29v7z/edit",
            "fingerprint": "c6eadffa33fcdf37",
        },
        {
            "status": "firing",
            "labels": {"alertname": "High CPU usage", "team": "blue", "zone": "eu-1"},
            "annotations": {
                "description": "The system has high CPU usage",
                "runbook_url": "https://myrunbook.com/runbook/1234",
                "summary": "This alert was triggered for zone eu-1",
            },
            "startsAt": "2021-10-12T09:56:03.157076+02:00",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "https://play.grafana.org/alerting/d1rdpdv7k/edit",
            "fingerprint": "bc97ff14869b13e3",
        },
    ],
    "groupLabels": {},
    "commonLabels": {"team": "blue"},
    "commonAnnotations": {},
    "externalURL": "https://play.grafana.org/",
    "version": "1",
    "groupKey": "{}:{}",
    "truncatedAlerts": 0,
    "title": "[FIRING:2]  (blue)",
    "state": "alerting",
    "message": "**Firing**\n\nLabels:\n - alertname = T2\n",
}


def test_grafana_incident_title_comes_from_the_alerts_not_the_notification_title(policy):
    from starter.alerts import GrafanaWebhook

    deliveries = from_alertmanager(
        GrafanaWebhook.model_validate(GRAFANA_DOCS_EXAMPLE), policy.alerts, "grafana"
    )
    assert deliveries[0].declaration.title == "High memory usage, High CPU usage"
    one = {
        **GRAFANA_DOCS_EXAMPLE,
        "alerts": GRAFANA_DOCS_EXAMPLE["alerts"][:1],
        "title": "[FIRING:1]  (blue)",
    }
    [delivery] = from_alertmanager(GrafanaWebhook.model_validate(one), policy.alerts, "grafana")
    assert delivery.declaration.title == "High memory usage: This alert was triggered for zone us-1"
    assert delivery.event.summary == "High memory usage: This alert was triggered for zone us-1"


def test_a_time_without_a_zone_is_utc():
    declaration = IncidentDeclaration(key="k", severity="P1", title="t", declared_at="2026-12-01T10:00:00")
    assert declaration.declared_at == datetime(2026, 12, 1, 10, tzinfo=UTC)
