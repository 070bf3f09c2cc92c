"""What a ChannelAnnouncer is told, keeps and is started with (see workflows/announcer.py).

Kept out of the workflow's module so the worker builds these pydantic models
once, not again in every run's sandbox.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import Field

from .models import Model, Severity
from .policy import Policy

ANNOUNCER_ID_PREFIX = "announcer-"
ROLLUPS_KEPT = 20
LISTED_KEPT = 1000


def announcer_id(channel: str) -> str:
    """The channel's announcer workflow id: `announcer-netclaw-alerts`."""
    return ANNOUNCER_ID_PREFIX + channel.strip().lstrip("#")


class StormPolicy(Model):
    """When declarations into one channel make a storm, and how fast the announcer may post."""

    threshold: int = Field(default=3, ge=2)  # incidents within `window` that make a storm
    window: timedelta = timedelta(seconds=10)
    gather: timedelta = timedelta(seconds=1)  # the first roll-up waits this long for the rest of the burst
    rollup_every: timedelta = timedelta(seconds=5)  # later roll-ups, for the newcomers
    post_every: timedelta = timedelta(seconds=1)  # Slack: about one chat.postMessage a second per channel
    max_listed: int = Field(default=50, ge=1)  # lines in one roll-up; the rest follow in the next


class DeclaredIncident(Model):
    workflow_id: str
    key: str
    severity: Severity
    title: str
    service: str = ""


class IncidentsDeclared(Model):
    """Incidents a receiver just declared for one channel."""

    incidents: list[DeclaredIncident] = Field(min_length=1)


class Rollup(Model):
    at: datetime
    ts: str | None  # None: Slack refused it (the error is in `errors`)
    incidents: list[str]


class AnnouncerState(Model):
    channel: str
    seen: dict[str, datetime] = Field(default_factory=dict)  # workflow id -> declared, within `window`
    listed: list[str] = Field(default_factory=list)  # in a roll-up already (the latest LISTED_KEPT)
    unannounced: list[DeclaredIncident] = Field(default_factory=list)
    unannounced_since: datetime | None = None
    storm_started_at: datetime | None = None
    storm_listed: int = 0
    rollups: list[Rollup] = Field(default_factory=list)  # the latest ROLLUPS_KEPT
    posts: int = 0  # also the sequence for roll-up idempotency keys
    last_post_at: datetime | None = None
    last_rollup_at: datetime | None = None
    errors: list[str] = Field(default_factory=list)
    continuing: bool = False  # the last roll-up left incidents for the next message


class AnnouncerInput(Model):
    channel: str
    storm: StormPolicy = Field(default_factory=StormPolicy)
    # None: ask the worker for its policy (Slack timeouts) once, at the start.
    policy: Policy | None = None
    carried: AnnouncerState | None = None
