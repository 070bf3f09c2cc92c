"""`incident audit`: the audit trail read from the incident's own history.

On recorded histories (deterministic, no server) and end to end: an incident driven by
the CLI and by Temporal's own CLI on the dev server, its trail as a table and as JSON Lines,
each line matching the history event it came from.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.worker import Worker
from typer.testing import CliRunner

from activities.audit import AuditEntry, client_identity, derive_audit, source_of, to_json_lines
from starter.cli import app
from workflows.incident import IncidentWorkflow
from workflows.models import IncidentSummary

from .conftest import TEMPORAL_CLI
from .fakes import RecordedSlack

HISTORIES = Path(__file__).parent / "histories"
JSON_FIELDS = {"time", "actor", "source", "kind", "what", "detail"}
runner = CliRunner()


def recorded(name: str, workflow_id: str) -> WorkflowHistory:
    return WorkflowHistory.from_json(workflow_id, (HISTORIES / name).read_text())


def at(entries: list[AuditEntry], kind: str, what: str) -> list[AuditEntry]:
    return [e for e in entries if e.kind == kind and what in e.what]


# ------------------------------------------------------------- recorded histories


def test_a_recorded_p1_gives_every_page_acknowledgement_and_command_at_its_history_time():
    history = recorded("2026-12-01-c6e4f37-p1-paged-snoozed-acknowledged.json", "incident-t-8bcd5f0b75")
    entries = derive_audit([history])

    assert entries == sorted(entries, key=lambda e: e.time)
    first, last = entries[0], entries[-1]
    assert (first.kind, first.actor, first.what) == (
        "declared",
        "incident-cli",
        "declared P1: R1 unreachable, WAN outage Site A",
    )
    assert last.kind == "closed" and "time to acknowledge 1500 s" in last.detail

    pages = [
        (e.what, e.detail.split(";")[0]) for e in entries if e.kind == "page" and e.what.startswith("paged")
    ]
    assert pages == [
        ("paged U0CAROL (Carol Weber) via pagerduty", "level 1, on call for network-primary"),
        ("paged U0CAROL (Carol Weber) via slack", "level 1, on call for network-primary"),
        ("paged U0DAVE (Dave Fischer) via pagerduty", "level 2, on call for network-secondary"),
        ("paged U0DAVE (Dave Fischer) via slack", "level 2, on call for network-secondary"),
        ("paged U0KARL (Karl Wolf) via pagerduty", "unresolved after 30m, on call for network-lead"),
        ("paged U0KARL (Karl Wolf) via slack", "unresolved after 30m, on call for network-lead"),
    ]
    (ack,) = [e for e in entries if e.kind == "acknowledgement"]
    assert (ack.actor, ack.what) == ("U0BOB", "acknowledge (signal)")
    assert at(entries, "page", "acknowledge at pagerduty (by U0BOB)")
    assert at(entries, "deadline", "due: page level 2 due") and at(entries, "deadline", "due: snooze ends")

    # Each command is its signal event: same event id, same time, the sender's user.
    events = {e.event_id: e for e in history.events}
    signals = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED]
    commands = [e for e in entries if e.kind in ("command", "acknowledgement")]
    assert [c.event_id for c in commands] == [s.event_id for s in signals]
    assert [c.what.split()[0] for c in commands] == [
        "snooze",
        "acknowledge",
        "claim",
        "resolve",
        "review_done",
    ]
    for command in commands:
        event = events[command.event_id]
        assert command.time == event.event_time.ToDatetime(tzinfo=UTC)
        assert command.identity == event.workflow_execution_signaled_event_attributes.identity == "6368@vm"
        assert command.source == "client"  # recorded before the CLI named its client
    # Every Slack post the workflow made is one line.
    posted = [e for e in history.events if e.HasField("activity_task_scheduled_event_attributes")]
    posts = [
        e
        for e in posted
        if e.activity_task_scheduled_event_attributes.activity_type.name == "post_slack_message"
    ]
    assert len([e for e in entries if e.what.startswith("posted ")]) == len(posts) == 13


def test_the_ticket_childs_writes_replace_what_the_incident_sent_it():
    incident = recorded("2026-12-01-ecb7c22-r1-outage-p2-ticket-devices.json", "incident-r1-67f1c2a2")
    ticket = recorded("2026-12-01-ecb7c22-ticket-opened-changed-closed.json", "incident-r1-67f1c2a2-ticket")
    investigation = recorded(
        "2026-12-01-ecb7c22-investigation-baseline-investigate-done.json",
        "incident-r1-67f1c2a2-investigation",
    )

    alone = derive_audit([incident])
    assert (
        len([e for e in alone if e.kind == "ticket" and "sent to incident-r1-67f1c2a2-ticket" in e.what]) == 8
    )

    entries = derive_audit([incident, ticket, investigation])
    tickets = [e.what for e in entries if e.kind == "ticket" and not e.what.startswith("told")]
    assert tickets == [
        "opened servicenow INC0010001",
        "ticket INC0010001 claim (state 2)",
        "ticket INC0010001 update (state 2)",
        "ticket INC0010001 severity (state 2)",
        "ticket INC0010001 note (state 2)",
        "ticket INC0010001 claim (state 2)",
        "ticket INC0010001 update (state 2)",
        "ticket INC0010001 resolve (state 6)",
        "ticket INC0010001 close (state 7)",
    ]
    assert not [e for e in entries if "sent to" in e.what]
    assert at(entries, "verification", "verification against the baseline passed")
    assert at(entries, "investigation", "analysed the findings")
    handover = [e for e in entries if e.kind == "command" and e.actor == "U0ENGINEER2"]
    assert [e.what for e in handover] == ["claim (signal)", "update (signal)", "resolve (signal)"]


def test_json_lines_are_one_object_a_line_with_utc_times():
    history = recorded("2026-12-01-34aa103-war-room-triggers.json", "incident-wr")
    entries = derive_audit([history])
    lines = to_json_lines(entries).splitlines()
    assert len(lines) == len(entries)
    for line, entry in zip(lines, entries, strict=True):
        obj = json.loads(line)
        assert JSON_FIELDS <= obj.keys()
        assert obj["time"].endswith("Z") and datetime.fromisoformat(obj["time"]) == entry.time
    alerts = [json.loads(x) for x in lines if json.loads(x)["kind"] == "alert"]
    assert [a["actor"] for a in alerts] == ["alertmanager", "alertmanager"]
    assert alerts[0]["what"] == "2 alert(s): db1 down (firing), db2 down (firing)"


@pytest.mark.parametrize(
    ("identity", "source"),
    [
        (client_identity("incident-cli"), "cli"),
        (client_identity("slack-handler"), "slack"),
        (client_identity("alert-receiver"), "alert"),
        ("temporal-cli:alice@box", "temporal-cli"),
        ("history-service", "workflow"),
        ("", "temporal-ui"),
        ("alice@example.com", "temporal-ui"),
        ("6368@vm", "client"),
        ("something-else", "other"),
    ],
    ids=lambda value: value.split(":")[0] or "empty",  # the pid differs between xdist's workers
)
def test_where_a_command_came_from_is_read_from_the_clients_identity(identity, source):
    assert source_of(identity) == source


# ------------------------------------------------------------- end to end


def invoke(args: list[str], **env: str):
    return runner.invoke(app, args, env={"INCIDENT_USER": "tester", "COLUMNS": "250", **env})


async def test_audit_of_an_incident_driven_from_the_cli_and_the_temporal_cli(local_env, policy, tmp_path):
    address = local_env.client.service_client.config.target_host
    env = {"TEMPORAL_ADDRESS": address, "TEMPORAL_TASK_QUEUE": f"audit-tq-{uuid.uuid4().hex[:8]}"}
    key = f"audit-{uuid.uuid4().hex[:8]}"
    workflow_id = f"incident-{key}"
    slack = RecordedSlack(policy)

    async def cli(*args: str):
        result = await asyncio.to_thread(invoke, list(args), **env)
        assert result.exit_code == 0, result.output
        return result.output

    async with Worker(
        local_env.client,
        task_queue=env["TEMPORAL_TASK_QUEUE"],
        workflows=[IncidentWorkflow],
        activities=slack.activities,
    ):
        await cli("declare", "-s", "P1", "-t", "R1 unreachable", "--service", "wan-a", "--key", key)
        for _ in range(100):  # level 1 is paged at once
            if slack.pages:
                break
            await asyncio.sleep(0.1)
        await cli("ack", key, "--user", "U0BOB")
        await cli("claim", key, "--user", "U0ALICE")
        # From Temporal's own CLI (its own identity), with markup the table must not interpret.
        sent = await asyncio.to_thread(
            subprocess.run,
            [str(TEMPORAL_CLI), "workflow", "signal", "--workflow-id", workflow_id, "--name", "update"]
            + ["--address", address, "--input"]
            + [json.dumps({"user": "U0CAROL", "status": "fixing", "message": "[bold]PSU[/bold] swapped"})],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert sent.returncode == 0, sent.stderr
        for _ in range(100):
            if any(p.template == "status_update" for p in slack.posts):
                break
            await asyncio.sleep(0.1)
        await cli("resolve", key, "-r", "PSU replaced", "-u", "U0ALICE")
        await cli("review-done", key, "--notes", "done", "-u", "U0ALICE")
        await local_env.client.get_workflow_handle(workflow_id).result()

    # No worker needed: the trail is read from the history.
    lines = (await cli("audit", key, "--json")).splitlines()
    entries = [json.loads(line) for line in lines]
    assert all(JSON_FIELDS <= e.keys() for e in entries)
    assert [e["time"] for e in entries] == sorted(e["time"] for e in entries)

    declared = entries[0]
    assert (declared["kind"], declared["actor"], declared["source"]) == ("declared", "tester", "cli")
    assert declared["identity"] == client_identity("incident-cli")
    commands = [
        (e["actor"], e["source"], e["kind"], e["what"])
        for e in entries
        if e["kind"] in ("command", "acknowledgement")
    ]
    assert commands == [
        ("U0BOB", "cli", "acknowledgement", "acknowledge (update)"),
        ("U0ALICE", "cli", "command", "claim (update)"),
        ("U0CAROL", "temporal-cli", "command", "update (signal)"),
        ("U0ALICE", "cli", "command", "resolve (update)"),
        ("U0ALICE", "cli", "command", "review_done (update)"),
    ]
    claim = next(e for e in entries if e["what"] == "claim (update)")
    assert "U0ALICE is Incident Commander" in claim["detail"], claim  # what the incident answered
    carol = next(e for e in entries if e["actor"] == "U0CAROL")
    assert carol["identity"].startswith("temporal-cli:") and "[bold]PSU[/bold] swapped" in carol["detail"]

    pages = [e for e in entries if e["kind"] == "page" and e["what"].startswith("paged ")]
    assert len(pages) == len(slack.pages) >= 1
    assert [e["what"] for e in entries if e["what"].startswith("posted ")] == [
        f"posted {p.template} in C0{p.channel.upper()[:8]}" + (" thread" if p.thread_ts else "")
        for p in slack.posts
    ]
    assert entries[-1]["kind"] == "closed"
    # The ticket workflow never ran here (not on this worker): what the incident sent it stays.
    sent = [e["what"] for e in entries if e["kind"] == "ticket"]
    assert (
        f"ticket claim sent to {workflow_id}-ticket" in sent
        and f"ticket resolve sent to {workflow_id}-ticket" in sent
    )

    # Each command's time is its event's in the history.
    history = await local_env.client.get_workflow_handle(workflow_id).fetch_history()
    times = {e.event_id: e.event_time.ToDatetime(tzinfo=UTC) for e in history.events}
    for entry in entries:
        if entry["workflow_id"] == workflow_id:
            assert datetime.fromisoformat(entry["time"]) == times[entry["event_id"]], entry

    # The table shows the same lines, markup in people's text printed as typed.
    table = await cli("audit", workflow_id)
    assert "[bold]PSU[/bold] swapped" in table
    rows = [line for line in table.splitlines() if line[:4].isdigit()]
    assert len(rows) == len(entries)
    for row, entry in zip(rows, entries, strict=True):
        assert entry["source"] in row and entry["kind"] in row, (row, entry)

    # `incident review` of the completed incident, no worker: drafted from its result, to a file.
    out = tmp_path / "review.md"
    said = await cli("review", key, "--out", str(out))
    assert f"review of {key} written to" in said
    review = out.read_text()
    assert review.startswith("# Post-Incident Review: R1 unreachable")
    result = await local_env.client.get_workflow_handle(workflow_id, result_type=IncidentSummary).result()
    rows = [line for line in review.splitlines() if line.startswith("| 20")]  # the timeline's UTC rows
    assert len(rows) == len(result.timeline) and rows[0].startswith(
        f"| {result.declared_at:%Y-%m-%d %H:%M:%S}"
    )
    assert "[bold]PSU[/bold] swapped" in review  # people's text as they typed it


def test_audit_of_an_unknown_incident_is_one_line(local_env):
    address = local_env.client.service_client.config.target_host
    result = invoke(["audit", "nope-404"], TEMPORAL_ADDRESS=address)
    assert result.exit_code == 1 and "no incident nope-404" in result.output, result.output


def test_a_webhook_acknowledgement_a_ui_signal_and_a_termination_say_where_they_came_from():
    """Built events as the server writes them: PagerDuty's acknowledgement through the alert
    receiver, a signal from the Temporal UI (no identity: checked by hand against the dev server's
    UI API), and `temporal workflow terminate`."""
    from google.protobuf.timestamp_pb2 import Timestamp
    from temporalio.api.history.v1 import HistoryEvent
    from temporalio.contrib.pydantic import pydantic_data_converter

    def payloads(value):
        return pydantic_data_converter.payload_converter.to_payloads([value])

    def event(event_id: int, second: int, **attributes) -> HistoryEvent:
        return HistoryEvent(
            event_id=event_id, event_time=Timestamp(seconds=1_796_140_000 + second), **attributes
        )

    receiver = client_identity("alert-receiver")
    events = [
        event(
            1, 0, workflow_execution_started_event_attributes={"workflow_type": {"name": "IncidentWorkflow"}}
        ),
        event(
            2,
            1,
            workflow_execution_signaled_event_attributes={
                "signal_name": "acknowledge",
                "identity": receiver,
                "input": {"payloads": payloads({"user": "U0CAROL", "source": "pagerduty"})},
            },
        ),
        event(
            3,
            2,
            workflow_execution_signaled_event_attributes={
                "signal_name": "update",
                "identity": "",
                "input": {"payloads": payloads({"user": "U0DAVE", "status": "fixing", "message": "x"})},
            },
        ),
        event(
            4,
            3,
            workflow_execution_terminated_event_attributes={
                "reason": "duplicate",
                "identity": "temporal-cli:ops@box",
            },
        ),
    ]
    history = WorkflowHistory("incident-built", events)
    lines = [(e.actor, e.source, e.kind, e.what, e.detail) for e in derive_audit([history])]
    assert lines[1:] == [
        ("U0CAROL", "pagerduty", "acknowledgement", "acknowledge (signal)", ""),
        ("U0DAVE", "temporal-ui", "command", "update (signal)", "status=fixing, message=x"),
        ("temporal-cli:ops@box", "temporal-cli", "closed", "incident terminated", "duplicate"),
    ]
