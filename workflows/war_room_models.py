"""An incident's war room: its own chat channel (issue 13), what the workflow asks and hears back.

Pure data (no workflow code): imported once by the worker, passed through the sandbox.
"""

from __future__ import annotations

import re
from datetime import datetime

from .models import IncidentState, Model, WarRoomRef

WarRoom = WarRoomRef  # what opening a war room answers

MAX_CHANNEL_NAME = 80  # Slack's limit
_NOT_ALLOWED = re.compile(r"[^a-z0-9_-]+")


def war_room_name(title: str, declared_at: datetime, prefix: str = "incident-") -> str:
    """`incident-2026-12-01-r1-unreachable-wan-outage-site-a`: lowercase, at most 80 characters.

    The date is the declaration's (UTC); the slug is the title's letters and digits joined by
    hyphens, cut at a hyphen to fit. Unique among the workspace's channels is the activity's
    job (a taken name gets `-2`, `-3`, ...).
    """
    base = f"{prefix}{declared_at:%Y-%m-%d}"
    slug = _NOT_ALLOWED.sub("-", title.lower()).strip("-_")
    slug = re.sub(r"-{2,}", "-", slug)
    room = max(0, MAX_CHANNEL_NAME - len(base) - 1 - 3)  # room for a `-NN` suffix
    if len(slug) > room:
        slug = slug[:room].rsplit("-", 1)[0] if "-" in slug[:room] else slug[:room]
    return f"{base}-{slug}".strip("-") if slug else base


class OpenWarRoom(Model):
    """Open (or find again, on a retry) the incident's war room and set it up."""

    name: str
    members: list[str]  # Slack user ids to invite
    incident: IncidentState  # for the purpose, the bookmarks and the pinned summary


class WarRoomInvite(Model):
    channel: str
    users: list[str]


class WarRoomSummary(Model):
    """Rewrite the pinned summary with the incident as it is now (and bookmark what it has now)."""

    channel: str
    ts: str
    incident: IncidentState
    bookmark: bool = False  # the ticket or the runbook appeared since the room was set up


def room_bookmarks(incident: IncidentState) -> list[str]:
    """What of the incident the room bookmarks, besides its Temporal UI page."""
    wanted = ["ticket"] if incident.ticket and incident.ticket_url else []
    if incident.runbook.startswith(("http://", "https://")) or any(
        "runbook" in link.lower() for link in incident.links
    ):
        wanted.append("runbook")
    return wanted


class WarRoomArchive(Model):
    channel: str
    incident_workflow_id: str
