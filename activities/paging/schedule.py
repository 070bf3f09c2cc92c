"""On-call schedules: rotations in layers, restrictions, overrides, and who is on call when.

A schedule file (config/oncall.yaml, or the file named by INCIDENT_ONCALL) holds
`people` (Slack user ids with their name, email and phone) and `schedules`. A
schedule is one or more layers; a layer is a rotation of participants with a
shift length, a handoff day and time in an IANA time zone, and optionally a
restriction to some hours and weekdays. Where several layers have someone, the
later (higher) layer wins; overrides (in the overrides file, INCIDENT_ONCALL_OVERRIDES)
win over every layer. A schedule may instead follow another one at an offset
(`offset_from: network-primary`, `offset: 1`: the person whose turn is next).

Who is on call is a pure function of the resolved `Schedule` and an aware
datetime (`on_call`, `current_shift`, `shifts`); loading files is the only I/O.

Time: every rotation boundary and restriction edge is computed in the layer's
local wall time (python-dateutil's rrule over naive local datetimes) and only
then turned into an instant, so a Monday 10:00 handoff stays 10:00 local across
daylight saving changes. Wall times that do not exist or exist twice follow
RFC 5545 (section 3.3.5), as calendar apps do; see `wall_to_utc`.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil import rrule
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ONCALL_ENV = "INCIDENT_ONCALL"
OVERRIDES_ENV = "INCIDENT_ONCALL_OVERRIDES"
OVERRIDES_FILE_NAME = "oncall-overrides.yaml"

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_WEEKDAY_ALIASES = {name[:3]: i for i, name in enumerate(WEEKDAYS)} | {
    name: i for i, name in enumerate(WEEKDAYS)
}
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_LENGTH = re.compile(r"^(?:every\s+)?(\d+)?\s*(h|hours?|d|days?|w|weeks?)$")
_HOURS = re.compile(r"^\s*(\d{1,2}:\d{2})\s*-\s*(\d{1,2}:\d{2})\s*$")
# How far `current_shift` looks back and ahead for the start and end of the shift it is in.
SEARCH_LIMIT = timedelta(days=366)


def default_oncall_file() -> Path:
    """INCIDENT_ONCALL, else config/oncall.yaml of this checkout."""
    named = os.environ.get(ONCALL_ENV)
    if named:
        return Path(named)
    return Path(__file__).resolve().parent.parent.parent / "config" / "oncall.yaml"


def default_overrides_file(oncall_file: Path | None = None) -> Path:
    """INCIDENT_ONCALL_OVERRIDES, else oncall-overrides.yaml next to the schedule file."""
    named = os.environ.get(OVERRIDES_ENV)
    if named:
        return Path(named)
    return (oncall_file or default_oncall_file()).parent / OVERRIDES_FILE_NAME


class OnCallError(ValueError):
    """A schedule or overrides file that cannot be used; the message names file, field and reason."""


# ------------------------------------------------------------------ time


@functools.lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; ValueError naming it when the zone database has no such zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{name!r} is not an IANA time zone (use e.g. Europe/Berlin, America/New_York, UTC)"
        ) from None


def wall_to_utc(wall: datetime, tz: ZoneInfo) -> datetime:
    """The instant (UTC) of a naive local wall time in `tz`, with the daylight-saving rule made explicit.

    - A wall time inside a spring-forward gap does not exist; it is read with the UTC offset
      in force *before* the gap, which puts it as far after the gap's start as it was meant to be:
      a 02:30 handoff in Europe/Berlin on the last Sunday of March happens at 03:30 CEST
      (01:30 UTC). This is RFC 5545's rule, so exported calendars agree.
    - A wall time inside a fall-back overlap exists twice; the first occurrence is meant:
      02:30 on the last Sunday of October is 02:30 CEST (00:30 UTC), not 02:30 CET.
    """
    if wall.tzinfo is not None:
        raise ValueError("wall_to_utc takes a naive local time")
    first = wall.replace(tzinfo=tz, fold=0)
    instant = first.astimezone(UTC)
    if instant.astimezone(tz).replace(tzinfo=None) != wall:
        # In the gap: fold=0 already means "the offset before the transition" (PEP 495);
        # spelled out here so the rule does not hide in a library default.
        before = first.utcoffset()
        assert before is not None
        instant = (wall - before).replace(tzinfo=UTC)
    return instant


def utc_to_wall(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def _require_aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {value.isoformat()}")
    return value.astimezone(UTC)


@functools.lru_cache(maxsize=256)
def parse_clock(text: str) -> time:
    match = _CLOCK.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a time of day (use HH:MM, e.g. 09:00)")
    return time(int(match.group(1)), int(match.group(2)))


def parse_weekday(text: str) -> int:
    day = _WEEKDAY_ALIASES.get(str(text).strip().lower())
    if day is None:
        raise ValueError(f"{text!r} is not a day of the week (use monday..sunday or mon..sun)")
    return day


@functools.lru_cache(maxsize=256)
def parse_handoff(text: str) -> tuple[int | None, time]:
    """`monday 10:00` -> (0, 10:00); `09:00` -> (None, 09:00)."""
    parts = str(text).split()
    try:
        if len(parts) == 1:
            return None, parse_clock(parts[0])
        if len(parts) == 2:
            return parse_weekday(parts[0]), parse_clock(parts[1])
    except ValueError:
        pass
    raise ValueError(
        f"{text!r} is not a handoff: use a day and a time, e.g. 'monday 10:00', or a time, '09:00'"
    )


@functools.lru_cache(maxsize=256)
def parse_length(text: str) -> tuple[Literal["hours", "days", "weeks"], int]:
    """`weekly` -> (weeks, 1); `daily` -> (days, 1); `every 12 hours`, `12h` -> (hours, 12)."""
    value = str(text).strip().lower()
    named = {"hourly": ("hours", 1), "daily": ("days", 1), "weekly": ("weeks", 1)}
    if value in named:
        unit, count = named[value]
        return unit, count  # type: ignore[return-value]
    match = _LENGTH.match(value)
    if match:
        count = int(match.group(1) or 1)
        unit = {"h": "hours", "d": "days", "w": "weeks"}[match.group(2)[0]]
        if count >= 1:
            return unit, count  # type: ignore[return-value]
    raise ValueError(
        f"{text!r} is not a shift length: use daily, weekly, or every N hours/days/weeks (e.g. 'every 12 hours')"
    )


_RRULE_FREQ: dict[str, Literal[2, 3, 4]] = {"hours": rrule.HOURLY, "days": rrule.DAILY, "weeks": rrule.WEEKLY}


# ------------------------------------------------------------------ models


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Participant(_Strict):
    """A person who can be on call: their Slack user id and how paging services reach them."""

    user: str
    name: str = ""
    email: str = ""
    phone: str = ""

    @field_validator("user")
    @classmethod
    def _slack_id(cls, value: str) -> str:
        return check_user_id(value)

    @property
    def display(self) -> str:
        return self.name or self.user


class Person(_Strict):
    """An entry of the file's `people:` (its key is the Slack user id)."""

    name: str = ""
    email: str = ""
    phone: str = ""

    @field_validator("phone", mode="before")
    @classmethod
    def _phone_text(cls, value: Any) -> Any:
        if isinstance(value, int | float):
            raise ValueError(
                "write the phone number in quotes, e.g. '+49 30 1234567' (YAML reads it as a number)"
            )
        return value

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        value = value.strip()
        if value and not re.match(r"^[^@\s]+@[^@\s]+$", value):
            raise ValueError(f"{value!r} is not an email address")
        return value


def check_user_id(value: str) -> str:
    value = str(value).strip()
    if not _USER_ID.match(value):
        raise ValueError(f"{value!r} is not a Slack user id (like U0ALICE: U or W, then capitals and digits)")
    return value


class Restriction(_Strict):
    """When a layer is on: local hours on some days. `22:00-06:00` runs past midnight into the next day."""

    days: list[str] = Field(default_factory=lambda: list(WEEKDAYS))
    hours: str = "00:00-24:00"

    @field_validator("days", mode="before")
    @classmethod
    def _days(cls, value: Any) -> Any:
        if isinstance(value, str):
            word = value.strip().lower().replace("_", " ").replace("-", " ")
            if word in ("weekdays", "mon fri"):
                return list(WEEKDAYS[:5])
            if word in ("weekends", "weekend", "sat sun"):
                return list(WEEKDAYS[5:])
            if word in ("every day", "daily", "all"):
                return list(WEEKDAYS)
            value = [value]
        if not isinstance(value, list) or not value:
            raise ValueError("days: a list of weekdays, or weekdays / weekends / every day")
        return [WEEKDAYS[parse_weekday(day)] for day in value]

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str) -> str:
        start, length = _parse_hours(value)
        return f"{start:%H:%M}-{_clock_after(start, length)}"

    def window(self) -> tuple[time, timedelta]:
        """The window's local start and its wall-clock length."""
        return _parse_hours(self.hours)

    def weekday_numbers(self) -> list[int]:
        return sorted({parse_weekday(day) for day in self.days})


def _clock_after(start: time, length: timedelta) -> str:
    end = datetime.combine(date(2000, 1, 1), start) + length
    return "24:00" if end == datetime(2000, 1, 2) and start == time(0) else f"{end:%H:%M}"


@functools.lru_cache(maxsize=256)
def _parse_hours(text: str) -> tuple[time, timedelta]:
    match = _HOURS.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not an hours range (use HH:MM-HH:MM, e.g. 09:00-17:00)")
    start = parse_clock(match.group(1))
    if match.group(2) == "24:00":
        end_minutes = 24 * 60
    else:
        end = parse_clock(match.group(2))
        end_minutes = end.hour * 60 + end.minute
    start_minutes = start.hour * 60 + start.minute
    if end_minutes == start_minutes:
        raise ValueError(f"{text!r} is empty (for all day write 00:00-24:00)")
    minutes = (
        end_minutes - start_minutes if end_minutes > start_minutes else 24 * 60 - start_minutes + end_minutes
    )
    return start, timedelta(minutes=minutes)


class Layer(_Strict):
    """One rotation: participants take turns, each for `length`, handing off at `handoff` local time.

    The first shift, held by participants[offset], starts at the first handoff on or after `start`
    (its date, in the layer's zone); before that the layer covers nobody.
    """

    name: str = ""
    participants: list[str]
    length: str
    handoff: str
    start: date
    time_zone: str | None = None  # None in the file: the schedule's
    restrict: list[Restriction] = Field(default_factory=list)
    # Shift k is held by participants[(k + offset) % len(participants)]; set by `offset_from`.
    offset: int = 0

    @field_validator("participants")
    @classmethod
    def _participants(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("a layer needs at least one participant")
        return [check_user_id(user) for user in value]

    @field_validator("length")
    @classmethod
    def _length(cls, value: str) -> str:
        unit, count = parse_length(value)
        if count == 1:
            return {"hours": "hourly", "days": "daily", "weeks": "weekly"}[unit]
        return f"every {count} {unit}"

    @field_validator("handoff", mode="before")
    @classmethod
    def _handoff(cls, value: Any) -> Any:
        if isinstance(value, int):  # YAML 1.1 reads 10:00 as 600 (sexagesimal)
            return f"{value // 60:02d}:{value % 60:02d}"
        return value

    @field_validator("handoff")
    @classmethod
    def _handoff_text(cls, value: str) -> str:
        weekday, clock = parse_handoff(value)
        return f"{WEEKDAYS[weekday]} {clock:%H:%M}" if weekday is not None else f"{clock:%H:%M}"

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            zone(value)
        return value

    @field_validator("restrict", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _weekday_needs_weeks(self) -> Layer:
        unit, _ = parse_length(self.length)
        weekday, _ = parse_handoff(self.handoff)
        if weekday is not None and unit != "weeks":
            raise ValueError(
                f"handoff {self.handoff!r} names a day, which only a weekly rotation has "
                f"(length is {self.length!r}); give only the time, e.g. '{self.handoff.split()[-1]}'"
            )
        return self

    # -- computed

    def tz(self) -> ZoneInfo:
        if self.time_zone is None:
            raise ValueError(f"layer {self.name!r} has no time zone")
        return zone(self.time_zone)

    def period(self) -> timedelta:
        unit, count = parse_length(self.length)
        return timedelta(**{unit: count})

    def first_handoff(self) -> datetime:
        """Local wall time of the first handoff: on or after `start`, on the handoff's day if it names one."""
        weekday, clock = parse_handoff(self.handoff)
        day = self.start
        if weekday is not None:
            day += timedelta(days=(weekday - day.weekday()) % 7)
        return datetime.combine(day, clock)


class ScheduleConfig(_Strict):
    """A schedule as written in the file: its own layers, or another schedule's at an offset."""

    description: str = ""
    time_zone: str | None = None  # the layers' default zone, and the zone times are shown in
    layers: list[Layer] = Field(default_factory=list)
    offset_from: str | None = None
    offset: int = 0

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            zone(value)
        return value

    @model_validator(mode="after")
    def _layers_or_offset(self) -> ScheduleConfig:
        if self.offset_from is not None:
            if self.layers:
                raise ValueError("give either layers or offset_from, not both")
            if self.offset == 0:
                raise ValueError("offset_from needs a non-zero offset (1: the next person in the rotation)")
            return self
        if self.offset:
            raise ValueError("offset only means something with offset_from")
        if not self.layers:
            raise ValueError("a schedule needs at least one layer (or offset_from another schedule)")
        if self.time_zone is None and any(layer.time_zone is None for layer in self.layers):
            raise ValueError("time_zone is required (on the schedule, or on every layer)")
        return self


class Override(_Strict):
    """Someone covers a schedule from `start` to `end` (the file's `from` and `to`), over every layer."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str = ""
    schedule: str
    user: str
    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to")
    reason: str = ""
    created_by: str = ""
    created_at: datetime | None = None

    @field_validator("user")
    @classmethod
    def _user(cls, value: str) -> str:
        return check_user_id(value)

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{value.isoformat()} needs a UTC offset (e.g. +01:00 or Z)")
        return value

    @model_validator(mode="after")
    def _id_and_order(self) -> Override:
        if not self.id:
            self.id = override_id(self.schedule, self.user, self.start)
        if self.end <= self.start:
            raise ValueError(
                f"the override ends ({self.end.isoformat()}) before it starts ({self.start.isoformat()})"
            )
        return self

    def covers(self, at: datetime) -> bool:
        return self.start <= at < self.end


def override_id(schedule: str, user: str, start: datetime) -> str:
    digest = hashlib.sha1(f"{schedule}|{user}|{start.isoformat()}".encode()).hexdigest()
    return f"ov-{digest[:8]}"


class Schedule(_Strict):
    """A schedule resolved for computing: layers (bottom first), its overrides, and everyone's details.

    Self-contained and JSON-serialisable, so an activity can carry it or its answer.
    """

    name: str
    time_zone: str
    layers: list[Layer]
    overrides: list[Override] = Field(default_factory=list)
    people: dict[str, Participant] = Field(default_factory=dict)

    def participant(self, user: str) -> Participant:
        return self.people.get(user) or Participant(user=user)

    def tz(self) -> ZoneInfo:
        return zone(self.time_zone)


class Shift(_Strict):
    """`participant` is on call from `start` (inclusive) to `end` (exclusive); both UTC."""

    start: datetime
    end: datetime
    participant: Participant


class OnCallFile(_Strict):
    """config/oncall.yaml: people and schedules."""

    people: dict[str, Person] = Field(default_factory=dict)
    schedules: dict[str, ScheduleConfig]

    @field_validator("people", mode="before")
    @classmethod
    def _people(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for user in value:
                check_user_id(str(user))
            return {str(k): (v if v is not None else {}) for k, v in value.items()}
        return value

    @field_validator("schedules")
    @classmethod
    def _some(cls, value: dict[str, ScheduleConfig]) -> dict[str, ScheduleConfig]:
        if not value:
            raise ValueError("no schedules")
        return value

    @model_validator(mode="after")
    def _references(self) -> OnCallFile:
        problems = []
        for name, schedule in self.schedules.items():
            for i, layer in enumerate(schedule.layers):
                for j, user in enumerate(layer.participants):
                    if user not in self.people:
                        problems.append(
                            f"schedules.{name}.layers.{i}.participants.{j}: {user} is not under people:"
                            " (add their name, email and phone there)"
                        )
            if schedule.offset_from is None:
                continue
            followed = self.schedules.get(schedule.offset_from)
            where = f"schedules.{name}.offset_from"
            if followed is None:
                problems.append(
                    f"{where}: unknown schedule {schedule.offset_from!r} (known: {', '.join(self.schedules)})"
                )
            elif followed.offset_from is not None:
                problems.append(
                    f"{where}: {schedule.offset_from!r} itself follows {followed.offset_from!r};"
                    f" follow {followed.offset_from!r} with a larger offset instead"
                )
            else:
                for i, layer in enumerate(followed.layers):
                    if schedule.offset % len(layer.participants) == 0:
                        problems.append(
                            f"schedules.{name}.offset: {schedule.offset} with {len(layer.participants)}"
                            f" participant(s) in {schedule.offset_from}.layers.{i} is the"
                            f" {schedule.offset_from} person themselves"
                        )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def participants(self) -> set[str]:
        """Everyone who takes part in some schedule's rotation, or is listed under people."""
        users = set(self.people)
        for schedule in self.schedules.values():
            for layer in schedule.layers:
                users.update(layer.participants)
        return users

    def schedule(self, name: str, overrides: Iterable[Override] = ()) -> Schedule:
        """Schedule `name` resolved: offsets applied, zones filled in, `overrides` for it attached."""
        config = self.schedules.get(name)
        if config is None:
            raise KeyError(f"unknown schedule {name!r} (known: {', '.join(self.schedules)})")
        base, offset = config, 0
        if config.offset_from is not None:
            base, offset = self.schedules[config.offset_from], config.offset
        time_zone = config.time_zone or base.time_zone or base.layers[0].time_zone
        assert time_zone is not None  # the validators saw to it
        layers = []
        for i, layer in enumerate(base.layers):
            layers.append(
                layer.model_copy(
                    update={
                        "name": layer.name or f"layer {i + 1}",
                        "time_zone": layer.time_zone or base.time_zone,
                        "offset": layer.offset + offset,
                    }
                )
            )
        own = [o for o in overrides if o.schedule == name]
        users = {u for layer in layers for u in layer.participants} | {o.user for o in own}
        people = {u: Participant(user=u, **self.people[u].model_dump()) for u in users if u in self.people}
        return Schedule(name=name, time_zone=time_zone, layers=layers, overrides=own, people=people)


class OverridesFile(_Strict):
    overrides: list[Override] = Field(default_factory=list)

    @field_validator("overrides", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value


class OnCall(_Strict):
    """The schedule file and the overrides file, loaded and checked against each other."""

    file: OnCallFile
    overrides: list[Override] = Field(default_factory=list)
    source: str = ""
    overrides_source: str = ""

    def names(self) -> list[str]:
        return list(self.file.schedules)

    def schedule(self, name: str) -> Schedule:
        return self.file.schedule(name, self.overrides)


# ------------------------------------------------------------------ who is on call


def layer_shifts(layer: Layer, start: datetime, end: datetime) -> list[tuple[datetime, datetime, str]]:
    """The layer's coverage within [start, end): (from, to, user) in UTC, sorted, clipped to the window.

    Rotation shifts intersected with the restriction windows; nothing before the layer's first handoff.
    """
    start, end = _require_aware(start, "start"), _require_aware(end, "end")
    if end <= start:
        return []
    turns = _rotation(layer, start, end)
    if layer.restrict:
        turns = _intersect(turns, _restriction_windows(layer, start, end))
    return [(max(a, start), min(b, end), user) for a, b, user in turns if min(b, end) > max(a, start)]


def _rotation(layer: Layer, start: datetime, end: datetime) -> list[tuple[datetime, datetime, str]]:
    tz = layer.tz()
    unit, count = parse_length(layer.length)
    period = layer.period()
    anchor = layer.first_handoff()
    # rrule counts from its dtstart; start it a few shifts before the window instead of at the
    # rotation's first handoff (exact: every step is the same wall-clock period). The margin
    # covers the wall clock running up to a few hours behind or ahead of the instant at DST changes.
    behind = (utc_to_wall(start, tz) - anchor) / period
    skip = max(0, math.floor(behind) - 1 - math.ceil(timedelta(hours=3) / period))
    recurrence = rrule.rrule(_RRULE_FREQ[unit], interval=count, dtstart=anchor + skip * period)
    users = layer.participants
    result: list[tuple[datetime, datetime, str]] = []
    previous: datetime | None = None
    for k, wall in enumerate(recurrence, start=skip):
        instant = wall_to_utc(wall, tz)
        if previous is not None:
            instant = max(instant, previous)  # a shift in a DST gap can shrink to nothing, never go back
            if instant > previous and instant > start:
                result.append((previous, instant, users[(k - 1 + layer.offset) % len(users)]))
        if instant >= end:
            break
        previous = instant
    return result


def _restriction_windows(layer: Layer, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    tz = layer.tz()
    first_day = utc_to_wall(start, tz).date() - timedelta(days=2)
    last_wall = utc_to_wall(end, tz) + timedelta(days=1)
    windows: list[tuple[datetime, datetime]] = []
    for restriction in layer.restrict:
        clock, length = restriction.window()
        days = rrule.rrule(
            rrule.DAILY,
            byweekday=restriction.weekday_numbers(),
            dtstart=datetime.combine(first_day, clock),
            until=last_wall,
        )
        for wall in days:
            a, b = wall_to_utc(wall, tz), wall_to_utc(wall + length, tz)
            if b > start and a < end and b > a:
                windows.append((a, b))
    windows.sort()
    merged: list[tuple[datetime, datetime]] = []
    for a, b in windows:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _intersect(
    turns: list[tuple[datetime, datetime, str]], windows: list[tuple[datetime, datetime]]
) -> list[tuple[datetime, datetime, str]]:
    result = []
    for a, b, user in turns:
        for c, d in windows:
            lo, hi = max(a, c), min(b, d)
            if hi > lo:
                result.append((lo, hi, user))
    return result


def _segments(
    schedule: Schedule, start: datetime, end: datetime
) -> list[tuple[datetime, datetime, str | None]]:
    """[start, end) cut into maximal pieces with one person on call each (None: nobody), in order."""
    # Sources bottom to top: layers in file order, then overrides in the order they were added.
    sources: list[list[tuple[datetime, datetime, str]]] = [
        layer_shifts(lay, start, end) for lay in schedule.layers
    ]
    sources += [
        [(max(o.start.astimezone(UTC), start), min(o.end.astimezone(UTC), end), o.user)]
        for o in schedule.overrides
        if o.start < end and o.end > start
    ]
    cuts = sorted({start, end} | {t for source in sources for a, b, _ in source for t in (a, b)})
    pointers = [0] * len(sources)
    pieces: list[tuple[datetime, datetime, str | None]] = []
    for a, b in zip(cuts, cuts[1:], strict=False):
        who: str | None = None
        for i in range(len(sources) - 1, -1, -1):
            source = sources[i]
            while pointers[i] < len(source) and source[pointers[i]][1] <= a:
                pointers[i] += 1
            if pointers[i] < len(source) and source[pointers[i]][0] <= a:
                who = source[pointers[i]][2]
                break
        if pieces and pieces[-1][2] == who:
            pieces[-1] = (pieces[-1][0], b, who)
        else:
            pieces.append((a, b, who))
    return pieces


def shifts(schedule: Schedule, start: datetime, end: datetime) -> list[Shift]:
    """Who is on call within [start, end): one Shift per stretch with the same person, clipped to the window.

    Stretches with nobody on call (before a rotation starts, outside every restriction) are gaps
    between shifts. The shifts and the gaps together cover the window exactly once.
    """
    start, end = _require_aware(start, "start"), _require_aware(end, "end")
    if end <= start:
        return []
    return [
        Shift(start=a, end=b, participant=schedule.participant(who))
        for a, b, who in _segments(schedule, start, end)
        if who is not None
    ]


def current_shift(schedule: Schedule, at: datetime) -> Shift | None:
    """The shift `at` falls in, from its real start to the next handoff (None: nobody on call).

    Looks up to SEARCH_LIMIT back and ahead; a shift longer than that shows as starting or
    ending at the limit.
    """
    at = _require_aware(at, "at")
    reach = timedelta(days=8)
    while True:
        pieces = _segments(schedule, at - reach, at + reach)
        here = next(p for p in pieces if p[0] <= at < p[1])
        if here[2] is None:
            return None
        open_ended = here[0] == at - reach or here[1] == at + reach
        if not open_ended or reach >= SEARCH_LIMIT:
            return Shift(start=here[0], end=here[1], participant=schedule.participant(here[2]))
        reach = min(reach * 4, SEARCH_LIMIT)


def on_call(schedule: Schedule, at: datetime) -> list[Participant]:
    """Who is on call for `schedule` at the aware instant `at`: one person, or nobody ([])."""
    at = _require_aware(at, "at")
    pieces = _segments(schedule, at, at + timedelta(seconds=1))
    who = pieces[0][2]
    return [schedule.participant(who)] if who is not None else []


def active_override(schedule: Schedule, at: datetime) -> Override | None:
    """The override deciding who is on call at `at`, if one does (the last added wins)."""
    at = _require_aware(at, "at")
    for override in reversed(schedule.overrides):
        if override.covers(at):
            return override
    return None


# ------------------------------------------------------------------ files


def _describe(error: ValidationError, prefix: str = "") -> str:
    """`schedules.x.layers.0.handoff: 'munday 10:00' is not a handoff ...`; one clause per problem."""
    lines = []
    for item in error.errors():
        where = ".".join([prefix] * bool(prefix) + [str(p) for p in item["loc"]])
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}" if where else message)  # cross-field checks name their fields
    return "; ".join(lines)


def _read_yaml(file: Path, what: str, missing_ok: bool = False) -> Any:
    import yaml

    try:
        text = file.read_text()
    except FileNotFoundError:
        if missing_ok:
            return None
        raise OnCallError(f"{file}: {what} not found (INCIDENT_ONCALL names another)") from None
    except OSError as exc:
        raise OnCallError(f"{file}: cannot read: {exc.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise OnCallError(f"{file}: not valid YAML: {' '.join(str(exc).split())}") from None


def localize_override(raw: dict[str, Any], tz: ZoneInfo) -> dict[str, Any]:
    """An override's naive `from`/`to` read as wall time of the schedule's zone (aware ones kept)."""
    result = dict(raw)
    for key in ("from", "to", "start", "end"):
        value = result.get(key)
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.strip())
            except ValueError:
                continue  # pydantic names the field and the reason
        if isinstance(value, date) and not isinstance(value, datetime):
            value = datetime.combine(value, time(0))
        if isinstance(value, datetime) and value.tzinfo is None:
            value = wall_to_utc(value, tz)
        if value is not None:
            result[key] = value
    return result


def parse_overrides(raw: Any, file: OnCallFile, source: str) -> list[Override]:
    """Validate the overrides file's content against the schedules; OnCallError names the entry and field."""
    if raw is None:
        return []
    if not isinstance(raw, dict):
        raise OnCallError(f"{source}: expected a mapping with an 'overrides' list at the top")
    entries = raw.get("overrides") or []
    if not isinstance(entries, list):
        raise OnCallError(f"{source}: overrides: expected a list")
    known = file.participants()
    result = []
    for i, entry in enumerate(entries):
        where = f"{source}: overrides.{i}"
        if not isinstance(entry, dict):
            raise OnCallError(f"{where}: expected a mapping with schedule, user, from and to")
        name = entry.get("schedule")
        if name not in file.schedules:
            raise OnCallError(
                f"{where}.schedule: unknown schedule {name!r} (known: {', '.join(file.schedules)})"
            )
        schedule = file.schedule(str(name))
        try:
            override = Override.model_validate(localize_override(entry, schedule.tz()))
        except ValidationError as exc:
            raise OnCallError(f"{source}: {_describe(exc, f'overrides.{i}')}") from None
        if override.user not in known:
            raise OnCallError(f"{where}.user: {override.user} is not a participant of any schedule")
        result.append(override)
    return result


def load_oncall_file(path: str | Path | None = None) -> OnCallFile:
    """Read and validate a schedule file; OnCallError names the file, field and reason."""
    file = Path(path) if path else default_oncall_file()
    raw = _read_yaml(file, "on-call schedule file")
    if not isinstance(raw, dict):
        raise OnCallError(f"{file}: expected a mapping with 'people' and 'schedules' at the top")
    try:
        return OnCallFile.model_validate(raw)
    except ValidationError as exc:
        raise OnCallError(f"{file}: {_describe(exc)}") from None


def schedules_named(policy: Any) -> dict[str, str]:
    """Every schedule a policy (any pydantic model: the incident policy) names: field path -> name."""
    found: dict[str, str] = {}

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            name = value.get("schedule")
            if isinstance(name, str) and name:
                found[f"{path}.schedule"] = name
            for key, item in value.items():
                walk(item, f"{path}.{key}" if path else str(key))
        elif isinstance(value, list):
            for n, item in enumerate(value):
                walk(item, f"{path}[{n}]")

    walk(policy.model_dump(mode="json"), "")
    return found


def unknown_schedules(policy: Any, oncall: OnCallFile) -> list[str]:
    """Where a policy names a schedule the on-call file lacks, as `field.path: unknown schedule
    'x'`: the worker refuses to start on it rather than finding out at an incident's first page."""
    known = ", ".join(oncall.schedules) or "none"
    return [
        f"{path}: unknown schedule {name!r} (the on-call file has: {known})"
        for path, name in schedules_named(policy).items()
        if name not in oncall.schedules
    ]


def load_oncall(path: str | Path | None = None, overrides_path: str | Path | None = None) -> OnCall:
    """The schedule file and its overrides file (missing: no overrides), checked against each other."""
    file_path = Path(path) if path else default_oncall_file()
    oncall_file = load_oncall_file(file_path)
    overrides_file = Path(overrides_path) if overrides_path else default_overrides_file(file_path)
    raw = _read_yaml(overrides_file, "overrides file", missing_ok=True)
    overrides = parse_overrides(raw, oncall_file, str(overrides_file))
    return OnCall(
        file=oncall_file, overrides=overrides, source=str(file_path), overrides_source=str(overrides_file)
    )


def overrides_document(overrides: Sequence[Override]) -> dict[str, Any]:
    """The overrides file's content for `overrides` (times as ISO 8601 with their offset)."""
    return {
        "overrides": [
            o.model_dump(mode="json", by_alias=True, exclude_defaults=True) | {"id": o.id} for o in overrides
        ]
    }
