"""Nothing lost and nothing twice: a worker SIGKILLed mid-incident, a dev server restarted on its file."""

from __future__ import annotations

import uuid

from temporalio.client import Client

from activities.settings import Settings
from starter.connect import connect
from starter.declare import declare_incident
from workflows.incident import IncidentWorkflow
from workflows.models import ClaimSignal, IncidentDeclaration, ResolveSignal, ReviewDoneSignal, UpdateSignal
from workflows.policy import load_policy

from .processes import DevServer, WorkerProcess, free_port, write_fast_policy
from .stack import eventually, first_pages_out, idempotency_keys, posted_state, templates_of

# The P1 pages its primary on call at its declaration, and says so in the thread ("paged").
FULL_THREAD = [
    "declaration",
    "paged",
    "team_formed",
    "status_update",
    "resolution",
    "review_scheduled",
    "review_done",
]


async def finish_incident(handle) -> None:
    await handle.signal(
        IncidentWorkflow.update, UpdateSignal(user="alice", status="fixing", message="rebooting R1")
    )
    await handle.signal(
        IncidentWorkflow.resolve, ResolveSignal(user="alice", resolution="R1 back", root_cause="crash")
    )
    await handle.signal(IncidentWorkflow.review_done, ReviewDoneSignal(user="alice"))


async def assert_each_message_once(sandbox, state) -> None:
    thread = await sandbox.thread(state.slack_channel, state.slack_thread_ts)
    keys = idempotency_keys(thread)
    assert len(keys) == len(set(keys)), f"a message was posted twice: {keys}"
    # A P1: its war room, opened once across the crash or restart; its line comes when it is ready.
    assert templates_of(thread).count("war_room_opened") == 1
    assert [t for t in templates_of(thread) if t != "war_room_opened"] == FULL_THREAD


async def paged_before_the_claim(sandbox, handle, state, policy_file) -> None:
    """The declaration's pages are out and said in the thread (a person claims seconds later)."""
    await first_pages_out(handle, load_policy(policy_file))

    async def probe():
        return "paged" in templates_of(await sandbox.thread(state.slack_channel, state.slack_thread_ts))

    await eventually(probe, timeout=30, what="the page in the thread")


async def team_formed_posted(sandbox, state):
    async def probe():
        return "team_formed" in templates_of(await sandbox.thread(state.slack_channel, state.slack_thread_ts))

    await eventually(probe, timeout=30, what="'Incident Team Formed' in the thread")


async def test_worker_killed_mid_post_resumes_and_posts_each_message_once(local_env, sandbox, tmp_path):
    client: Client = local_env.client
    address = client.service_client.config.target_host
    queue = f"durability-{uuid.uuid4().hex[:8]}"
    policy = write_fast_policy(tmp_path)
    first = WorkerProcess(address, queue, sandbox.api_url, policy, tmp_path / "worker-1.log")
    second = WorkerProcess(address, queue, sandbox.api_url, policy, tmp_path / "worker-2.log")
    first.start()
    try:
        handle = await declare_incident(
            client,
            IncidentDeclaration(key=f"kill-{uuid.uuid4().hex[:8]}", severity="P1", title="R1 crash"),
            queue,
        )
        state = await posted_state(handle)
        await paged_before_the_claim(sandbox, handle, state, policy)
        # Slack takes the next post but answers late: the worker dies with the call in flight.
        await sandbox.fault(method="chat.postMessage", delay=5, count=1)
        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="alice"))
        await team_formed_posted(sandbox, state)
        first.kill()

        second.start()
        await finish_incident(handle)
        summary = await handle.result()
    finally:
        first.stop()
        second.stop()
    assert summary.commander == "alice" and summary.updates == 1
    await assert_each_message_once(sandbox, state)


async def test_dev_server_restarted_on_its_file_keeps_the_incident(sandbox, tmp_path):
    server = DevServer(tmp_path / "temporal.db", free_port(), tmp_path / "server.log")
    await server.start()
    queue = f"restart-{uuid.uuid4().hex[:8]}"
    policy = write_fast_policy(tmp_path)
    worker = WorkerProcess(server.address, queue, sandbox.api_url, policy, tmp_path / "w.log")
    worker.start()
    try:
        client = await connect(Settings(temporal_address=server.address))
        declaration = IncidentDeclaration(
            key=f"restart-{uuid.uuid4().hex[:8]}", severity="P1", title="R1 crash"
        )
        handle = await declare_incident(client, declaration, queue)
        state = await posted_state(handle)
        await paged_before_the_claim(sandbox, handle, state, policy)
        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="alice"))
        await team_formed_posted(sandbox, state)

        server.stop()
        await server.start()

        client = await connect(Settings(temporal_address=server.address))
        handle = client.get_workflow_handle_for(IncidentWorkflow.run, declaration.workflow_id)
        assert (await handle.query(IncidentWorkflow.state)).commander == "alice"
        await finish_incident(handle)
        summary = await handle.result()
    finally:
        worker.stop()
        server.stop()
    assert summary.updates == 1
    await assert_each_message_once(sandbox, state)
