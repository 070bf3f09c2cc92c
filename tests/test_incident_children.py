"""IncidentWorkflow with its children for real: the ticket in the ServiceNow sandbox, the
investigation and verification on the mock devices, Slack in the sandbox, on the dev server.

Nothing here is faked: the worker is `worker.build_worker` with the real activities, the
ticket is written over HTTP to the ServiceNow sandbox, pyATS connects to unicon mock
devices (tests switch the testbed between the outage and recovered scenarios).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowExecutionStatus

from sandbox.devices import write_testbed
from sandbox.people import person
from sandbox.servicenow import create_app
from sandbox.slack import serve_in_background
from workflows.incident import IncidentWorkflow
from workflows.investigation_models import InvestigationOutcome, investigation_workflow_id
from workflows.models import (
    TICKET_ATTR,
    AlertBatch,
    AlertEvent,
    ClaimSignal,
    IncidentState,
    ResolveSignal,
    ReviewDoneSignal,
    SeveritySignal,
    UpdateSignal,
)
from workflows.ticket_models import TicketProgress, ticket_workflow_id

from .stack import eventually, first_pages_out, incident_worker, templates_of

AUTH = ("admin", "admin")


@pytest.fixture(scope="module")
async def servicenow():
    """The ServiceNow sandbox over HTTP; yields (its url, a client for its records)."""
    async with serve_in_background(create_app()) as url:
        async with httpx.AsyncClient(base_url=url, auth=AUTH, trust_env=False, timeout=10) as snow:
            yield url, snow


def ticketed_worker(local_env, sandbox, policy, url: str):
    """The real worker with the ServiceNow sandbox as its ticketing backend."""
    return incident_worker(
        local_env.client,
        sandbox.api_url,
        policy,
        servicenow_url=url,
        servicenow_user=AUTH[0],
        servicenow_password=AUTH[1],
    )


async def tickets_for(snow: httpx.AsyncClient, key: str) -> list[dict[str, Any]]:
    rows = (await snow.get("/_sandbox/records/incident")).json()
    # One ticket per occurrence of a key: its correlation id is `<key>#<run>`.
    return [r for r in rows if r["correlation_id"].partition("#")[0] == key]


def work_notes(record: dict[str, Any]) -> list[str]:
    return [j["value"] for j in record["journal"] if j["element"] == "work_notes"]


async def posted_message(sandbox: Any, state: IncidentState, template: str) -> dict[str, Any]:
    """The thread's message from `template`, once it is there."""

    async def probe() -> dict[str, Any] | None:
        thread = await sandbox.thread(state.slack_channel, state.slack_thread_ts)
        return next((m for m in thread if templates_of([m]) == [template]), None)

    return await eventually(probe, what=f"the {template} message")


async def until(handle: Any, test: Any, what: str, timeout: float = 60) -> IncidentState:
    async def probe() -> IncidentState | None:
        state = await handle.query(IncidentWorkflow.state)
        return state if test(state) else None

    return await eventually(probe, what=what, timeout=timeout)


async def test_a_full_incident_keeps_exactly_one_ticket_that_follows_it(
    local_env, sandbox, policy, servicenow
):
    url, snow = servicenow
    key = f"snow-{uuid.uuid4().hex[:8]}"
    async with ticketed_worker(local_env, sandbox, policy, url) as declare:
        handle = await declare("P2", key=key, symptoms=["R1 unreachable (ping 0%)"])
        state = await until(handle, lambda s: s.ticket and s.slack_thread_ts, "the ticket number")
        number = state.ticket
        assert re.fullmatch(r"INC\d{7}", number)

        user = "U0ENGINEER1"
        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user=user))
        for status, message in (
            ("investigating", "R2 sees Gi1 flapping"),
            ("fixing", "Reseating R1 Gi1 optic"),
        ):
            await handle.signal(
                IncidentWorkflow.update, UpdateSignal(user=user, status=status, message=message)
            )
        await handle.signal(IncidentWorkflow.set_severity, SeveritySignal(user=user, severity="P1"))
        await handle.signal(
            IncidentWorkflow.resolve,
            ResolveSignal(user=user, resolution="Optic replaced", root_cause="failed SFP on R1 Gi1"),
        )
        await handle.signal(IncidentWorkflow.review_done, ReviewDoneSignal(user=user, notes="review held"))
        summary = await handle.result()
        ticket = local_env.client.get_workflow_handle(
            ticket_workflow_id(handle.id), result_type=TicketProgress
        )
        progress = await ticket.result()

        # Exactly one ticket, closed, every change in order, the root cause in the close notes.
        found = await tickets_for(snow, key)
        assert len(found) == 1, found
        record = found[0]
        assert record["number"] == number and record["state"] == "7"  # Closed
        assert (
            record["assigned_to"] == person(user).sys_id
            and record["urgency"] == "1"
            and record["impact"] == "1"
        )
        assert "failed SFP on R1 Gi1" in record["close_notes"]
        notes = "\n".join(work_notes(record))
        assert notes.index("R2 sees Gi1 flapping") < notes.index("Reseating R1 Gi1 optic")
        assert progress.closed and not progress.problems and not progress.pending

        # The number in Slack (declaration header, resolution), the state and the search attribute.
        thread = await sandbox.thread(state.slack_channel, state.slack_thread_ts)
        assert number in thread[0]["text"]
        resolution = await posted_message(sandbox, state, "resolution")
        assert number in resolution["text"]
        assert summary.timeline[0].kind == "declared"
        assert any(e.kind == "ticket" and number in e.text for e in summary.timeline)
        description = await handle.describe()
        assert description.status == WorkflowExecutionStatus.COMPLETED
        assert description.typed_search_attributes.get(TICKET_ATTR) == number


async def test_servicenow_down_never_holds_up_slack_and_the_ticket_catches_up_in_order(
    local_env, sandbox, policy, servicenow
):
    url, snow = servicenow
    key = f"down-{uuid.uuid4().hex[:8]}"
    await snow.post("/_sandbox/down", json={"down": True})  # every call answers 503
    try:
        async with ticketed_worker(local_env, sandbox, policy, url) as declare:
            handle = await declare("P2", key=key)
            state = await until(handle, lambda s: s.slack_thread_ts, "the declaration")
            await first_pages_out(handle, policy)  # the P2 pages its primary on call, before the claim
            user = "U0ENGINEER1"
            await handle.signal(IncidentWorkflow.claim, ClaimSignal(user=user))
            for n in (1, 2):
                await handle.signal(
                    IncidentWorkflow.update,
                    UpdateSignal(user=user, status="investigating", message=f"during the outage {n}"),
                )
            # Slack has every message while ServiceNow is still down, and no ticket exists.
            await until(handle, lambda s: s.updates == 2, "both updates", timeout=15)
            expected = ["declaration", "paged", "team_formed", "status_update", "status_update"]

            async def thread_caught_up():  # the thread follows the state, beside the incident's loop
                thread = await sandbox.thread(state.slack_channel, state.slack_thread_ts)
                return thread if templates_of(thread) == expected else None

            thread = await eventually(thread_caught_up, what="both updates in the thread", timeout=15)
            assert "[INC pending]" in thread[0]["text"]
            assert await tickets_for(snow, key) == []
            await snow.post("/_sandbox/down", json={"down": False})

            state = await until(handle, lambda s: s.ticket, "the ticket once ServiceNow is back", timeout=60)
            await handle.signal(
                IncidentWorkflow.resolve,
                ResolveSignal(user=user, resolution="rerouted", root_cause="bad optic"),
            )

            async def resolved_ticket() -> dict[str, Any] | None:
                found = await tickets_for(snow, key)
                return found[0] if found and found[0]["state"] == "6" else None

            record = await eventually(resolved_ticket, what="the ticket resolved", timeout=60)
    finally:
        await snow.post("/_sandbox/down", json={"down": False})
    assert len(await tickets_for(snow, key)) == 1
    notes = "\n".join(work_notes(record))
    assert notes.index("during the outage 1") < notes.index("during the outage 2")
    assert record["assigned_to"] == person(user).sys_id and "bad optic" in record["close_notes"]


async def test_without_servicenow_the_incident_says_tickets_are_off(local_env, sandbox, policy):
    async with incident_worker(local_env.client, sandbox.api_url, policy) as declare:
        handle = await declare("P3")
        # The status can read "off" before the declaration is posted: wait for both.
        state = await until(
            handle,
            lambda s: s.slack_thread_ts and s.ticket_status.startswith("tickets are off"),
            "tickets off, and the declaration posted",
        )

        async def header_says_off() -> str | None:
            header = (await sandbox.thread(state.slack_channel, state.slack_thread_ts))[0]["text"]
            return header if "tickets are off" in header else None

        await eventually(header_says_off, what="the header saying tickets are off")  # kept current
        assert state.ticket is None


async def test_r1_outage_is_investigated_on_claim_and_verified_on_resolve(
    local_env, sandbox, policy, tmp_path
):
    testbed = write_testbed("outage", tmp_path / "testbed.yaml")
    async with incident_worker(
        local_env.client, sandbox.api_url, policy, pyats_testbed=str(testbed)
    ) as declare:
        handle = await declare(
            "P1", devices=["R1"], upstream={"R1": "R2"}, symptoms=["R1 does not answer ping"]
        )
        state = await until(handle, lambda s: s.baseline is not None, "the baseline", timeout=90)
        assert not state.baseline.devices["R1"].reachable
        assert state.investigation == ""  # the plan waits for a claim
        await first_pages_out(handle, policy)  # the P1 pages its primary on call, before the claim

        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="U0ENGINEER1"))
        state = await until(handle, lambda s: s.investigation, "the investigation's analysis", timeout=120)
        assert "R1" in state.investigation
        # The investigation stays until the incident is resolved: it verifies the devices then.
        investigation = local_env.client.get_workflow_handle(
            investigation_workflow_id(handle.id), result_type=InvestigationOutcome
        )
        outcome = await investigation.query("progress", result_type=InvestigationOutcome)
        assert outcome.analysis is not None and outcome.analysis.suspect == "R1"

        write_testbed("recovered", testbed)  # R1 is back
        await handle.signal(
            IncidentWorkflow.resolve,
            ResolveSignal(user="U0ENGINEER1", resolution="R1 power restored", root_cause="PSU failure"),
        )
        state = await until(handle, lambda s: s.verification is not None and s.resolved_at, "verification")
        assert state.verification.passed, state.verification.summary

        thread = await sandbox.thread(state.slack_channel, state.slack_thread_ts)
        texts = [m["text"] for m in thread]
        assert any("Investigation Results — Step 1/5" in t for t in texts)
        assert any("R1 unreachable from R2" in t for t in texts)
        resolution = (await posted_message(sandbox, state, "resolution"))["text"]
        assert "Verification" in resolution and "FAILED" not in resolution
        assert any(e.kind == "verification" and "✅" in e.text for e in state.timeline)
        # (A P1's war room line comes when the room is ready: not counted here.)
        assert [t for t in templates_of(thread) if t != "war_room_opened"][:3] == [
            "declaration",
            "paged",
            "team_formed",
        ]
        verified = await investigation.result()
        assert verified.verification is not None and verified.verification.passed


async def test_resolved_before_claim_stops_the_investigation_and_says_verification_failed(
    local_env, sandbox, policy, tmp_path
):
    testbed = write_testbed("outage", tmp_path / "testbed.yaml")
    async with incident_worker(
        local_env.client, sandbox.api_url, policy, pyats_testbed=str(testbed)
    ) as declare:
        handle = await declare("P1", devices=["R1"], upstream={"R1": "R2"})
        await until(handle, lambda s: s.baseline is not None, "the baseline", timeout=90)
        await handle.signal(
            IncidentWorkflow.resolve, ResolveSignal(user="U0ENGINEER1", resolution="declared by mistake")
        )
        state = await until(handle, lambda s: s.verification is not None and s.resolved_at, "verification")
        assert not state.verification.passed
        outcome = await local_env.client.get_workflow_handle(
            investigation_workflow_id(handle.id), result_type=InvestigationOutcome
        ).result()
        assert outcome.stopped and not outcome.investigated
        thread = await sandbox.thread(state.slack_channel, state.slack_thread_ts)
        resolution = (await posted_message(sandbox, state, "resolution"))["text"]
        assert "Verification FAILED" in resolution and "R1 reachable" in resolution
        assert any(e.kind == "verification" and "FAILED" in e.text for e in state.timeline)
        assert not any("Investigation Results" in m["text"] for m in thread)


async def test_an_alert_that_names_a_device_later_starts_the_investigation(
    local_env, sandbox, policy, tmp_path
):
    testbed = write_testbed("outage", tmp_path / "testbed.yaml")
    async with incident_worker(
        local_env.client, sandbox.api_url, policy, pyats_testbed=str(testbed)
    ) as declare:
        handle = await declare("P2")  # no devices yet: no investigation
        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="U0ENGINEER1"))
        state = await until(handle, lambda s: s.commander, "the claim")
        assert state.investigation_workflow_id is None
        alert = AlertEvent(
            source="alertmanager", fingerprint="r1", name="DeviceDown", devices=["R1"], upstream={"R1": "R2"}
        )
        await handle.signal(IncidentWorkflow.alerts, AlertBatch(user="alertmanager", alerts=[alert]))
        # Already claimed: the plan runs at once, after the baseline.
        state = await until(handle, lambda s: s.investigation, "the investigation's analysis", timeout=120)
        assert state.baseline is not None and "R1" in state.investigation
