"""The ticket activities (activities/tickets/) against the ServiceNow sandbox over real HTTP.

Each activity runs inside Temporal's ActivityEnvironment, whose `info.attempt`
stands in for Temporal's retries: attempt 2 is what the worker runs after
attempt 1 timed out or failed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from starlette.applications import Starlette
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.tickets import ServiceNowTickets, TicketActivities, correlation_id_for
from sandbox.people import person
from sandbox.servicenow import create_app
from sandbox.slack import serve_in_background
from workflows.ticket_models import TicketChange, TicketChanged, TicketOpen, TicketRef

AUTH = ("admin", "admin")
# "alice" from the CLI is ServiceNow's user_name alice: the ticket references her sys_user.
ALICE, BOB = person("U0ALICE"), person("U0BOB")
AT = datetime(2026, 11, 22, 14, 32, tzinfo=UTC)


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


@pytest.fixture
async def tickets(served, snow) -> AsyncIterator[TicketActivities]:
    _, url = served
    activities = TicketActivities(
        ServiceNowTickets.from_settings(url, "admin", "admin", assignment_group="Network Operations")
    )
    yield activities
    await activities.aclose()


async def run(activity: Any, arg: Any, attempt: int = 1) -> Any:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=attempt)
    return await env.run(activity, arg)


def declaration(key: str | None = None, severity: str = "P1", **fields: Any) -> TicketOpen:
    return TicketOpen(
        incident_key=key or f"test-{uuid.uuid4().hex[:8]}",
        workflow_id="incident-test",
        severity=severity,
        title=fields.pop("title", "R1 unreachable, WAN outage Site A"),
        service=fields.pop("service", "wan"),
        symptoms=fields.pop("symptoms", ["BGP session to R2 down", "packet loss 40% at Site A"]),
        impact=fields.pop("impact", ["Site A offline for 300 users"]),
        reporter="alertmanager",
        declared_at=AT,
        **fields,
    )


class Changes:
    """Builds an incident's ticket changes with stable, distinct idempotency keys."""

    def __init__(self, ref: TicketRef, key: str) -> None:
        self.ref, self.key, self.n = ref, key, 0

    def __call__(self, kind: str, **fields: Any) -> TicketChange:
        self.n += 1
        fields.setdefault("at", AT + timedelta(minutes=self.n))
        return TicketChange(
            ticket=self.ref,
            incident_key=self.key,
            kind=kind,
            idempotency_key=f"incident-{self.key}/ticket/{self.n}/{kind}",
            **fields,
        )


async def records(snow: httpx.AsyncClient, correlation_id: str | None = None) -> list[dict[str, Any]]:
    """The incident table as stored, each record with its journal (oldest first)."""
    rows = (await snow.get("/_sandbox/records/incident")).json()
    return [r for r in rows if correlation_id is None or r["correlation_id"] == correlation_id]


def notes(record: dict[str, Any]) -> list[str]:
    return [j["value"] for j in record["journal"] if j["element"] == "work_notes"]


def refs(record: dict[str, Any]) -> list[str]:
    """The idempotency keys of the record's work notes, in the order they were written."""
    return [m for note in notes(record) for m in re.findall(r"\[ref: ([^\]]+)\]", note)]


async def test_open_creates_one_ticket_with_the_mapped_fields_and_correlation_id(
    tickets: TicketActivities, snow: httpx.AsyncClient
) -> None:
    opening = declaration(severity="P1")
    ref = await run(tickets.open_ticket, opening)
    assert ref.created and ref.enabled and ref.system == "servicenow"
    assert re.fullmatch(r"INC\d{7}", ref.number) and ref.url.endswith(f"/incident.do?sys_id={ref.sys_id}")

    [record] = await records(snow)
    assert record["sys_id"] == ref.sys_id and record["number"] == ref.number
    assert record["correlation_id"] == opening.incident_key
    assert record["short_description"] == "[P1] R1 unreachable, WAN outage Site A (wan)"
    assert (record["urgency"], record["impact"], record["priority"]) == ("1", "1", "1")
    assert record["category"] == "network" and record["assignment_group"] == "Network Operations"
    assert record["state"] == "1"
    for text in (
        "BGP session to R2 down",
        "Site A offline for 300 users",
        "alertmanager",
        opening.incident_key,
    ):
        assert text in record["description"]


async def test_each_severity_lands_on_the_priority_with_its_number(
    tickets: TicketActivities, snow: httpx.AsyncClient
) -> None:
    for severity in ("P1", "P2", "P3", "P4"):
        ref = await run(tickets.open_ticket, declaration(severity=severity))
        record = (await snow.get(f"/api/now/table/incident/{ref.sys_id}")).json()["result"]
        assert record["priority"] == severity[1], (severity, record["urgency"], record["impact"])


async def test_a_retried_open_after_a_create_that_timed_out_finds_the_first_ticket(
    served, snow: httpx.AsyncClient
) -> None:
    """The worst case: ServiceNow commits the ticket, the answer never arrives in time."""
    _, url = served
    tickets = TicketActivities(ServiceNowTickets.from_settings(url, "admin", "admin", timeout=0.3))
    opening = declaration()
    await snow.post("/_sandbox/faults", json={"method": "POST", "delay": 0.8, "perform": True})
    try:
        with pytest.raises(ApplicationError) as first:
            await run(tickets.open_ticket, opening, attempt=1)
        assert first.value.type == "ServiceNowTimeout" and not first.value.non_retryable

        ref = await run(tickets.open_ticket, opening, attempt=2)
        assert not ref.created  # found, not opened again
        again = await run(tickets.open_ticket, opening, attempt=3)
        assert again.sys_id == ref.sys_id
    finally:
        await tickets.aclose()

    [record] = await records(snow, opening.incident_key)
    assert record["number"] == ref.number
    # The sandbox logs a call when it answers; the delayed POST answers after its delay.
    for _ in range(40):
        posts = (await snow.get("/_sandbox/calls", params={"method": "POST"})).json()
        if posts:
            break
        await asyncio.sleep(0.05)
    assert len(posts) == 1


async def test_a_new_incident_with_the_key_of_a_resolved_one_gets_a_new_ticket(
    tickets: TicketActivities, snow: httpx.AsyncClient
) -> None:
    opening = declaration()
    first = await run(tickets.open_ticket, opening)
    change = Changes(first, opening.incident_key)
    await run(tickets.update_ticket, change("resolve", resolution="rebooted", root_cause="memory leak"))
    second = await run(tickets.open_ticket, opening)
    assert second.created and second.number != first.number
    assert len(await records(snow, opening.incident_key)) == 2


async def test_a_full_incident_leaves_one_ticket_with_every_update_in_order_resolved_then_closed(
    tickets: TicketActivities, snow: httpx.AsyncClient
) -> None:
    opening = declaration(severity="P2")
    ref = await run(tickets.open_ticket, opening)
    change = Changes(ref, opening.incident_key)
    sent = [
        change("claim", actor="alice", assigned_to="alice"),
        change("update", actor="alice", status="investigating", text="BGP to R2 flapping", eta="15:00"),
        change("severity", actor="alice", severity="P1", previous_severity="P2", reason="second site down"),
        change("escalation", text="unclaimed for 15m, paging @netops-tier2"),
        change("update", actor="alice", status="fixing", text="failing over to the backup link"),
        change("update", actor="alice", status="monitoring", text="traffic back to normal"),
        change(
            "resolve",
            actor="alice",
            resolution="Failed over to the backup circuit.",
            root_cause="Fibre cut between Site A and the PoP.",
        ),
    ]
    results: list[TicketChanged] = [await run(tickets.update_ticket, c) for c in sent]
    assert all(r.applied and not r.duplicate and r.number == ref.number for r in results)
    assert [r.state for r in results] == ["2", "2", "2", "2", "2", "2", "6"]

    [resolved] = await records(snow, opening.incident_key)
    assert resolved["state"] == "6" and resolved["resolved_at"]
    assert resolved["close_code"] == "Solution provided"
    assert "Root cause: Fibre cut between Site A and the PoP." in resolved["close_notes"]
    assert "Failed over to the backup circuit." in resolved["close_notes"]

    closed = await run(
        tickets.update_ticket, change("close", actor="bob", text="review: add a second fibre path")
    )
    assert closed.state == "7"

    [record] = await records(snow, opening.incident_key)  # exactly one ticket
    assert record["state"] == "7" and record["closed_at"] and record["active"] == "false"
    assert record["assigned_to"] == ALICE.sys_id
    assert (record["urgency"], record["impact"], record["priority"]) == ("1", "1", "1")  # now P1
    assert refs(record) == [c.idempotency_key for c in sent] + [
        f"incident-{opening.incident_key}/ticket/8/close"
    ]
    written = notes(record)
    assert written[0].startswith("Incident Commander: alice")
    assert (
        "[investigating]" in written[1] and "BGP to R2 flapping" in written[1] and "ETA: 15:00" in written[1]
    )
    assert "Severity P2 → P1" in written[2] and "second site down" in written[2]
    assert "Root cause: Fibre cut" in written[6] and "add a second fibre path" in written[7]
    assert "2026-11-22 14:34 UTC" in written[1]  # when it happened, not when the ticket caught up

    # What ServiceNow shows a person: the journal, newest first.
    shown = await snow.get(
        f"/api/now/table/incident/{ref.sys_id}",
        params={"sysparm_fields": "work_notes", "sysparm_display_value": "true"},
    )
    journal = shown.json()["result"]["work_notes"]
    assert journal.index("Post-incident review done") < journal.index("Incident Commander: alice")


async def test_a_retried_update_after_a_lost_answer_does_not_write_the_note_twice(
    served, snow: httpx.AsyncClient
) -> None:
    _, url = served
    tickets = TicketActivities(ServiceNowTickets.from_settings(url, "admin", "admin", timeout=0.3))
    try:
        opening = declaration()
        ref = await run(tickets.open_ticket, opening)
        change = Changes(ref, opening.incident_key)
        update = change("update", actor="alice", status="investigating", text="looking at R2")

        await snow.post("/_sandbox/faults", json={"method": "PATCH", "delay": 0.8, "perform": True})
        with pytest.raises(ApplicationError) as lost:
            await run(tickets.update_ticket, update, attempt=1)
        assert not lost.value.non_retryable
        retried = await run(tickets.update_ticket, update, attempt=2)
        assert retried.duplicate and retried.number == ref.number

        # A retry after a failure that wrote nothing writes it, once.
        second = change("update", actor="alice", status="fixing", text="rerouting")
        await snow.post("/_sandbox/faults", json={"method": "PATCH", "status": 500})
        with pytest.raises(ApplicationError):
            await run(tickets.update_ticket, second, attempt=1)
        written = await run(tickets.update_ticket, second, attempt=2)
        assert not written.duplicate
    finally:
        await tickets.aclose()

    [record] = await records(snow, opening.incident_key)
    assert refs(record) == [update.idempotency_key, second.idempotency_key]


async def test_servicenow_down_for_an_hour_then_the_ticket_catches_up_in_order(
    tickets: TicketActivities, snow: httpx.AsyncClient
) -> None:
    opening = declaration()
    ref = await run(tickets.open_ticket, opening)
    change = Changes(ref, opening.incident_key)
    before = change("update", actor="alice", status="investigating", text="before the outage")
    await run(tickets.update_ticket, before)

    await snow.post("/_sandbox/down", json={"down": True})
    during = [
        change("claim", actor="bob", assigned_to="bob"),
        change("update", actor="bob", status="fixing", text="during the outage"),
    ]
    # Temporal retries the first pending change with backoff; the workflow holds the rest behind it.
    for attempt in range(1, 6):
        with pytest.raises(ApplicationError) as unavailable:
            await run(tickets.update_ticket, during[0], attempt=attempt)
        assert unavailable.value.type == "ServiceNowUnavailable" and not unavailable.value.non_retryable
    await snow.post("/_sandbox/down", json={"down": False})

    caught_up = [await run(tickets.update_ticket, during[0], attempt=6)]
    caught_up.append(await run(tickets.update_ticket, during[1], attempt=1))
    after = change("resolve", actor="bob", resolution="rerouted", root_cause="bad optic on R2")
    caught_up.append(await run(tickets.update_ticket, after))
    assert [r.duplicate for r in caught_up] == [False, False, False]

    [record] = await records(snow, opening.incident_key)
    assert refs(record) == [before.idempotency_key] + [c.idempotency_key for c in during] + [
        after.idempotency_key
    ]
    assert record["state"] == "6" and record["assigned_to"] == BOB.sys_id
    assert "bad optic on R2" in record["close_notes"]


async def test_rate_limits_and_outages_are_retryable_and_honour_retry_after(
    tickets: TicketActivities, snow: httpx.AsyncClient
) -> None:
    ref = await run(tickets.open_ticket, declaration())
    change = Changes(ref, "k")

    await snow.post("/_sandbox/faults", json={"method": "PATCH", "status": 429, "retry_after": 7})
    with pytest.raises(ApplicationError) as limited:
        await run(tickets.update_ticket, change("update", text="x"))
    assert limited.value.type == "ServiceNowRateLimited" and not limited.value.non_retryable
    assert limited.value.next_retry_delay == timedelta(seconds=7)

    await snow.post("/_sandbox/faults", json={"method": "GET", "status": 503, "retry_after": 30})
    with pytest.raises(ApplicationError) as unavailable:
        await run(tickets.open_ticket, declaration())
    assert unavailable.value.type == "ServiceNowUnavailable" and not unavailable.value.non_retryable
    assert unavailable.value.next_retry_delay == timedelta(seconds=30)
    assert "503 Service Unavailable" in unavailable.value.message

    unreachable = TicketActivities(
        ServiceNowTickets.from_settings("http://127.0.0.1:9", "admin", "admin", timeout=1)
    )
    try:
        with pytest.raises(ApplicationError) as refused:
            await run(unreachable.open_ticket, declaration())
        assert refused.value.type == "ServiceNowUnreachable" and not refused.value.non_retryable
    finally:
        await unreachable.aclose()


async def test_rejections_are_non_retryable_and_say_what_servicenow_said(
    served, tickets: TicketActivities, snow: httpx.AsyncClient
) -> None:
    ref = await run(tickets.open_ticket, declaration())
    change = Changes(ref, "k")

    await snow.post("/_sandbox/faults", json={"method": "PATCH", "status": 403})
    with pytest.raises(ApplicationError) as forbidden:
        await run(tickets.update_ticket, change("update", text="x"))
    assert forbidden.value.non_retryable and forbidden.value.type == "ServiceNowRejected"
    assert forbidden.value.message == (
        "ServiceNow rejected the update: 403 Operation Failed "
        "(ACL Exception Update Failed due to security constraints)"
    )

    gone = change("update", text="y").model_copy(
        update={"ticket": ref.model_copy(update={"sys_id": "0" * 32})}
    )
    with pytest.raises(ApplicationError) as missing:
        await run(tickets.update_ticket, gone)
    assert missing.value.non_retryable
    assert missing.value.message.startswith("ServiceNow rejected the update: 404 No Record found")

    _, url = served
    wrong = TicketActivities(ServiceNowTickets.from_settings(url, "admin", "not-the-password"))
    try:
        with pytest.raises(ApplicationError) as unauthorised:
            await run(wrong.open_ticket, declaration())
    finally:
        await wrong.aclose()
    assert unauthorised.value.non_retryable
    assert unauthorised.value.message == (
        "ServiceNow rejected the ticket lookup: 401 User Not Authenticated (Required to provide Auth information)"
    )


async def test_an_oauth_bearer_token_works_instead_of_a_password(served, snow: httpx.AsyncClient) -> None:
    _, url = served
    tickets = TicketActivities(ServiceNowTickets.from_settings(url, token="sandbox-oauth-token"))
    try:
        ref = await run(tickets.open_ticket, declaration())
        await run(tickets.update_ticket, Changes(ref, "k")("update", text="via oauth"))
    finally:
        await tickets.aclose()
    [record] = await records(snow)
    assert notes(record)[0].startswith("Status update") and record["journal"][0]["sys_created_by"] == "admin"


async def test_without_servicenow_url_tickets_are_off_and_say_so(snow: httpx.AsyncClient) -> None:
    tickets = TicketActivities(None)
    assert not tickets.enabled
    ref = await run(tickets.open_ticket, declaration())
    assert not ref.enabled and ref.system == "none" and ref.number == ""
    assert ref.reason == "tickets are off: SERVICENOW_URL is not set"
    changed = await run(tickets.update_ticket, Changes(ref, "k")("update", text="x"))
    assert not changed.applied
    assert (await snow.get("/_sandbox/calls")).json() == []
    with pytest.raises(ValueError, match="SERVICENOW_USER and SERVICENOW_PASSWORD, or SERVICENOW_TOKEN"):
        ServiceNowTickets.from_settings("https://example.service-now.com")


def test_changes_say_clearly_what_their_kind_needs() -> None:
    ref = TicketRef(sys_id="a" * 32, number="INC0010001")
    with pytest.raises(ValidationError, match="a claim change needs 'assigned_to'"):
        TicketChange(ticket=ref, incident_key="k", kind="claim", idempotency_key="k/1/claim")
    with pytest.raises(ValidationError, match="a resolve change needs 'resolution'"):
        TicketChange(ticket=ref, incident_key="k", kind="resolve", idempotency_key="k/2/resolve")
    with pytest.raises(ValidationError, match="needs its sys_id"):
        TicketRef(number="INC0010001")
    change = TicketChange.model_validate_json(
        TicketChange(
            ticket=ref, incident_key="k", kind="severity", idempotency_key="k/3", severity="sev1"
        ).model_dump_json()
    )
    assert change.severity is not None and change.severity.value == "P1"


def test_long_incident_keys_become_stable_100_character_correlation_ids() -> None:
    key = "alertmanager/" + "x" * 180
    assert correlation_id_for("short-key") == "short-key"
    assert len(correlation_id_for(key)) == 100 and correlation_id_for(key) == correlation_id_for(key)
    assert correlation_id_for(key) != correlation_id_for(key + "y")


async def test_pysnc_reads_the_ticket_the_activities_wrote(served, tickets: TicketActivities) -> None:
    """ServiceNow's own client sees the ticket as a ServiceNow user would: fields, labels, journal."""
    from pysnc.asyncio import AsyncServiceNowClient

    app, _ = served
    opening = declaration(severity="P1")
    ref = await run(tickets.open_ticket, opening)
    change = Changes(ref, opening.incident_key)
    await run(tickets.update_ticket, change("claim", actor="alice", assigned_to="alice"))
    await run(tickets.update_ticket, change("resolve", resolution="rerouted", root_cause="bad optic"))

    session = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), auth=AUTH)
    client = AsyncServiceNowClient("https://sandbox.service-now.test", session)
    try:
        gr = await client.GlideRecord("incident")
        gr.add_query("correlation_id", opening.incident_key)
        await gr.query()
        seen = [
            (
                r.get_value("number"),
                r.get_display_value("state"),
                r.get_display_value("priority"),
                r.get_value("assigned_to"),
                r.get_value("close_notes"),
                r.get_display_value("work_notes"),
            )
            async for r in gr
        ]
    finally:
        await client.close()
    [(number, state, priority, assigned_to, close_notes, work_notes)] = seen
    assert (number, state, priority, assigned_to) == (ref.number, "Resolved", "1 - Critical", ALICE.sys_id)
    assert "Root cause: bad optic" in close_notes
    assert "Incident Commander: alice" in work_notes and "(Work notes)" in work_notes
