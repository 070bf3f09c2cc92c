"""A whole incident on the real dev server, with the real worker activities and the Slack sandbox over HTTP."""

from __future__ import annotations

import subprocess

from temporalio.client import WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from sandbox.slack import dm_channel_id_for
from workflows.incident import IncidentWorkflow
from workflows.models import (
    ClaimSignal,
    IncidentState,
    Phase,
    ResolveSignal,
    ReviewDoneSignal,
    Severity,
    UpdateSignal,
)
from workflows.paging_models import PagingService

from .conftest import TEMPORAL_CLI
from .stack import (
    SlackSandbox,
    eventually,
    fast_retry_policy,
    first_pages_out,
    idempotency_keys,
    incident_worker,
    posted_state,
    templates_of,
)


async def paged_in_slack(sandbox: SlackSandbox, paged: IncidentState) -> tuple[str, str]:
    """The on-call person the first level paged through Slack, once the thread says so; and that
    thread message. The DM itself is looked at too: the page's own text, with the incident's key."""
    [page] = [p for p in paged.paging.pages if p.level == 1 and p.service == PagingService.slack]
    assert page.outcome == "sent", page
    dm = await sandbox.history(dm_channel_id_for(page.user_id))
    assert any(
        f"You are paged: {paged.severity.value} {paged.title}" in m["text"] and f"`{paged.key}`" in m["text"]
        for m in dm
    ), dm
    # The page links where to open the incident: its thread once posted, else its Temporal UI page.
    thread_link = f"archives/{paged.slack_channel}/p{(paged.slack_thread_ts or '').replace('.', '')}"
    ui_link = f"/workflows/{paged.workflow_id}|Open the incident"
    assert any(thread_link in m["text"] or ui_link in m["text"] for m in dm), dm

    async def said() -> str | None:
        thread = await sandbox.thread(paged.slack_channel, paged.slack_thread_ts)
        return next((m["text"] for m in thread[1:] if templates_of([m]) == ["paged"]), None)

    text = await eventually(said, what="the page in the thread")
    return page.user_id, text


async def test_declaration_posts_to_the_p1_channel_and_is_found_by_severity(local_env, sandbox, policy):
    async with incident_worker(local_env.client, sandbox.api_url, policy) as declare:
        handle = await declare(
            "P1",
            symptoms=["R1 unreachable (ping 0%)", "BGP peer to ISP: IDLE"],
            impact=["Site A has no WAN connectivity"],
            service="wan-site-a",
        )
        state = await posted_state(handle)

        history = await sandbox.history(state.slack_channel)
        declaration = next(m for m in history if m["ts"] == state.slack_thread_ts)
        assert "INCIDENT DECLARED — R1 unreachable, WAN outage Site A" in declaration["text"]
        assert "*Severity:* P1" in declaration["text"]
        assert "R1 unreachable (ping 0%)" in declaration["text"]
        assert "Site A has no WAN connectivity" in declaration["text"]
        assert "awaiting claim" in declaration["text"]
        channels = (await sandbox.web.conversations_list())["channels"]
        assert {c["id"]: c["name"] for c in channels}[state.slack_channel] == "incidents"
        assert await eventually(lambda: sandbox.reactions(state.slack_channel, state.slack_thread_ts)) == [
            "rotating_light"
        ]

        # `temporal workflow list --query "IncidentSeverity='P1'"`, as a person would type it
        async def listed() -> bool:
            result = subprocess.run(
                [
                    str(TEMPORAL_CLI),
                    "workflow",
                    "list",
                    "--address",
                    local_env.client.service_client.config.target_host,
                    "--query",
                    "IncidentSeverity='P1' AND IncidentPhase='triage'",
                ],
                capture_output=True,
                text=True,
                timeout=30,
            )
            return handle.id in result.stdout

        await eventually(listed, what="the incident in the visibility list")
        description = await handle.describe()
        assert await description.static_summary() == "P1 · R1 unreachable, WAN outage Site A"
        assert "Site A has no WAN connectivity" in (await description.static_details() or "")


async def test_whole_incident_in_one_thread_each_message_once_and_replayable(local_env, sandbox, policy):
    async with incident_worker(local_env.client, sandbox.api_url, policy) as declare:
        handle = await declare("P2", key="e2e-full")
        state = await posted_state(handle)
        # The P2 pages its primary on call at once (a DM), and says so in the thread.
        on_call, paged = await paged_in_slack(sandbox, await first_pages_out(handle, policy))
        # This worker pages through Slack alone: the thread says so, the timeline says what was not.
        assert f"Paged <@{on_call}> (level 1, on call for network-primary) via slack." in paged
        notes = [
            e.text for e in (await handle.query(IncidentWorkflow.state)).timeline if e.kind == "paging_note"
        ]
        assert any("not paged through pagerduty: this worker does not page through it" in n for n in notes)
        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="U0ENGINEER1"))
        await handle.signal(
            IncidentWorkflow.update,
            UpdateSignal(user="U0ENGINEER1", status="fixing", message="Reseating R1 Gi1 optic", eta="15 min"),
        )
        await handle.signal(
            IncidentWorkflow.resolve,
            ResolveSignal(user="U0ENGINEER1", resolution="Optic replaced", root_cause="failed SFP"),
        )
        await handle.signal(IncidentWorkflow.review_done, ReviewDoneSignal(user="U0ENGINEER1"))
        summary = await handle.result()

        thread = await sandbox.thread(state.slack_channel, state.slack_thread_ts)
        assert templates_of(thread) == [
            "declaration",
            "paged",
            "team_formed",
            "status_update",
            "resolution",
            "review_scheduled",
            "review_done",
        ]
        keys = idempotency_keys(thread)
        assert len(keys) == len(set(keys))
        header = thread[0]["text"]
        # Kept current by chat.update, to its last word: closed (it read "Phase: review" before).
        assert "INCIDENT CLOSED" in header and "<@U0ENGINEER1>" in header and "*Phase:* closed" in header
        # The team's checklist was edited as its items happened: the update said `fixing` (the cause
        # is known: blast radius confirmed); no ticket (off here), no stakeholder update yet.
        (formed,) = [m for m in thread if idempotency_keys([m])[0].endswith("/team_formed")]
        assert ":white_check_mark: Blast radius confirmed" in formed["text"], formed["text"]
        assert ":white_large_square: Customer communication sent" in formed["text"]
        assert "Reseating R1 Gi1 optic" in thread[3]["text"] and "15 min" in thread[3]["text"]
        assert "failed SFP" in thread[4]["text"]
        assert await sandbox.reactions(state.slack_channel, state.slack_thread_ts) == [
            "rotating_light",
            "raised_hand",
            "mag",
            "wrench",
            "white_check_mark",
            "bookmark",
        ]
        assert summary.updates == 1 and summary.commander == "U0ENGINEER1"
        assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED

        # The run replays with the current code.
        history = await handle.fetch_history()
        await Replayer(workflows=[IncidentWorkflow], data_converter=pydantic_data_converter).replay_workflow(
            history
        )


async def test_slack_429_then_500_for_a_while_delivers_each_post_once_in_order(local_env, sandbox, policy):
    async with incident_worker(local_env.client, sandbox.api_url, fast_retry_policy(policy)) as declare:
        handle = await declare("P1")
        state = await posted_state(handle)
        await paged_in_slack(sandbox, await first_pages_out(handle, policy))  # the P1's primary on call
        # The sandbox's call log is the whole session's: start it afresh, so that only this test's
        # faults can answer the check below.
        (await sandbox.control.delete("/_sandbox/calls")).raise_for_status()
        await sandbox.fault(method="chat.postMessage", status=429, count=3, retry_after=1)
        await sandbox.fault(method="chat.postMessage", status=500, count=3)
        await sandbox.fault(method="chat.update", status=503, count=2)
        await sandbox.fault(method="reactions.add", status=503, count=2)
        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="alice"))
        for n in range(3):
            await handle.signal(
                IncidentWorkflow.update,
                UpdateSignal(user="alice", status="investigating", message=f"finding {n}"),
            )

        async def thread_complete():
            thread = await sandbox.thread(state.slack_channel, state.slack_thread_ts)
            return thread if len(idempotency_keys(thread)) >= 7 else None  # with the page and the war room

        thread = await eventually(thread_complete, timeout=60, what="the posts after Slack recovered")
        final = await handle.query(IncidentWorkflow.state)
    # A P1's war room: said once in the thread, when the room is ready (its place varies).
    assert templates_of(thread).count("war_room_opened") == 1
    assert [t for t in templates_of(thread) if t != "war_room_opened"] == [
        "declaration",
        "paged",
        "team_formed",
        "status_update",
        "status_update",
        "status_update",
    ]
    findings = [m for m in thread if "*Finding:* " in m.get("text", "")]
    assert [m["text"].split("*Finding:* ")[1].splitlines()[0] for m in findings] == [
        "finding 0",
        "finding 1",
        "finding 2",
    ]
    assert final.phase == Phase.monitoring
    assert [e.kind for e in final.timeline if e.kind == "slack_error"] == []
    calls = (await sandbox.control.get("/_sandbox/calls")).json()
    failed: dict[tuple[str, int], int] = {}
    for call in calls:
        if call["status"] >= 400:
            failed[call["method"], call["status"]] = failed.get((call["method"], call["status"]), 0) + 1
    # The faults really happened, each as many times as it was set, and nothing else failed.
    assert failed == {
        ("chat.postMessage", 429): 3,
        ("chat.postMessage", 500): 3,
        ("chat.update", 503): 2,
        ("reactions.add", 503): 2,
    }, failed


async def test_a_post_whose_answer_was_lost_is_not_posted_twice(local_env, sandbox, policy):
    async with incident_worker(local_env.client, sandbox.api_url, fast_retry_policy(policy)) as declare:
        handle = await declare("P1")
        state = await posted_state(handle)
        await paged_in_slack(sandbox, await first_pages_out(handle, policy))  # the P1's primary on call
        # Slack posts the message but answers after the activity's 2 s timeout: Temporal retries it.
        await sandbox.fault(method="chat.postMessage", delay=3, count=1)
        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="alice"))

        async def claimed_and_quiet():
            s = await handle.query(IncidentWorkflow.state)
            return s if s.phase == Phase.investigating and s.messages_posted >= 3 else None

        await eventually(claimed_and_quiet, timeout=30, what="the claim to be handled")
        await handle.signal(
            IncidentWorkflow.update, UpdateSignal(user="alice", status="fixing", message="done soon")
        )

        async def update_posted():
            thread = await sandbox.thread(state.slack_channel, state.slack_thread_ts)
            return thread if "status_update" in templates_of(thread) else None

        thread = await eventually(update_posted, timeout=30, what="the update after the retried post")
    assert [t for t in templates_of(thread) if t != "war_room_opened"] == [
        "declaration",
        "paged",
        "team_formed",
        "status_update",
    ]
    assert templates_of(thread).count("war_room_opened") <= 1


async def test_unknown_channel_is_not_retried_and_the_incident_goes_on(local_env, sandbox, policy):
    broken = policy.model_copy(deep=True)
    broken.chat.channels[Severity.P1] = "no-such-channel"
    async with incident_worker(local_env.client, sandbox.api_url, broken) as declare:
        handle = await declare("P1")
        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="alice", request_id="c"))

        async def claimed():
            s = await handle.query(IncidentWorkflow.state)
            # The claim does not wait for the declaration's post (it is sent beside the incident's loop).
            applied = any(e.request_id == "c" for e in s.timeline)
            return s if applied and any(e.kind == "slack_error" for e in s.timeline) else None

        state = await eventually(claimed, what="the claim and the refused declaration")
    errors = [e.text for e in state.timeline if e.kind == "slack_error"]
    assert errors and "channel_not_found" in errors[0]
    assert state.commander == "alice" and state.slack_thread_ts is None
