"""Severity policy: how often updates are due, when to escalate, when to review.

The policy is plain data (a pydantic model) so it can travel in the workflow's
input and history: a running incident keeps the policy it was declared with,
which keeps replays deterministic even when the file changes.

Durations are written as `15m`, `2h`, `1d`, `1w` (or combinations such as
`1h30m`); `escalate_after` may also be `next_business_day`. Loading the file
is I/O and happens in the worker and the CLI, never in workflow code.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from .limits import MAX_LINK, MAX_SERVICE, email_address, http_url_problem
from .models import Severity
from .paging_models import PagingService

NEXT_BUSINESS_DAY = "next_business_day"
_DURATION = re.compile(
    r"^\s*(?:(\d+)\s*w)?\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*(?:(\d+)\s*s)?\s*$"
)


def default_policy_file() -> Path:
    """config/policy.yaml of this checkout (a function: the workflow sandbox forbids path I/O at import)."""
    return Path(__file__).resolve().parent.parent / "config" / "policy.yaml"


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names file, field and reason."""


def parse_duration(text: str | int | float | timedelta) -> timedelta:
    if isinstance(text, timedelta):
        return text
    if isinstance(text, (int, float)):
        return timedelta(seconds=text)
    if str(text).startswith("P"):  # ISO 8601, as the policy looks after a trip through JSON
        return TypeAdapter(timedelta).validate_python(text)
    match = _DURATION.match(str(text))
    if not match or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration (use e.g. 15m, 2h, 1d, 1w, 1h30m)")
    weeks, days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    value = timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)
    if value <= timedelta(0):
        raise ValueError(f"{text!r} must be longer than zero")
    return value


def format_duration(value: timedelta, most: int = 4) -> str:
    """`1h5m`, `2d3h`, `45s`: the `most` largest units that are not zero (all by default)."""
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts[:most]) or "0s"


# A duration a policy file writes as 15m, 2h, 1d, 1h30m (or seconds, or an ISO 8601 duration).
Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Reactions(_Strict):
    declared: str = "rotating_light"
    claimed: str = "raised_hand"
    investigating: str = "mag"
    fixing: str = "wrench"
    waiting: str = "hourglass"
    resolved: str = "white_check_mark"
    review: str = "bookmark"


class PagingTarget(_Strict):
    """Who a level pages: exactly one of a person, a schedule's on-call, a Slack user group, the channel."""

    user: str | None = None  # a Slack user id (U...)
    schedule: str | None = None  # config/oncall.yaml: whoever is on call when the level fires
    group: str | None = None  # a Slack user group id (S...): mentioned in the thread
    channel: bool = False  # @channel in the incident's thread
    # Which services page this target; None: the chain's `via`. A group or the channel is only
    # ever told in the thread.
    via: list[PagingService] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> PagingTarget:
        given = [n for n in ("user", "schedule", "group") if getattr(self, n)] + (
            ["channel"] if self.channel else []
        )
        if len(given) != 1:
            raise ValueError(
                "a target is exactly one of user, schedule, group or channel"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    def describe(self) -> str:
        if self.user:
            return self.user
        if self.schedule:
            return f"on call for {self.schedule}"
        if self.group:
            return f"group {self.group}"
        return "the channel"


class PagingLevel(_Strict):
    targets: list[PagingTarget] = Field(min_length=1)
    # No acknowledgement this long after this level is paged: page the next level. On the last
    # level: how long before the chain repeats (with `repeat`); none there ends the chain.
    escalate_after: timedelta | None = None
    # all: everyone the targets name; round_robin: one of them, the next one each time it fires.
    notify: Literal["all", "round_robin"] = "all"

    @field_validator("escalate_after", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if value is None or isinstance(value, timedelta):
            return value
        if str(value).strip() in {"0", "0m", "0s", "PT0S", "immediately", "at once"}:
            return timedelta(0)
        return parse_duration(value)


class UnresolvedRule(_Strict):
    """Claimed (or acknowledged) but not resolved this long after the declaration: page these too."""

    after: Duration
    targets: list[PagingTarget] = Field(min_length=1)


class PagingPolicy(_Strict):
    """A severity's escalation chain, frozen into each incident when it is declared."""

    levels: list[PagingLevel] = Field(min_length=1)
    repeat: int = Field(
        default=0, ge=0, le=9
    )  # passes through the chain after the first, as PagerDuty's loops
    repeat_from: int = Field(default=1, ge=1)  # the level (1-based) a repeat starts at
    via: list[PagingService] = Field(default_factory=lambda: [PagingService.slack])
    # The first acknowledgement (button, PagerDuty, Opsgenie) also makes its sender the IC.
    acknowledge_claims: bool = False
    unresolved: list[UnresolvedRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _chain(self) -> PagingPolicy:
        if self.repeat_from > len(self.levels):
            raise ValueError(f"repeat_from is {self.repeat_from} but there are {len(self.levels)} levels")
        for number, level in enumerate(self.levels[:-1], start=1):
            if level.escalate_after is None:
                raise ValueError(f"level {number} needs escalate_after (how long before level {number + 1})")
        if self.repeat and self.levels[-1].escalate_after is None:
            raise ValueError(
                "the last level needs escalate_after when the chain repeats (the wait before it does)"
            )
        if [r.after for r in self.unresolved] != sorted(r.after for r in self.unresolved):
            raise ValueError("unresolved rules must be in the order of their `after`")
        return self

    def steps(self) -> list[tuple[int, int, timedelta]]:
        """Every page of the chain in order: (loop, level index, offset from the declaration)."""
        order = [(0, i) for i in range(len(self.levels))]
        for loop in range(1, self.repeat + 1):
            order += [(loop, i) for i in range(self.repeat_from - 1, len(self.levels))]
        found, offset = [], timedelta(0)
        for loop, index in order:
            found.append((loop, index, offset))
            offset += self.levels[index].escalate_after or timedelta(0)
        return found


class SeverityPolicy(_Strict):
    name: str = ""
    update_every: timedelta
    # Before paging chains (and still for a severity without `paging`): how long unclaimed before
    # the thread mentions the next of `escalation_tiers`; a duration, or "next_business_day".
    escalate_after: timedelta | str | None = None
    review_within: timedelta | None = None  # None: no review for this severity
    notify: list[str] = Field(default_factory=list)
    escalation_tiers: list[list[str]] = Field(default_factory=list)
    paging: PagingPolicy | None = None  # the escalation chain; None: the thread mentions above
    # When every alert of the incident has cleared: resolve it without a person?
    resolve_when_alerts_clear: bool = False

    @model_validator(mode="after")
    def _some_escalation(self) -> SeverityPolicy:
        if self.paging is None and self.escalate_after is None:
            raise ValueError("either paging (an escalation chain) or escalate_after is required")
        return self

    @field_validator("update_every", "review_within", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if value is None or isinstance(value, timedelta):
            return value
        if value is False or str(value).strip().lower() in {"none", "never", "no"}:
            return None
        return parse_duration(value)

    @field_validator("escalate_after", mode="before")
    @classmethod
    def _escalate_after(cls, value: Any) -> Any:
        if value is None or isinstance(value, timedelta):
            return value
        if str(value).strip().lower().replace(" ", "_").replace("-", "_") == NEXT_BUSINESS_DAY:
            return NEXT_BUSINESS_DAY
        return parse_duration(value)

    @field_validator("update_every")
    @classmethod
    def _update_every_required(cls, value: timedelta | None) -> timedelta:
        if value is None:
            raise ValueError("update_every is required")
        return value

    def tier(self, index: int) -> list[str]:
        """The people paged by escalation number `index` (0-based); the last tier repeats."""
        if not self.escalation_tiers:
            return list(self.notify)
        return list(self.escalation_tiers[min(index, len(self.escalation_tiers) - 1)])


class BusinessHours(_Strict):
    """When "next business day" starts. UTC offsets keep workflow code free of tz files."""

    start_hour: int = Field(default=9, ge=0, le=23)
    utc_offset_hours: int = Field(default=0, ge=-12, le=14)
    weekdays: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4])  # Monday = 0
    # The team's time zone (IANA, e.g. Europe/Zurich) for the post-incident review's meeting and
    # reminder (computed in an activity: workflow code reads no tz files). Empty: utc_offset_hours.
    timezone: str = ""


class ReviewSettings(_Strict):
    """The post-incident review's meeting: when it is held, reminded, and given up."""

    # The meeting is on the first business day after the resolution's, at this hour (the team's
    # time zone), or the last business day within review_within if that comes first.
    hour: int = Field(default=10, ge=0, le=23)
    # The reminder: the business day before the meeting, at this hour (not sent if already past).
    reminder_hour: int = Field(default=17, ge=0, le=23)
    # Not marked done this long after its deadline: the incident closes without it, saying so.
    grace: timedelta = timedelta(days=1)

    @field_validator("grace", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if str(value).strip() in {"0", "0s", "PT0S", "none"}:
            return timedelta(0)
        return parse_duration(value)


class ChatSettings(_Strict):
    """What the chat backend is told: where each severity's incidents live and how they are marked.

    The backend itself is the worker's (CHAT_BACKEND, Slack today); these are its settings that
    travel with the incident. Before release-2026-12-01 they sat under each severity
    (`channel`, `reactions`) and under `timeouts` (`slack_*`); `Policy` still reads them there.
    """

    channels: dict[Severity, str]
    reactions: Reactions = Field(default_factory=Reactions)
    # One call (a post, an edit, a reaction) before Temporal retries it, maybe on another worker.
    call_timeout: Duration = timedelta(seconds=10)
    # Backoff ceiling between retries of a failing call; retries never stop (an outage delays).
    max_retry_interval: Duration = timedelta(seconds=30)

    @field_validator("channels", mode="before")
    @classmethod
    def _channel_keys(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {Severity.parse(k): v for k, v in value.items()}

    @field_validator("channels")
    @classmethod
    def _channel_names(cls, value: dict[Severity, str]) -> dict[Severity, str]:
        cleaned = {severity: str(name).strip().lstrip("#") for severity, name in value.items()}
        empty = [severity.value for severity, name in cleaned.items() if not name]
        if empty:
            raise ValueError(f"the channel of {', '.join(empty)} must not be empty")
        missing = [s.value for s in Severity if s not in cleaned]
        if missing:
            raise ValueError(f"no channel for {', '.join(missing)}")
        return cleaned


# Where release-2026-12-01 moved the chat settings from (old name -> new place), for the policy
# JSON in running incidents' histories and for policy files written before it.
_CHAT_TIMEOUTS = {"slack_start_to_close": "call_timeout", "slack_max_retry_interval": "max_retry_interval"}


def _chat_settings_moved(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """`raw` with per-severity `channel`/`reactions` and `timeouts.slack_*` moved into `chat`,
    and the old places that were read (empty when the policy is in the current form)."""
    severities = raw.get("severities")
    if not isinstance(severities, dict):
        return raw, []
    raw = dict(raw)
    chat = dict(raw.get("chat") or {}) if isinstance(raw.get("chat", {}), dict) else raw["chat"]
    if not isinstance(chat, dict):
        return raw, []
    moved: list[str] = []
    channels = dict(chat.get("channels") or {})
    new_severities: dict[Any, Any] = {}
    for name, entry in severities.items():
        if isinstance(entry, dict) and ("channel" in entry or "reactions" in entry):
            entry = dict(entry)
            if "channel" in entry:
                try:
                    key: Any = Severity.parse(name)
                except ValueError:
                    key = name  # the severities' own validator names it
                channels.setdefault(key, entry.pop("channel"))
                moved.append(f"severities.{name}.channel -> chat.channels.{name}")
            if "reactions" in entry:
                # One set for all severities now; they were the defaults for all of them.
                chat.setdefault("reactions", entry.pop("reactions"))
                moved.append(f"severities.{name}.reactions -> chat.reactions")
        new_severities[name] = entry
    timeouts = raw.pop("timeouts", None)
    if isinstance(timeouts, dict):
        timeouts = dict(timeouts)
        for old, new in _CHAT_TIMEOUTS.items():
            if old in timeouts:
                chat.setdefault(new, timeouts.pop(old))
                moved.append(f"timeouts.{old} -> chat.{new}")
        if timeouts:  # anything else there is unknown: let the model say so
            raw["timeouts"] = timeouts
    elif timeouts is not None:
        raw["timeouts"] = timeouts
    if not moved:
        return raw, []
    if channels:
        chat["channels"] = channels
    raw["severities"] = new_severities
    raw["chat"] = chat
    return raw, moved


class TicketSettings(_Strict):
    """What a new ticket is opened with, and in which of the worker's ticket systems."""

    # False: incidents keep no ticket at all, whatever the worker's backend (SERVICENOW_URL).
    enabled: bool = True
    # What the incident says when there is no ticket (the worker sets it when it has no backend).
    off_reason: str = "tickets are off in the incident policy"
    assignment_group: str = ""  # empty: the worker's SERVICENOW_ASSIGNMENT_GROUP (none if unset)
    category: str = "network"
    # Which ticket system: "servicenow", "jira" (the worker must have it: SERVICENOW_URL, JIRA_URL).
    # Empty: the worker's default (the first of TICKET_BACKEND). A name, never code: the workflow
    # passes it to the ticket activities and never looks at it.
    system: str = ""


class InvestigationSettings(_Strict):
    """The automated investigation of incidents that name devices."""

    plan: str = "unreachable-device"  # config/plans/<plan>.yaml
    # How long the baseline waits for a claim before the plan is given up (nobody asked for it).
    wait_for_claim: Duration = timedelta(days=7)
    # One device call (baseline, a step, verification) before Temporal retries it.
    device_timeout: Duration = timedelta(minutes=5)


_RUNBOOK_PATH = re.compile(r"^[\w.~+@-]+(?:/[\w.~+@-]+)*(?:#[\w.~+-]*)?$")


class RunbookSettings(_Strict):
    """Runbooks: which one each service's incidents link, and how fresh one must be.

    The declaration (`incident declare --runbook`, an alert's `runbook_url` annotation) wins;
    else the incident links its service's runbook from `services`. `incident runbook lint`
    reads `max_last_tested_age`.
    """

    # A runbook whose Quick Reference says it was last tested longer ago than this is a finding.
    max_last_tested_age: Duration = timedelta(days=90)
    # Where the repository's files are on the web (e.g. https://git.example.com/netops/incident/blob/main/):
    # a path in `services` becomes this plus the path, a link. Empty: the path is shown as text.
    base_url: str = ""
    # Service (as alerts and incidents name it) -> its runbook: an http(s) URL, or a path in this
    # repository such as docs/runbooks/wan-site-a-r1-unreachable.md.
    services: dict[str, str] = Field(default_factory=dict)

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        value = value.strip()
        problem = http_url_problem(value) if value else None
        if problem:
            raise ValueError(f"{value[:80]!r}: {problem}")
        return value

    @field_validator("services")
    @classmethod
    def _runbooks(cls, value: dict[str, str]) -> dict[str, str]:
        cleaned = {}
        for service, runbook in value.items():
            name, where = str(service).strip(), str(runbook).strip()
            if not name or len(name) > MAX_SERVICE:
                raise ValueError(f"service {service!r}: 1 to {MAX_SERVICE} characters")
            if "://" in where:
                problem = http_url_problem(where)
            elif not _RUNBOOK_PATH.match(where) or ".." in where.split("/"):
                problem = (
                    "neither an http(s) URL nor a path in the repository "
                    "(letters, digits, . _ - / and an optional #anchor; no .. and no leading /)"
                )
            else:
                problem = None
            if problem:
                raise ValueError(f"{name}: {where[:80]!r}: {problem}")
            cleaned[name] = where
        return cleaned

    def for_service(self, service: str) -> str:
        """The runbook of `service`: a URL (a path joined to base_url), a path, or "" (none)."""
        runbook = self.services.get(service.strip(), "") if service else ""
        if not runbook or "://" in runbook or not self.base_url:
            return runbook
        joined = self.base_url.rstrip("/") + "/" + runbook
        return joined if len(joined) <= MAX_LINK else runbook


class WarRoomSettings(_Strict):
    """Which incidents get their own channel, and what happens to it after the review."""

    # Severities whose incidents get a war room when declared (or raised to one); any incident
    # gets one on request (`/incident warroom`, `incident warroom KEY`).
    severities: list[Severity] = Field(default_factory=lambda: [Severity.P1])
    archive_after_review: bool = True  # archived when the incident completes (after its review)
    name_prefix: str = Field(default="incident-", pattern=r"^[a-z0-9_-]{1,20}$")


def _severity_or_none(value: Any) -> Any:
    if value is None or str(value).strip().lower() in ("", "none", "off", "false"):
        return None
    return Severity.parse(value)


class NoRootCause(_Strict):
    """No update saying `identified` (or later) this long after the declaration: page these too."""

    after: Duration
    targets: list[PagingTarget] = Field(min_length=1)


def _no_root_cause_defaults() -> dict[Severity, NoRootCause]:
    manager = [PagingTarget(schedule="engineering-manager")]
    return {
        Severity.P1: NoRootCause(after=timedelta(minutes=30), targets=manager),
        Severity.P2: NoRootCause(after=timedelta(hours=2), targets=manager),
    }


class TriggerSettings(_Strict):
    """The severity framework's automatic triggers (seed 001); each can be turned off or tuned."""

    # The impact doubled (an update says so, or the firing alerts, their devices or services
    # doubled since the severity was last set): one level up.
    scope_doubled: bool = True
    # Reported by customers, paying accounts affected: at least this severity (None: off).
    customer_impact: Severity | None = Severity.P2
    # Any data-integrity concern: this severity at once (None: off).
    data_integrity: Severity | None = Severity.P1
    # An alert label that says so (value true/yes/1, or anything but false/no/0/empty).
    customer_impact_label: str = "customer_impact"
    data_integrity_label: str = "data_integrity"
    # No root cause identified after ...: escalate to the next tier ({} : off).
    no_root_cause: dict[Severity, NoRootCause] = Field(default_factory=_no_root_cause_defaults)

    _severities = field_validator("customer_impact", "data_integrity", mode="before")(_severity_or_none)

    @field_validator("no_root_cause", mode="before")
    @classmethod
    def _by_severity(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {Severity.parse(k): v for k, v in value.items()}
        return value


class StakeholderSettings(_Strict):
    """Who outside the response hears of an incident, in the seed's three messages (issue 13)."""

    # Off unless the policy names severities (the seed's: [P1]) and where the updates go.
    severities: list[Severity] = Field(default_factory=list)
    channel: str = "stakeholders"  # Slack channel (the bot must be in it); "" : none
    emails: list[str] = Field(default_factory=list)  # recipients of the same, by email (SMTP_HOST)
    # The initial notification goes out this long after the declaration (or the raise to a
    # severity above) at the latest, from what the incident says, if the comms lead has not.
    initial_within: Duration = timedelta(minutes=10)

    @field_validator("emails")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        # (Imported with the module: an import here ran in the workflow sandbox at every incident's
        # policy, re-importing email_models each time: 8% of the worker's CPU in a burst, measured.)
        return [email_address(v) for v in value]


class ActionItemSettings(_Strict):
    """Action items (issue 14): their default due date, their owners' reminders, their tickets."""

    # An item added without a due date is due this long after it was added (rounded to the day).
    due_within: Duration = timedelta(days=7)
    # Past its due date, its owner is reminded by DM at business_hours.start_hour (its UTC offset)
    # on business_hours.weekdays ("business_days"), or on every day ("every_day"), until it is done.
    remind_on: Literal["business_days", "every_day"] = "business_days"
    # No more reminders this long after an item's due date (it stays open, in the ticket and the
    # incident's result); after the incident completes its follow-up workflow ends then.
    remind_for: Duration = timedelta(days=90)
    # Each item becomes a ticket of its own in the incident's tracker (tickets.system), linked to
    # the incident's ticket. False: items live only in the incident.
    file_tickets: bool = True


class AlertMapping(_Strict):
    """How an alert's labels or fields become a severity."""

    # Labels (Alertmanager/Grafana) or fields looked at, in order; the first present wins.
    severity_labels: list[str] = Field(default_factory=lambda: ["severity", "priority"])
    # Their values (any case) -> severity; P1..P4 and SEV1..SEV4 are always understood.
    severity_map: dict[str, Severity] = Field(
        default_factory=lambda: {
            "critical": Severity.P1,
            "page": Severity.P1,
            "error": Severity.P2,
            "major": Severity.P2,
            "high": Severity.P2,
            "warning": Severity.P3,
            "minor": Severity.P3,
            "medium": Severity.P3,
            "info": Severity.P4,
            "low": Severity.P4,
        }
    )
    # An alert with none of the labels gets this severity.
    default_severity: Severity = Severity.P3

    @field_validator("severity_map", mode="before")
    @classmethod
    def _lower_keys(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k).lower(): Severity.parse(v) for k, v in value.items()}
        return value

    @field_validator("default_severity", mode="before")
    @classmethod
    def _default(cls, value: Any) -> Any:
        return Severity.parse(value)

    def severity_of(self, value: str | None) -> Severity | None:
        """The severity a label value means; None when unknown."""
        if value is None or str(value).strip() == "":
            return None
        text = str(value).strip().lower()
        if text in self.severity_map:
            return self.severity_map[text]
        try:
            return Severity.parse(text)
        except ValueError:
            return None


class ReportingSettings(_Strict):
    """`incident report`: what counts as too much for one person (seed 001's health metrics)."""

    # More pages than this for one person in one week is paging fatigue: noisy alerts, fix the system.
    max_pages_per_person_week: int = Field(default=5, ge=1)


class Policy(_Strict):
    severities: dict[Severity, SeverityPolicy]
    alerts: AlertMapping = Field(default_factory=AlertMapping)
    business_hours: BusinessHours = Field(default_factory=BusinessHours)
    review: ReviewSettings = Field(default_factory=ReviewSettings)
    chat: ChatSettings
    tickets: TicketSettings = Field(default_factory=TicketSettings)
    investigation: InvestigationSettings = Field(default_factory=InvestigationSettings)
    war_room: WarRoomSettings = Field(default_factory=WarRoomSettings)
    triggers: TriggerSettings = Field(default_factory=TriggerSettings)
    stakeholders: StakeholderSettings = Field(default_factory=StakeholderSettings)
    action_items: ActionItemSettings = Field(default_factory=ActionItemSettings)
    runbooks: RunbookSettings = Field(default_factory=RunbookSettings)  # absent before runbooks
    reporting: ReportingSettings = Field(default_factory=ReportingSettings)  # read by `incident report`
    # Continue-as-new when history grows past this many events even if the
    # server has not suggested it yet (the server suggests it near 4k-10k+).
    max_history_events: int = Field(default=10_000, ge=100)

    @model_validator(mode="before")
    @classmethod
    def _chat_moved(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return _chat_settings_moved(value)[0]
        return value

    @field_validator("severities", mode="before")
    @classmethod
    def _severity_aliases(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {Severity.parse(k): v for k, v in value.items()}

    @model_validator(mode="after")
    def _all_severities(self) -> Policy:
        missing = [s.value for s in Severity if s not in self.severities]
        if missing:
            raise ValueError(f"severities {', '.join(missing)} are missing")
        return self

    def for_severity(self, severity: Severity) -> SeverityPolicy:
        return self.severities[severity]

    def channel(self, severity: Severity) -> str:
        """Where incidents of `severity` are declared."""
        return self.chat.channels[severity]

    def escalation_delay(self, severity: Severity, since: datetime) -> timedelta:
        """How long after `since` the next escalation is due."""
        value = self.severities[severity].escalate_after
        assert value is not None, "a severity without escalate_after has a paging chain instead"
        if isinstance(value, timedelta):
            return value
        return self.next_business_day_start(since) - since

    def next_business_day_start(self, since: datetime) -> datetime:
        hours = self.business_hours
        offset = timedelta(hours=hours.utc_offset_hours)
        local = since + offset
        day = local.replace(hour=hours.start_hour, minute=0, second=0, microsecond=0)
        day += timedelta(days=1)
        while day.weekday() not in hours.weekdays:
            day += timedelta(days=1)
        return day - offset


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        lines.append(f"{where}: {item['msg']}")
    return "; ".join(lines)


def load_policy(path: str | Path | None = None) -> Policy:
    """Read and validate a policy file; PolicyError names the file, field and reason."""
    import yaml  # imported here: workflow code never loads files

    file = Path(path) if path else default_policy_file()
    try:
        raw = yaml.safe_load(file.read_text())
    except FileNotFoundError:
        raise PolicyError(f"{file}: policy file not found") from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"{file}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise PolicyError(f"{file}: expected a mapping with a 'severities' key at the top")
    try:
        policy = Policy.model_validate(raw)
    except ValidationError as exc:
        raise PolicyError(f"{file}: {_describe(exc)}") from None
    moved = _chat_settings_moved(raw)[1]
    if moved:
        import logging

        logging.getLogger(__name__).warning(
            "%s: read in its pre-2026-12-01 form; move %s", file, "; ".join(moved)
        )
    return policy
