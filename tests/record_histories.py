"""Record workflow histories into tests/histories/ for the replay test (tests/test_replay.py).

    .venv/bin/python -m tests.record_histories --list
    .venv/bin/python -m tests.record_histories r1-outage-children ticket-stand-in
    .venv/bin/python -m tests.record_histories --code ../old-checkout ticket-stand-in

Each history is written to tests/histories/<date>-<commit>-<name>.json (today's date, UTC;
the commit whose workflows/ ran it) and gets its line in tests/histories/MANIFEST. The
workflow code must be committed: workflows/ with uncommitted changes is refused.

Histories are append-only (tests/histories/MANIFEST): never re-record one under its old
name, never edit or remove one. A history that no longer replays means running workflows
would break on deploy (use workflow.patched() instead). A recording that exists already is
refused.

`--code DIR` runs the scenario with the project code of another checkout (e.g. a
`git worktree` of an older commit): its workflows/, activities/ and sandbox/ are imported
instead of this one's, with this venv's packages. Only scenarios that need nothing else of
the project run that way (ticket-stand-in).

Scenarios (see SCENARIOS): on the time-skipping test server with fake Slack, tickets off
and no devices (r1-outage-p1, p4-unclaimed: the children make that server stop skipping
time, see tests/workflow_harness.py), and on the dev server with the real worker, the
Slack and ServiceNow sandboxes over HTTP and the unicon mock devices (r1-outage-children:
the incident and both its children; ticket-stand-in: a TicketWorkflow alone).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# Project modules are imported inside the functions: `--code` must be able to choose them.

HISTORIES = Path(__file__).parent / "histories"
MANIFEST = HISTORIES / "MANIFEST"
ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TEMPORAL_CLI = BIN / "temporal"  # as tests/conftest.py (not imported: it imports the project)
TEST_SERVER = BIN / "temporal-test-server"
USER = "U0ENGINEER1"
# The R1 scenarios were recorded when mentions in the thread were the default escalation; they run
# on that policy still (the default now pages through escalation chains: p1_paged_chain).
LEGACY_POLICY = str(ROOT / "config" / "policy-legacy.yaml")


@dataclass
class Recording:
    name: str  # what the history shows; the file is <date>-<commit>-<name>.json
    workflow_id: str
    note: str


Scenario = Callable[[Any, Path], Awaitable[list[Recording]]]


# ------------------------------------------------------- time-skipping server


async def r1_outage(env: Any, declare: Any) -> str:
    """The R1 scenario: unclaimed escalation, claim, reminder, updates, handover, severity, resolve, review."""
    from workflows.incident import IncidentWorkflow
    from workflows.models import ClaimSignal, ResolveSignal, ReviewDoneSignal, SeveritySignal, UpdateSignal

    handle = await declare(
        "P2",
        title="R1 unreachable, WAN outage Site A",
        service="wan-site-a",
        symptoms=["R1 unreachable (ping 0%)", "47 downstream routes lost", "3 OSPF adjacencies down"],
        impact=["Site A has no WAN connectivity", "Estimated affected users: ~200"],
        reporter="NetClaw (automated)",
    )
    await env.sleep(timedelta(minutes=35))  # one escalation
    await handle.signal(
        IncidentWorkflow.set_severity, SeveritySignal(user="noc", severity="P1", reason="~200 users")
    )
    await env.sleep(timedelta(minutes=1))
    await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="U0ENGINEER1", request_id="claim-1"))
    await env.sleep(timedelta(minutes=16))  # one reminder
    await handle.signal(
        IncidentWorkflow.update,
        UpdateSignal(user="U0ENGINEER1", status="investigating", message="R1 reloaded"),
    )
    await handle.signal(
        IncidentWorkflow.update, UpdateSignal(user="U0ENGINEER1", status="bogus", message="x")
    )
    await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="U0ENGINEER2"))
    await env.sleep(timedelta(minutes=5))
    await handle.signal(
        IncidentWorkflow.update, UpdateSignal(user="U0ENGINEER2", status="waiting", message="console")
    )
    await handle.signal(
        IncidentWorkflow.resolve,
        ResolveSignal(user="U0ENGINEER2", resolution="R1 recovered", root_cause="software crash"),
    )
    await env.sleep(timedelta(hours=2))
    await handle.signal(IncidentWorkflow.review_done, ReviewDoneSignal(user="U0ENGINEER1", notes="TAC case"))
    await handle.result()
    return handle.id


async def p4_expires(env: Any, declare: Any) -> str:
    """A P4 nobody claims for three days, then resolved (no review)."""
    from workflows.incident import IncidentWorkflow
    from workflows.models import ResolveSignal

    handle = await declare("P4", title="Interface description typo on R7")
    await env.sleep(timedelta(days=3))
    await handle.signal(IncidentWorkflow.resolve, ResolveSignal(user="U0ENGINEER3", resolution="fixed"))
    await handle.result()
    return handle.id


async def p1_paged(env: Any, declare: Any) -> str:
    """A P1 under the default policy (config/policy.yaml): levels 1 and 2 paged, a snooze, an acknowledgement,
    the claim, a time-based rule, resolve, review."""
    from workflows.incident import IncidentWorkflow
    from workflows.models import AcknowledgeSignal, ClaimSignal, ResolveSignal, ReviewDoneSignal, SnoozeSignal

    handle = await declare("P1", title="R1 unreachable, WAN outage Site A", service="wan-site-a")
    await env.sleep(timedelta(minutes=7))  # levels 1 (minute 0) and 2 (minute 5)
    await handle.signal(
        IncidentWorkflow.snooze, SnoozeSignal(user="U0BOB", duration="10m", reason="rebooting")
    )
    await env.sleep(timedelta(minutes=13))
    await handle.signal(IncidentWorkflow.acknowledge, AcknowledgeSignal(user="U0BOB", source="slack"))
    await env.sleep(timedelta(minutes=5))
    await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="U0BOB"))
    await env.sleep(timedelta(minutes=31))  # the 30-minute rule, moved by the 10-minute snooze
    await handle.signal(IncidentWorkflow.resolve, ResolveSignal(user="U0BOB", resolution="R1 reloaded"))
    await env.sleep(timedelta(hours=1))
    await handle.signal(IncidentWorkflow.review_done, ReviewDoneSignal(user="U0BOB", notes="done"))
    await handle.result()
    return handle.id


async def p3_raised(env: Any, declare: Any) -> str:
    """A P3 under the default policy paged in Slack, raised to P1 an hour in (the P1 chain from
    level 1 then, level 2 five minutes later), acknowledged, resolved, reviewed."""
    from workflows.incident import IncidentWorkflow
    from workflows.models import AcknowledgeSignal, ResolveSignal, ReviewDoneSignal, SeveritySignal

    handle = await declare("P3", title="R2 BGP flapping", service="wan-site-a")
    await env.sleep(timedelta(hours=1))
    await handle.signal(IncidentWorkflow.set_severity, SeveritySignal(user="U0BOB", severity="P1"))
    await env.sleep(timedelta(minutes=7))
    await handle.signal(IncidentWorkflow.acknowledge, AcknowledgeSignal(user="U0BOB", source="slack"))
    await env.sleep(timedelta(minutes=3))
    await handle.signal(IncidentWorkflow.resolve, ResolveSignal(user="U0BOB", resolution="R2 session reset"))
    await env.sleep(timedelta(hours=1))
    await handle.signal(IncidentWorkflow.review_done, ReviewDoneSignal(user="U0BOB", notes="done"))
    await handle.result()
    return handle.id


async def p3_raised_chain(env: Any, tmp: Path) -> list[Recording]:
    """p3_raised with fake Slack and fake paging services, tickets off."""
    workflow_id = await _with_recorded_worker(env, p3_raised)
    return [
        Recording(
            "p3-raised-to-p1-chain-restarted",
            workflow_id,
            "P3 on config/policy.yaml paged in Slack, raised to P1 at 60 min (the P1 chain from level 1, "
            "level 2 at 65), acknowledged, resolved, reviewed (time-skipping server, fake Slack and pagers)",
        )
    ]


async def war_room_triggers(env: Any, declare: Any) -> str:
    """A P3 raised by its alerts doubling, then a data-integrity concern (P1: its war room), roles,
    no root cause at 30 minutes, identified, resolved, reviewed (the room archived, the header closed)."""
    from workflows.incident import IncidentWorkflow
    from workflows.models import (
        AlertBatch,
        AlertEvent,
        ClaimSignal,
        ResolveSignal,
        ReviewDoneSignal,
        RoleSignal,
        UpdateSignal,
    )

    def alerts(*names: str) -> AlertBatch:
        return AlertBatch(
            user="alertmanager",
            alerts=[AlertEvent(source="alertmanager", fingerprint=n, name=f"{n} down") for n in names],
        )

    handle = await declare(
        "P3", title="Orders DB replication lag", service="orders-db", reporter="U0REPORTER"
    )
    await handle.signal(IncidentWorkflow.alerts, alerts("db1", "db2"))
    await env.sleep(timedelta(minutes=2))
    await handle.signal(IncidentWorkflow.alerts, alerts("db3", "db4"))  # doubled: P2
    await env.sleep(timedelta(minutes=2))
    await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="U0ALICE"))
    await env.sleep(timedelta(minutes=1))
    await handle.signal(
        IncidentWorkflow.update,
        UpdateSignal(user="U0ALICE", status="investigating", message="checksums differ", data_integrity=True),
    )  # P1: a war room
    await env.sleep(timedelta(minutes=1))
    await handle.signal(
        IncidentWorkflow.assign_role, RoleSignal(user="U0ALICE", role="comms", assignee="U0ROBERT")
    )
    await handle.signal(
        IncidentWorkflow.assign_role, RoleSignal(user="U0ALICE", role="sme", assignee="U0DBA0001")
    )
    await env.sleep(timedelta(minutes=30))  # no root cause at minute 30
    await handle.signal(
        IncidentWorkflow.update, UpdateSignal(user="U0ALICE", status="identified", message="bad replica")
    )
    await env.sleep(timedelta(minutes=5))
    await handle.signal(IncidentWorkflow.resolve, ResolveSignal(user="U0ALICE", resolution="replica rebuilt"))
    await env.sleep(timedelta(hours=1))
    await handle.signal(IncidentWorkflow.review_done, ReviewDoneSignal(user="U0ALICE", notes="done"))
    await handle.result()
    return handle.id


async def war_room_triggers_p1(env: Any, tmp: Path) -> list[Recording]:
    """war_room_triggers with fake Slack (the war room's activities too), tickets off."""
    workflow_id = await _with_recorded_worker(env, war_room_triggers)
    return [
        Recording(
            "war-room-triggers",
            workflow_id,
            "P3 raised to P2 by its alerts doubling, to P1 by a data-integrity concern (war room), roles, "
            "no root cause at 30m, identified, resolve, review: room archived, header closed "
            "(time-skipping server, fake Slack)",
        )
    ]


async def _with_recorded_worker(
    env: Any, scenario: Callable[[Any, Any], Awaitable[str]], policy_file: str | None = None
) -> str:
    from workflows.action_followup import ActionFollowUpWorkflow
    from workflows.policy import load_policy

    from .workflow_harness import recorded_worker

    async with recorded_worker(env, load_policy(policy_file), more_workflows=[ActionFollowUpWorkflow]) as (
        declare,
        _,
    ):
        return await scenario(env, declare)


async def action_items(env: Any, declare: Any) -> str:
    """A P3 with action items: two added while it runs (one refused: its owner is no Slack user), one in
    review; the first overdue and reminded on business days, then done; the review done with one still
    open, handed to its follow-up workflow."""
    from workflows.action_models import ActionItemDoneSignal, ActionItemSignal
    from workflows.incident import IncidentWorkflow
    from workflows.models import ClaimSignal, ResolveSignal, ReviewDoneSignal

    handle = await declare("P3", title="Core switch PSU failed", service="dc-core")
    await env.sleep(timedelta(minutes=2))
    await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="U0ALICE"))
    await handle.signal(
        IncidentWorkflow.add_action_item,
        ActionItemSignal(user="U0ALICE", text="Add a second PSU", owner="U0BOB", priority="P2", due="1d"),
    )
    await handle.signal(
        IncidentWorkflow.add_action_item, ActionItemSignal(user="U0ALICE", text="x", owner="bob")
    )
    await env.sleep(timedelta(minutes=10))
    await handle.signal(IncidentWorkflow.resolve, ResolveSignal(user="U0ALICE", resolution="PSU replaced"))
    await env.sleep(timedelta(minutes=5))
    await handle.signal(
        IncidentWorkflow.add_action_item,
        ActionItemSignal(user="U0ALICE", text="Alert on PSU state", owner="U0CAROL", due="2w"),
    )
    await env.sleep(timedelta(days=3))
    await handle.signal(IncidentWorkflow.complete_action_item, ActionItemDoneSignal(user="U0BOB", number=1))
    await env.sleep(timedelta(hours=1))
    await handle.signal(IncidentWorkflow.review_done, ReviewDoneSignal(user="U0ALICE", notes="done"))
    await handle.result()
    return handle.id


async def action_items_p3(env: Any, tmp: Path) -> list[Recording]:
    """action_items with fake Slack, tickets off (the items say why they are not filed)."""
    workflow_id = await _with_recorded_worker(env, action_items)
    return [
        Recording(
            "action-items",
            workflow_id,
            "P3 with action items: added while open (one refused) and in review, reminders on business "
            "days, done, review done with one open: handed to incident-<key>-actions (time-skipping, fake Slack)",
        )
    ]


async def p1_paged_chain(env: Any, tmp: Path) -> list[Recording]:
    """p1_paged with fake Slack and fake paging services, tickets off."""
    workflow_id = await _with_recorded_worker(env, p1_paged)
    return [
        Recording(
            "p1-paged-snoozed-acknowledged",
            workflow_id,
            "P1 on config/policy.yaml's chain: levels 1-2 paged, snooze 10m, acknowledged, claimed, "
            "unresolved rule, resolve, review (time-skipping server, fake Slack and pagers)",
        )
    ]


async def r1_outage_p1(env: Any, tmp: Path) -> list[Recording]:
    """The R1 outage (r1_outage) with fake Slack, tickets off, no devices."""
    workflow_id = await _with_recorded_worker(env, r1_outage, LEGACY_POLICY)
    return [
        Recording(
            "r1-outage-p1",
            workflow_id,
            "R1 outage: escalation, P2 raised to P1, claim, reminder, updates, handover, resolve, review; "
            "tickets off, no devices (time-skipping server, fake Slack)",
        )
    ]


async def p4_unclaimed(env: Any, tmp: Path) -> list[Recording]:
    """A P4 nobody claims for three days, then resolved (no review)."""
    workflow_id = await _with_recorded_worker(env, p4_expires)
    return [Recording("p4-unclaimed", workflow_id, "P4 unclaimed for 3 days, then resolved; tickets off")]


# ---------------------------------------------------------------- dev server


async def r1_outage_children(env: Any, tmp: Path) -> list[Recording]:
    """The R1 outage with its ticket in the ServiceNow sandbox and R1/R2 on the unicon mock devices.

    As tests/test_incident_children.py runs it: the real worker (worker.build_worker), Slack and
    ServiceNow sandboxes over HTTP, the mock lab's `outage` testbed until the fix, `recovered` for
    the verification. Records the incident and both its children.
    """
    from sandbox.devices import write_testbed
    from sandbox.servicenow import create_app as servicenow_app
    from sandbox.slack import create_app as slack_app
    from sandbox.slack import serve_in_background
    from workflows.incident import IncidentWorkflow
    from workflows.investigation_models import investigation_workflow_id
    from workflows.models import (
        PHASE_ATTR,
        ClaimSignal,
        IncidentState,
        ResolveSignal,
        ReviewDoneSignal,
        SeveritySignal,
        TimelineNote,
        UpdateSignal,
    )
    from workflows.policy import load_policy
    from workflows.ticket_models import ticket_workflow_id

    from .stack import eventually, incident_worker

    testbed = write_testbed("outage", tmp / "testbed.yaml")
    slack_state = tmp / "slack.json"
    async with (
        serve_in_background(slack_app(state_file=slack_state)) as slack_url,
        serve_in_background(servicenow_app()) as servicenow_url,
        incident_worker(
            env.client,
            slack_url + "/api/",
            load_policy(LEGACY_POLICY),
            servicenow_url=servicenow_url,
            servicenow_user="admin",
            servicenow_password="admin",
            pyats_testbed=str(testbed),
        ) as declare,
    ):
        handle = await declare(
            "P2",
            key=f"r1-{uuid.uuid4().hex[:8]}",
            title="R1 unreachable, WAN outage Site A",
            service="wan-site-a",
            devices=["R1"],
            upstream={"R1": "R2"},
            symptoms=["R1 unreachable (ping 0%)", "47 downstream routes lost"],
            impact=["Site A has no WAN connectivity", "Estimated affected users: ~200"],
            reporter="NetClaw (automated)",
        )

        async def until(test: Callable[[IncidentState], Any], what: str, timeout: float = 120) -> None:
            async def probe() -> IncidentState | None:
                state = await handle.query(IncidentWorkflow.state)
                return state if test(state) else None

            await eventually(probe, what=what, timeout=timeout)

        # No query until the first workflow task is done (describe() is not a query): a query that
        # comes while that task runs its local activity (load_incident_policy) can make the task
        # complete with the activity's marker alone, and workflow.patched() called right after it
        # (ticket-per-occurrence) is then False on replay: the run no longer replays.
        async def first_task_done() -> bool:
            described = await handle.describe()
            return described.typed_search_attributes.get(PHASE_ATTR) == "triage"

        await eventually(first_task_done, what="the declaration's first workflow task")
        await until(lambda s: s.ticket and s.baseline is not None, "the ticket and the baseline")
        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user=USER, request_id="claim-1"))
        await until(lambda s: s.investigation, "the investigation's analysis")
        await handle.signal(
            IncidentWorkflow.update,
            UpdateSignal(user=USER, status="investigating", message="R2 sees R1 down, console next"),
        )
        await handle.signal(
            IncidentWorkflow.set_severity, SeveritySignal(user=USER, severity="P1", reason="~200 users")
        )
        await handle.signal(
            IncidentWorkflow.add_to_timeline, TimelineNote(user=USER, text="DC hands on site", author=USER)
        )
        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="U0ENGINEER2"))
        await handle.signal(
            IncidentWorkflow.update,
            UpdateSignal(user="U0ENGINEER2", status="fixing", message="R1 PSU swapped", eta="10 min"),
        )
        await until(lambda s: s.updates == 2 and s.commander == "U0ENGINEER2", "the handover and updates")
        write_testbed("recovered", testbed)  # R1 is back: the verification passes
        await handle.signal(
            IncidentWorkflow.resolve,
            ResolveSignal(user="U0ENGINEER2", resolution="R1 power restored", root_cause="PSU failure"),
        )
        await until(lambda s: s.verification is not None and s.resolved_at, "the verification")
        await handle.signal(
            IncidentWorkflow.review_done, ReviewDoneSignal(user=USER, notes="spare PSU at Site A")
        )
        summary = await handle.result()
        ticket = env.client.get_workflow_handle(ticket_workflow_id(handle.id))
        investigation = env.client.get_workflow_handle(investigation_workflow_id(handle.id))
        ticket_done = await ticket.result()
        investigation_done = await investigation.result()
    assert ticket_done["closed"] and not ticket_done["problems"], ticket_done
    assert investigation_done["investigated"] and investigation_done["analysis"], investigation_done
    assert any(e.kind == "verification" and "✅" in e.text for e in summary.timeline), summary.timeline
    return [
        Recording(
            "r1-outage-p2-ticket-devices",
            handle.id,
            "R1 outage with a ServiceNow ticket (sandbox) and devices R1/R2 (mock devices): baseline, "
            "claim, investigation, update, P2 raised to P1, note, handover, resolve with verification "
            "passed, review (dev server, Slack sandbox)",
        ),
        Recording(
            "ticket-opened-changed-closed",
            ticket.id,
            "the R1 incident's TicketWorkflow child against the ServiceNow sandbox: opened, claim, "
            "updates, severity, note, handover, resolve, closed after the review",
        ),
        Recording(
            "investigation-baseline-investigate-done",
            investigation.id,
            "the R1 incident's InvestigationWorkflow child against the mock devices (outage): "
            "baseline, investigate on claim, plan steps posted, analysis done",
        ),
    ]


async def ticket_stand_in(env: Any, tmp: Path) -> list[Recording]:
    """A TicketWorkflow under a stand-in incident (tests/recording_stand_ins.py), against the ServiceNow
    sandbox: opened, claim, updates, severity, escalation, note, resolve, close, each sent once the
    ticket has applied the one before (it waits with nothing pending before each). Needs only
    workflows/ticket_models.py, workflows/tickets.py and activities/tickets(.py|/), so `--code` can run it
    with an older TicketWorkflow."""
    from temporalio.worker import Worker

    from activities.tickets import TicketActivities
    from sandbox.servicenow import create_app as servicenow_app
    from sandbox.slack import serve_in_background
    from workflows.ticket_models import TicketEvent, TicketInput, TicketOpen, ticket_workflow_id
    from workflows.tickets import TicketWorkflow

    from .recording_stand_ins import TicketParentStandIn

    at = datetime(2026, 11, 22, 14, 32, tzinfo=UTC)
    key = f"tkt-{uuid.uuid4().hex[:8]}"
    activities: list[Any] = []
    async with serve_in_background(servicenow_app()) as url:
        if hasattr(TicketActivities, "from_settings"):  # code before activities/tickets/ built both at once
            tickets = TicketActivities.from_settings(url, "admin", "admin", timeout=5.0)
        else:
            from activities.tickets import ServiceNowTickets

            tickets = TicketActivities(ServiceNowTickets.from_settings(url, "admin", "admin", timeout=5.0))
        activities = [tickets.open_ticket, tickets.update_ticket]
        try:  # the ticket's idle check (834328e) asks Temporal; older code has no such activity
            from activities.temporal import TemporalActivities

            activities.append(TemporalActivities(env.client).incident_is_running)
        except ImportError:
            pass
        queue = f"tickets-{uuid.uuid4().hex[:8]}"
        ticket_input = TicketInput(
            open=TicketOpen(
                incident_key=key,
                workflow_id=f"incident-{key}",
                severity="P2",
                title="R1 unreachable, WAN outage Site A",
                service="wan-site-a",
                symptoms=["R1 unreachable (ping 0%)"],
                impact=["Site A has no WAN connectivity"],
                reporter="NetClaw (automated)",
                declared_at=at,
            ),
            incident_workflow_id="set by the stand-in",
            start_to_close=timedelta(seconds=5),
            initial_retry_interval=timedelta(milliseconds=200),
            max_retry_interval=timedelta(milliseconds=500),
        )
        changes: list[dict[str, Any]] = [
            {"kind": "claim", "actor": USER, "assigned_to": USER},
            {"kind": "update", "actor": USER, "status": "investigating", "text": "R2 sees R1 down"},
            {
                "kind": "severity",
                "actor": USER,
                "severity": "P1",
                "previous_severity": "P2",
                "reason": "~200",
            },
            {"kind": "escalation", "text": "Escalation 1: paging @netops-tier2"},
            {"kind": "note", "actor": USER, "text": "DC hands on site"},
            {"kind": "update", "actor": USER, "status": "fixing", "text": "R1 PSU swapped", "eta": "10 min"},
            {"kind": "resolve", "actor": USER, "resolution": "R1 power restored", "root_cause": "PSU"},
            {"kind": "close", "actor": USER, "text": "review held: spare PSU at Site A"},
        ]
        try:
            async with Worker(
                env.client,
                task_queue=queue,
                workflows=[TicketParentStandIn, TicketWorkflow],
                activities=activities,
            ):
                parent = await env.client.start_workflow(
                    TicketParentStandIn.run, ticket_input, id=f"incident-{key}", task_queue=queue
                )
                for _ in range(300):  # not tests.stack.eventually: that imports the whole project
                    if await parent.query(TicketParentStandIn.opened):
                        break
                    await asyncio.sleep(0.1)
                else:
                    raise AssertionError("the ticket was not opened within 30 s")
                ticket = env.client.get_workflow_handle(ticket_workflow_id(parent.id))
                for n, change in enumerate(changes, 1):
                    event = TicketEvent(
                        incident_key=key,
                        idempotency_key=f"{parent.id}/ticket/{n}/{change['kind']}",
                        at=at + timedelta(minutes=n),
                        **change,
                    )
                    await parent.signal(TicketParentStandIn.send, event)
                    # One change at a time, each after the last is applied: the ticket waits with
                    # nothing pending before each, the wait its ticket-idle-check patch changed.
                    for _ in range(300):
                        if (await ticket.query(TicketWorkflow.progress)).applied >= n:
                            break
                        await asyncio.sleep(0.1)
                    else:
                        raise AssertionError(f"change {n} was not applied within 30 s")
                problems = await parent.result()
                done = await ticket.result()
        finally:
            await tickets.aclose()
    assert not problems and done["closed"] and done["applied"] == len(changes), done
    return [
        Recording(
            "ticket-stand-in",
            ticket.id,
            "TicketWorkflow under a stand-in incident, against the ServiceNow sandbox: opened, claim, "
            "updates, severity, escalation, note, resolve, close, each once the one before was applied",
        )
    ]


TIME_SKIPPING: dict[str, Scenario] = {
    "r1-outage-p1": r1_outage_p1,
    "p4-unclaimed": p4_unclaimed,
    "p1-paged": p1_paged_chain,
    "p3-raised": p3_raised_chain,
    "war-room-triggers": war_room_triggers_p1,
    "action-items": action_items_p3,
}
DEV_SERVER: dict[str, Scenario] = {
    "r1-outage-children": r1_outage_children,
    "ticket-stand-in": ticket_stand_in,
}
SCENARIOS = {**TIME_SKIPPING, **DEV_SERVER}


# ------------------------------------------------------------------ recording


def _git(code: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(code), *args], capture_output=True, text=True, check=True).stdout


def code_commit(code: Path) -> str:
    """The commit whose workflows/ will run the scenarios; refused when workflows/ has changes."""
    changed = _git(code, "status", "--porcelain", "--", "workflows").strip()
    if changed:
        raise SystemExit(f"workflows/ in {code} has uncommitted changes; commit them first:\n{changed}")
    return _git(code, "rev-parse", "HEAD").strip()


def save(history_json: str, recording: Recording, commit: str, today: str) -> Path:
    path = HISTORIES / f"{today}-{commit[:7]}-{recording.name}.json"
    if path.exists():
        raise SystemExit(f"{path} exists: histories are append-only, record under a new name")
    text = json.dumps(json.loads(history_json), indent=1) + "\n"
    workflow_type = json.loads(text)["events"][0]["workflowExecutionStartedEventAttributes"]["workflowType"]
    path.write_text(text)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    line = f"{digest}  {path.name:<47}  {workflow_type['name']:<21}  {commit}  {today}; {recording.note}\n"
    with MANIFEST.open("a") as manifest:
        manifest.write(line)
    return path


async def record(names: list[str], commit: str) -> None:
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.testing import WorkflowEnvironment

    from workflows.models import SEARCH_ATTRIBUTES

    today = datetime.now(UTC).date().isoformat()
    for group, start in (
        (
            TIME_SKIPPING,
            lambda: WorkflowEnvironment.start_time_skipping(
                test_server_existing_path=str(TEST_SERVER), data_converter=pydantic_data_converter
            ),
        ),
        (
            DEV_SERVER,
            lambda: WorkflowEnvironment.start_local(
                dev_server_existing_path=str(TEMPORAL_CLI),
                search_attributes=SEARCH_ATTRIBUTES,
                data_converter=pydantic_data_converter,
                dev_server_log_level="error",
            ),
        ),
    ):
        wanted = [n for n in names if n in group]
        if not wanted:
            continue
        env = await start()
        try:
            for name in wanted:
                with tempfile.TemporaryDirectory() as tmp:
                    recordings = await group[name](env, Path(tmp))
                for recording in recordings:
                    history = await env.client.get_workflow_handle(recording.workflow_id).fetch_history()
                    path = save(history.to_json(), recording, commit, today)
                    print(f"wrote {path} ({len(history.events)} events)")
        finally:
            await env.shutdown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.record_histories", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("scenarios", nargs="*", help="what to record (default: every scenario)")
    parser.add_argument("--list", action="store_true", help="list the scenarios")
    parser.add_argument("--code", type=Path, help="the checkout whose project code runs the scenarios")
    args = parser.parse_args(argv)
    if args.list:
        for name, scenario in SCENARIOS.items():
            server = "time-skipping" if name in TIME_SKIPPING else "dev server"
            print(
                f"{name:<20} {server:<14} {(scenario.__doc__ or '').splitlines()[0] if scenario.__doc__ else ''}"
            )
        return
    names = args.scenarios or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; --list shows them")
    code = ROOT
    if args.code:
        code = args.code.resolve()
        if "workflows" in sys.modules:
            raise SystemExit("--code: the project's modules were imported already")
        sys.path.insert(0, str(code))
    commit = code_commit(code)
    import workflows

    assert Path(workflows.__file__).resolve().parent == code / "workflows", workflows.__file__
    print(f"recording {', '.join(names)} with the code of {commit[:9]} ({code})")
    asyncio.run(record(names, commit))


if __name__ == "__main__":
    main()
