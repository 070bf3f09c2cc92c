"""The README's quick start as a person runs it: `incident dev`, then the CLI and the `temporal` CLI.

`incident dev` runs as a subprocess on free ports with its own data dir;
every command below is the installed console script, over real processes.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from slack_sdk.web.async_client import AsyncWebClient

from .conftest import ROOT, TEMPORAL_CLI
from .processes import free_port
from .stack import eventually

INCIDENT = Path(sys.executable).parent / "incident"


@pytest.fixture
def dev_stack(tmp_path):
    names = ("temporal", "ui", "slack", "servicenow", "pagerduty", "opsgenie", "alerts", "slack_app")
    names += ("smtp", "smtp_http", "status_page", "jira")
    ports = {name: free_port() for name in names}
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TEMPORAL_ADDRESS", "SLACK_API_URL", "SERVICENOW_URL", "SLACK_APP_TOKEN", "SMTP_HOST")
    }
    env.update(
        TEMPORAL_PORT=str(ports["temporal"]),
        TEMPORAL_UI_PORT=str(ports["ui"]),
        SLACK_SANDBOX_PORT=str(ports["slack"]),
        SERVICENOW_SANDBOX_PORT=str(ports["servicenow"]),
        JIRA_SANDBOX_PORT=str(ports["jira"]),
        PAGERDUTY_SANDBOX_PORT=str(ports["pagerduty"]),
        OPSGENIE_SANDBOX_PORT=str(ports["opsgenie"]),
        SMTP_SANDBOX_PORT=str(ports["smtp"]),
        SMTP_SANDBOX_HTTP_PORT=str(ports["smtp_http"]),
        ALERT_RECEIVER_PORT=str(ports["alerts"]),
        SLACK_APP_PORT=str(ports["slack_app"]),
        STATUS_PAGE_PORT=str(ports["status_page"]),
        WORKER_METRICS_ADDRESS=f"127.0.0.1:{free_port()}",  # not the default: stacks side by side
        INCIDENT_DATA_DIR=str(tmp_path / "data"),
    )
    log = (tmp_path / "dev.log").open("w")
    process = subprocess.Popen(
        [str(INCIDENT), "dev", "--quiet"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 90
    while "Ready." not in (tmp_path / "dev.log").read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("incident dev did not start:\n" + (tmp_path / "dev.log").read_text()[-3000:])
        time.sleep(0.2)
    cli_env = {**env, "TEMPORAL_ADDRESS": f"127.0.0.1:{ports['temporal']}"}
    try:
        yield ports, cli_env, tmp_path
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail("incident dev did not stop within 30 s of Ctrl-C")


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


async def test_quick_start_declare_find_claim_and_drive_to_completion(dev_stack):
    ports, env, _ = dev_stack
    address = env["TEMPORAL_ADDRESS"]
    declared = run(
        [
            str(INCIDENT),
            "declare",
            "--severity",
            "SEV1",
            "--title",
            "R1 unreachable, WAN outage Site A",
            "--service",
            "wan-site-a",
            "--symptom",
            "R1 unreachable (ping 0%)",
            "--impact",
            "~200 users at Site A",
            "--key",
            "r1-outage",
        ],
        env,
    )
    assert declared.returncode == 0, declared.stdout + declared.stderr
    assert "incident-r1-outage" in declared.stdout

    # The declaration is in the sandbox's P1 channel, as slack_sdk reads it.
    slack = AsyncWebClient(token="xoxb-quickstart", base_url=f"http://127.0.0.1:{ports['slack']}/api/")
    channels = {c["name"]: c["id"] for c in (await slack.conversations_list())["channels"]}

    async def declaration():
        messages = (await slack.conversations_history(channel=channels["incidents"]))["messages"]
        return [m for m in messages if "R1 unreachable, WAN outage Site A" in m["text"]]

    [message] = await eventually(declaration, what="the declaration in #incidents")
    assert "R1 unreachable (ping 0%)" in message["text"]

    # Found by severity with the `temporal` CLI.
    async def listed():
        result = run(
            [str(TEMPORAL_CLI), "workflow", "list", "--address", address, "--query", "IncidentSeverity='P1'"],
            env,
        )
        return "incident-r1-outage" in result.stdout

    await eventually(listed, what="`temporal workflow list` to show the incident")

    # The UI's server shows the summary, so the list reads like an incident board.
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['ui']}", timeout=10) as ui:
        body = (await ui.get("/api/v1/namespaces/default/workflows/incident-r1-outage")).json()
    summary = body["executionConfig"]["userMetadata"]["summary"]
    assert json.loads(base64.b64decode(summary["data"])) == "P1 · R1 unreachable, WAN outage Site A"

    # Claim with Temporal's own CLI, then the incident CLI for the rest.
    claimed = run(
        [
            str(TEMPORAL_CLI),
            "workflow",
            "signal",
            "--address",
            address,
            "--workflow-id",
            "incident-r1-outage",
            "--name",
            "claim",
            "--input",
            '{"user": "U0ENGINEER1"}',
        ],
        env,
    )
    assert claimed.returncode == 0, claimed.stderr

    async def commander():
        result = run([str(INCIDENT), "status", "r1-outage"], env)
        return "U0ENGINEER1" in result.stdout and "investigating" in result.stdout

    await eventually(commander, what="the claim to show in `incident status`")
    steps = [
        [
            "update",
            "r1-outage",
            "--status",
            "identified",
            "--message",
            "R1 reloaded after a crash",
            "--user",
            "U0ENGINEER1",
        ],
        [
            "resolve",
            "r1-outage",
            "--resolution",
            "R1 recovered",
            "--root-cause",
            "software crash",
            "--user",
            "U0ENGINEER1",
        ],
        ["review-done", "r1-outage", "--notes", "TAC case opened", "--user", "U0ENGINEER1"],
    ]
    for step in steps:
        result = run([str(INCIDENT), *step], env)
        assert result.returncode == 0, f"{step}: {result.stdout}{result.stderr}"
        assert "accepted" in result.stdout

    async def completed():
        result = run(
            [
                str(TEMPORAL_CLI),
                "workflow",
                "describe",
                "--address",
                address,
                "--workflow-id",
                "incident-r1-outage",
            ],
            env,
        )
        return "Completed" in result.stdout or "COMPLETED" in result.stdout

    await eventually(completed, what="the workflow to complete")
    late = run([str(INCIDENT), "claim", "r1-outage", "--user", "U0LATE"], env)
    assert late.returncode != 0 and "closed" in (late.stdout + late.stderr)
    assert "Traceback" not in late.stderr

    thread = (await slack.conversations_replies(channel=channels["incidents"], ts=message["ts"]))["messages"]
    texts = "\n".join(m["text"] for m in thread)
    for expected in (
        "Incident Team Formed",
        "R1 reloaded after a crash",
        "INCIDENT RESOLVED",
        "Post-Incident Review",
    ):
        assert expected in texts


async def test_quick_start_an_alert_declares_and_a_reaction_claims(dev_stack):
    """The receivers and the Slack handler that `incident dev` starts: Alertmanager in, :raised_hand: claims."""
    ports, env, _ = dev_stack
    alert = {
        "version": "4",
        "status": "firing",
        "receiver": "incident",
        "groupKey": '{}:{alertname="DeviceUnreachable"}',
        "commonLabels": {"alertname": "DeviceUnreachable", "severity": "critical"},
        "commonAnnotations": {"summary": "R1 unreachable"},
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "DeviceUnreachable", "device": "R1", "upstream_device": "R2"},
                "annotations": {"summary": "R1 unreachable (ping 0%)"},
                "startsAt": "2026-11-23T14:32:00Z",
                "fingerprint": "r1-ping",
            }
        ],
    }
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['alerts']}", timeout=30) as http:
        response = await http.post("/alerts/alertmanager", json=alert)
    assert response.status_code == 202, response.text
    incident_id = response.json()["incidents"][0]["incident_id"]

    sandbox = f"http://127.0.0.1:{ports['slack']}"
    slack = AsyncWebClient(token="xoxb-quickstart", base_url=f"{sandbox}/api/")
    channels = {c["name"]: c["id"] for c in (await slack.conversations_list())["channels"]}

    async def declaration():
        messages = (await slack.conversations_history(channel=channels["incidents"]))["messages"]
        return [m for m in messages if "R1 unreachable" in m["text"]]

    [message] = await eventually(declaration, timeout=30, what="the alert's declaration in #incidents")
    async with httpx.AsyncClient(base_url=sandbox, timeout=30) as control:
        acted = await control.post(
            "/_sandbox/act/reaction",
            json={
                "user": "U0ALICE",
                "channel": channels["incidents"],
                "ts": message["ts"],
                "name": "raised_hand",
            },
        )
    assert acted.status_code == 200 and acted.json()["ok"], acted.text

    async def claimed():
        result = run([str(INCIDENT), "status", incident_id], env)
        return "U0ALICE" in result.stdout

    await eventually(claimed, timeout=30, what="the reaction to claim the incident")
