"""The severity framework's automatic triggers in virtual time (seed 001, issue 13).

Each trigger fires at its minute, with its reason in the timeline, and does not fire when its
condition was met in time. Workflow logic on the time-skipping test server, Slack and the paging
services recorded by fake activities (tests/fakes.py); who is on call from config/oncall.yaml.
"""

from __future__ import annotations

from datetime import timedelta

from workflows.incident import IncidentWorkflow
from workflows.models import AlertBatch, AlertEvent, ClaimSignal, Severity, UpdateSignal
from workflows.policy import Policy

from .workflow_harness import minutes, recorded_worker, state_of


def severity_changes(state) -> list[tuple[int, str]]:
    return [
        (round((e.at - state.declared_at) / timedelta(minutes=1)), e.text)
        for e in state.timeline
        if e.kind == "severity"
    ]


def alerts(*fingerprints: str, **labels: str) -> AlertBatch:
    return AlertBatch(
        user="alertmanager",
        alerts=[
            AlertEvent(source="alertmanager", fingerprint=f, name=f"link {f} down", labels=dict(labels))
            for f in fingerprints
        ],
    )


async def test_no_root_cause_after_30_minutes_of_a_p1_escalates_to_the_next_tier(time_skipping_env, policy):
    env = time_skipping_env
    async with recorded_worker(env, policy) as (declare, slack):
        handle = await declare("P1")
        await env.sleep(timedelta(minutes=2))
        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="U0ALICE"))
        await env.sleep(timedelta(minutes=40))
        state = await state_of(handle)
    assert minutes(state, "trigger") == [30]
    (entry,) = [e for e in state.timeline if e.kind == "trigger"]
    assert entry.text == (
        "no root cause identified after 30m: escalating to the next tier (on call for engineering-manager)"
    )
    # The engineering manager on call was paged at minute 30 (beside the chain's own pages).
    paged = [p for p in slack.pages if p.reason.startswith("no root cause after 30m")]
    assert paged and {p.level for p in paged} == {paged[0].level}
    records = [r for r in state.paging.pages if r.rule == "no root cause 30m"]
    assert records and all(round((r.due - state.declared_at) / timedelta(minutes=1)) == 30 for r in records)


async def test_a_root_cause_identified_in_time_means_no_escalation(time_skipping_env, policy):
    env = time_skipping_env
    async with recorded_worker(env, policy) as (declare, slack):
        handle = await declare("P1")
        await env.sleep(timedelta(minutes=2))
        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="U0ALICE"))
        await env.sleep(timedelta(minutes=27))  # minute 29
        await handle.signal(
            IncidentWorkflow.update,
            UpdateSignal(user="U0ALICE", status="identified", message="R1 PSU failed"),
        )
        await env.sleep(timedelta(minutes=20))
        state = await state_of(handle)
    assert minutes(state, "trigger") == []
    assert not [p for p in slack.pages if p.reason.startswith("no root cause")]


async def test_a_p2_without_a_root_cause_escalates_at_2_hours_and_a_legacy_policy_says_so_in_the_thread(
    time_skipping_env, legacy_policy
):
    env = time_skipping_env
    async with recorded_worker(env, legacy_policy) as (declare, slack):
        handle = await declare("P2")
        await env.sleep(timedelta(minutes=5))
        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="U0ALICE"))
        await handle.signal(
            IncidentWorkflow.update, UpdateSignal(user="U0ALICE", status="investigating", message="looking")
        )
        await env.sleep(timedelta(hours=2))
        state = await state_of(handle)
    assert minutes(state, "trigger") == [120]
    assert slack.templates().count("no_root_cause") == 1


async def test_a_data_integrity_concern_makes_it_p1_at_once(time_skipping_env, policy):
    env = time_skipping_env
    async with recorded_worker(env, policy) as (declare, slack):
        declared = await declare("P3", data_integrity=True)
        later = await declare("P3", title="Orders table checksum mismatch")
        await env.sleep(timedelta(minutes=10))
        await later.signal(
            IncidentWorkflow.update,
            UpdateSignal(user="U0ALICE", status="investigating", message="rows differ", data_integrity=True),
        )
        await env.sleep(timedelta(minutes=1))
        first, second = await state_of(declared), await state_of(later)
    assert first.severity == Severity.P1 and severity_changes(first) == [
        (0, "severity P3 → P1 (trigger: data-integrity concern)")
    ]
    assert [e.text for e in first.timeline if e.kind == "trigger"] == ["data-integrity concern (declared)"]
    assert second.severity == Severity.P1 and severity_changes(second) == [
        (10, "severity P3 → P1 (trigger: data-integrity concern)")
    ]
    assert first.war_room is not None  # a P1 now: its war room was opened too


async def test_customers_reporting_makes_it_at_least_p2_and_never_lowers_it(time_skipping_env, policy):
    env = time_skipping_env
    async with recorded_worker(env, policy) as (declare, _):
        low = await declare("P4")
        high = await declare("P1", customer_impact=True)
        await env.sleep(timedelta(minutes=5))
        await low.signal(
            IncidentWorkflow.update,
            UpdateSignal(
                user="U0BOB", status="investigating", message="tickets from ACME", customer_impact=True
            ),
        )
        await env.sleep(timedelta(minutes=1))
        low_state, high_state = await state_of(low), await state_of(high)
    assert low_state.severity == Severity.P2
    assert severity_changes(low_state) == [
        (5, "severity P4 → P2 (trigger: customer-reported, paying accounts affected)")
    ]
    assert high_state.severity == Severity.P1 and severity_changes(high_state) == []


async def test_the_impact_doubling_raises_one_level_each_time(time_skipping_env, policy):
    env = time_skipping_env
    async with recorded_worker(env, policy) as (declare, _):
        handle = await declare("P3")
        await handle.signal(IncidentWorkflow.alerts, alerts("a", "b"))
        await env.sleep(timedelta(minutes=3))
        await handle.signal(IncidentWorkflow.alerts, alerts("c"))  # 3 of 2: not doubled
        await env.sleep(timedelta(minutes=3))
        await handle.signal(IncidentWorkflow.alerts, alerts("d"))  # 4 of 2: doubled
        await env.sleep(timedelta(minutes=3))
        await handle.signal(IncidentWorkflow.alerts, alerts("e", "f", "g", "h"))  # 8 of 4: doubled again
        await env.sleep(timedelta(minutes=1))
        by_alerts = await state_of(handle)
        said = await declare("P4")
        await env.sleep(timedelta(minutes=2))
        await said.signal(
            IncidentWorkflow.update,
            UpdateSignal(user="U0BOB", status="investigating", message="now Site B too", scope_doubled=True),
        )
        await env.sleep(timedelta(minutes=1))
        by_update = await state_of(said)
    assert severity_changes(by_alerts) == [
        (6, "severity P3 → P2 (trigger: impact doubled: firing alerts 2 → 4)"),
        (9, "severity P2 → P1 (trigger: impact doubled: firing alerts 4 → 8)"),
    ]
    assert severity_changes(by_update) == [(2, "severity P4 → P3 (trigger: impact doubled, says U0BOB)")]


async def test_an_alert_label_says_customers_are_affected(time_skipping_env, policy):
    env = time_skipping_env
    async with recorded_worker(env, policy) as (declare, _):
        handle = await declare("P3")
        await env.sleep(timedelta(minutes=4))
        await handle.signal(IncidentWorkflow.alerts, alerts("x", customer_impact="paying"))
        await env.sleep(timedelta(minutes=1))
        state = await state_of(handle)
    assert severity_changes(state) == [
        (4, "severity P3 → P2 (trigger: customer-reported, paying accounts affected)")
    ]
    assert [e.text for e in state.timeline if e.kind == "trigger"] == [
        "reported by customers, paying accounts affected (alert)"
    ]


async def test_triggers_turned_off_in_the_policy_do_nothing(time_skipping_env, policy: Policy):
    off = policy.model_copy(
        update={
            "triggers": policy.triggers.model_copy(
                update={
                    "scope_doubled": False,
                    "customer_impact": None,
                    "data_integrity": None,
                    "no_root_cause": {},
                }
            )
        }
    )
    env = time_skipping_env
    async with recorded_worker(env, off) as (declare, _):
        handle = await declare("P2", data_integrity=True, customer_impact=True)
        await handle.signal(IncidentWorkflow.alerts, alerts("a"))
        await handle.signal(IncidentWorkflow.alerts, alerts("b", "c"))
        await env.sleep(timedelta(hours=3))
        state = await state_of(handle)
    assert state.severity == Severity.P2 and severity_changes(state) == []
    assert minutes(state, "trigger") == [0, 0]  # said, not acted on
