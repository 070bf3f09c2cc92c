"""The report's arithmetic on hand-made results: the definitions' edge cases, without a server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from starter.report import ClosedIncident, build_report, figures_of
from workflows.models import IncidentSummary, Severity, TimelineEntry
from workflows.paging_state import PageRecord, PagingService

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # a Monday


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def summary(**kw) -> dict:
    base = {
        "key": "k1",
        "severity": "P1",
        "title": "t",
        "commander": "U0ALICE",
        "declared_at": T0.isoformat(),
        "claimed_at": at(7).isoformat(),
        "resolved_at": at(40).isoformat(),
        "time_to_acknowledge_seconds": 420.0,
        "time_to_resolve_seconds": 2400.0,
        "updates": 2,
        "reminders": 0,
        "escalations": 0,
        "timeline": [
            TimelineEntry(at=T0, kind="declared", actor="alertmanager (noc)").model_dump(mode="json"),
            TimelineEntry(
                at=at(0), kind="paging", text="paging level 1: network-primary (declared)"
            ).model_dump(mode="json"),
            TimelineEntry(
                at=at(5), kind="paging", text="paging level 2: x (no acknowledgement after 5m)"
            ).model_dump(mode="json"),
            TimelineEntry(at=at(6), kind="acknowledged", actor="U0ALICE").model_dump(mode="json"),
            TimelineEntry(at=at(7), kind="claimed", actor="U0ALICE").model_dump(mode="json"),
            TimelineEntry(at=at(20), kind="update", text="[fixing] swapping").model_dump(mode="json"),
            TimelineEntry(at=at(30), kind="update", text="[monitoring] swapped").model_dump(mode="json"),
            TimelineEntry(at=at(40), kind="resolved", text="ok").model_dump(mode="json"),
            TimelineEntry(at=at(40), kind="review_scheduled").model_dump(mode="json"),
            TimelineEntry(at=at(60), kind="review_done").model_dump(mode="json"),
        ],
    }
    return {**base, **kw}


def closed(raw: dict, **kw) -> ClosedIncident:
    return ClosedIncident(
        workflow_id="incident-" + raw["key"], summary=IncidentSummary.model_validate(raw), **kw
    )


def test_times_follow_their_definitions():
    raw = summary(
        reporter="alertmanager (noc)",
        detected_at=(T0 - timedelta(minutes=3)).isoformat(),
        review_due_at=at(40 + 48 * 60).isoformat(),
        service="wan",
        pages=[],
    )
    f = figures_of(closed(raw))
    assert f.time_to_acknowledge == 6 * 60  # the acknowledgement, before the claim
    assert f.time_to_detect == 3 * 60
    assert f.time_to_mitigate == 30 * 60  # the monitoring update, not the fixing one
    assert f.time_to_resolve == 40 * 60
    assert f.review_due and f.review_on_time
    assert f.escalations == 1  # level 2
    assert f.pages == [] and f.action_items is None


def test_no_detection_time_from_a_person_no_mitigation_update_and_a_late_review():
    timeline = [e for e in summary()["timeline"] if not e["text"].startswith("[monitoring]")]
    raw = summary(
        reporter="alice",
        detected_at=T0.isoformat(),
        timeline=timeline,
        review_due_at=at(50).isoformat(),  # done at 60: late
    )
    f = figures_of(closed(raw))
    assert f.time_to_detect is None
    assert f.time_to_mitigate == f.time_to_resolve == 40 * 60
    assert f.review_due and not f.review_on_time
    assert f.pages is None  # a result from before pages were in the summary: n/a, not 0


def test_pages_count_people_per_level_and_weeks_against_the_limit():
    def page(minute: float, user: str, via: PagingService, level: int = 1, outcome: str = "sent") -> dict:
        return PageRecord(
            level=level, user_id=user, service=via, due=at(minute), at=at(minute), outcome=outcome
        ).model_dump(mode="json")

    incidents = []
    for i in range(7):  # U0CAROL paged by 7 incidents this week, by Slack and PagerDuty each
        pages = [page(0, "U0CAROL", PagingService.slack), page(0, "U0CAROL", PagingService.pagerduty)]
        pages.append(page(5, "U0DAVE", PagingService.slack, level=2, outcome="held: acknowledged"))
        incidents.append(
            closed(
                summary(key=f"k{i}", pages=pages, root_cause="Fibre  cut" if i % 2 else "fibre cut"),
                action_items=[{"status": "done"}, {"status": "open"}],
            )
        )
    report = build_report(
        incidents, since=T0 - timedelta(days=30), now=at(24 * 60), max_pages_per_person_week=5
    )
    assert [(p.person, p.week, p.pages, p.over_limit) for p in report.pages_per_person_week] == [
        ("U0CAROL", "2026-W49", 7, True)
    ]
    assert report.overall.pages_per_incident == 1
    assert report.overall.action_items.rate == 0.5
    assert [(r.root_cause, r.count) for r in report.recurring_root_causes] == [("fibre cut", 7)]
    assert report.by_severity["P1"].count == 7
    assert report.by_service["(none)"].count == 7  # neither the summary nor visibility named one


def test_filters_and_an_empty_report():
    incidents = [closed(summary(key="a", service="dns")), closed(summary(key="b", severity=Severity.P2))]
    since = T0 - timedelta(days=1)
    assert (
        build_report(incidents, since=since, now=T0, max_pages_per_person_week=5, service="dns").overall.count
        == 1
    )
    assert (
        build_report(
            incidents, since=since, now=T0, max_pages_per_person_week=5, severity=Severity.P2
        ).overall.count
        == 1
    )
    empty = build_report(incidents, since=T0 + timedelta(hours=1), now=T0, max_pages_per_person_week=5)
    assert empty.overall.count == 0 and empty.overall.mtta.seconds is None
    assert empty.overall.reviews_on_time.share is None and empty.overall.pages_per_incident is None
