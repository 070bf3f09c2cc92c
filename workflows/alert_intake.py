"""What an incident makes of a batch of alerts: symptoms, devices, severity, and its timeline.

Pure: it changes the state it is given and says what changed, so the incident
decides what to post, tell the ticket and start (workflows/incident.py) and this
can be tested alone. What an incident keeps of an alert is bounded, so however
long a storm lasts its state (carried over continue-as-new, answered to queries)
stays far under Temporal's 2 MiB.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from . import limits
from .models import AlertEvent, IncidentState, Severity, TimelineEntry

MAX_SYMPTOMS = 25  # the rest stay in the timeline; the header must stay readable


@dataclass
class TakenAlerts:
    firing: list[str] = field(default_factory=list)  # newly firing, by label
    cleared: list[str] = field(default_factory=list)
    raised_to: Severity | None = None  # the most severe alert, when more severe than the incident
    entries: list[TimelineEntry] = field(default_factory=list)  # for the timeline, in order


def take_alerts(s: IncidentState, alerts: list[AlertEvent], now: datetime) -> TakenAlerts:
    """Fold alerts into the state (firing, symptoms, devices, counters); severity is left to the caller."""
    taken = TakenAlerts()
    firing, cleared = taken.firing, taken.cleared
    raised_to: Severity | None = None

    def record(kind: str, actor: str, text: str) -> None:
        taken.entries.append(TimelineEntry(at=now, kind=kind, actor=actor, text=text))

    listed = sum(1 for e in s.timeline if e.kind in ("alert", "alert_cleared", "alert_acknowledged"))
    for alert in alerts:
        # What the incident keeps of an alert is bounded, so however long a storm lasts its
        # state (carried over continue-as-new, answered to queries) stays far under 2 MiB.
        label = limits.shorten(alert.summary or alert.name, limits.KEPT_ALERT_LABEL)
        listing = listed < limits.TIMELINE_ALERTS - 1
        if listed == limits.TIMELINE_ALERTS - 1:
            record(
                "alert",
                alert.source,
                f"{limits.TIMELINE_ALERTS} alerts listed: later alerts are counted, not listed",
            )
        if not listing:
            s.alerts_unlisted += 1
        listed += 1
        if alert.status == "acknowledged":
            if listing:
                record("alert_acknowledged", alert.source, f"alert acknowledged in {alert.source}: {label}")
            continue
        if alert.status == "resolved":
            if s.alerts_firing.pop(alert.fingerprint, None) is not None or listing:
                cleared.append(label)
            if listing:
                record("alert_cleared", alert.source, f"alert cleared: {label}")
            continue
        new = alert.fingerprint not in s.alerts_firing
        if new and len(s.alerts_firing) >= limits.TRACKED_ALERTS:
            continue  # counted in alerts_received; too many to track for clearing
        s.alerts_firing[alert.fingerprint] = label
        if new:
            firing.append(label)
            if listing:
                record("alert", alert.source, f"alert firing: {label}")
        if label not in s.symptoms and len(s.symptoms) < MAX_SYMPTOMS:
            s.symptoms.append(label)
        for device in alert.devices:
            if device not in s.devices and len(s.devices) < limits.MAX_ITEMS:
                s.devices.append(device)
        for device, upstream in alert.upstream.items():
            if device in s.devices:
                s.upstream.setdefault(device, upstream)
        if alert.severity is not None and alert.severity.rank < (raised_to or s.severity).rank:
            raised_to = alert.severity
    taken.raised_to = raised_to
    return taken
