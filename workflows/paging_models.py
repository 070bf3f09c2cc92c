"""What the incident asks of a paging service, and what comes back: the paging interface's words.

A page is one person at one level of one loop of the incident's escalation chain, through one
service (`slack` direct message, `pagerduty`, `opsgenie`). The incident decides who and when
(its deadline table); a backend under activities/paging/ delivers, exactly once by the page's
idempotency key. PagerDuty and Opsgenie keep one incident/alert per incident key
(`dedup_key`, `alias`): a later page adds to it (Opsgenie: a responder) instead of opening
another, and acknowledging or resolving acts on it as a whole.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from .models import Severity
from .paging_state import PageRecord, PagingService, PagingState

__all__ = ["PageRecord", "PagingService", "PagingState"]  # the state's part, re-exported


class Model(BaseModel):
    pass


class PagedPerson(Model):
    """A person as a schedule or the policy names them (a Slack user id), with how else to reach them."""

    user_id: str  # Slack user id, e.g. U0ALICE
    name: str = ""
    email: str | None = None
    phone: str | None = None


class Page(Model):
    """One page: the activity's whole input, nothing of the incident's state beyond what it says."""

    service: PagingService
    incident_workflow_id: str
    incident_key: str
    severity: Severity
    title: str
    summary: str = ""  # one line: what is broken, where
    link: str | None = None  # the thread, or the Temporal UI (filled in by the activity when None)
    thread_channel: str | None = None  # the incident's thread, when it is in Slack already
    thread_ts: str | None = None
    level: int = Field(ge=1)  # 1-based level of the chain
    loop: int = Field(default=0, ge=0)  # 0: the first pass; then each repeat
    person: PagedPerson
    reason: str  # "level 1, primary on call (network-primary)"
    urgent: bool = False  # P1: never held back by Do Not Disturb
    # A time-based rule for an incident claimed but not resolved: acknowledged, and paged anyway.
    despite_acknowledgement: bool = False
    # incident-<key>/page/<loop>/<level>/<user_id>/<service>: a retry finds the earlier delivery.
    idempotency_key: str


class PageDelivered(Model):
    service: PagingService
    reference: str  # PagerDuty's dedup_key, Opsgenie's requestId, the DM's channel:ts
    delivered_at: datetime | None = None
    duplicate: bool = False  # an earlier attempt had delivered it
    held: bool = False  # not sent: the incident was acknowledged before the page went out


class PagingAction(StrEnum):
    acknowledge = "acknowledge"
    resolve = "resolve"


class PagingUpdate(Model):
    """Tell a paging service the incident was acknowledged or resolved (one call per service)."""

    service: PagingService
    incident_key: str
    action: PagingAction
    by: str = ""  # who, as the incident knows them
    note: str = ""


class DndStatus(Model):
    """What Slack's dnd.info says of a person at the moment of a page."""

    user_id: str
    snoozed: bool  # Do Not Disturb on now (scheduled DND or a snooze)
    until: datetime | None = None


# ------------------------------------------------------------------ the incident's side


class TargetSpec(Model):
    """A policy target as the resolving activity needs it (workflows/policy.py's PagingTarget)."""

    user: str | None = None
    schedule: str | None = None
    group: str | None = None
    channel: bool = False
    via: list[PagingService]


class ResolveTargets(Model):
    """Who the targets of one level (or one unresolved rule) name at `at`, and their DND."""

    incident_workflow_id: str
    targets: list[TargetSpec]
    at: datetime
    check_dnd: bool = True
    round_robin: int | None = None  # the level's turn: pick one person, the (n mod count)-th


class ResolvedTarget(Model):
    person: PagedPerson
    via: list[PagingService]
    why: str  # "primary on call (network-primary)", "U0LEAD"
    dnd: DndStatus | None = None


class TargetsResolved(Model):
    people: list[ResolvedTarget] = Field(default_factory=list)
    broadcasts: list[str] = Field(
        default_factory=list
    )  # "channel", a user group id (S...): told in the thread
    problems: list[str] = Field(default_factory=list)  # "schedule network-x is not in oncall.yaml"
