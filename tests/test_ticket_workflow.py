"""The incident's ticket as a child workflow (workflows/tickets.py) on a real worker.

Real parts throughout: the Temporal dev server, the real TicketActivities and
the ServiceNow sandbox over HTTP, read back with ServiceNow's own client,
pysnc. A small stand-in for IncidentWorkflow starts the child the way the
incident does (at declaration, ABANDON), forwards each change to it by
workflow id, and records the `ticket_opened` and `ticket_problem` signals it
gets back. Calls are retried within a second here, so outages stay short.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from temporalio import workflow
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, Worker
from temporalio.workflow import ParentClosePolicy

from activities.rendering import render
from activities.temporal import TemporalActivities
from activities.tickets import ServiceNowTickets, TicketActivities
from sandbox.people import person
from sandbox.servicenow import create_app
from sandbox.slack import serve_in_background
from workflows.models import IncidentState, TicketReference
from workflows.ticket_models import (
    TicketEvent,
    TicketInput,
    TicketOpen,
    TicketProblem,
    TicketProgress,
    TicketRef,
    ticket_workflow_id,
)
from workflows.tickets import TicketWorkflow

from .stack import eventually, terminate_all

AUTH = ("admin", "admin")
AT = datetime(2026, 11, 22, 14, 32, tzinfo=UTC)
FAST = {
    "start_to_close": timedelta(seconds=5),
    "initial_retry_interval": timedelta(milliseconds=200),
    "max_retry_interval": timedelta(milliseconds=500),
}
FORBIDDEN = (
    "ServiceNow rejected the update: 403 Operation Failed "
    "(ACL Exception Update Failed due to security constraints)"
)


# ------------------------------------------------- the incident, standing in


class Heard(BaseModel):
    """What the ticket child told the incident, and how many changes the incident handed it."""

    opened: list[TicketRef] = Field(default_factory=list)
    problems: list[TicketProblem] = Field(default_factory=list)
    forwarded: int = 0


@workflow.defn(sandboxed=False)
class TicketedIncidentStandIn:
    """Starts the ticket child as IncidentWorkflow does and forwards changes to it in order."""

    def __init__(self) -> None:
        self._heard = Heard()
        self._outbox: list[TicketEvent] = []
        self._done = False

    @workflow.signal
    def send(self, event: TicketEvent) -> None:
        self._outbox.append(event)

    @workflow.signal
    def finish(self) -> None:
        self._done = True

    @workflow.signal
    def ticket_opened(self, ref: TicketRef) -> None:
        self._heard.opened.append(ref)

    @workflow.signal
    def ticket_problem(self, problem: TicketProblem) -> None:
        self._heard.problems.append(problem)

    @workflow.query
    def heard(self) -> Heard:
        return self._heard

    @workflow.run
    async def run(self, input: TicketInput) -> Heard:
        incident_id = workflow.info().workflow_id
        child_id = ticket_workflow_id(incident_id)
        await workflow.start_child_workflow(
            TicketWorkflow.run,
            input.model_copy(update={"incident_workflow_id": incident_id}),
            id=child_id,
            parent_close_policy=ParentClosePolicy.ABANDON,
        )
        # By id, as the incident does: a child handle does not survive continue-as-new.
        ticket = workflow.get_external_workflow_handle(child_id)
        while True:
            await workflow.wait_condition(lambda: bool(self._outbox) or self._done)
            if not self._outbox:
                break
            await ticket.signal(TicketWorkflow.change, self._outbox.pop(0))
            self._heard.forwarded += 1
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._heard


# ------------------------------------------------------------------ the parts


@pytest.fixture(scope="module")
async def served() -> AsyncIterator[tuple[Starlette, str]]:
    app = create_app()
    async with serve_in_background(app) as url:
        yield app, url


@pytest.fixture
async def snow(served) -> AsyncIterator[httpx.AsyncClient]:
    """The sandbox's control API (and its Table API, as admin), freshly reset."""
    _, url = served
    async with httpx.AsyncClient(base_url=url, auth=AUTH, timeout=10) as client:
        (await client.post("/_sandbox/reset")).raise_for_status()
        yield client
        await client.delete("/_sandbox/faults")
        await client.post("/_sandbox/down", json={"down": False})


class Incident:
    """One incident on the stand-in: start it, send it changes, read what it heard and the ticket."""

    def __init__(self, client: Client, handle: WorkflowHandle, key: str, queue: str) -> None:
        self.client, self.handle, self.key, self.queue = client, handle, key, queue
        self.keys: list[str] = []
        self.ticket = client.get_workflow_handle_for(TicketWorkflow.run, ticket_workflow_id(handle.id))

    async def send(self, kind: str, **fields: Any) -> str:
        """Signal the incident as a person's action would; returns the change's idempotency key."""
        key = f"{self.handle.id}/ticket/{len(self.keys) + 1}/{kind}"
        self.keys.append(key)
        fields.setdefault("at", AT + timedelta(minutes=len(self.keys)))
        event = TicketEvent(incident_key=self.key, kind=kind, idempotency_key=key, **fields)
        await self.handle.signal(TicketedIncidentStandIn.send, event)
        return key

    async def heard(self) -> Heard:
        return await self.handle.query(TicketedIncidentStandIn.heard)

    async def progress(self) -> TicketProgress:
        return await self.ticket.query(TicketWorkflow.progress)

    async def opened(self) -> TicketRef:
        heard = await eventually(
            lambda: self.heard_if(lambda h: bool(h.opened)), what="ticket_opened at the incident"
        )
        return heard.opened[0]

    async def applied(self, count: int, timeout: float = 20.0) -> TicketProgress:
        async def probe() -> TicketProgress | None:
            progress = await self.progress()
            return progress if progress.applied + len(progress.problems) >= count else None

        return await eventually(probe, timeout=timeout, what=f"{count} ticket changes to be done")

    async def heard_if(self, test: Any) -> Heard | None:
        heard = await self.heard()
        return heard if test(heard) else None


@asynccontextmanager
async def incidents(client: Client, tickets: TicketActivities) -> AsyncIterator[Any]:
    """A worker with the real ticket activities; yields `declare(**ticket_input) -> Incident`."""
    queue = f"tickets-{uuid.uuid4().hex[:8]}"
    started: list[WorkflowHandle] = []

    async def declare(**settings: Any) -> Incident:
        key = f"tkt-{uuid.uuid4().hex[:10]}"
        ticket_input = TicketInput(open=opening(key), incident_workflow_id="set by the stand-in", **FAST)
        handle = await client.start_workflow(
            TicketedIncidentStandIn.run,
            ticket_input.model_copy(update=settings),
            id=f"incident-{key}",
            task_queue=queue,
        )
        incident = Incident(client, handle, key, queue)
        started.extend([handle, incident.ticket])
        return incident

    try:
        async with Worker(
            client,
            task_queue=queue,
            workflows=[TicketedIncidentStandIn, TicketWorkflow],
            activities=[
                tickets.open_ticket,
                tickets.update_ticket,
                TemporalActivities(client).incident_is_running,
            ],
        ):
            yield declare
    finally:
        await terminate_all(started)
        await tickets.aclose()


def opening(key: str) -> TicketOpen:
    return TicketOpen(
        incident_key=key,
        workflow_id=f"incident-{key}",
        severity="P2",
        title="R1 unreachable, WAN outage Site A",
        service="wan",
        symptoms=["BGP session to R2 down"],
        impact=["Site A offline for 300 users"],
        reporter="alertmanager",
        declared_at=AT,
    )


def real_tickets(url: str, timeout: float = 5.0) -> TicketActivities:
    return TicketActivities(ServiceNowTickets.from_settings(url, "admin", "admin", timeout=timeout))


async def records(snow: httpx.AsyncClient, key: str) -> list[dict[str, Any]]:
    rows = (await snow.get("/_sandbox/records/incident")).json()
    return [r for r in rows if r["correlation_id"] == key]


def refs(record: dict[str, Any]) -> list[str]:
    """The idempotency keys of the ticket's work notes, in the order they were written."""
    notes = [j["value"] for j in record["journal"] if j["element"] == "work_notes"]
    return [m for note in notes for m in re.findall(r"\[ref: ([^\]]+)\]", note)]


async def ticket_state(snow: httpx.AsyncClient, key: str) -> str | None:
    found = await records(snow, key)
    return found[0]["state"] if found else None


async def read_with_pysnc(app: Starlette, key: str) -> list[dict[str, str]]:
    """The ticket as a ServiceNow user sees it, through pysnc."""
    from pysnc.asyncio import AsyncServiceNowClient

    session = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), auth=AUTH)
    client = AsyncServiceNowClient("https://sandbox.service-now.test", session)
    try:
        gr = await client.GlideRecord("incident")
        gr.add_query("correlation_id", key)
        await gr.query()
        return [
            {
                "number": r.get_value("number"),
                "state": r.get_display_value("state"),
                "priority": r.get_display_value("priority"),
                "assigned_to": r.get_value("assigned_to"),
                "close_notes": r.get_value("close_notes"),
                "work_notes": r.get_display_value("work_notes"),
            }
            async for r in gr
        ]
    finally:
        await client.close()


# ------------------------------------------------------------------ the tests


async def test_a_whole_incident_leaves_one_ticket_with_every_change_in_order_resolved_then_closed(
    local_env, served, snow: httpx.AsyncClient
) -> None:
    app, url = served
    async with incidents(local_env.client, real_tickets(url)) as declare:
        incident = await declare()
        ref = await incident.opened()
        assert ref.enabled and ref.created and re.fullmatch(r"INC\d{7}", ref.number)
        assert ref.url == f"{url}/incident.do?sys_id={ref.sys_id}"

        await incident.send("claim", actor="alice", assigned_to="alice")
        for status, text in [
            ("investigating", "BGP to R2 flapping"),
            ("identified", "fibre cut between Site A and the PoP"),
            ("fixing", "failing over to the backup circuit"),
        ]:
            await incident.send("update", actor="alice", status=status, text=text)
        await incident.send(
            "severity", actor="alice", severity="P1", previous_severity="P2", reason="Site B too"
        )
        await incident.send("escalation", text="no update for 30m, paging @netops-tier2")
        await incident.send(
            "resolve",
            actor="alice",
            resolution="Failed over to the backup circuit.",
            root_cause="Fibre cut between Site A and the PoP.",
        )
        await eventually(
            lambda: _equals(ticket_state(snow, incident.key), "6"), what="the ticket to be resolved"
        )
        [resolved] = await read_with_pysnc(app, incident.key)
        assert resolved["state"] == "Resolved"

        await incident.send("close", actor="bob", text="review done: add a second fibre path")
        done: TicketProgress = await incident.ticket.result()
        await incident.handle.signal(TicketedIncidentStandIn.finish)
        heard: Heard = await incident.handle.result()
        await assert_replays(incident.ticket)

    assert done.closed and done.applied == 8 and not done.problems and not done.pending
    assert heard.forwarded == 8 and heard.problems == [] and len(heard.opened) == 1

    [record] = await records(snow, incident.key)  # exactly one ticket
    assert refs(record) == incident.keys
    [seen] = await read_with_pysnc(app, incident.key)
    assert seen["number"] == ref.number and seen["state"] == "Closed"
    assert seen["priority"] == "1 - Critical" and seen["assigned_to"] == person("U0ALICE").sys_id
    assert "Root cause: Fibre cut between Site A and the PoP." in seen["close_notes"]
    shown = seen["work_notes"]  # newest first, as ServiceNow shows it
    written = [shown.index(text) for text in ("Post-incident review done", "fibre cut", "BGP to R2 flapping")]
    assert written == sorted(written) and "Incident Commander: alice" in shown


async def test_a_create_that_timed_out_after_committing_still_leaves_one_ticket(
    local_env, served, snow: httpx.AsyncClient
) -> None:
    _, url = served
    # ServiceNow writes the ticket, then answers after the client gave up waiting.
    await snow.post("/_sandbox/faults", json={"method": "POST", "delay": 1.0, "perform": True})
    async with incidents(local_env.client, real_tickets(url, timeout=0.4)) as declare:
        incident = await declare()
        ref = await incident.opened()
        await incident.send("update", actor="alice", status="investigating", text="looking at R2")
        await incident.send("close", actor="alice", text="no review needed")
        done: TicketProgress = await incident.ticket.result()

    assert not ref.created  # the retry found the ticket the first attempt made
    [record] = await records(snow, incident.key)
    assert record["number"] == ref.number and refs(record) == incident.keys and done.applied == 2
    posts = await eventually(
        lambda: _json(snow.get("/_sandbox/calls", params={"method": "POST"})), what="the late POST"
    )
    assert len(posts) == 1


async def test_servicenow_down_never_blocks_the_incident_and_the_ticket_catches_up_in_order(
    local_env, served, snow: httpx.AsyncClient
) -> None:
    _, url = served
    await snow.post("/_sandbox/down", json={"down": True})  # every call answers 503
    async with incidents(local_env.client, real_tickets(url)) as declare:
        incident = await declare()
        started = time.monotonic()
        await incident.send("claim", actor="alice", assigned_to="alice")
        await incident.send("update", actor="alice", status="investigating", text="during the outage 1")
        await incident.send("severity", actor="alice", severity="P1", previous_severity="P2")
        await incident.send("update", actor="alice", status="identified", text="during the outage 2")
        await eventually(
            lambda: incident.heard_if(lambda h: h.forwarded == 4),
            timeout=5,
            what="the incident to hand every change over",
        )
        handed_over = time.monotonic() - started
        waiting = await incident.progress()
        assert waiting.ref is None and [e.idempotency_key for e in waiting.pending] == incident.keys
        assert (await incident.heard()).opened == []
        assert await records(snow, incident.key) == []
        calls = await eventually(
            lambda: _json_if(snow.get("/_sandbox/calls"), lambda calls: len(calls) >= 3),
            timeout=5,
            what="the ticket to be tried again and again",
        )
        assert {c["status"] for c in calls} == {503}

        await snow.post("/_sandbox/down", json={"down": False})
        ref = await incident.opened()
        await incident.applied(4)

        # A second outage, mid-incident: the next change waits out three 500s, the one after waits for it.
        await snow.post("/_sandbox/faults", json={"method": "PATCH", "status": 500, "count": 3})
        await incident.send("update", actor="alice", status="monitoring", text="after the outage")
        await incident.send("resolve", actor="alice", resolution="rerouted", root_cause="bad optic on R2")
        progress = await incident.applied(6)
        await assert_replays(incident.ticket)

    assert handed_over < 5 and ref.created and not progress.problems
    [record] = await records(snow, incident.key)
    assert refs(record) == incident.keys
    assert (
        record["state"] == "6"
        and record["assigned_to"] == person("U0ALICE").sys_id
        and record["priority"] == "1"
    )
    assert "bad optic on R2" in record["close_notes"]
    patches = [c["status"] for c in (await snow.get("/_sandbox/calls", params={"method": "PATCH"})).json()]
    assert patches.count(500) == 3


async def test_servicenow_down_for_a_simulated_hour_then_the_ticket_catches_up_in_order(
    time_skipping_env, served, snow: httpx.AsyncClient
) -> None:
    """An hour of outage in skipped time, with the production backoff (1 s doubling to 5 min)."""
    _, url = served
    production = {
        "start_to_close": timedelta(seconds=15),
        "initial_retry_interval": timedelta(seconds=1),
        "max_retry_interval": timedelta(minutes=5),
    }
    env = time_skipping_env
    async with incidents(env.client, real_tickets(url)) as declare:
        incident = await declare(**production)
        ref = await incident.opened()
        await incident.send("update", actor="alice", status="investigating", text="before the outage")
        await incident.applied(1)

        await snow.post("/_sandbox/down", json={"down": True})
        outage_starts = await env.get_current_time()
        await incident.send("claim", actor="bob", assigned_to="bob")
        await incident.send("update", actor="bob", status="fixing", text="during the outage 1")
        await incident.send("severity", actor="bob", severity="P1", previous_severity="P2")
        await incident.send("update", actor="bob", status="fixing", text="during the outage 2")
        await env.sleep(timedelta(hours=1))
        waited = await env.get_current_time() - outage_starts
        during = await incident.progress()
        refused = [c for c in (await snow.get("/_sandbox/calls")).json() if c["status"] == 503]

        await snow.post("/_sandbox/down", json={"down": False})
        await env.sleep(timedelta(minutes=6))  # past the next retry, at most 5 min away
        await incident.applied(5)
        await incident.send("resolve", actor="bob", resolution="rerouted", root_cause="bad optic on R2")
        await incident.send("close", actor="bob", text="reviewed")
        done: TicketProgress = await incident.ticket.result()

    assert waited >= timedelta(hours=1)
    # Held in order behind the first, retried all hour long, written by nobody.
    assert during.applied == 1 and len(during.pending) == 4
    assert 10 <= len(refused) <= 30, len(refused)  # ~9 doubling retries, then one every 5 min
    assert done.closed and done.applied == 7 and not done.problems
    [record] = await records(snow, incident.key)
    assert record["number"] == ref.number and refs(record) == incident.keys
    assert (
        record["state"] == "7"
        and record["assigned_to"] == person("U0BOB").sys_id
        and record["priority"] == "1"
    )
    assert "bad optic on R2" in record["close_notes"]


async def test_the_ticket_of_an_incident_ended_by_hand_stops_waiting_for_close(
    local_env, served, snow: httpx.AsyncClient
) -> None:
    _, url = served
    async with incidents(local_env.client, real_tickets(url)) as declare:
        incident = await declare(idle_check_every=timedelta(milliseconds=500))
        ref = await incident.opened()
        await incident.send("claim", actor="alice", assigned_to="alice")
        await incident.applied(1)

        async def checked_twice() -> bool:
            history = await incident.ticket.fetch_history()
            asked = [
                e for e in history.events if e.activity_task_completed_event_attributes.HasField("result")
            ]
            return len(asked) >= 3  # the open, the claim, and at least one "still running?"

        await eventually(checked_twice, what="the idle ticket to ask whether the incident runs")
        assert (await incident.ticket.describe()).status == WorkflowExecutionStatus.RUNNING
        await incident.handle.terminate("ended by hand")
        done: TicketProgress = await asyncio.wait_for(incident.ticket.result(), timeout=20)

    assert not done.closed and done.applied == 1
    assert done.ended_because == f"{incident.handle.id} is no longer running and never closed the ticket"
    [record] = await records(snow, incident.key)
    assert record["number"] == ref.number and record["state"] != "7"  # left as it was, for a person


async def test_a_rejected_update_reaches_the_incident_and_the_next_changes_still_apply(
    local_env, served, snow: httpx.AsyncClient
) -> None:
    _, url = served
    async with incidents(local_env.client, real_tickets(url)) as declare:
        incident = await declare()
        ref = await incident.opened()
        claim = await incident.send("claim", actor="alice", assigned_to="alice")
        await incident.applied(1)
        await snow.post("/_sandbox/faults", json={"method": "PATCH", "status": 403, "count": 1})
        rejected = await incident.send("update", actor="alice", status="fixing", text="rebooting R2")
        after = [
            await incident.send("update", actor="alice", status="monitoring", text="R2 back"),
            await incident.send("resolve", actor="alice", resolution="rebooted R2"),
        ]
        await incident.applied(4)
        heard = await eventually(
            lambda: incident.heard_if(lambda h: bool(h.problems)), what="ticket_problem at the incident"
        )
        await assert_replays(incident.ticket)

    [problem] = heard.problems
    assert problem.what == "update" and problem.reason == FORBIDDEN
    assert problem.idempotency_key == rejected and problem.at is not None
    [record] = await records(snow, incident.key)
    assert refs(record) == [claim, *after] and record["state"] == "6"
    # What the incident posts in its thread for it.
    state = IncidentState(
        key=incident.key, workflow_id=incident.handle.id, severity="P2", title="R1", declared_at=AT
    )
    text = render(
        "ticket_problem",
        incident=state.model_copy(update={"ticket_ref": TicketReference(number=ref.number)}),
        problem=problem.model_dump(mode="json"),
    )
    assert text == (
        f":warning: *ServiceNow:* {FORBIDDEN} — the incident goes on; "
        f"the ticket {ref.number} will not have this status update."
    )


async def test_a_ticket_servicenow_refuses_to_open_is_reported_and_the_incident_runs_without_one(
    local_env, served, snow: httpx.AsyncClient
) -> None:
    _, url = served
    wrong_password = TicketActivities(ServiceNowTickets.from_settings(url, "admin", "not-the-password"))
    async with incidents(local_env.client, wrong_password) as declare:
        incident = await declare()
        ref = await incident.opened()
        await incident.send("update", actor="alice", status="investigating", text="looking")
        await incident.send("close", actor="alice")
        done: TicketProgress = await incident.ticket.result()
        heard = await incident.heard()

    refused = (
        "ServiceNow rejected the ticket lookup: 401 User Not Authenticated "
        "(Required to provide Auth information)"
    )
    [problem] = heard.problems
    assert (problem.what, problem.reason) == ("open", refused)
    assert not ref.enabled and ref.reason == f"no ticket: {refused}"
    assert done.closed and done.dropped == 2 and await records(snow, incident.key) == []
    calls = (await snow.get("/_sandbox/calls")).json()
    assert [c["status"] for c in calls] == [401]  # refused once, never hammered


async def test_with_tickets_off_the_incident_is_told_why_and_close_completes_the_child(
    local_env, snow: httpx.AsyncClient
) -> None:
    async with incidents(local_env.client, TicketActivities(None)) as declare:
        incident = await declare()
        ref = await incident.opened()
        await incident.send("claim", actor="alice", assigned_to="alice")
        await incident.send("update", actor="alice", status="investigating", text="looking")
        await incident.send("close", actor="alice")
        done: TicketProgress = await incident.ticket.result()

        # With nobody to tell (the incident is gone: `ticket_opened` fails), it still runs to its close.
        gone = f"incident-gone-{uuid.uuid4().hex[:8]}"
        orphan = await local_env.client.start_workflow(
            TicketWorkflow.run,
            TicketInput(open=opening("orphan"), incident_workflow_id=gone, **FAST),
            id=ticket_workflow_id(gone),
            task_queue=incident.queue,
        )
        await orphan.signal(
            TicketWorkflow.change,
            TicketEvent(incident_key="orphan", kind="close", idempotency_key="o/1/close"),
        )
        orphaned: TicketProgress = await orphan.result()
        heard = await incident.heard()

    assert not ref.enabled and ref.reason == "tickets are off: SERVICENOW_URL is not set"
    assert heard.opened == [ref]
    assert done.closed and done.applied == 0 and done.dropped == 3 and not done.problems
    history = await incident.ticket.fetch_history()
    scheduled = [e for e in history.events if e.HasField("activity_task_scheduled_event_attributes")]
    assert [e.activity_task_scheduled_event_attributes.activity_type.name for e in scheduled] == [
        "open_ticket"
    ]
    assert orphaned.closed and orphaned.ref is not None and not orphaned.ref.enabled
    assert (await snow.get("/_sandbox/calls")).json() == []


async def test_a_long_ticket_continues_as_new_without_losing_or_reordering_a_change(
    local_env, served, snow: httpx.AsyncClient
) -> None:
    _, url = served
    async with incidents(local_env.client, real_tickets(url)) as declare:
        incident = await declare(max_history_events=50)
        await incident.opened()
        first_run = (await incident.ticket.describe()).run_id
        for n in range(12):
            await incident.send("update", actor="alice", status="investigating", text=f"update {n}")
        await incident.send("close", actor="alice")
        done: TicketProgress = await incident.ticket.result()
        last_run = (await incident.ticket.describe()).run_id
        await assert_replays(incident.ticket)

    assert last_run != first_run, "the ticket workflow continued as new"
    assert done.applied == 13 and not done.pending
    [record] = await records(snow, incident.key)
    assert refs(record) == incident.keys and record["state"] == "7"


def test_the_declaration_and_resolution_say_where_the_ticket_is_or_why_there_is_none() -> None:
    incident = IncidentState(
        key="k",
        workflow_id="incident-k",
        severity="P1",
        title="R1 down",
        declared_at=AT,
        resolved_at=AT + timedelta(minutes=40),
        resolution="rerouted",
    )

    def lines(**state: Any) -> tuple[str, str]:
        s = incident.model_copy(update=state)
        declared = render("declaration", incident=s, mentions=["@oncall"]).splitlines()
        resolved = render("resolution", incident=s, mentions=[], author="U1", duration="40 min").splitlines()
        [a] = [line for line in declared if line.startswith("*ServiceNow:*")]
        [b] = [line for line in resolved if line.startswith("*ServiceNow:*")]
        assert "*Notified:* @oncall" in declared  # the line after it is still its own line
        return a, b

    url = "https://acme.service-now.com/incident.do?sys_id=abc"
    assert lines(ticket_ref=TicketReference(id="abc", number="INC0010001", url=url)) == (
        f"*ServiceNow:* <{url}|INC0010001>",
        f"*ServiceNow:* <{url}|INC0010001> resolved",
    )
    assert lines(ticket_ref=TicketReference(number="INC0010001")) == (
        "*ServiceNow:* INC0010001",
        "*ServiceNow:* INC0010001 resolved",
    )
    off = "tickets are off: SERVICENOW_URL is not set"
    assert lines(ticket_status=off) == (f"*ServiceNow:* {off}", f"*ServiceNow:* {off}")
    assert lines() == (
        "*ServiceNow:* [INC pending]",
        "*ServiceNow:* [INC pending] (resolved as soon as it opens)",
    )


async def assert_replays(handle: WorkflowHandle) -> None:
    """The run's history replays with the current code: no non-determinism."""
    replayer = Replayer(workflows=[TicketWorkflow], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(await handle.fetch_history(), raise_on_replay_failure=False)
    assert result.replay_failure is None


async def _equals(value: Any, expected: Any) -> bool:
    return (await value) == expected


async def _json(response: Any) -> Any:
    return (await response).json()


async def _json_if(response: Any, test: Any) -> Any:
    value = (await response).json()
    return value if test(value) else None
