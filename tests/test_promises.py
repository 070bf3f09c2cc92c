"""README promises that no other test backs, each on real parts.

The alert receivers (over HTTP; in-process where arrival within 50 ms matters), the dev server,
the worker with the real activities, the Slack sandbox over HTTP and, for tickets, the ServiceNow
sandbox over HTTP. Each test asserts what a person would see: the incident's state and timeline,
its search attributes, its Slack messages. The P2 and P3 review deadlines are in
tests/test_review_deadlines.py (time skipping).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle

from activities.settings import Settings
from sandbox.servicenow import create_app as servicenow_app
from sandbox.slack import serve_in_background
from starter.alerts import DEFAULT_BATCH_WINDOW, create_app
from workflows.incident import IncidentWorkflow
from workflows.models import AlertBatch, ClaimSignal, IncidentState, Phase, Severity, UpdateSignal

from .stack import eventually, incident_worker, templates_of, terminate_all
from .test_alerts import receiver
from .test_incident_children import AUTH, ticketed_worker


async def until(
    handle: WorkflowHandle, test: Callable[[IncidentState], Any], what: str, timeout: float = 30
) -> IncidentState:
    async def probe() -> IncidentState | None:
        state = await handle.query(IncidentWorkflow.state)
        return state if test(state) else None

    return await eventually(probe, timeout=timeout, what=what)


async def header_text(sandbox, state: IncidentState) -> str:
    """The declaration message as Slack shows it now (kept current by chat.update)."""
    thread = await sandbox.thread(state.slack_channel, state.slack_thread_ts)
    return thread[0]["text"]


async def header_once(sandbox, state: IncidentState, needle: str) -> str:
    async def probe() -> str | None:
        text = await header_text(sandbox, state)
        return text if needle in text else None

    return await eventually(probe, what=f"the header to read {needle!r}")


async def search_attributes(handle: WorkflowHandle) -> dict[str, Any]:
    """The workflow's search attributes as the server holds them now (describe is not eventual)."""
    described = await handle.describe()
    return {pair.key.name: pair.value for pair in described.typed_search_attributes}


async def listed_once(local_env, query: str, expected: list[str]) -> None:
    """Wait until the visibility query lists exactly `expected` (visibility is eventually consistent)."""
    seen: list[str] = []

    async def probe() -> bool:
        nonlocal seen
        seen = [w.id async for w in local_env.client.list_workflows(query)]
        return seen == expected

    try:
        await eventually(probe, what=f"{query!r} to list {expected}")
    except AssertionError as timed_out:
        raise AssertionError(f"{timed_out}; it lists {seen}") from None


def alert_signals(history) -> list[Any]:
    return [
        e.workflow_execution_signaled_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        and e.workflow_execution_signaled_event_attributes.signal_name == "alerts"
    ]


# ------------------------------------------------------------------ alerts


@asynccontextmanager
async def in_process_receiver(local_env, sandbox, policy):
    """The receivers with their default windows, called in-process (httpx's ASGI transport).

    Requests sent together reach the batcher within a millisecond or so, whatever the load on
    the machine: over sockets, a busy 2-core runner was seen to spread five concurrent requests
    over more than the 50 ms window, which would test the runner, not the receiver.
    """
    async with incident_worker(local_env.client, sandbox.api_url, policy) as declare:
        app = create_app(Settings(temporal_task_queue=declare.task_queue), policy, client=local_env.client)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://receiver", timeout=60) as http:
            yield http


async def test_a_more_severe_alert_raises_the_severity_and_a_milder_one_never_lowers_it(
    local_env, sandbox, policy
):
    dedup = f"raise-{uuid.uuid4().hex[:8]}"
    alert = {"title": "Site B latency over 200 ms", "severity": "warning", "dedup_key": dedup}
    async with receiver(local_env, sandbox, policy) as http:
        first = await http.post("/alerts", json=alert)
        assert first.status_code == 202, first.text
        [incident] = first.json()["incidents"]
        assert incident["new"] is True
        handle = local_env.client.get_workflow_handle(incident["incident_id"])
        try:
            declared = await until(handle, lambda s: s.slack_thread_ts, "the P3 declaration in Slack")
            assert declared.severity == Severity.P3
            assert "*Severity:* P3" in await header_text(sandbox, declared)
            assert (await search_attributes(handle))["IncidentSeverity"] == "P3"

            worse = await http.post(
                "/alerts", json={**alert, "title": "Site B unreachable", "severity": "critical"}
            )
            assert worse.status_code == 202, worse.text
            assert [(i["incident_id"], i["new"]) for i in worse.json()["incidents"]] == [(handle.id, False)]
            raised = await until(handle, lambda s: s.severity == Severity.P1, "the alert to raise P3 to P1")
            assert [e.text for e in raised.timeline if e.kind == "severity"] == [
                "severity P3 → P1 (raised by an alert)"
            ]
            assert (await search_attributes(handle))["IncidentSeverity"] == "P1"
            await listed_once(local_env, f"WorkflowId='{handle.id}' AND IncidentSeverity='P1'", [handle.id])
            assert "*Severity:* P1" in await header_once(sandbox, raised, "*Severity:* P1")

            milder = await http.post(
                "/alerts", json={**alert, "title": "Site B packet loss 1%", "severity": "info"}
            )
            assert milder.status_code == 202, milder.text
            after = await until(handle, lambda s: s.alerts_received == 3, "the third alert in the incident")
            assert after.severity == Severity.P1, "a milder alert never lowers the severity"
            assert [e.kind for e in after.timeline].count("severity") == 1
            assert "Site B packet loss 1%" in after.symptoms
            # The header is rewritten for the new symptom, and still reads P1.
            header = await header_once(sandbox, after, "Site B packet loss 1%")
            assert "*Severity:* P1" in header and "*Severity:* P4" not in header
            assert (await search_attributes(handle))["IncidentSeverity"] == "P1"
        finally:
            await terminate_all([handle])


async def test_alerts_for_a_new_key_within_the_50_ms_window_arrive_as_one_signal_with_start(
    local_env, sandbox, policy
):
    run = uuid.uuid4().hex[:8]
    titles = [f"Site C uplink {n} down" for n in range(5)]
    together = [{"title": t, "severity": "warning", "dedup_key": f"batch-{run}"} for t in titles]
    elsewhere = {"title": "Site D uplink down", "severity": "warning", "dedup_key": f"other-{run}"}
    assert DEFAULT_BATCH_WINDOW == 0.05  # the receivers' window, as the README says
    async with in_process_receiver(local_env, sandbox, policy) as http:
        *responses, other = await asyncio.gather(
            *(http.post("/alerts", json=body) for body in together), http.post("/alerts", json=elsewhere)
        )
        assert [r.status_code for r in [*responses, other]] == [202] * 6, [r.text for r in responses]
        answers = [r.json()["incidents"] for r in responses]
        incident_id = answers[0][0]["incident_id"]
        # One incident, and every request of the declaring batch hears that it is new.
        assert answers == [[{**answers[0][0], "incident_id": incident_id, "new": True}]] * len(together)
        other_id = other.json()["incidents"][0]["incident_id"]
        assert other_id != incident_id
        handle = local_env.client.get_workflow_handle(incident_id)
        other_handle = local_env.client.get_workflow_handle(other_id)
        try:
            state = await until(
                handle, lambda s: s.alerts_received == len(together) and s.slack_thread_ts, "all five alerts"
            )
            await until(other_handle, lambda s: s.slack_thread_ts, "the other incident")
            history = await handle.fetch_history()
            other_history = await other_handle.fetch_history()
        finally:
            await terminate_all([handle, other_handle])

    signals = alert_signals(history)
    assert len(signals) == 1, f"{len(signals)} alert signals: one for all five was expected"
    [signal] = signals
    # Signal-with-start: the workflow began with the signal already in its history.
    first, second = history.events[:2]
    assert first.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
    assert second.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    assert second.workflow_execution_signaled_event_attributes == signal
    [batch] = await local_env.client.data_converter.decode(signal.input.payloads, [AlertBatch])
    assert sorted(a.name for a in batch.alerts) == titles
    [other_signal] = alert_signals(other_history)
    [other_batch] = await local_env.client.data_converter.decode(other_signal.input.payloads, [AlertBatch])
    assert [a.name for a in other_batch.alerts] == ["Site D uplink down"]  # its own key: not joined
    assert [e.kind for e in state.timeline].count("declared") == 1
    assert sorted(e.text for e in state.timeline if e.kind == "alert") == [
        f"alert firing: {t}" for t in titles
    ]


@pytest.mark.parametrize("given", ["SEV2", "major"])
async def test_a_generic_alerts_fields_land_in_the_incident_and_its_declaration(
    local_env, sandbox, policy, given
):
    # SEV2 is P2's alias; "major" maps to P2 through the policy's alerts.severity_map (the
    # default for a severity nobody maps is P3).
    assert given == "SEV2" or policy.alerts.severity_map[given] == Severity.P2
    service = f"core-{uuid.uuid4().hex[:6]}"
    alert = {
        "title": "Core switch CPU 95%",
        "severity": given,
        "dedup_key": f"fields-{uuid.uuid4().hex[:8]}",
        "service": service,
        "devices": ["SW9"],
        "upstream": {"SW9": "CORE9"},
        "symptoms": ["CPU 95% on SW9", "OSPF adjacency to CORE9 flapping"],
        "impact": ["DHCP slow in building 4"],
    }
    async with receiver(local_env, sandbox, policy) as http:
        response = await http.post("/alerts", json=alert)
        assert response.status_code == 202, response.text
        handle = local_env.client.get_workflow_handle(response.json()["incidents"][0]["incident_id"])
        try:
            state = await until(handle, lambda s: s.slack_thread_ts, "the declaration in Slack")
            attributes = await search_attributes(handle)
            await listed_once(local_env, f"IncidentService='{service}'", [handle.id])
            header = await header_text(sandbox, state)
            channels = (await sandbox.web.conversations_list())["channels"]
        finally:
            await terminate_all([handle])

    assert state.severity == Severity.P2 and state.title == "Core switch CPU 95%"
    assert state.service == service
    assert state.devices == ["SW9"] and state.upstream == {"SW9": "CORE9"}
    assert state.symptoms[:2] == alert["symptoms"]
    assert state.impact == alert["impact"]
    assert attributes["IncidentSeverity"] == "P2" and attributes["IncidentService"] == service
    assert {c["id"]: c["name"] for c in channels}[state.slack_channel] == policy.channel(Severity.P2)
    for line in (
        "INCIDENT DECLARED — Core switch CPU 95%",
        "*Severity:* P2",
        f"*Service:* {service}",
        "• CPU 95% on SW9",
        "• OSPF adjacency to CORE9 flapping",
        "*Impact:*\n• DHCP slow in building 4",
    ):
        assert line in header, (line, header)


# ---------------------------------------------------------------- commander


async def test_the_incident_commander_search_attribute_follows_claim_and_handover(local_env, sandbox, policy):
    async with incident_worker(local_env.client, sandbox.api_url, policy) as declare:
        handle = await declare("P2")
        await until(handle, lambda s: s.slack_thread_ts, "the declaration in Slack")
        assert "IncidentCommander" not in await search_attributes(handle)
        alice, bob = (f"U0{name}{uuid.uuid4().hex[:6].upper()}" for name in ("ALICE", "BOB"))

        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user=alice))
        await until(handle, lambda s: s.commander == alice, "the claim")
        assert (await search_attributes(handle))["IncidentCommander"] == alice
        await listed_once(local_env, f"IncidentCommander='{alice}'", [handle.id])

        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user=bob))
        await until(handle, lambda s: s.commander == bob, "the handover")
        assert (await search_attributes(handle))["IncidentCommander"] == bob
        await listed_once(local_env, f"IncidentCommander='{bob}'", [handle.id])
        await listed_once(local_env, f"IncidentCommander='{alice}'", [])


# ------------------------------------------------------------------ tickets


@pytest.fixture(scope="module")
async def servicenow():
    """The ServiceNow sandbox over HTTP for this module; yields (its url, a client for it)."""
    async with serve_in_background(servicenow_app()) as url:
        async with httpx.AsyncClient(base_url=url, auth=AUTH, trust_env=False, timeout=10) as snow:
            yield url, snow


async def thread_message(sandbox, state: IncidentState, template: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        thread = await sandbox.thread(state.slack_channel, state.slack_thread_ts)
        return next((m for m in thread if templates_of([m]) == [template]), None)

    return await eventually(probe, what=f"the {template} message in the thread")


async def test_a_ticket_update_servicenow_rejects_is_said_in_the_thread_and_the_incident_goes_on(
    local_env, sandbox, policy, servicenow
):
    url, snow = servicenow
    (await snow.delete("/_sandbox/faults")).raise_for_status()
    async with ticketed_worker(local_env, sandbox, policy, url) as declare:
        handle = await declare("P2", key=f"rejected-{uuid.uuid4().hex[:8]}")
        opened = await until(handle, lambda s: s.ticket and s.slack_thread_ts, "the ticket number")
        # ServiceNow refuses the next write (the claim's assignment), as an ACL would.
        fault = {"method": "PATCH", "status": 403, "count": 1}
        (await snow.post("/_sandbox/faults", json=fault)).raise_for_status()
        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="U0ENGINEER1"))
        state = await until(
            handle,
            lambda s: "ticket_problem" in [e.kind for e in s.timeline],
            "the rejection in the timeline",
        )
        warning = await thread_message(sandbox, state, "ticket_problem")
        await handle.signal(
            IncidentWorkflow.update,
            UpdateSignal(user="U0ENGINEER1", status="fixing", message="Rebooting R2 after the rejection"),
        )
        after = await until(handle, lambda s: s.updates == 1, "the update after the rejection")
        update = await thread_message(sandbox, after, "status_update")

        async def noted() -> list[str] | None:
            # The ticket child writes the update's work note beside the thread, a moment later.
            records = (await snow.get("/_sandbox/records/incident")).json()
            [record] = [r for r in records if r["number"] == opened.ticket]
            notes = [j["value"] for j in record["journal"] if j["element"] == "work_notes"]
            return notes if any("Rebooting R2 after the rejection" in n for n in notes) else None

        await eventually(noted, what="the next update's work note in the ticket")

    [problem] = [e.text for e in state.timeline if e.kind == "ticket_problem"]
    assert "ServiceNow rejected" in problem and "403" in problem, problem
    assert warning["text"] == (
        f":warning: *ServiceNow:* {problem} — the incident goes on; "
        f"the ticket {opened.ticket} will not have this claim."
    )
    # The incident went on: claimed, and the next update posted after the warning (and noted in the
    # ticket, above).
    assert after.commander == "U0ENGINEER1" and after.phase == Phase.monitoring
    assert float(update["ts"]) > float(warning["ts"])


async def test_a_ticket_servicenow_refuses_to_open_is_said_in_the_thread_and_the_incident_runs_without(
    local_env, sandbox, policy, servicenow
):
    url, snow = servicenow
    (await snow.delete("/_sandbox/faults")).raise_for_status()
    (
        await snow.post("/_sandbox/faults", json={"method": "POST", "status": 400, "count": 1})
    ).raise_for_status()
    async with ticketed_worker(local_env, sandbox, policy, url) as declare:
        key = f"unopened-{uuid.uuid4().hex[:8]}"
        handle = await declare("P2", key=key)
        state = await until(
            handle,
            lambda s: s.slack_thread_ts and "ticket_problem" in [e.kind for e in s.timeline],
            "the refused ticket in the timeline",
        )
        warning = await thread_message(sandbox, state, "ticket_problem")
        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="U0ENGINEER1"))
        claimed = await until(handle, lambda s: s.commander == "U0ENGINEER1", "the claim")
        await thread_message(sandbox, claimed, "team_formed")
    (await snow.delete("/_sandbox/faults")).raise_for_status()

    [problem] = [e.text for e in state.timeline if e.kind == "ticket_problem"]
    assert "ServiceNow rejected" in problem and "400" in problem, problem
    assert warning["text"] == f":warning: *ServiceNow:* {problem} — the incident goes on; it has no ticket."
    assert claimed.ticket is None and claimed.phase == Phase.investigating
