"""The post-incident review's meeting: a business day at the policy's hour in the team's time zone,
within the severity's deadline (counted in business time), reminded the business day before.

The rule itself (activities/review/schedule.py) on fixed dates, and a P1 resolved on Friday at
16:00 played on the time-skipping test server (Slack recorded by fakes: workflow logic).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from activities.rendering import render
from activities.review.schedule import review_schedule
from workflows.incident import IncidentWorkflow
from workflows.models import ClaimSignal, IncidentSummary, Phase, ResolveSignal, ReviewDoneSignal
from workflows.review_models import ReviewScheduleRequest

from .stack import eventually, first_pages_out
from .workflow_harness import recorded_worker, state_of

FRIDAY_16 = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)  # a Friday


def test_a_p1_resolved_friday_afternoon_meets_monday_at_the_policys_hour_and_is_reminded_friday():
    s = review_schedule(ReviewScheduleRequest(resolved_at=FRIDAY_16, review_within=timedelta(hours=48)))
    assert s.meeting_at == datetime(2026, 12, 7, 10, 0, tzinfo=UTC)  # Monday 10:00
    assert s.meeting_local == "Monday 2026-12-07 10:00 UTC"
    assert s.reminder_at == datetime(2026, 12, 4, 17, 0, tzinfo=UTC)  # the business day before: Friday
    assert s.deadline == datetime(2026, 12, 8, 16, 0, tzinfo=UTC)  # 48 h of business days: Tuesday 16:00
    assert s.closes_at == s.deadline + timedelta(days=1)


def test_the_meeting_is_placed_in_the_teams_iana_zone_across_daylight_saving():
    # Friday 27 March 2026, 15:00 UTC = 16:00 CET; Monday 30 March is CEST (UTC+2) since Sunday.
    s = review_schedule(
        ReviewScheduleRequest(
            resolved_at=datetime(2026, 3, 27, 15, 0, tzinfo=UTC),
            review_within=timedelta(hours=48),
            timezone="Europe/Zurich",
        )
    )
    assert s.meeting_at == datetime(2026, 3, 30, 8, 0, tzinfo=UTC)  # 10:00 CEST
    assert s.meeting_local == "Monday 2026-03-30 10:00 Europe/Zurich"
    assert s.reminder_at == datetime(2026, 3, 27, 16, 0, tzinfo=UTC)  # Friday 17:00 CET


def test_the_seed_scenarios_review_is_the_next_morning_and_a_short_deadline_is_kept():
    seed = review_schedule(
        ReviewScheduleRequest(
            resolved_at=datetime(2024, 2, 21, 15, 6, tzinfo=UTC), review_within=timedelta(days=2)
        )
    )
    assert seed.meeting_local == "Thursday 2024-02-22 10:00 UTC"  # seed 000's Phase 6
    # Resolved Monday 08:00 with a 4 h business deadline: the only slot within it is today's.
    short = review_schedule(
        ReviewScheduleRequest(
            resolved_at=datetime(2026, 12, 7, 8, 0, tzinfo=UTC), review_within=timedelta(hours=4)
        )
    )
    assert short.meeting_at == datetime(2026, 12, 7, 10, 0, tzinfo=UTC) and short.reminder_at is None


def _next_friday_1530(now: datetime) -> datetime:
    day = now.date() + timedelta(days=(4 - now.weekday()) % 7 or 7)
    return datetime(day.year, day.month, day.day, 15, 30, tzinfo=UTC)


async def test_a_p1_resolved_on_friday_at_16_gets_its_review_on_monday_with_the_reminder_on_friday(
    time_skipping_env, policy
):
    env = time_skipping_env
    assert policy.for_severity("P1").review_within == timedelta(hours=48) and policy.review.hour == 10
    friday_1530 = _next_friday_1530(await env.get_current_time())
    await env.sleep(friday_1530 - await env.get_current_time())
    async with recorded_worker(env, policy) as (declare, slack):
        handle = await declare("P1")
        await first_pages_out(handle, policy)
        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="U0ENGINEER1"))
        # Half an hour on, the same Friday (not a week later: the chain's timers would all run).
        await env.sleep(friday_1530 + timedelta(minutes=30) - await env.get_current_time())
        await handle.signal(
            IncidentWorkflow.resolve,
            ResolveSignal(user="U0ENGINEER1", resolution="R1 reloaded", root_cause="bug"),
        )

        async def scheduled():
            state = await state_of(handle)
            return state if state.review is not None and "review_scheduled" in slack.templates() else None

        state = await eventually(scheduled, what="the review to be scheduled")
        resolved = state.resolved_at
        assert resolved.weekday() == 4 and (resolved.hour, resolved.minute) == (16, 0), resolved
        monday = (resolved + timedelta(days=3)).replace(hour=10, minute=0, second=0, microsecond=0)
        # Within 48 h counted in business time (the weekend does not count): due Tuesday 16:00.
        assert state.review.meeting_at == monday <= state.review.deadline
        assert state.review.deadline == resolved + timedelta(days=4) == state.review_due_at
        assert state.review.reminder_at == resolved.replace(hour=17, minute=0, second=0, microsecond=0)
        [announced] = [
            render(p.template, incident=p.incident, mentions=p.mentions, **p.extra)
            for p in slack.posts
            if p.template == "review_scheduled"
        ]
        assert f"*Date:* Monday {monday:%Y-%m-%d} 10:00 UTC" in announced
        assert "*Review Artifacts (attached):*" in announced and "*Discussion Topics:*" in announced
        assert "<@U0ENGINEER1>" in announced  # the IC is asked to the review

        # Past Friday 17:00: the reminder, in the thread, on the business day before.
        await env.sleep(state.review.reminder_at + timedelta(minutes=1) - await env.get_current_time())
        reminded = await eventually(
            lambda: _with_kind(handle, "review_reminder"), what="the review's reminder"
        )
        [reminder] = [e for e in reminded.timeline if e.kind == "review_reminder"]
        assert timedelta(0) <= reminder.at - state.review.reminder_at < timedelta(seconds=1)
        assert reminder.at.weekday() == 4  # Friday, the business day before Monday
        assert "review_reminder" in slack.templates()

        await handle.signal(IncidentWorkflow.review_done, ReviewDoneSignal(user="U0ENGINEER1", notes="held"))
        summary: IncidentSummary = await asyncio.wait_for(handle.result(), timeout=60)
    assert summary.review is not None and summary.review.meeting_at == monday
    assert [e.kind for e in summary.timeline].count("review_reminder") == 1
    assert [e.kind for e in summary.timeline if e.kind.startswith("review")][-1] == "review_done"
    assert slack.reviews and slack.reviews[0].incident.phase == Phase.review


async def _with_kind(handle, kind: str):
    state = await state_of(handle)
    return state if any(e.kind == kind for e in state.timeline) else None
