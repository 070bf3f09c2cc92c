"""P2 and P3 post-incident reviews on the time-skipping test server: due when the policy says, the
incident open until that instant, closed at it without a review.

Slack is recorded by fake activities (workflow logic, not Slack); the recorded posts are rendered
with the real templates to read what the thread would say. The P1 deadline (48 h) is in
tests/test_workflow_rules.py.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from temporalio.client import WorkflowExecutionStatus

from activities.rendering import render
from workflows.incident import IncidentWorkflow
from workflows.models import IncidentSummary, Phase, ResolveSignal

from .stack import eventually, first_pages_out
from .workflow_harness import recorded_worker, state_of


def rendered(slack, template: str) -> list[str]:
    """The thread's `template` messages as the real Slack activity would render them."""
    return [
        render(p.template, incident=p.incident, mentions=p.mentions, **p.extra)
        for p in slack.posts
        if p.template == template
    ]


@pytest.mark.parametrize(
    ("severity", "review_within"), [("P2", timedelta(weeks=1)), ("P3", timedelta(weeks=2))]
)
async def test_p2_and_p3_reviews_fall_due_on_their_deadline_and_close_the_incident_there(
    time_skipping_env, policy, severity, review_within
):
    env = time_skipping_env
    assert policy.for_severity(severity).review_within == review_within  # README: 1 week, 2 weeks
    async with recorded_worker(env, policy) as (declare, slack):
        handle = await declare(severity)
        await first_pages_out(handle, policy)  # P2 and P3 page their primary on call at once
        await handle.signal(IncidentWorkflow.resolve, ResolveSignal(user="U0ENGINEER1", resolution="fixed"))

        async def scheduled():
            state = await state_of(handle)
            return state if state.phase == Phase.review and "review_scheduled" in slack.templates() else None

        state = await eventually(scheduled, what="the review to be scheduled")
        due = state.review_due_at
        assert due == state.resolved_at + review_within
        due_text = f"{due:%Y-%m-%d %H:%M} UTC"
        assert [e.text for e in state.timeline if e.kind == "review_scheduled"] == [
            f"post-incident review due by {due_text}"
        ]
        [message] = rendered(slack, "review_scheduled")
        assert f"*Due by:* {due_text}" in message

        # One second before the deadline the review is still open. (Signals are sent only before
        # the skip: one landing on a timer's instant can strand the test server, sdk-java #3088.)
        await env.sleep(due - await env.get_current_time() - timedelta(seconds=1))
        before = await state_of(handle)
        assert await env.get_current_time() < due, "the state was read before the deadline"
        assert before.phase == Phase.review and before.reviewed_at is None
        assert "review_expired" not in [e.kind for e in before.timeline]
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING

        # At the deadline, without review_done: closed, and said so in the thread.
        summary: IncidentSummary = await asyncio.wait_for(handle.result(), timeout=60)
        assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED

    [expired] = [e for e in summary.timeline if e.kind == "review_expired"]
    assert due <= expired.at < due + timedelta(seconds=1), (expired.at, due)  # at the deadline
    assert summary.timeline[-1] == expired
    assert "review_done" not in [e.kind for e in summary.timeline]
    assert slack.templates()[-2:] == ["review_scheduled", "review_expired"]
    [closing] = rendered(slack, "review_expired")
    assert f"({due_text})" in closing and "Incident closed" in closing
