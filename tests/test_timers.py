"""The whole timer table, on the time-skipping test server.

For each severity: the minute each escalation by mention (unclaimed) and each
"update due" reminder (claimed, silent) fires over a simulated day; none
when updates come in time; a severity change switching the cadence at once.
Slack is recorded by fake activities: this is workflow logic, not Slack.

The escalations are the thread's mentions of a severity without a paging chain, on
config/policy-legacy.yaml (the default's chains are tests/test_paging_chain.py's); the
reminders are the default policy's, which pages P1-P3 beside them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from workflows.incident import IncidentWorkflow
from workflows.models import ClaimSignal, Severity, SeveritySignal, UpdateSignal

from .stack import first_pages_out
from .workflow_harness import minutes, recorded_worker, state_of

DAY = 24 * 60
# Sleep a little past the horizon: the workflow declares a moment after the sleep begins.
SIMULATED_DAY = timedelta(minutes=DAY, seconds=30)

# minutes between escalations while unclaimed, and between reminders while silent
TABLE = {"P1": (15, 15), "P2": (30, 30), "P3": (240, 120)}


def every(step: int, until: int = DAY) -> list[int]:
    return list(range(step, until + 1, step))


def business_day_starts(declared: datetime, days: int) -> list[int]:
    """Minutes from `declared` to each following weekday 09:00 UTC, within `days` days."""
    found = []
    day = declared.replace(hour=9, minute=0, second=0, microsecond=0)
    while True:
        day += timedelta(days=1)
        if day - declared > timedelta(days=days):
            return found
        if day.weekday() < 5:
            found.append(round((day - declared) / timedelta(minutes=1)))


@pytest.mark.parametrize("severity", ["P1", "P2", "P3"])
async def test_unclaimed_incident_escalates_on_its_severity_schedule(
    time_skipping_env, legacy_policy, severity
):
    policy = legacy_policy
    escalate_every, _ = TABLE[severity]
    async with recorded_worker(time_skipping_env, policy) as (declare, slack):
        handle = await declare(severity)
        await time_skipping_env.sleep(SIMULATED_DAY)
        state = await state_of(handle)
    assert minutes(state, "escalation") == every(escalate_every)
    assert minutes(state, "reminder") == []  # nobody to remind before a claim
    tiers = policy.for_severity(severity).escalation_tiers
    escalations = [p for p in slack.posts if p.template == "escalation"]
    assert escalations[0].mentions == tiers[0]
    assert escalations[1].mentions == tiers[min(1, len(tiers) - 1)]
    assert escalations[-1].mentions == tiers[-1]  # the last tier repeats


async def test_unclaimed_p4_escalates_at_the_start_of_each_business_day(time_skipping_env, policy):
    """P4 mentions the next business day in the default policy too."""
    assert policy.for_severity(Severity.P4).paging is None
    async with recorded_worker(time_skipping_env, policy) as (declare, _):
        handle = await declare("P4")
        await time_skipping_env.sleep(timedelta(days=4, seconds=30))
        state = await state_of(handle)
    expected = business_day_starts(state.declared_at, days=4)
    assert expected, "four days always hold a business day"
    assert minutes(state, "escalation") == expected


@pytest.mark.parametrize(("severity", "remind_every"), [("P1", 15), ("P2", 30), ("P3", 120), ("P4", DAY)])
async def test_silent_commander_is_reminded_on_the_severity_cadence(
    time_skipping_env, policy, severity, remind_every
):
    async with recorded_worker(time_skipping_env, policy) as (declare, slack):
        handle = await declare(severity)
        await first_pages_out(handle, policy)  # P1-P3 page their primary on call at once
        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="U0ALICE"))
        await time_skipping_env.sleep(SIMULATED_DAY)
        state = await state_of(handle)
    assert minutes(state, "claimed") == [0]
    assert minutes(state, "reminder") == every(remind_every)
    assert minutes(state, "escalation") == []  # nothing mentioned (P4: claimed, nothing to escalate)
    reminders = [p for p in slack.posts if p.template == "reminder"]
    assert all(p.mentions == ["U0ALICE"] for p in reminders)


@pytest.mark.parametrize("severity", ["P1", "P2", "P3"])
async def test_updates_in_time_mean_no_reminders(time_skipping_env, policy, severity):
    _, remind_every = TABLE[severity]
    async with recorded_worker(time_skipping_env, policy) as (declare, _):
        handle = await declare(severity)
        await first_pages_out(handle, policy)  # P1-P3 page their primary on call at once
        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="alice"))
        elapsed = 0
        while elapsed + remind_every - 1 <= DAY:
            await time_skipping_env.sleep(timedelta(minutes=remind_every - 1))
            elapsed += remind_every - 1
            await handle.signal(
                IncidentWorkflow.update,
                UpdateSignal(user="alice", status="investigating", message=f"t+{elapsed}"),
            )
        await time_skipping_env.sleep(timedelta(minutes=DAY - elapsed))
        state = await state_of(handle)
    assert state.updates == len(minutes(state, "update")) > 0
    assert minutes(state, "reminder") == []


async def test_raising_severity_switches_the_reminder_cadence_at_once(time_skipping_env, policy):
    async with recorded_worker(time_skipping_env, policy) as (declare, _):
        handle = await declare("P3")
        await first_pages_out(handle, policy)  # P3 pages its primary on call at once
        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="alice"))
        await time_skipping_env.sleep(timedelta(minutes=60))
        await handle.signal(IncidentWorkflow.set_severity, SeveritySignal(user="alice", severity="SEV1"))
        await time_skipping_env.sleep(timedelta(minutes=60, seconds=30))
        state = await state_of(handle)
    # P3 would first remind at 120; as P1 the update was already 45 minutes late.
    assert minutes(state, "severity") == [60]
    assert minutes(state, "reminder") == [60, 75, 90, 105, 120]
    assert state.severity.value == "P1"


async def test_lowering_severity_slows_escalation_at_once(time_skipping_env, legacy_policy):
    policy = legacy_policy
    async with recorded_worker(time_skipping_env, policy) as (declare, _):
        handle = await declare("P1")
        await time_skipping_env.sleep(timedelta(minutes=20))
        await handle.signal(IncidentWorkflow.set_severity, SeveritySignal(user="bob", severity="P2"))
        await time_skipping_env.sleep(timedelta(minutes=100, seconds=30))
        state = await state_of(handle)
    # 15 as P1; then P2's 30 minutes counted from that escalation: 45, 75, 105.
    assert minutes(state, "escalation") == [15, 45, 75, 105]
