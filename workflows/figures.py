"""The incident's figures (MTTA, MTTM, MTTR, duration, counts), computed in one place.

The closing message, the review document, `incident status` and the workflow's result all read
these, so they cannot disagree (before this the closing message rounded to minutes, "MTTA 0 min",
where `incident status` said 49 s; and "1 updates").

Definitions, each from the incident's own timestamps:

- time to detect (TTD): from the first alert's start (`detected_at`, an alert's `startsAt`)
  to the declaration; none when no alert carried its start.
- time to acknowledge (TTA): from the declaration to the first acknowledgement of a page or
  the claim, whichever came first.
- time to mitigate (TTM): from the declaration to the first update saying `monitoring` (the
  fix is in and being watched); the resolution when no update said so.
- time to resolve (TTR): from the declaration to the resolution; also the incident's duration.

Pure code (no Temporal calls): the workflow, the activities and the CLI import it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, computed_field

from .models import IncidentState
from .policy import format_duration

# The update status that means mitigated (the fix is in, being watched).
MITIGATED_STATUS = "monitoring"


def plural(count: int, word: str) -> str:
    """`1 update`, `0 updates`, `3 escalations`."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def seconds_text(seconds: float | None) -> str:
    """`49s`, `34m`, `1h5m`, `2d3h`; `—` for none. One format for every figure shown."""
    if seconds is None:
        return "—"
    return format_duration(timedelta(seconds=max(0.0, seconds)), most=2)


class IncidentFigures(BaseModel):
    """What the incident's response measured (see the module's docstring for each definition)."""

    declared_at: datetime
    detected_at: datetime | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    mitigated_at: datetime | None = None
    resolved_at: datetime | None = None
    updates: int = 0
    reminders: int = 0
    escalations: int = 0
    pages: int = 0  # pages sent or delivered (not skipped or held)
    severity_changes: int = 0

    def _since_declared(self, at: datetime | None) -> float | None:
        return None if at is None else max(0.0, (at - self.declared_at).total_seconds())

    @computed_field  # type: ignore[prop-decorator]
    @property
    def time_to_detect_seconds(self) -> float | None:
        if self.detected_at is None:
            return None
        return max(0.0, (self.declared_at - self.detected_at).total_seconds())

    @computed_field  # type: ignore[prop-decorator]
    @property
    def time_to_acknowledge_seconds(self) -> float | None:
        return self._since_declared(self.acknowledged_at)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def time_to_mitigate_seconds(self) -> float | None:
        return self._since_declared(self.mitigated_at)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def time_to_resolve_seconds(self) -> float | None:
        return self._since_declared(self.resolved_at)

    # As shown, one format everywhere (computed fields: they reach the templates as JSON too).

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ttd(self) -> str:
        return seconds_text(self.time_to_detect_seconds)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def tta(self) -> str:
        return seconds_text(self.time_to_acknowledge_seconds)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ttm(self) -> str:
        return seconds_text(self.time_to_mitigate_seconds)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ttr(self) -> str:
        return seconds_text(self.time_to_resolve_seconds)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def duration(self) -> str:
        return self.ttr

    @computed_field  # type: ignore[prop-decorator]
    @property
    def counts(self) -> str:
        """`3 updates, 1 reminder, 0 escalations`."""
        return ", ".join(
            (
                plural(self.updates, "update"),
                plural(self.reminders, "reminder"),
                plural(self.escalations, "escalation"),
            )
        )


def figures_of(state: IncidentState) -> IncidentFigures:
    """The incident's figures from its state (its timestamps, counters and timeline)."""
    s = state
    acknowledged = [
        (at, who)
        for at, who in ((s.paging.acknowledged_at, s.paging.acknowledged_by), (s.claimed_at, s.commander))
        if at is not None
    ]
    acknowledged_at, acknowledged_by = min(acknowledged, key=lambda a: a[0]) if acknowledged else (None, None)
    if s.claimed_at is not None and acknowledged_at == s.claimed_at and s.paging.acknowledged_at is None:
        # The claimer, not whoever holds IC now (a handover since).
        acknowledged_by = next((e.actor for e in s.timeline if e.kind == "claimed"), acknowledged_by)
    mitigated_at = next(
        (e.at for e in s.timeline if e.kind == "update" and e.text.startswith(f"[{MITIGATED_STATUS}]")),
        s.resolved_at,
    )
    if mitigated_at is not None and s.resolved_at is not None:
        mitigated_at = min(mitigated_at, s.resolved_at)
    pages = sum(1 for p in s.paging.pages if p.outcome in ("sent", "delivered"))
    return IncidentFigures(
        declared_at=s.declared_at,
        detected_at=s.detected_at if s.detected_at is not None and s.detected_at <= s.declared_at else None,
        acknowledged_at=acknowledged_at,
        acknowledged_by=acknowledged_by,
        mitigated_at=mitigated_at,
        resolved_at=s.resolved_at,
        updates=s.updates,
        reminders=s.reminders,
        escalations=s.escalations,
        pages=pages,
        severity_changes=sum(1 for e in s.timeline if e.kind == "severity"),
    )
