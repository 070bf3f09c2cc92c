"""Slack down for a simulated hour during a P1: the incident itself goes on (time skipping).

Slack is recorded by fake activities that answer 500 to every attempt scheduled
in the outage: this is the workflow's logic (what waits for Slack and what does
not), not Slack. The same on the real stack is in tests/test_bad_days.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from workflows.incident import IncidentWorkflow
from workflows.models import ClaimSignal, ResolveSignal, UpdateSignal
from workflows.policy import format_duration

from .workflow_harness import minutes, recorded_worker, state_of


@pytest.fixture(scope="session")
def policy(legacy_policy):
    """Escalation here is the thread's mentions (a severity without a paging chain; see test_paging_chain)."""
    return legacy_policy


async def test_slack_down_for_an_hour_holds_up_the_thread_not_the_incident(time_skipping_env, policy):
    env = time_skipping_env
    async with recorded_worker(env, policy) as (declare, slack):
        slack.down_until = await env.get_current_time() + timedelta(minutes=60)
        handle = await declare("P1")  # escalates every 15 min unclaimed, reminds every 15 min silent
        await env.sleep(timedelta(minutes=20))
        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="alice"))
        await env.sleep(timedelta(minutes=20))
        await handle.signal(
            IncidentWorkflow.update, UpdateSignal(user="alice", status="fixing", message="swapping the PSU")
        )
        await env.sleep(timedelta(minutes=18))
        await handle.signal(IncidentWorkflow.resolve, ResolveSignal(user="alice", resolution="PSU swapped"))
        during = await state_of(handle)
        posted_during = len(slack.posts)
        await env.sleep(timedelta(minutes=20))  # Slack is back at minute 60
        state = await state_of(handle)

    # In the outage: every command applied when received, every deadline on its minute.
    assert posted_during == 0 and slack.failed_attempts > 50
    assert minutes(during, "escalation") == [15]
    assert minutes(during, "claimed") == [20]
    assert minutes(during, "reminder") == [35, 55]
    assert minutes(during, "trigger") == [
        30
    ]  # no root cause identified by then (the update says fixing at 40)
    assert minutes(during, "update") == [40]
    assert minutes(during, "resolved") == [58]
    assert during.phase.value == "review" and not any(e.kind == "slack_error" for e in during.timeline)
    assert round((during.claimed_at - during.declared_at) / timedelta(minutes=1)) == 20  # MTTA
    assert round((during.resolved_at - during.declared_at) / timedelta(minutes=1)) == 58  # MTTR

    # Afterwards: the thread holds every message once, in the order they happened, each as it was.
    templates = slack.templates()
    # The P1's war room opens once the declaration is in Slack; its line comes when it is ready.
    assert templates.count("war_room_opened") == 1
    assert [t for t in templates if t != "war_room_opened"] == [
        "declaration",
        "escalation",
        "team_formed",
        "no_root_cause",
        "reminder",
        "status_update",
        "reminder",
        "resolution",
        "review_scheduled",
    ], templates
    assert len({p.idempotency_key for p in slack.posts}) == len(slack.posts)
    update = slack.posts[templates.index("status_update")]
    assert round((update.incident.last_update_at - state.declared_at) / timedelta(minutes=1)) == 40
    resolution = slack.posts[templates.index("resolution")]
    # The resolve lands at minute 58 give or take the test server's skip (57m59s has been seen).
    assert resolution.extra["duration"] == format_duration(state.resolved_at - state.declared_at)
    assert resolution.extra["duration"] in ("58m", "57m59s", "58m1s")
    assert all(p.thread_ts for p in slack.posts[1:]) and slack.posts[0].thread_ts is None
    assert state.slack_thread_ts is not None
