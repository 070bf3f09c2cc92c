"""How IncidentWorkflow answers people: claims, handovers, rejections, resolution, review, continue-as-new.

Unit tests of workflow logic on the time-skipping server; Slack is recorded by fake activities.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from workflows.incident import IncidentWorkflow
from workflows.models import (
    ClaimSignal,
    IncidentSummary,
    Phase,
    ResolveSignal,
    ReviewDoneSignal,
    SeveritySignal,
    UpdateSignal,
)

from .stack import first_pages_out
from .workflow_harness import minutes, recorded_worker, state_of


def minutes_after(summary: IncidentSummary, entry) -> int:
    return round((entry.at - summary.declared_at) / timedelta(minutes=1))


def kinds(state) -> list[str]:
    return [e.kind for e in state.timeline if e.kind != "phase"]


async def test_full_incident_walks_the_six_phases_and_returns_its_summary(time_skipping_env, policy):
    async with recorded_worker(time_skipping_env, policy) as (declare, slack):
        handle = await declare("P1", symptoms=["R1 unreachable (ping 0%)"], impact=["Site A has no WAN"])
        await time_skipping_env.sleep(timedelta(minutes=3))
        phases = [(await state_of(handle)).phase]
        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="U0ENGINEER1", request_id="c1"))
        # 16, not 15: the reminder (15 min after the claim) fires inside the skip. A skip that
        # ends on a timer's instant lets the next signal's task cancel it as it fires, and the
        # test server then refuses the task and strands the run (sdk-java #3088): every signal
        # here lands at least a simulated minute away from a timer.
        await time_skipping_env.sleep(timedelta(minutes=16))
        phases.append((await state_of(handle)).phase)
        await handle.signal(
            IncidentWorkflow.update,
            UpdateSignal(user="U0ENGINEER1", status="identified", message="R1 reloaded", eta="15:10"),
        )
        await time_skipping_env.sleep(timedelta(minutes=14))
        phases.append((await state_of(handle)).phase)
        await handle.signal(
            IncidentWorkflow.resolve,
            ResolveSignal(user="U0ENGINEER1", resolution="R1 recovered", root_cause="software crash"),
        )
        await time_skipping_env.sleep(timedelta(hours=1))
        phases.append((await state_of(handle)).phase)
        await handle.signal(IncidentWorkflow.review_done, ReviewDoneSignal(user="U0ENGINEER1", notes="done"))
        summary = await handle.result()

    assert phases == [Phase.triage, Phase.investigating, Phase.monitoring, Phase.review]
    assert isinstance(summary, IncidentSummary)
    assert round(summary.time_to_acknowledge_seconds) == 180
    assert round(summary.time_to_resolve_seconds) == (3 + 16 + 14) * 60
    assert (summary.updates, summary.reminders, summary.escalations) == (1, 1, 0)
    # The P1's chain: its primary on call paged at the declaration (claimed at minute 3, before
    # the secondary's minute 5), and the network lead at minute 30, claimed but not resolved.
    assert [
        (e.text.split(":")[0], minutes_after(summary, e)) for e in summary.timeline if e.kind == "paging"
    ] == [
        ("paging level 1", 0),
        ("unresolved after 30m", 30),
    ]
    assert sorted((p.level, p.reason.split(", ")[-1], p.service.value) for p in slack.pages) == [
        (1, "on call for network-primary", "pagerduty"),
        (1, "on call for network-primary", "slack"),
        (5, "on call for network-lead", "pagerduty"),  # the rules' levels follow the chain's 4
        (5, "on call for network-lead", "slack"),
    ]
    assert slack.templates().count("war_room_opened") == 1  # a P1's own channel (issue 13)
    assert [t for t in slack.templates() if t != "war_room_opened"] == [
        "declaration",
        "paged",
        "team_formed",
        "reminder",
        "status_update",
        "paged",
        "resolution",
        "review_scheduled",
        "review_done",
    ]
    # The war room: opened once, its summary kept current, archived when the review is done.
    name = f"incident-{summary.declared_at:%Y-%m-%d}-r1-unreachable-wan-outage-site-a"
    assert slack.room_calls[0] == f"open #{name}" and slack.room_calls[-1] == "archive", slack.room_calls
    assert slack.room_calls.count(f"open #{name}") == 1 and slack.room_calls.count("archive") == 1
    assert "invite U0ENGINEER1" in slack.room_calls  # the IC, who joined after it opened
    assert slack.room_calls[-2] == "summary review"  # the summary's last word before archiving
    assert [r.name for r in slack.reactions] == [
        "rotating_light",
        "raised_hand",
        "mag",
        "white_check_mark",
        "bookmark",
    ]
    # every post but the declaration is a reply in the declaration's thread
    thread = slack.posts[1].thread_ts
    assert slack.posts[0].thread_ts is None and thread
    assert all(p.thread_ts == thread for p in slack.posts[1:])
    keys = [p.idempotency_key for p in slack.posts]
    assert len(set(keys)) == len(keys)


async def test_second_claim_is_a_handover_and_same_user_is_told_so(time_skipping_env, policy):
    async with recorded_worker(time_skipping_env, policy) as (declare, slack):
        handle = await declare("P2")
        await first_pages_out(handle, policy)  # P2 pages its primary on call at once
        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="alice"))
        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="alice", request_id="again"))
        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="bob", request_id="h"))
        await time_skipping_env.sleep(timedelta(seconds=5))
        state = await state_of(handle)
    assert state.commander == "bob"
    by_request = {e.request_id: e for e in state.timeline if e.request_id}
    assert (
        by_request["again"].kind == "rejected"
        and "already the Incident Commander" in by_request["again"].text
    )
    assert by_request["h"].kind == "handover" and "alice → bob" in by_request["h"].text
    assert "handover" in slack.templates()


async def test_claim_after_resolution_and_unknown_status_are_rejected_with_reasons(time_skipping_env, policy):
    async with recorded_worker(time_skipping_env, policy) as (declare, _):
        handle = await declare("P4")  # P4: no review, completes on resolve
        await handle.signal(
            IncidentWorkflow.update, UpdateSignal(user="a", status="panicking", message="x", request_id="u")
        )
        await time_skipping_env.sleep(timedelta(seconds=5))
        state = await state_of(handle)
        rejected = [e for e in state.timeline if e.request_id == "u"]
        assert rejected[0].kind == "rejected"
        assert "unknown status 'panicking'" in rejected[0].text and "investigating" in rejected[0].text
        # resolve is accepted before anyone claimed
        await handle.signal(IncidentWorkflow.resolve, ResolveSignal(user="a", resolution="fixed"))
        summary = await handle.result()
    assert summary.resolved_at is not None and summary.commander is None
    assert summary.time_to_acknowledge_seconds is None


async def test_claim_during_review_is_rejected(time_skipping_env, policy):
    async with recorded_worker(time_skipping_env, policy) as (declare, _):
        handle = await declare("P2")
        await handle.signal(IncidentWorkflow.resolve, ResolveSignal(user="a", resolution="fixed"))
        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="late", request_id="late"))
        await handle.signal(
            IncidentWorkflow.resolve, ResolveSignal(user="a", resolution="again", request_id="r2")
        )
        await handle.signal(
            IncidentWorkflow.set_severity, SeveritySignal(user="a", severity="P9", request_id="s")
        )
        await time_skipping_env.sleep(timedelta(seconds=5))
        state = await state_of(handle)
    outcome = {e.request_id: e for e in state.timeline if e.request_id}
    assert state.phase == Phase.review and state.commander is None
    assert outcome["late"].kind == "rejected" and "already review" in outcome["late"].text
    assert outcome["r2"].kind == "rejected"
    assert outcome["s"].kind == "rejected" and "unknown severity" in outcome["s"].text


async def test_review_deadline_closes_the_incident(time_skipping_env, policy):
    async with recorded_worker(time_skipping_env, policy) as (declare, slack):
        handle = await declare("P1")
        await handle.signal(IncidentWorkflow.resolve, ResolveSignal(user="a", resolution="fixed"))
        summary = await handle.result()  # waits, time-skipped, through the 48 h review window
    assert [e.kind for e in summary.timeline][-2:] == ["review_expired", "war_room"]
    assert summary.timeline[-1].text.endswith("archived")
    review = next(e for e in summary.timeline if e.kind == "review_expired")
    # 48 h counted in business time, then the policy's grace (activities/review/schedule.py).
    assert summary.review is not None and summary.review.deadline >= summary.resolved_at + timedelta(hours=48)
    assert round((review.at - summary.review.closes_at).total_seconds()) == 0
    assert summary.review.closes_at == summary.review.deadline + policy.review.grace
    assert slack.templates()[-1] == "review_expired"


async def test_long_incident_continues_as_new_without_losing_a_signal(time_skipping_env, policy):
    small = policy.model_copy(update={"max_history_events": 100})
    async with recorded_worker(time_skipping_env, small) as (declare, _):
        handle = await declare("P1", policy=small)
        await first_pages_out(handle, small)  # P1 pages its primary on call at once
        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="alice"))
        for n in range(60):
            await handle.signal(
                IncidentWorkflow.update,
                UpdateSignal(user="alice", status="investigating", message=f"update {n}"),
            )
        await asyncio.sleep(0)  # let signals land
        for _ in range(100):
            state = await state_of(handle)
            if state.updates == 60:
                break
            await time_skipping_env.sleep(timedelta(seconds=1))
        description = await handle.describe()
    assert state.updates == 60
    assert [e.text.split("] ")[1] for e in state.timeline if e.kind == "update"] == [
        f"update {n}" for n in range(60)
    ]
    assert minutes(state, "claimed") == [0]
    assert description.run_id != handle.result_run_id, "the workflow continued as new"
