"""The incident's own Prometheus series, emitted through the workflow's metric meter.

`workflow.metric_meter()` records nothing while a workflow replays, so a page counted once is
never counted again when a worker rebuilds the incident from its history; it writes no command,
so adding or removing a series changes no history. The worker serves them with the SDK's own
metrics at WORKER_METRICS_ADDRESS (worker.py); without it the meter is a no-op.

The names are here once: the worker configures the histogram's buckets and the Grafana
dashboard (config/grafana/incident-dashboard.json) queries them.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from .models import IncidentState

PAGES_SENT = "incident_pages_sent_total"
PAGES_ACKNOWLEDGED = "incident_pages_acknowledged_total"
TIME_TO_ACKNOWLEDGE = "incident_time_to_acknowledge_seconds"
OPEN_INCIDENTS = "incident_open"  # a gauge the worker sets from visibility (worker.py), not workflow code
# Seconds: 30 s to 2 h, around the policy's escalation delays (5, 10, 15, 30 minutes).
TIME_TO_ACKNOWLEDGE_BUCKETS = (30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0)


def _labels(state: IncidentState) -> dict[str, str | int | float | bool]:
    return {"severity": state.severity.value, "service": state.service or "none"}


def count_page_sent(state: IncidentState, via: str) -> None:
    """One page that a paging service (or Slack) took: `via` is which."""
    workflow.metric_meter().create_counter(
        PAGES_SENT,
        "Pages sent to on-call people, by the incident's severity and service and the paging service",
    ).add(1, {**_labels(state), "via": via})


def count_acknowledgement(state: IncidentState, waited: timedelta, paged: bool) -> None:
    """The incident's first acknowledgement or claim: how long it took, and whether it answered pages."""
    meter = workflow.metric_meter()
    meter.create_histogram_float(
        TIME_TO_ACKNOWLEDGE, "From declaration to the first acknowledgement or claim", "s"
    ).record(max(waited.total_seconds(), 0.0), _labels(state))
    if paged:
        meter.create_counter(
            PAGES_ACKNOWLEDGED, "Incidents whose pages were acknowledged (or the incident claimed)"
        ).add(1, _labels(state))
