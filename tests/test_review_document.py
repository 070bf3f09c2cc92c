"""The seed scenario's review (R1 crash, P1, 34 minutes) played on the time-skipping test server with
the real worker activities and the Slack sandbox over HTTP: the review has every timeline entry in
order with the UTC times of the workflow's history, the right MTTA and MTTR, and is attached in the
thread with its artifacts (each once)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio.api.enums.v1 import EventType

from activities.review.document import render_review
from workflows.figures import figures_of
from workflows.incident import IncidentWorkflow
from workflows.models import ClaimSignal, ResolveSignal, ReviewDoneSignal, UpdateSignal

from .stack import eventually, first_pages_out, incident_worker
from .workflow_harness import register_search_attributes, state_of


async def test_the_seed_scenarios_review_is_drafted_from_its_history_and_attached_with_its_artifacts(
    time_skipping_env, sandbox, policy
):
    env = time_skipping_env
    await register_search_attributes(env.client)
    async with incident_worker(env.client, sandbox.api_url, policy) as declare:
        handle = await declare(
            "P1",
            symptoms=["R1 unreachable (ping 0%)", "47 routes lost", "3 OSPF adjacencies down"],
            impact=["~200 users at Site A without WAN connectivity"],
            service="wan-site-a",
        )
        declared = await first_pages_out(handle, policy)
        start = declared.declared_at

        async def at_minute(minutes: float) -> None:
            await env.sleep(start + timedelta(minutes=minutes) - await env.get_current_time())

        await at_minute(49 / 60)
        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="U0ENGINEER1"))
        await at_minute(12)
        await handle.signal(
            IncidentWorkflow.update,
            UpdateSignal(user="U0ENGINEER1", status="identified", message="R1 crashed: IOS-XE bug"),
        )
        await at_minute(25)
        await handle.signal(
            IncidentWorkflow.update,
            UpdateSignal(user="U0ENGINEER1", status="monitoring", message="R1 reloaded, OSPF back"),
        )
        await at_minute(34)
        await handle.signal(
            IncidentWorkflow.resolve,
            ResolveSignal(
                user="U0ENGINEER1",
                resolution="R1 reloaded; routes and adjacencies restored",
                root_cause="IOS-XE bug CSCxx12345 crashed R1",
            ),
        )

        async def drafted():
            state = await state_of(handle)
            return state if any(e.kind == "review_drafted" for e in state.timeline) else None

        state = await eventually(drafted, timeout=60, what="the review to be attached")
        figures = figures_of(state)
        assert abs(figures.time_to_acknowledge_seconds - 49) < 2, figures
        assert abs(figures.time_to_resolve_seconds - 34 * 60) < 2, figures
        assert (figures.tta, figures.ttm, figures.ttr) == ("49s", "25m", "34m"), figures

        # Every timeline entry, in order, at its UTC time; the commands at their signals' times.
        review = render_review(state, ui_url="http://ui/")
        rows = [line for line in review.splitlines() if line.startswith("| 20")]
        assert len(rows) == len(state.timeline)
        for row, entry in zip(rows, state.timeline, strict=True):
            assert row.startswith(f"| {entry.at:%Y-%m-%d %H:%M:%S} | {entry.kind} |"), (row, entry)
        history = await handle.fetch_history()
        signalled = {
            e.workflow_execution_signaled_event_attributes.signal_name: e.event_time.ToDatetime()
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        }
        for kind, signal in (("claimed", "claim"), ("resolved", "resolve")):
            [entry] = [e for e in state.timeline if e.kind == kind]
            delay = entry.at.replace(tzinfo=None) - signalled[signal]
            assert timedelta(0) <= delay < timedelta(seconds=1), (kind, entry.at, signalled[signal])
        assert "| Time to acknowledge | declared |" in review and f"| {figures.tta} |" in review
        assert f"| Time to resolve | declared | {figures.resolved_at:%Y-%m-%d %H:%M:%S} | 34m |" in review
        for prompt in ("## What Went Well", "## Contributing Factors", "## 5 Whys", "## Lessons Learned"):
            assert prompt in review

        # In the thread: the announcement, then the review and its artifacts, each once.
        thread = await sandbox.thread(state.slack_channel, state.slack_thread_ts)
        texts = [m.get("text", "") for m in thread]
        assert any(
            "Post-Incident Review — Scheduled" in t and "Review Artifacts (attached)" in t for t in texts
        )
        titles = [f.get("title", "") for m in thread for f in m.get("files", []) or []]
        key = state.key
        for name in (
            "Post-incident review (draft)",
            "Timeline of events",
            "Audit trail (from the workflow's history)",
            "Pre/post health check comparison",
        ):
            assert titles.count(f"{name}: {key}") == 1, (name, titles)
        closing = [t for t in texts[1:] if "INCIDENT RESOLVED" in t and "*Duration:*" in t]
        assert closing and "MTTA 49s" in closing[0], closing

        await handle.signal(IncidentWorkflow.review_done, ReviewDoneSignal(user="U0ENGINEER1", notes="held"))
        await asyncio.wait_for(handle.result(), timeout=60)
        thread = await sandbox.thread(state.slack_channel, state.slack_thread_ts)
        done = [m["text"] for m in thread if "Post-Incident Review done" in m.get("text", "")]
        assert done and f"MTTA {figures.tta}" in done[0] and "MTTR 34m" in done[0], done


def test_the_reviews_action_items_are_the_incidents_own():
    from datetime import UTC, date, datetime

    from activities.review.document import render_review
    from workflows.action_state import ActionItem
    from workflows.models import IncidentState, Severity

    state = IncidentState(
        workflow_id="incident-x",
        key="x",
        severity=Severity.P2,
        title="t",
        declared_at=datetime(2026, 12, 1, tzinfo=UTC),
    )
    assert "_None yet: to be agreed in the review" in render_review(state)
    state.action_items = [
        ActionItem(
            number=1,
            text="Replace | the SFP",
            owner="U0BOB",
            priority="P2",
            due=date(2026, 12, 8),
            added_at=datetime(2026, 12, 1, tzinfo=UTC),
            ticket="OPS-12",
        )
    ]
    section = render_review(state).split("## Action Items")[1].split("## ")[0]
    assert "| 1 | Replace \\| the SFP | U0BOB | P2 | 2026-12-08 | open | OPS-12 |" in section
