"""The escalation chain in virtual time: each page at its exact minute, stopped by a claim or an ack.

The incident runs on the time-skipping test server with the real page activities
(activities/paging/activities.py: the real schedules from a YAML file, read at the moment a
level fires), recorded paging services (a unit test of the workflow's logic: the services
themselves are tested over HTTP against their sandboxes) and a recorded Slack whose Do Not
Disturb the test sets. Each page's minute is the minute (after the declaration) at which the
server scheduled its activity, so a page a worker sent late would show as late.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.paging.activities import PagingActivities
from workflows.incident import IncidentWorkflow
from workflows.maintenance import MaintenanceNotice, MaintenanceQuestion
from workflows.models import (
    AcknowledgeSignal,
    AlertBatch,
    AlertEvent,
    ClaimSignal,
    IncidentState,
    ResolveSignal,
    Severity,
    SeveritySignal,
    SnoozeSignal,
)
from workflows.paging_models import (
    DndStatus,
    Page,
    PageDelivered,
    PagedPerson,
    PagingAction,
    PagingService,
    PagingUpdate,
)
from workflows.policy import PagingPolicy, Policy

from .fakes import RecordedSlack
from .workflow_harness import minutes, recorded_worker, state_of

PEOPLE = {
    "U0PRIME": "Pia Primary",
    "U0SECOND": "Sam Second",
    "U0NEXT": "Nora Next",
    "U0MANAGER": "Mia Manager",
    "U0EXEC": "Eli Executive",
    "U0LEAD": "Lee Lead",
}


@dataclass
class RecordedPager:
    """A paging service that records each page with the virtual minute it was scheduled at."""

    service: PagingService
    slack: RecordedSlack | None = None  # the Slack DM pager fails while Slack is down
    pages: list[tuple[datetime, Page]] = field(default_factory=list)
    updates: list[tuple[datetime, PagingUpdate]] = field(default_factory=list)

    async def page(self, page: Page) -> PageDelivered:
        if self.slack is not None:
            self.slack._outage()
        self.pages.append((activity.info().current_attempt_scheduled_time, page))
        return PageDelivered(service=self.service, reference=f"{self.service.value}-{len(self.pages)}")

    async def update(self, update: PagingUpdate) -> None:
        self.updates.append((activity.info().current_attempt_scheduled_time, update))

    async def aclose(self) -> None:
        pass

    def at(self, declared: datetime) -> list[tuple[int, str]]:
        """(minute after declaration, user) of each page, in order."""
        return [(round((t - declared) / timedelta(minutes=1)), p.person.user_id) for t, p in self.pages]


@dataclass
class RecordedDnd:
    snoozed: set[str] = field(default_factory=set)
    slack: RecordedSlack | None = None

    async def do_not_disturb(self, user_id: str) -> DndStatus:
        if self.slack is not None and self.slack.down_until is not None:
            if activity.info().current_attempt_scheduled_time < self.slack.down_until:
                raise ApplicationError("Slack answered 500", type="SlackServerError")
        return DndStatus(user_id=user_id, snoozed=user_id in self.snoozed)


def oncall_file(directory: Path, handoff_at: datetime | None = None) -> Path:
    """Schedules in UTC: a primary rotation (its daily handoff `handoff_at`, else far from now)."""
    handoff = (handoff_at or datetime.now(UTC) + timedelta(hours=12)).strftime("%H:%M")
    start = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()

    def one(user: str) -> dict:
        return {
            "time_zone": "UTC",
            "layers": [
                {"participants": [user], "length": "weekly", "handoff": "monday 10:00", "start": start}
            ],
        }

    document = {
        "people": {u: {"name": n} for u, n in PEOPLE.items()},
        "schedules": {
            "primary": {
                "time_zone": "UTC",
                "layers": [
                    {
                        "participants": ["U0PRIME", "U0NEXT"],
                        "length": "daily",
                        "handoff": handoff,
                        "start": start,
                    }
                ],
            },
            "secondary": one("U0SECOND"),
            "manager": one("U0MANAGER"),
            "executive": one("U0EXEC"),
        },
    }
    path = directory / "oncall.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def with_chain(policy: Policy, severity: Severity, chain: dict) -> Policy:
    severities = dict(policy.severities)
    severities[severity] = severities[severity].model_copy(
        update={"paging": PagingPolicy.model_validate(chain)}
    )
    return policy.model_copy(update={"severities": severities})


SEED_P1 = {  # the seed's chain: primary 5 min -> secondary 10 min -> manager 15 min -> executive
    "levels": [
        {"targets": [{"schedule": "primary"}], "escalate_after": "5m"},
        {"targets": [{"schedule": "secondary"}], "escalate_after": "10m"},
        {"targets": [{"schedule": "manager"}], "escalate_after": "15m"},
        {"targets": [{"schedule": "executive"}], "escalate_after": "30m"},
    ],
    "repeat": 1,
    "via": ["slack", "pagerduty"],
    "unresolved": [
        {"after": "30m", "targets": [{"user": "U0LEAD"}]},
        {"after": "1h", "targets": [{"schedule": "manager"}, {"schedule": "executive"}]},
        {"after": "2h", "targets": [{"channel": True}]},
    ],
}


class Stack:
    def __init__(self, tmp_path: Path, handoff_at: datetime | None = None) -> None:
        self.slack_pager = RecordedPager(PagingService.slack)
        self.pagerduty = RecordedPager(PagingService.pagerduty)
        self.opsgenie = RecordedPager(PagingService.opsgenie)
        self.dnd = RecordedDnd()
        self.paging = PagingActivities(
            {
                PagingService.slack: self.slack_pager,
                PagingService.pagerduty: self.pagerduty,
                PagingService.opsgenie: self.opsgenie,
            },
            client=None,
            dnd=self.dnd,
            oncall_file=oncall_file(tmp_path, handoff_at),
            overrides_file=tmp_path / "none.yaml",
        )

    def bind(self, slack: RecordedSlack) -> None:
        self.slack_pager.slack = slack
        self.dnd.slack = slack


def paging_entries(state: IncidentState) -> list[tuple[int, str]]:
    return [
        (round((e.at - state.declared_at) / timedelta(minutes=1)), e.text)
        for e in state.timeline
        if e.kind in ("paging", "paging_note")
    ]


async def test_a_p1_nobody_acknowledges_pages_each_level_on_its_minute_repeats_once_then_stops(
    time_skipping_env, policy, tmp_path
):
    env, stack = time_skipping_env, Stack(tmp_path)
    stack.dnd.snoozed = {"U0PRIME"}  # P1 is never held back by Do Not Disturb
    chain_policy = with_chain(policy, Severity.P1, SEED_P1)
    async with recorded_worker(env, chain_policy, activities=stack.paging.activities) as (declare, slack):
        handle = await declare("P1")
        await env.sleep(timedelta(hours=2, minutes=10))
        state = await state_of(handle)

    expected = [
        (0, "U0PRIME"),
        (5, "U0SECOND"),
        (15, "U0MANAGER"),
        (30, "U0EXEC"),
        (60, "U0PRIME"),  # the repeat, from level 1
        (65, "U0SECOND"),
        (75, "U0MANAGER"),
        (90, "U0EXEC"),
    ]
    assert stack.slack_pager.at(state.declared_at) == expected
    assert stack.pagerduty.at(state.declared_at) == expected
    assert minutes(state, "paging") == [0, 5, 15, 30, 60, 65, 75, 90]  # and nothing after the repeat
    assert state.commander is None and "escalation" not in [e.kind for e in state.timeline]
    # The thread says who was paged; the primary in DND was paged anyway and it says so.
    paged = [p for p in slack.posts if p.template == "paged"]
    assert len(paged) == 8
    first = paged[0].extra["people"][0]
    assert first["user"] == "U0PRIME" and "Do Not Disturb, paged anyway" in first["note"]
    # Past level 1 the line says why the chain moved on ("Escalated to @x ...: no acknowledgement after 5m").
    assert [p.extra["escalated"] for p in paged[:3]] == [
        "",
        "no acknowledgement after 5m",
        "no acknowledgement after 15m",
    ]
    assert {r.outcome for r in state.paging.pages} == {"sent"}
    assert "page level" not in " ".join(d.label for d in state.deadlines)  # the chain is over


async def test_a_p2_whose_primary_is_in_dnd_pages_the_secondary_at_minute_0(
    time_skipping_env, policy, tmp_path
):
    env, stack = time_skipping_env, Stack(tmp_path)
    stack.dnd.snoozed = {"U0PRIME"}
    chain = {
        "levels": [
            {"targets": [{"schedule": "primary"}], "escalate_after": "15m"},
            {"targets": [{"schedule": "secondary"}], "escalate_after": "15m"},
            {"targets": [{"schedule": "manager"}]},
        ],
        "via": ["slack"],
    }
    async with recorded_worker(
        env, with_chain(policy, Severity.P2, chain), activities=stack.paging.activities
    ) as (
        declare,
        _,
    ):
        handle = await declare("P2")
        await env.sleep(timedelta(minutes=40))
        state = await state_of(handle)

    # The primary is skipped, the secondary paged at once, and the rest of the chain moves up.
    assert stack.slack_pager.at(state.declared_at) == [(0, "U0SECOND"), (15, "U0MANAGER")]
    skipped = [r for r in state.paging.pages if r.outcome == "skipped: Do Not Disturb"]
    assert [(r.user_id, r.level) for r in skipped] == [("U0PRIME", 1)]
    texts = [t for _, t in paging_entries(state)]
    assert any("U0PRIME is in Do Not Disturb: skipped" in t for t in texts), texts


async def test_a_claim_at_14m59s_means_no_page_at_15m_anywhere(time_skipping_env, policy, tmp_path):
    env, stack = time_skipping_env, Stack(tmp_path)
    chain = {
        "levels": [
            {"targets": [{"schedule": "primary"}], "escalate_after": "15m"},
            {"targets": [{"schedule": "secondary"}]},
        ],
        "via": ["slack", "pagerduty", "opsgenie"],
    }
    async with recorded_worker(
        env, with_chain(policy, Severity.P2, chain), activities=stack.paging.activities
    ) as (
        declare,
        _,
    ):
        handle = await declare("P2")
        await env.sleep(timedelta(minutes=14, seconds=59))
        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="U0PRIME"))
        await env.sleep(timedelta(minutes=30))
        state = await state_of(handle)

    assert stack.slack_pager.at(state.declared_at) == [(0, "U0PRIME")]
    assert stack.pagerduty.at(state.declared_at) == [(0, "U0PRIME")]
    assert stack.opsgenie.at(state.declared_at) == [(0, "U0PRIME")]
    assert minutes(state, "paging") == [0]
    # PagerDuty and Opsgenie each hear the acknowledgement (the claim) once, at 14:59.
    for pager in (stack.pagerduty, stack.opsgenie):
        assert [(u.action, u.service) for _, u in pager.updates] == [
            (PagingAction.acknowledge, pager.service)
        ]
        assert [round((t - state.declared_at).total_seconds()) for t, _ in pager.updates] == [899]
    assert state.paging.acknowledged_by == "U0PRIME"


async def test_an_acknowledgement_stops_paging_without_taking_ic_unless_the_policy_says(
    time_skipping_env, policy, tmp_path
):
    env, stack = time_skipping_env, Stack(tmp_path)
    chain = {
        "levels": [
            {"targets": [{"schedule": "primary"}], "escalate_after": "5m"},
            {"targets": [{"schedule": "secondary"}]},
        ],
    }
    async with recorded_worker(
        env, with_chain(policy, Severity.P3, chain), activities=stack.paging.activities
    ) as (
        declare,
        _,
    ):
        handle = await declare("P3")
        await env.sleep(timedelta(minutes=3))
        await handle.signal(IncidentWorkflow.acknowledge, AcknowledgeSignal(user="U0PRIME", source="slack"))
        await env.sleep(timedelta(minutes=20))
        state = await state_of(handle)

    assert stack.slack_pager.at(state.declared_at) == [(0, "U0PRIME")]
    assert state.commander is None and state.paging.acknowledged_by == "U0PRIME"
    assert minutes(state, "acknowledged") == [3]


async def test_a_claimed_p1_unresolved_pages_the_time_based_rules_at_30_60_120_and_none_after_resolve(
    time_skipping_env, policy, tmp_path
):
    env, stack = time_skipping_env, Stack(tmp_path)
    # The time-based rules alone: the no-root-cause trigger (also at 30 min) is tests/test_triggers.py's.
    policy = policy.model_copy(update={"triggers": policy.triggers.model_copy(update={"no_root_cause": {}})})
    async with recorded_worker(
        env, with_chain(policy, Severity.P1, SEED_P1), activities=stack.paging.activities
    ) as (
        declare,
        slack,
    ):
        handle = await declare("P1")
        await env.sleep(timedelta(minutes=2))
        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="U0PRIME"))
        await env.sleep(timedelta(minutes=123))
        await handle.signal(IncidentWorkflow.resolve, ResolveSignal(user="U0PRIME", resolution="fixed"))
        await env.sleep(timedelta(hours=3))
        state = await state_of(handle)

    assert [m for m, _ in paging_entries(state)] == [0, 30, 60, 120]
    assert sorted(stack.slack_pager.at(state.declared_at)) == [
        (0, "U0PRIME"),
        (30, "U0LEAD"),
        (60, "U0EXEC"),
        (60, "U0MANAGER"),
    ]
    # Two hours unresolved: the whole channel, in the thread (nobody's phone).
    broadcast = [p for p in slack.posts if p.template == "paged" and p.extra["broadcasts"]]
    assert [p.extra["broadcasts"] for p in broadcast] == [["channel"]]
    # PagerDuty: acknowledged at the claim, resolved at the resolve.
    assert [u.action for _, u in stack.pagerduty.updates] == [PagingAction.acknowledge, PagingAction.resolve]


async def test_a_rotation_handing_off_mid_incident_pages_the_new_person_at_the_next_level(
    time_skipping_env, policy, tmp_path
):
    env = time_skipping_env
    now = await env.get_current_time()
    handoff = (now + timedelta(minutes=10)).replace(second=0, microsecond=0) + timedelta(minutes=1)
    stack = Stack(tmp_path, handoff_at=handoff)
    chain = {
        "levels": [{"targets": [{"schedule": "primary"}], "escalate_after": "15m"}],
        "repeat": 1,
    }
    async with recorded_worker(
        env, with_chain(policy, Severity.P3, chain), activities=stack.paging.activities
    ) as (
        declare,
        _,
    ):
        handle = await declare("P3")
        await env.sleep(timedelta(minutes=20))
        state = await state_of(handle)

    pages = stack.slack_pager.at(state.declared_at)
    assert [m for m, _ in pages] == [0, 15]
    assert pages[0][1] != pages[1][1] and {u for _, u in pages} == {"U0PRIME", "U0NEXT"}


async def test_slack_down_for_an_hour_during_a_p1_pagerduty_is_paged_on_time(
    time_skipping_env, policy, tmp_path
):
    env, stack = time_skipping_env, Stack(tmp_path)
    async with recorded_worker(
        env, with_chain(policy, Severity.P1, SEED_P1), activities=stack.paging.activities
    ) as (
        declare,
        slack,
    ):
        stack.bind(slack)
        slack.down_until = await env.get_current_time() + timedelta(minutes=60)
        handle = await declare("P1")
        await env.sleep(timedelta(minutes=40))
        during = await state_of(handle)
        pd_during = stack.pagerduty.at(during.declared_at)
        dms_during = len(stack.slack_pager.pages)
        await env.sleep(timedelta(minutes=40))
        state = await state_of(handle)

    assert pd_during == [(0, "U0PRIME"), (5, "U0SECOND"), (15, "U0MANAGER"), (30, "U0EXEC")]
    assert dms_during == 0  # Slack is down: the DMs wait, PagerDuty does not wait for them
    assert minutes(during, "paging") == [0, 5, 15, 30]
    # Slack back: each DM delivered once, after the outage.
    dms = [
        (p.loop, round((t - state.declared_at) / timedelta(minutes=1)), p.person.user_id)
        for t, p in stack.slack_pager.pages
    ]
    # The four of the outage once Slack is back, then the repeat's three at their own minutes.
    assert sorted(u for loop, m, u in dms if loop == 0 and m >= 60) == [
        "U0EXEC",
        "U0MANAGER",
        "U0PRIME",
        "U0SECOND",
    ]
    assert [(m, u) for loop, m, u in dms if loop == 1] == [
        (60, "U0PRIME"),
        (65, "U0SECOND"),
        (75, "U0MANAGER"),
    ]
    assert len(dms) == 7
    keys = [p.idempotency_key for _, p in stack.slack_pager.pages]
    assert len(set(keys)) == len(keys)


def test_the_seed_chain_orders_its_steps_with_their_offsets():
    chain = PagingPolicy.model_validate(SEED_P1)
    assert [(loop, i, int(o.total_seconds() // 60)) for loop, i, o in chain.steps()] == [
        (0, 0, 0),
        (0, 1, 5),
        (0, 2, 15),
        (0, 3, 30),
        (1, 0, 60),
        (1, 1, 65),
        (1, 2, 75),
        (1, 3, 90),
    ]


def test_the_default_policy_is_the_seed_chain(policy):
    """config/policy.yaml: P1 primary 5 min -> secondary 10 -> manager 15 -> executive, once more."""
    p1 = policy.for_severity(Severity.P1).paging
    assert p1 is not None
    assert [(loop, i + 1, int(o.total_seconds() // 60)) for loop, i, o in p1.steps()] == [
        (0, 1, 0),
        (0, 2, 5),
        (0, 3, 15),
        (0, 4, 30),
        (1, 1, 60),
        (1, 2, 65),
        (1, 3, 75),
        (1, 4, 90),
    ]
    assert [level.targets[0].schedule for level in p1.levels] == [
        "network-primary",
        "network-secondary",
        "engineering-manager",
        "executive",
    ]
    assert [int(r.after.total_seconds() // 60) for r in p1.unresolved] == [30, 60, 120]
    assert p1.via == [PagingService.slack, PagingService.pagerduty]
    p2 = policy.for_severity(Severity.P2).paging
    assert p2 is not None and [int(r.after.total_seconds() // 3600) for r in p2.unresolved] == [1, 4]
    assert policy.for_severity(Severity.P4).paging is None  # next business day, in the thread


# -- snooze: hold reminders, escalation and paging, then resume ------------------------------

P2_CHAIN = {
    "levels": [
        {"targets": [{"schedule": "primary"}], "escalate_after": "15m"},
        {"targets": [{"schedule": "secondary"}], "escalate_after": "15m"},
        {"targets": [{"schedule": "manager"}]},
    ],
}


async def test_a_snooze_holds_the_chain_and_it_resumes_with_its_spacing(time_skipping_env, policy, tmp_path):
    env, stack = time_skipping_env, Stack(tmp_path)
    async with recorded_worker(
        env, with_chain(policy, Severity.P2, P2_CHAIN), activities=stack.paging.activities
    ) as (
        declare,
        slack,
    ):
        handle = await declare("P2")
        await env.sleep(timedelta(minutes=2))
        await handle.signal(
            IncidentWorkflow.snooze, SnoozeSignal(user="U0PRIME", duration="30m", reason="in a call")
        )
        await env.sleep(timedelta(minutes=3))
        during = await state_of(handle)
        await env.sleep(timedelta(minutes=60))
        state = await state_of(handle)

    assert any(d.label == "snooze ends" for d in during.deadlines)
    # What the incident shows during the snooze is when level 2 will really come: 15 + 30.
    [page] = [d for d in during.deadlines if d.purpose == "page"]
    assert page.label == "page level 2 due (snoozed)" and page.due == during.declared_at + timedelta(
        minutes=45
    )
    # Level 2 was due at 15: held by the 30-minute snooze, the chain resumes 30 minutes later.
    assert stack.slack_pager.at(state.declared_at) == [(0, "U0PRIME"), (45, "U0SECOND"), (60, "U0MANAGER")]
    assert minutes(state, "snoozed") == [2] and minutes(state, "snooze_over") == [32]
    assert [p.template for p in slack.posts if p.template.startswith("snooze")] == ["snoozed", "snooze_over"]


async def test_a_new_alert_ends_a_snooze_at_once(time_skipping_env, policy, tmp_path):
    env, stack = time_skipping_env, Stack(tmp_path)
    async with recorded_worker(
        env, with_chain(policy, Severity.P2, P2_CHAIN), activities=stack.paging.activities
    ) as (
        declare,
        _,
    ):
        handle = await declare("P2")
        await env.sleep(timedelta(minutes=2))
        await handle.signal(IncidentWorkflow.snooze, SnoozeSignal(user="U0PRIME", duration="2h"))
        await env.sleep(timedelta(minutes=8))
        alert = AlertEvent(
            source="alertmanager", fingerprint="fp-2", name="BGPDown", summary="BGP down on R2"
        )
        await handle.signal(IncidentWorkflow.alerts, AlertBatch(user="alertmanager", alerts=[alert]))
        await env.sleep(timedelta(minutes=30))
        state = await state_of(handle)

    # Snoozed from minute 2 to 10 (the alert): level 2, due at 15, comes 8 minutes later.
    assert stack.slack_pager.at(state.declared_at)[:2] == [(0, "U0PRIME"), (23, "U0SECOND")]
    ended = [e for e in state.timeline if e.kind == "snooze_over"]
    assert [e.text for e in ended] == ["snooze ended early: a new alert fired"]
    assert state.snoozed_until is None


async def test_a_snooze_holds_the_reminder_of_a_claimed_incident(time_skipping_env, legacy_policy):
    env = time_skipping_env
    async with recorded_worker(env, legacy_policy) as (declare, _):
        handle = await declare("P1")  # reminders every 15 min after the claim
        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="U0PRIME"))
        await env.sleep(timedelta(minutes=10))
        await handle.signal(IncidentWorkflow.snooze, SnoozeSignal(user="U0PRIME", duration="20m"))
        await env.sleep(timedelta(minutes=40))
        state = await state_of(handle)

    # Due at 15, held to the end of the snooze at 30, then every 15 minutes again.
    assert minutes(state, "reminder") == [30, 45]


def test_a_snooze_that_is_no_duration_or_too_long_is_refused():
    from workflows.commands import refusal

    state = IncidentState(
        key="k", workflow_id="incident-k", severity=Severity.P2, title="t", declared_at=datetime.now(UTC)
    )
    assert "is not a duration" in (refusal("snooze", SnoozeSignal(user="u", duration="soon"), state) or "")
    assert "at most 1d" in (refusal("snooze", SnoozeSignal(user="u", duration="2d"), state) or "")
    assert refusal("snooze", SnoozeSignal(user="u", duration="30m"), state) is None


# -- maintenance windows: the chain starts when the window ends --------------------------------


@dataclass
class RecordedWindow:
    """The `maintenance_window` activity, answering a window of `minutes` from the question's time."""

    minutes: int
    asked: list[str] = field(default_factory=list)

    @activity.defn(name="maintenance_window")
    async def maintenance_window(self, question: MaintenanceQuestion) -> MaintenanceNotice:
        self.asked.append(question.service)
        until = activity.info().current_attempt_scheduled_time + timedelta(minutes=self.minutes)
        return MaintenanceNotice(service=question.service, until=until, reason="router upgrade")


async def test_an_incident_declared_in_a_maintenance_window_pages_nobody_until_it_ends(
    time_skipping_env, policy, tmp_path
):
    env, stack, window = time_skipping_env, Stack(tmp_path), RecordedWindow(minutes=60)
    chain_policy = with_chain(policy, Severity.P2, P2_CHAIN)
    async with recorded_worker(
        env, chain_policy, activities=[*stack.paging.activities, window.maintenance_window]
    ) as (
        declare,
        slack,
    ):
        handle = await declare("P2", service="wan-site-a")
        await env.sleep(timedelta(minutes=50))
        during = await state_of(handle)
        await env.sleep(timedelta(minutes=50))
        state = await state_of(handle)

    assert window.asked == ["wan-site-a"]
    assert during.maintenance_until is not None
    # Nothing in the window; then the chain as usual from its end: 60, 75, 90.
    assert stack.slack_pager.at(state.declared_at) == [(60, "U0PRIME"), (75, "U0SECOND"), (90, "U0MANAGER")]
    held = [p for p in slack.posts if p.template == "maintenance"]
    assert len(held) == 1 and held[0].extra["reason"] == "router upgrade"


async def test_a_maintenance_window_ended_early_starts_the_chain_then(time_skipping_env, policy, tmp_path):
    env, stack, window = time_skipping_env, Stack(tmp_path), RecordedWindow(minutes=120)
    chain_policy = with_chain(policy, Severity.P2, P2_CHAIN)
    async with recorded_worker(
        env, chain_policy, activities=[*stack.paging.activities, window.maintenance_window]
    ) as (
        declare,
        _,
    ):
        handle = await declare("P2", service="wan-site-a")
        await env.sleep(timedelta(minutes=20))
        await handle.signal(IncidentWorkflow.maintenance, MaintenanceNotice(service="wan-site-a"))
        await env.sleep(timedelta(minutes=30))
        state = await state_of(handle)

    assert stack.slack_pager.at(state.declared_at) == [(20, "U0PRIME"), (35, "U0SECOND"), (50, "U0MANAGER")]
    assert [e.text for e in state.timeline if e.kind == "maintenance"][-1] == (
        "maintenance of wan-site-a over: paging as usual"
    )
    assert state.maintenance_until is None


def test_the_schedules_are_read_again_when_a_file_changes_not_at_every_page(tmp_path):
    overrides = tmp_path / "overrides.yaml"
    paging = PagingActivities(
        {}, client=None, dnd=None, oncall_file=oncall_file(tmp_path), overrides_file=overrides
    )
    first = paging._oncall()
    assert paging._oncall() is first  # unchanged files: parsed once
    start = datetime.now(UTC) + timedelta(hours=1)
    overrides.write_text(
        yaml.safe_dump(
            {
                "overrides": [
                    {
                        "schedule": "primary",
                        "user": "U0NEXT",
                        "from": start.isoformat(),
                        "to": (start + timedelta(hours=1)).isoformat(),
                    }
                ]
            }
        )
    )
    again = paging._oncall()
    assert again is not first and [o.user for o in again.overrides] == ["U0NEXT"]


class AcknowledgedIncident:
    """Stands in for the worker's client: the incident answers `paging_acknowledged` with True."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def get_workflow_handle(self, workflow_id: str) -> AcknowledgedIncident:
        return self

    async def query(self, name: str) -> bool:
        self.asked.append(name)
        return True


async def test_a_page_that_waited_asks_the_incident_first_one_that_started_at_once_pages(tmp_path):
    incident = AcknowledgedIncident()
    pagerduty = RecordedPager(PagingService.pagerduty)
    paging = PagingActivities(
        {PagingService.pagerduty: pagerduty},
        client=incident,  # type: ignore[arg-type]
        dnd=None,
        oncall_file=oncall_file(tmp_path),
        overrides_file=tmp_path / "none.yaml",
    )
    page = Page(
        service=PagingService.pagerduty,
        incident_workflow_id="incident-k",
        incident_key="k",
        severity=Severity.P1,
        title="R1 down",
        level=1,
        person=PagedPerson(user_id="U0PRIME"),
        reason="level 1, on call for primary",
        idempotency_key="incident-k/page/0/1/U0PRIME/pagerduty",
    )
    scheduled = datetime.now(UTC)
    env = ActivityEnvironment()

    async def send(started_after: timedelta, attempt: int = 1) -> PageDelivered:
        env.info = dataclasses.replace(
            env.info,
            attempt=attempt,
            scheduled_time=scheduled,
            current_attempt_scheduled_time=scheduled,
            started_time=scheduled + started_after,
        )
        return await env.run(paging.send_page, page)

    # Started at once: an acknowledgement before it would have cancelled it; it does not ask.
    assert not (await send(timedelta(milliseconds=200))).held
    assert incident.asked == [] and len(pagerduty.pages) == 1
    # Waited in the queue (or a retry): it asks, and the acknowledgement meanwhile holds it.
    assert (await send(timedelta(seconds=5))).held
    assert (await send(timedelta(0), attempt=2)).held
    assert incident.asked == ["paging_acknowledged"] * 2 and len(pagerduty.pages) == 1


P3_SLACK = {  # a P3's chain: Slack only, hours apart
    "levels": [
        {"targets": [{"schedule": "primary"}], "escalate_after": "4h"},
        {"targets": [{"schedule": "manager"}]},
    ],
    "via": ["slack"],
}


async def test_raising_an_unacknowledged_p3_to_p1_starts_the_p1_chain_now_one_level_at_a_time(
    time_skipping_env, policy, tmp_path
):
    env, stack = time_skipping_env, Stack(tmp_path)
    chain_policy = with_chain(with_chain(policy, Severity.P1, SEED_P1), Severity.P3, P3_SLACK)
    async with recorded_worker(env, chain_policy, activities=stack.paging.activities) as (declare, _):
        handle = await declare("P3")
        await env.sleep(timedelta(hours=1))
        # An hour in, every P1 level but the executive's is "overdue" by the P1 chain's offsets.
        await handle.signal(IncidentWorkflow.set_severity, SeveritySignal(user="U0LEAD", severity="P1"))
        await env.sleep(timedelta(minutes=20))
        state = await state_of(handle)

    # The P3 paged its primary in Slack at 0; the P1 chain starts at 60 and waits its own minutes.
    assert stack.slack_pager.at(state.declared_at) == [
        (0, "U0PRIME"),
        (60, "U0PRIME"),
        (65, "U0SECOND"),
        (75, "U0MANAGER"),
    ]
    assert stack.pagerduty.at(state.declared_at) == [(60, "U0PRIME"), (65, "U0SECOND"), (75, "U0MANAGER")]
    entries = paging_entries(state)
    assert entries[1][0] == 60 and "(severity P3 → P1)" in entries[1][1], entries
    # The restarted chain's pages have their own keys: the primary's P1 DM is a new page.
    keys = [p.idempotency_key for _, p in stack.slack_pager.pages]
    assert len(set(keys)) == 4


async def test_lowering_a_p1_goes_on_from_where_the_chain_was_one_wait_from_now(
    time_skipping_env, policy, tmp_path
):
    env, stack = time_skipping_env, Stack(tmp_path)
    chain_policy = with_chain(with_chain(policy, Severity.P1, SEED_P1), Severity.P3, P3_SLACK)
    async with recorded_worker(env, chain_policy, activities=stack.paging.activities) as (declare, _):
        handle = await declare("P1")
        await env.sleep(timedelta(minutes=2))
        await handle.signal(IncidentWorkflow.set_severity, SeveritySignal(user="U0LEAD", severity="P3"))
        await env.sleep(timedelta(hours=4, minutes=10))
        state = await state_of(handle)

    # Level 1 paged as a P1 at 0; the P3's level 2 comes its own wait (4 h) after the change at 2.
    assert stack.slack_pager.at(state.declared_at) == [(0, "U0PRIME"), (242, "U0MANAGER")]
    assert stack.pagerduty.at(state.declared_at) == [(0, "U0PRIME")]


@dataclass
class HeldPager(RecordedPager):
    """A paging service whose answer waits until the test lets it go (a page in flight)."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    started: asyncio.Event = field(default_factory=asyncio.Event)

    async def page(self, page: Page) -> PageDelivered:
        self.started.set()
        await self.release.wait()
        return await super().page(page)


async def test_a_page_that_goes_out_as_the_incident_is_resolved_is_resolved_at_its_service(
    time_skipping_env, policy, tmp_path
):
    env, stack = time_skipping_env, Stack(tmp_path)
    held = HeldPager(PagingService.pagerduty)
    stack.paging._backends[PagingService.pagerduty] = held
    async with recorded_worker(
        env, with_chain(policy, Severity.P1, SEED_P1), activities=stack.paging.activities
    ) as (declare, _):
        handle = await declare("P1")
        await asyncio.wait_for(held.started.wait(), 30)  # level 1's PagerDuty page is in flight
        await handle.signal(IncidentWorkflow.resolve, ResolveSignal(user="U0LEAD", resolution="fixed"))

        async def resolved() -> bool:
            return (await state_of(handle)).resolved_at is not None

        while not await resolved():
            await asyncio.sleep(0.05)
        held.release.set()  # the page reaches PagerDuty after the resolution
        await env.sleep(timedelta(minutes=30))
        state = await state_of(handle)

    assert held.at(state.declared_at) == [(0, "U0PRIME")]
    # Sent, and then resolved there (it was not among the pages sent when the incident resolved).
    assert [u.action for _, u in held.updates] == [PagingAction.resolve]
    assert [r.outcome for r in state.paging.pages if r.service == PagingService.pagerduty] == ["sent"]
    assert minutes(state, "paging") == [0]  # and no level after the resolution
