"""Record full-incident histories into tests/histories/ for the replay test.

    .venv/bin/python -m tests.record_histories

Histories are append-only (tests/histories/MANIFEST): never re-record one under
its old name. A history that no longer replays means running incidents would break
on deploy (use workflow.patched() instead). A new recording gets a new name and a
line in MANIFEST.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from workflows.incident import IncidentWorkflow
from workflows.models import ClaimSignal, ResolveSignal, ReviewDoneSignal, SeveritySignal, UpdateSignal
from workflows.policy import load_policy

from .conftest import TEST_SERVER
from .workflow_harness import recorded_worker

HISTORIES = Path(__file__).parent / "histories"


async def r1_outage(env: WorkflowEnvironment, declare) -> str:
    """The R1 scenario: unclaimed escalation, claim, reminder, updates, handover, severity, resolve, review."""
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


async def p4_expires(env: WorkflowEnvironment, declare) -> str:
    """A P4 nobody claims for three days, then resolved (no review)."""
    handle = await declare("P4", title="Interface description typo on R7")
    await env.sleep(timedelta(days=3))
    await handle.signal(IncidentWorkflow.resolve, ResolveSignal(user="U0ENGINEER3", resolution="fixed"))
    await handle.result()
    return handle.id


async def main() -> None:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(TEST_SERVER), data_converter=pydantic_data_converter
    )
    try:
        async with recorded_worker(env, load_policy()) as (declare, _):
            for name, scenario in (("r1-outage-p1", r1_outage), ("p4-unclaimed", p4_expires)):
                workflow_id = await scenario(env, declare)
                history = await env.client.get_workflow_handle(workflow_id).fetch_history()
                path = HISTORIES / f"{name}.json"
                if path.exists():
                    raise SystemExit(f"{path} exists: histories are append-only, record under a new name")
                path.write_text(json.dumps(json.loads(history.to_json()), indent=1) + "\n")
                print(f"wrote {path} ({len(history.events)} events)")
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
