"""Action items (issue 14): added during and after the incident, reminded daily past their due date
until done, in the incident's result, and followed up after the incident completes.

On the time-skipping test server with the recorded (fake) Slack activities: the reminders are
days apart. Filing them in Jira is tests/test_action_jira.py; the Slack command,
tests/test_action_slack.py.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError

from workflows.action_followup import ActionFollowUpWorkflow
from workflows.action_models import (
    ActionItemDoneSignal,
    ActionItemSignal,
    action_followup_id,
    next_reminder,
)
from workflows.action_state import ActionItem
from workflows.incident import IncidentWorkflow
from workflows.models import (
    ClaimSignal,
    IncidentState,
    IncidentSummary,
    Phase,
    ResolveSignal,
    ReviewDoneSignal,
)
from workflows.policy import ActionItemSettings, BusinessHours, Policy

from .stack import eventually, first_pages_out
from .workflow_harness import recorded_worker, state_of


def every_day(policy: Policy) -> Policy:
    settings = policy.action_items.model_copy(update={"remind_on": "every_day"})
    return policy.model_copy(update={"action_items": settings})


def at_hour(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


async def sleep_until(env, moment: datetime) -> None:
    now = await env.get_current_time()
    await env.sleep(moment - now)


async def resolved_incident(env, declare, policy):
    handle = await declare("P3")
    await first_pages_out(handle, policy)  # a claim that cancels a page in flight strands the test server
    await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="U0ALICE"))
    await handle.signal(IncidentWorkflow.resolve, ResolveSignal(user="U0ALICE", resolution="PSU replaced"))

    async def in_review() -> bool:
        return (await state_of(handle)).phase == Phase.review

    await eventually(in_review, what="the review phase")
    return handle


async def test_an_overdue_action_item_reminds_its_owner_daily_until_marked_done(time_skipping_env, policy):
    env = time_skipping_env
    async with recorded_worker(env, every_day(policy)) as (declare, slack):
        handle = await resolved_incident(env, declare, policy)  # in review: action items still come
        added = await handle.execute_update(
            IncidentWorkflow.add_action_item_command,
            ActionItemSignal(user="U0ALICE", text="Add a second PSU to R1", owner="U0BOB", due="1d"),
        )
        (item,) = (await state_of(handle)).action_items
        # The day after its due date at the policy's hour (09:00 UTC), then each day: three by 10:00 on day 3.
        await sleep_until(env, at_hour(item.due + timedelta(days=3), 10))
        before_done = await state_of(handle)
        await handle.execute_update(
            IncidentWorkflow.complete_action_item_command, ActionItemDoneSignal(user="U0BOB", number=1)
        )
        await sleep_until(env, at_hour(item.due + timedelta(days=7), 10))
        after = await state_of(handle)

    assert added.kind == "action_item" and "action item 1 for U0BOB (P3" in added.text
    assert item.due == item.added_at.date() + timedelta(days=1)
    reminded = [e.at.replace(microsecond=0) for e in before_done.timeline if e.kind == "action_reminder"]
    assert reminded == [at_hour(item.due + timedelta(days=d), 9) for d in (1, 2, 3)]
    dms = [p for p in slack.posts if p.template == "action_item_reminder"]
    assert [(p.channel, p.thread_ts, p.extra["item"]["number"]) for p in dms] == [("U0BOB", None, 1)] * 3
    assert [p.extra["overdue_days"] for p in dms] == [1, 2, 3]
    assert len({p.idempotency_key for p in dms}) == 3
    # Done: no more reminders, and the state says who closed it.
    assert [e.kind for e in after.timeline].count("action_reminder") == 3
    (done,) = after.action_items
    assert done.status == "done" and done.done_by == "U0BOB" and done.reminders == 3
    assert not any(d.purpose == "action_reminder" for d in after.deadlines)
    assert [p.template for p in slack.posts].count("action_item_added") == 1
    assert [p.template for p in slack.posts].count("action_item_done") == 1


async def test_items_still_open_when_the_incident_completes_are_reminded_by_its_follow_up(
    time_skipping_env, policy
):
    env = time_skipping_env
    async with recorded_worker(env, every_day(policy), more_workflows=[ActionFollowUpWorkflow]) as (
        declare,
        slack,
    ):
        handle = await resolved_incident(env, declare, policy)
        for owner, text in (("U0BOB", "Add a second PSU to R1"), ("U0CAROL", "Alert on PSU state")):
            await handle.execute_update(
                IncidentWorkflow.add_action_item_command,
                ActionItemSignal(user="U0ALICE", text=text, owner=owner, priority="P2", due="2d"),
            )
        await handle.execute_update(
            IncidentWorkflow.complete_action_item_command, ActionItemDoneSignal(user="U0CAROL", number=2)
        )
        await handle.execute_update(IncidentWorkflow.review_done_command, ReviewDoneSignal(user="U0ALICE"))
        summary: IncidentSummary = await handle.result()
        follow_up = env.client.get_workflow_handle(action_followup_id(handle.id), result_type=IncidentState)
        due = summary.action_items[0].due
        await sleep_until(env, at_hour(due + timedelta(days=2), 10))
        reminded = (await follow_up.query(ActionFollowUpWorkflow.state)).action_items[0].reminders
        with pytest.raises(WorkflowUpdateFailedError) as twice:
            await follow_up.execute_update(
                ActionFollowUpWorkflow.complete_action_item, ActionItemDoneSignal(user="U0CAROL", number=2)
            )
        await follow_up.execute_update(
            ActionFollowUpWorkflow.complete_action_item, ActionItemDoneSignal(user="U0BOB", number=1)
        )
        final: IncidentState = await follow_up.result()

    assert [(i.number, i.status.value, i.priority) for i in summary.action_items] == [
        (1, "open", "P2"),
        (2, "done", "P2"),
    ]
    assert any(e.kind == "action_items_followed" for e in summary.timeline)
    assert reminded == 2
    assert "already done" in str(twice.value.cause)
    assert [i.status.value for i in final.action_items] == ["done", "done"]
    dms = [p for p in slack.posts if p.template == "action_item_reminder"]
    assert [p.channel for p in dms] == ["U0BOB", "U0BOB"]
    closed = [p for p in slack.posts if p.template == "action_items_closed"]
    assert len(closed) == 1 and closed[0].extra["because"] == "every action item is done"


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"owner": "bob"}, "owner: 'bob' is not a Slack user id"),
        ({"priority": "P9"}, "priority: unknown priority 'P9'"),
        ({"due": "2020-01-01"}, "due: 2020-01-01 is in the past"),
        ({"due": "next week"}, "due: 'next week' is neither a date"),
        ({"due": "2026-02-30"}, "due: '2026-02-30' is no date"),
    ],
)
async def test_an_action_item_with_a_bad_field_is_refused_naming_it(time_skipping_env, policy, fields, named):
    async with recorded_worker(time_skipping_env, policy) as (declare, _):
        handle = await declare("P3")
        command = {"user": "U0ALICE", "text": "Add a second PSU", "owner": "U0BOB", **fields}
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(IncidentWorkflow.add_action_item_command, ActionItemSignal(**command))
        with pytest.raises(WorkflowUpdateFailedError) as unknown:
            await handle.execute_update(
                IncidentWorkflow.complete_action_item_command, ActionItemDoneSignal(user="U0BOB", number=3)
            )
        state = await state_of(handle)
    assert named in str(refused.value.cause)
    assert "number: there is no action item 3" in str(unknown.value.cause)
    assert state.action_items == [] and not any(e.kind == "action_item" for e in state.timeline)


def test_on_business_days_an_item_due_on_friday_reminds_on_monday_at_the_policys_hour():
    hours = BusinessHours(start_hour=9, utc_offset_hours=1)
    item = ActionItem(
        number=1, text="x", owner="U0BOB", due=date(2026, 12, 4), added_at=datetime(2026, 12, 1, tzinfo=UTC)
    )
    settings = ActionItemSettings()
    first = next_reminder(item, settings, hours)
    assert first == datetime(2026, 12, 7, 8, tzinfo=UTC)  # Monday 09:00 at UTC+1
    item.last_reminded_at = first
    assert next_reminder(item, settings, hours) == datetime(2026, 12, 8, 8, tzinfo=UTC)
    every = settings.model_copy(update={"remind_on": "every_day"})
    item.last_reminded_at = None
    assert next_reminder(item, every, hours) == datetime(2026, 12, 5, 8, tzinfo=UTC)  # Saturday too
    # Past remind_for after the due date: no more.
    item.last_reminded_at = datetime(2027, 3, 10, 8, tzinfo=UTC)
    assert next_reminder(item, settings, hours) is None
