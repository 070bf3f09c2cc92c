"""Alert receivers over real HTTP into the real dev server, worker and Slack sandbox."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import asynccontextmanager

import httpx
import pytest

from activities.settings import Settings
from sandbox.slack import serve_in_background
from starter.alerts import create_app
from workflows.incident import IncidentWorkflow
from workflows.models import Phase

from .stack import eventually, incident_worker, templates_of


@asynccontextmanager
async def receiver(local_env, sandbox, policy, token: str | None = None):
    async with incident_worker(local_env.client, sandbox.api_url, policy) as declare:
        settings = Settings(temporal_task_queue=declare.task_queue)
        app = create_app(settings, policy, client=local_env.client, token=token or "")
        async with serve_in_background(app) as url:
            async with httpx.AsyncClient(base_url=url, timeout=60) as http:
                yield http


def alertmanager(group: str, alerts: list[dict], status: str = "firing") -> dict:
    return {
        "version": "4",
        "status": status,
        "receiver": "incident",
        "groupKey": f'{{}}:{{alertname="{group}"}}',
        "groupLabels": {"alertname": group},
        "commonLabels": {"alertname": group, "severity": "critical", "service": "wan-site-a"},
        "commonAnnotations": {"summary": "R1 unreachable, WAN outage Site A"},
        "externalURL": "http://alertmanager:9093",
        "alerts": alerts,
    }


def am_alert(fingerprint: str, status: str = "firing", **labels: str) -> dict:
    return {
        "status": status,
        "labels": {"alertname": labels.pop("alertname", "R1Down"), **labels},
        "annotations": {"summary": labels.pop("summary", f"{fingerprint} lost")},
        "startsAt": "2026-11-22T14:32:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": fingerprint,
        "generatorURL": "http://prometheus:9090/graph",
    }


async def state(local_env, incident_id):
    return await local_env.client.get_workflow_handle(incident_id).query(IncidentWorkflow.state)


async def test_alertmanager_group_declares_once_then_grows_and_clears(local_env, sandbox, policy):
    group = f"R1Down-{uuid.uuid4().hex[:6]}"
    async with receiver(local_env, sandbox, policy) as http:
        first = await http.post(
            "/alerts/alertmanager",
            json=alertmanager(
                group, [am_alert("ping", device="R1", upstream_device="R2"), am_alert("ospf", device="R1")]
            ),
        )
        assert first.status_code == 202, first.text
        [incident] = first.json()["incidents"]
        assert incident["new"] is True
        incident_id = incident["incident_id"]

        again = await http.post(
            "/alerts/alertmanager",
            json=alertmanager(group, [am_alert("bgp", summary="BGP peer to ISP: IDLE")]),
        )
        assert again.json()["incidents"] == [{"incident_id": incident_id, "new": False, "delivered": True}]

        async def grown():
            s = await state(local_env, incident_id)
            return s if s.alerts_received == 3 and s.slack_thread_ts else None

        s = await grown() or await eventually(grown, what="three alerts in the incident")
        assert s.severity.value == "P1" and s.service == "wan-site-a"
        assert s.devices == ["R1", "R2"] and s.upstream == {"R1": "R2"}
        assert [e.text for e in s.timeline if e.kind == "alert"] == [
            "alert firing: R1Down: ping lost",
            "alert firing: R1Down: ospf lost",
            "alert firing: R1Down: BGP peer to ISP: IDLE",
        ]
        assert "R1Down: ping lost" in s.symptoms and "R1Down: BGP peer to ISP: IDLE" in s.symptoms

        resolved = alertmanager(
            group, [am_alert(f, status="resolved") for f in ("ping", "ospf", "bgp")], status="resolved"
        )
        assert (await http.post("/alerts/alertmanager", json=resolved)).status_code == 202

        async def cleared():
            s = await state(local_env, incident_id)
            return s if len([e for e in s.timeline if e.kind == "alert_cleared"]) == 3 else None

        s = await eventually(cleared, what="the alerts to clear")
        assert s.phase not in (Phase.resolved, Phase.review), "P1 is never resolved by its alerts alone"

        # The thread follows the state (its posts are sent beside the incident's loop): wait for it.
        async def posted():
            thread = await sandbox.thread(s.slack_channel, s.slack_thread_ts)
            return thread if templates_of(thread).count("alerts_changed") >= 2 else None

        thread = await eventually(posted, what="both alert changes in the thread")
        assert "Alert cleared" in thread[-1]["text"]

        async def listed_by_severity() -> list[str]:
            query = f"WorkflowId='{incident_id}' AND IncidentSeverity='P1'"
            return [w.id async for w in local_env.client.list_workflows(query)]

        # Visibility is eventually consistent: wait for the row, then it is this incident alone.
        listed = await eventually(listed_by_severity, what="the incident listed by IncidentSeverity='P1'")
        assert listed == [incident_id]


async def test_p3_alert_clearing_resolves_by_policy_and_pagerduty_shapes(local_env, sandbox, policy):
    dedup = f"disk-{uuid.uuid4().hex[:6]}"
    trigger = {
        "routing_key": "R0123456789",
        "event_action": "trigger",
        "dedup_key": dedup,
        "payload": {
            "summary": "Disk 91% on R7",
            "source": "R7",
            "severity": "warning",
            "component": "storage",
            "custom_details": {"upstream_device": "R2"},
        },
    }
    async with receiver(local_env, sandbox, policy) as http:
        response = await http.post("/alerts/pagerduty", json=trigger)
        assert response.status_code == 202, response.text
        incident_id = response.json()["incidents"][0]["incident_id"]
        ack = await http.post(
            "/alerts/pagerduty", json={"routing_key": "R0", "event_action": "acknowledge", "dedup_key": dedup}
        )
        assert ack.status_code == 202
        done = await http.post(
            "/alerts/pagerduty", json={"routing_key": "R0", "event_action": "resolve", "dedup_key": dedup}
        )
        assert done.status_code == 202

        async def resolved():
            s = await state(local_env, incident_id)
            return s if s.phase == Phase.review else None  # resolved (and verified), review scheduled

        summary = await eventually(resolved, what="the P3 to resolve by policy")
    assert summary.severity.value == "P3" and summary.phase == Phase.review
    assert "All alerts cleared" in summary.resolution
    kinds = [e.kind for e in summary.timeline]
    assert "alert_acknowledged" in kinds and "alert_cleared" in kinds


async def test_generic_and_grafana_payloads(local_env, sandbox, policy):
    async with receiver(local_env, sandbox, policy) as http:
        generic = {
            "title": "Core switch CPU 95%",
            "severity": "SEV2",
            "dedup_key": f"cpu-{uuid.uuid4().hex[:6]}",
            "service": "core",
            "devices": ["SW1"],
            "symptoms": ["CPU 95%"],
            "impact": ["slow DHCP"],
        }
        response = await http.post("/alerts", json=generic)
        assert response.status_code == 202, response.text
        grafana = {
            **alertmanager(f"Latency-{uuid.uuid4().hex[:6]}", [am_alert("lat", severity="warning")]),
            "title": "[FIRING:1] Latency",
            "state": "alerting",
            "orgId": 1,
        }
        grafana["commonLabels"]["severity"] = "warning"
        response = await http.post("/alerts/grafana", json=grafana)
        assert response.status_code == 202, response.text
        gid = response.json()["incidents"][0]["incident_id"]
        s = await eventually(lambda: state(local_env, gid), what="grafana incident")
        # The title says what the alerts say, not Grafana's notification title ("[FIRING:1] Latency").
        assert s.severity.value == "P3" and s.title == "R1 unreachable, WAN outage Site A"


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/alerts", b"{not json", 400, "body is not JSON"),
        ("/alerts", b"[1, 2]", 400, "body must be a JSON object"),
        ("/alerts", b'{"severity": "P1", "dedup_key": "x"}', 422, "title: Field required"),
        (
            "/alerts",
            b'{"title": "t", "severity": "urgent", "dedup_key": "x"}',
            422,
            "severity: unknown severity 'urgent'",
        ),
        (
            "/alerts/alertmanager",
            b'{"status": "firing", "groupKey": "g", "alerts": []}',
            422,
            "alerts: List should have at least 1 item",
        ),
        (
            "/alerts/alertmanager",
            b'{"status": "firing", "groupKey": "g", "alerts": [{"status": "firing", "labels": {"alertname": "x", "severity": "huge"}}]}',
            422,
            "alerts[0].labels.severity: unknown severity 'huge'",
        ),
        ("/alerts/pagerduty", b'{"routing_key": "r", "event_action": "trigger"}', 422, "payload: required"),
        ("/alerts/pagerduty", b'{"routing_key": "r", "event_action": "explode"}', 422, "event_action"),
    ],
)
async def test_bad_payloads_get_4xx_naming_the_field(policy, path, body, status, message):
    app = create_app(Settings(temporal_address="127.0.0.1:1"), policy, token="")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as http:
        response = await http.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    assert message in response.json()["error"]


async def test_bearer_token_and_unreachable_temporal(policy):
    app = create_app(Settings(temporal_address="127.0.0.1:1"), policy, token="s3cret")
    body = {"title": "t", "severity": "P2", "dedup_key": "x"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as http:
        assert (await http.post("/alerts", json=body)).status_code == 401
        wrong = await http.post("/alerts", json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        down = await http.post("/alerts", json=body, headers={"Authorization": "Bearer s3cret"})
        assert down.status_code == 503 and "Temporal is unreachable" in down.json()["error"]
        assert (await http.get("/healthz")).status_code == 200


async def test_storm_of_2000_alerts_over_20_keys_gives_20_incidents_each_complete(local_env, sandbox, policy):
    run = uuid.uuid4().hex[:6]
    keys = [f"Storm{run}-{k}" for k in range(20)]
    async with receiver(local_env, sandbox, policy) as http:
        limit = asyncio.Semaphore(200)

        async def send(n: int) -> dict:
            group = keys[n % 20]
            async with limit:
                response = await http.post(
                    "/alerts/alertmanager", json=alertmanager(group, [am_alert(f"{group}-{n}")])
                )
            assert response.status_code == 202, response.text
            return response.json()["incidents"][0]

        results = await asyncio.gather(*(send(n) for n in range(2000)))
        incidents = {r["incident_id"] for r in results}
        assert len(incidents) == 20
        assert sum(r["new"] for r in results) >= 20  # every request of a declaring batch hears "new"

        async def complete():
            states = [await state(local_env, i) for i in incidents]
            return states if all(s.alerts_received == 100 and s.slack_thread_ts for s in states) else None

        states = await eventually(complete, timeout=120, what="all 2,000 alerts in their incidents")
        for s in states:
            assert len([e for e in s.timeline if e.kind == "alert"]) == 100
            assert [e.kind for e in s.timeline].count("declared") == 1
    channel = states[0].slack_channel
    declarations = [
        m
        for m in await sandbox.history(channel)
        if run in m.get("text", "") and "INCIDENT DECLARED" in m.get("text", "")
    ]
    assert len(declarations) == 20
