"""`curl /metrics` on the real worker process and the real alert-receiver process, after one
incident: the series the README and the Grafana dashboard name are there, with the values that
incident gave them."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from workflows.incident import IncidentWorkflow
from workflows.models import ClaimSignal

from .conftest import ROOT, start_dev_server
from .processes import WorkerProcess, free_port, write_fast_policy
from .stack import first_pages_out

DASHBOARD = ROOT / "config" / "grafana" / "incident-dashboard.json"


SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample by the name it is served under (a histogram's _bucket, _count, _sum each), with
    its labels: the exposition format as Prometheus scrapes it, read line by line."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if line.startswith("#") or not match:
            continue
        name, labels, number = match.groups()
        found.setdefault(name, []).append((dict(LABEL.findall(labels or "")), float(number)))
    return found


def value(found: dict, name: str, **labels: str) -> float:
    return sum(v for got, v in found.get(name, []) if all(got.get(k) == want for k, want in labels.items()))


async def scrape(url: str) -> str:
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain"), response.headers
    return response.text


async def until(check, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def dashboard_metrics() -> set[str]:
    """The metric names the dashboard's queries read (PromQL functions and labels left out)."""
    model = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in model["panels"] for t in panel["targets"]]
    names = set()
    for expr in exprs:
        without_labels = re.sub(r"\{[^}]*\}", "", expr)
        without_grouping = re.sub(r"\b(by|without)\s*\([^)]*\)", "", without_labels)
        for word in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_grouping):
            if word.startswith(("incident_", "temporal_")):
                names.add(word)
    return names


@pytest.fixture(scope="module")
async def own_server():
    env = await start_dev_server()
    try:
        yield env
    finally:
        await env.shutdown()


async def test_worker_and_receiver_metrics_after_one_incident(own_server, sandbox, policy, tmp_path):
    client = own_server.client
    address = client.service_client.config.target_host
    queue = f"metrics-{uuid.uuid4().hex[:6]}"
    worker_metrics = f"127.0.0.1:{free_port()}"
    worker = WorkerProcess(
        address, queue, sandbox.api_url, write_fast_policy(tmp_path), tmp_path / "worker.log"
    )
    worker.env.update(WORKER_METRICS_ADDRESS=worker_metrics, WORKER_METRICS_EVERY="0.5")
    receiver_port = free_port()
    receiver_env = {**os.environ, "TEMPORAL_ADDRESS": address, "TEMPORAL_TASK_QUEUE": queue}
    receiver_log = (tmp_path / "receiver.log").open("w")
    receiver = subprocess.Popen(
        [sys.executable, "-m", "starter.alerts", "--port", str(receiver_port), "--no-rollup"],
        cwd=ROOT,
        env=receiver_env,
        stdout=receiver_log,
        stderr=subprocess.STDOUT,
    )
    # One Slack call fails once (and is retried): an activity failure in the SDK's own series.
    await sandbox.fault(method="reactions.add", status=500, count=1)
    worker.start()
    try:
        receiver_url = f"http://127.0.0.1:{receiver_port}"

        async def receiver_up() -> bool:
            try:
                async with httpx.AsyncClient(timeout=2) as http:
                    return (await http.get(receiver_url + "/healthz")).status_code == 200
            except httpx.HTTPError:
                return False

        await until(receiver_up, "the receiver", 30)
        group = f"metrics-{uuid.uuid4().hex[:8]}"
        started = (datetime.now(UTC) - timedelta(minutes=2)).isoformat()
        alert = {
            "version": "4",
            "groupKey": group,
            "status": "firing",
            "receiver": "noc",
            "groupLabels": {"alertname": "R1Down"},
            "commonLabels": {"alertname": "R1Down", "severity": "critical", "service": "wan-site-a"},
            "commonAnnotations": {"summary": "R1 unreachable"},
            "alerts": [
                {"status": "firing", "labels": {"instance": "r1"}, "startsAt": started, "fingerprint": "f1"}
            ],
        }
        async with httpx.AsyncClient(timeout=15) as http:
            first = await http.post(receiver_url + "/alerts/alertmanager", json=alert)
            assert first.status_code == 202 and first.json()["incidents"][0]["new"], first.text
            again = await http.post(receiver_url + "/alerts/alertmanager", json=alert)  # the same alert again
            assert again.status_code == 202 and not again.json()["incidents"][0]["new"], again.text
            refused = await http.post(
                receiver_url + "/alerts/alertmanager",
                content=b"{not json",
                headers={"content-type": "application/json"},
            )
            assert refused.status_code == 400
        incident_id = first.json()["incidents"][0]["incident_id"]

        handle = client.get_workflow_handle(incident_id)
        await first_pages_out(handle, policy, timeout=30)
        await handle.execute_update(IncidentWorkflow.claim_command, ClaimSignal(user="U0ALICE"))

        received = samples(await scrape(receiver_url + "/metrics"))
        assert value(received, "incident_alerts_received_total", source="alertmanager") == 2
        assert value(received, "incident_alerts_declared_total", source="alertmanager", severity="P1") == 1
        assert value(received, "incident_alerts_deduplicated_total", source="alertmanager") == 1
        assert (
            value(received, "incident_alerts_refused_total", receiver="alertmanager", reason="not_json") == 1
        )

        url = f"http://{worker_metrics}/metrics"

        async def worker_series() -> dict | None:
            found = samples(await scrape(url))
            ready = (
                value(found, "incident_time_to_acknowledge_seconds_count", severity="P1") == 1
                and value(found, "incident_open", severity="P1", phase="investigating") == 1
                and value(found, "temporal_activity_execution_failed") >= 1
            )
            return found if ready else None

        found = await until(worker_series, "the worker's series after the claim", 30)
        sent = value(found, "incident_pages_sent_total", severity="P1", service="wan-site-a", via="slack")
        state = await handle.query(IncidentWorkflow.state)
        assert sent == sum(1 for p in state.paging.pages if p.outcome == "sent" and p.service == "slack") >= 1
        assert value(found, "incident_pages_acknowledged_total", severity="P1", service="wan-site-a") == 1
        waited = (state.claimed_at - state.declared_at).total_seconds()
        assert value(found, "incident_time_to_acknowledge_seconds_sum", severity="P1") == pytest.approx(
            waited, abs=0.01
        )
        # Buckets around the policy's escalation delays, not the SDK's millisecond defaults.
        les = {labels["le"] for labels, _ in found["incident_time_to_acknowledge_seconds_bucket"]}
        assert {"300", "900", "3600"} <= {le.removesuffix(".0") for le in les}, les
        assert value(found, "incident_open", severity="P2", phase="investigating") == 0
        assert value(found, "temporal_activity_execution_failed", activity_type="add_slack_reaction") >= 1

        # Every metric the Grafana dashboard queries is served by the worker or the receiver.
        served = {name.removesuffix("_bucket") for name in [*found, *received]} | set(found) | set(received)
        missing = sorted(n for n in dashboard_metrics() if n not in served)
        assert not missing, f"the dashboard queries metrics nobody serves: {missing}"
    finally:
        worker.stop()
        receiver.terminate()
        try:
            receiver.wait(timeout=10)
        except subprocess.TimeoutExpired:
            receiver.kill()
        receiver_log.close()
        await sandbox.clear_faults()
        try:
            await client.get_workflow_handle(incident_id).terminate("test over")  # type: ignore[possibly-undefined]
        except Exception:
            pass


def test_the_dashboard_is_a_grafana_model():
    model = json.loads(Path(DASHBOARD).read_text())
    assert model["uid"] and model["title"] and model["schemaVersion"] >= 36
    ids = [p["id"] for p in model["panels"]]
    assert len(ids) == len(set(ids))
    for panel in model["panels"]:
        assert panel["targets"] and all(t["expr"] and t["refId"] for t in panel["targets"])
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
    assert dashboard_metrics() >= {
        "incident_open",
        "incident_alerts_received_total",
        "incident_alerts_deduplicated_total",
        "incident_pages_sent_total",
        "incident_pages_acknowledged_total",
        "incident_time_to_acknowledge_seconds_bucket",
        "temporal_activity_execution_failed",
    }
