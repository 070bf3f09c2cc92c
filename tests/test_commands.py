"""Commands as Temporal updates, signals that do not parse, and the deadline table.

Workflow logic on the time-skipping test server (Slack recorded by fake activities),
and the Temporal CLI itself against the real dev server.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import datetime, timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from workflows.deadlines import Deadline, DeadlineTable
from workflows.incident import IncidentWorkflow
from workflows.models import ClaimSignal, ResolveSignal, TimelineEntry, UpdateSignal

from .conftest import TEMPORAL_CLI
from .fakes import RecordedSlack
from .stack import first_pages_out
from .test_cli import invoke, unique
from .variant_workflows import WithCoffeeBreaks
from .workflow_harness import minutes, recorded_worker, state_of


async def test_a_refused_update_is_answered_at_once_and_leaves_nothing_in_history(time_skipping_env, policy):
    async with recorded_worker(time_skipping_env, policy) as (declare, _):
        handle = await declare("P2")
        await first_pages_out(handle, policy)  # P2 pages its primary on call at once
        claimed = await handle.execute_update(
            IncidentWorkflow.claim_command, ClaimSignal(user="alice"), result_type=TimelineEntry
        )
        assert claimed.kind == "claimed" and claimed.actor == "alice" and claimed.request_id
        for command, reason in (
            (ClaimSignal(user="alice"), "alice is already the Incident Commander"),
            (UpdateSignal(user="alice", status="panicking", message="x"), "unknown status 'panicking'"),
        ):
            name = "claim" if isinstance(command, ClaimSignal) else "update"
            with pytest.raises(WorkflowUpdateFailedError) as refused:
                await handle.execute_update(name, command, result_type=TimelineEntry)
            assert isinstance(refused.value.cause, ApplicationError)
            assert reason in refused.value.cause.message
            assert refused.value.cause.type == "CommandRefused"
        history = (await handle.fetch_history()).to_json()
        assert (
            "panicking" not in history and history.count("EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED") == 1
        )
        state = await state_of(handle)
        assert not any(e.kind == "rejected" for e in state.timeline)
        assert state.commander == "alice" and state.updates == 0


async def test_an_update_is_applied_in_order_with_the_signals(time_skipping_env, policy):
    async with recorded_worker(time_skipping_env, policy) as (declare, _):
        handle = await declare("P3")
        await first_pages_out(handle, policy)  # P3 pages its primary on call at once
        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="alice"))
        resolved = await handle.execute_update(
            IncidentWorkflow.resolve_command,
            ResolveSignal(user="alice", resolution="done", request_id="r-1"),
            result_type=TimelineEntry,
        )
        assert resolved.kind == "resolved" and resolved.request_id == "r-1"
        # The same command again as a signal (a CLI that timed out on its update sends one): applied once.
        await handle.signal(
            IncidentWorkflow.resolve, ResolveSignal(user="alice", resolution="done", request_id="r-1")
        )
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(IncidentWorkflow.claim_command, ClaimSignal(user="bob"))
        assert "cannot be claimed" in str(refused.value.cause)
        state = await state_of(handle)
    kinds = [e.kind for e in state.timeline if e.actor == "alice"]
    assert kinds == ["claimed", "resolved"], kinds
    assert not any(e.kind == "rejected" for e in state.timeline)


@pytest.mark.parametrize(
    ("name", "raw", "reason"),
    [
        ("review_done", {}, "field user: Field required"),
        ("claim", "alice", "field input: Input should be a valid dictionary"),
        ("update", {"user": "alice", "status": "fixing"}, "field message: Field required"),
        ("set_severity", {"user": "a", "severity": 1}, "field severity: Input should be a valid string"),
    ],
)
async def test_a_signal_that_does_not_parse_is_refused_in_the_timeline(
    time_skipping_env, policy, name, raw, reason
):
    async with recorded_worker(time_skipping_env, policy) as (declare, _):
        handle = await declare("P3")
        await first_pages_out(handle, policy)
        await handle.signal(name, raw)
        # The incident goes on (and the update's answer says the signal before it was handled).
        await handle.execute_update(IncidentWorkflow.claim_command, ClaimSignal(user="after"))
        state = await state_of(handle)
    refused = [e for e in state.timeline if e.kind == "refused"]
    assert len(refused) == 1, state.timeline
    assert refused[0].text.startswith(f"{name} refused: ") and reason in refused[0].text, refused[0].text
    assert state.commander == "after"


# ------------------------------------------------------------- deadline table


async def test_a_new_deadline_purpose_is_scheduled_and_fired_beside_the_others(time_skipping_env, policy):
    async with recorded_worker(time_skipping_env, policy, workflow_class=WithCoffeeBreaks) as (declare, _):
        # P2 pages level 1 at once, level 2 after 15 min, level 3 after 30 until claimed; then
        # reminders every 30 min, and the chain's rules for a claimed P2 still open 1 h and 4 h in.
        handle = await declare("P2")
        await time_skipping_env.sleep(timedelta(minutes=45))
        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="alice"))
        await time_skipping_env.sleep(timedelta(minutes=140))
        state = await state_of(handle)
    assert minutes(state, "paging") == [0, 15, 30, 60]
    assert minutes(state, "coffee") == [50, 100, 150]
    claimed = minutes(state, "claimed")[0]
    assert minutes(state, "reminder") == [claimed + 30 * n for n in range(1, 5)]
    assert [d.purpose for d in state.deadlines] == sorted(
        ["reminder", "coffee", "unresolved"],
        key=lambda p: next(d.due for d in state.deadlines if d.purpose == p),
    )
    assert {d.label for d in state.deadlines} == {"update reminder due", "coffee 4", "unresolved 4h"}


async def test_the_table_fires_the_earliest_due_purpose_only():
    fired: list[str] = []
    t0 = datetime(2026, 12, 1, 12, 0)

    async def handler(now: datetime) -> None:
        fired.append("b")

    table = DeadlineTable()
    table.add("a", lambda: Deadline("a", t0 + timedelta(minutes=5), "a"), handler)
    table.add("b", lambda: Deadline("b", t0 + timedelta(minutes=1), "b"), handler)
    table.add("never", lambda: None, handler)
    with pytest.raises(ValueError):
        table.add("a", lambda: None, handler)
    assert [d.purpose for d in table.entries()] == ["b", "a"]
    assert await table.fire_due(t0) is None and fired == []
    assert (await table.fire_due(t0 + timedelta(minutes=2))).purpose == "b"
    assert table.due("never") is None and table.due("a") == t0 + timedelta(minutes=5)


# ------------------------------------------------------ the Temporal CLI itself


def temporal(*args: str, address: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(TEMPORAL_CLI), *args, "--address", address], capture_output=True, text=True, timeout=60
    )


async def test_the_temporal_cli_update_is_answered_and_a_malformed_signal_shows_in_status(local_env, policy):
    address = local_env.client.service_client.config.target_host
    queue = unique("tcli-tq")
    env = {"TEMPORAL_ADDRESS": address, "TEMPORAL_TASK_QUEUE": queue}
    slack = RecordedSlack(policy)
    key = unique("tcli")
    async with Worker(
        local_env.client, task_queue=queue, workflows=[IncidentWorkflow], activities=slack.activities
    ):
        assert (
            await asyncio.to_thread(invoke, ["declare", "-s", "P3", "-t", "disk full", "--key", key], **env)
        ).exit_code == 0
        workflow_id = f"incident-{key}"
        update = ["workflow", "update", "execute", "--workflow-id", workflow_id, "--name"]
        done = await asyncio.to_thread(
            temporal, *update, "claim", "--input", json.dumps({"user": "alice"}), address=address
        )
        assert done.returncode == 0, done.stderr
        assert "claimed" in done.stdout and "alice is Incident Commander" in done.stdout, done.stdout
        again = await asyncio.to_thread(
            temporal, *update, "claim", "--input", json.dumps({"user": "alice"}), address=address
        )
        assert (
            again.returncode != 0 and "alice is already the Incident Commander" in again.stderr + again.stdout
        )
        sent = await asyncio.to_thread(
            temporal,
            "workflow",
            "signal",
            "--workflow-id",
            workflow_id,
            "--name",
            "review_done",
            "--input",
            "{}",
            address=address,
        )
        assert sent.returncode == 0, sent.stderr
        status = ""
        for _ in range(50):
            status = (await asyncio.to_thread(invoke, ["status", key], COLUMNS="200", **env)).output
            if "refused" in status:
                break
            await asyncio.sleep(0.1)
        assert "review_done refused: field user: Field required" in " ".join(status.split()), status
        await local_env.client.get_workflow_handle(workflow_id).terminate("test done")
