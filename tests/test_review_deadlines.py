"""P2 and P3 post-incident reviews on the time-skipping test server: due when the policy says (in
business time, activities/review/schedule.py), the incident open until the deadline plus the
policy's grace, closed then without a review, saying so.

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
from activities.review.schedule import review_schedule
from workflows.incident import IncidentWorkflow
from workflows.models import IncidentSummary, Phase, ResolveSignal
from workflows.review_models import ReviewScheduleRequest

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
async def test_p2_and_p3_reviews_fall_due_on_their_deadline_and_close_the_incident_after_its_grace(
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
        hours, review = policy.business_hours, policy.review
        expected = review_schedule(
            ReviewScheduleRequest(
                resolved_at=state.resolved_at,
                review_within=review_within,
                hour=review.hour,
                reminder_hour=review.reminder_hour,
                grace=review.grace,
                timezone=hours.timezone,
                utc_offset_hours=hours.utc_offset_hours,
                weekdays=hours.weekdays,
            )
        )
        due, closes = state.review_due_at, state.review.closes_at
        assert due == expected.deadline and closes == expected.closes_at == due + review.grace
        assert due >= state.resolved_at + review_within  # business time: never sooner than the calendar's
        assert state.review.meeting_at <= due
        due_text = f"{due:%Y-%m-%d %H:%M} UTC"
        [message] = rendered(slack, "review_scheduled")
        assert f"*Due by:* {due_text}" in message
        assert f"*Date:* {expected.meeting_local}" in message

        # One second before the grace is over the review is still open. (Signals are sent only before
        # the skip: one landing on a timer's instant can strand the test server, sdk-java #3088.)
        await env.sleep(closes - await env.get_current_time() - timedelta(seconds=1))
        before = await state_of(handle)
        assert await env.get_current_time() < closes, "the state was read before the deadline"
        assert before.phase == Phase.review and before.reviewed_at is None
        assert "review_expired" not in [e.kind for e in before.timeline]
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING

        # Past the deadline by the grace, without review_done: closed, and said so in the thread.
        summary: IncidentSummary = await asyncio.wait_for(handle.result(), timeout=60)
        assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED

    [expired] = [e for e in summary.timeline if e.kind == "review_expired"]
    assert closes <= expired.at < closes + timedelta(seconds=1), (expired.at, closes)
    assert f"review deadline {due_text} passed by the policy's grace (1d)" in expired.text
    assert summary.timeline[-1] == expired
    assert "review_done" not in [e.kind for e in summary.timeline]
    assert slack.templates()[-1] == "review_expired"
    [closing] = rendered(slack, "review_expired")
    assert f"({due_text}) passed by the policy's grace (1d)" in closing and "Incident closed" in closing
