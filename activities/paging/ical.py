"""An iCalendar (RFC 5545) feed of a schedule's shifts, for calendar apps to subscribe to.

One VEVENT per shift, times in UTC (so no calendar app has to agree with us about
time zones), and a UID made of the schedule, the person and the shift's start:
exporting again gives the same UID to a shift that did not change, so a
subscribed calendar updates in place instead of duplicating.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from icalendar import Calendar, Event, vDuration

from .schedule import Schedule, Shift, current_shift, shifts

PRODID = "-//durable-incident//on-call schedules//EN"
UID_DOMAIN = "oncall.durable-incident"
REFRESH = timedelta(hours=1)


def shift_uid(schedule: str, shift: Shift) -> str:
    """Stable across exports: the same schedule, person and start give the same UID."""
    key = f"{schedule}|{shift.participant.user}|{shift.start.astimezone(UTC).isoformat()}"
    return f"{hashlib.sha1(key.encode()).hexdigest()[:24]}@{UID_DOMAIN}"


def whole_shifts(schedule: Schedule, start: datetime, end: datetime) -> list[Shift]:
    """The shifts overlapping [start, end), the first and last extended to their real start and end.

    So the shift already running at `start` keeps its real start (and its UID) from one export to the next.
    """
    found = shifts(schedule, start, end)
    if not found:
        return found
    if found[0].start == start.astimezone(UTC):
        real = current_shift(schedule, start)
        if real is not None:
            found[0] = found[0].model_copy(update={"start": real.start})
    if found[-1].end == end.astimezone(UTC):
        real = current_shift(schedule, end - timedelta(microseconds=1))
        if real is not None:
            found[-1] = found[-1].model_copy(update={"end": real.end})
    return found


def calendar(schedule: Schedule, start: datetime, end: datetime, now: datetime | None = None) -> Calendar:
    """The feed of `schedule`'s shifts overlapping [start, end); `now` is each event's DTSTAMP."""
    stamp = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", f"On call: {schedule.name}")
    cal.add("x-wr-caldesc", f"Shifts of the on-call schedule {schedule.name} (times in {schedule.time_zone})")
    cal.add("x-wr-timezone", schedule.time_zone)
    # How often subscribers should fetch it again (Apple's and Google's spellings of the same thing).
    cal.add("refresh-interval", vDuration(REFRESH), parameters={"VALUE": "DURATION"})
    cal.add("x-published-ttl", vDuration(REFRESH))
    for shift in whole_shifts(schedule, start, end):
        who = shift.participant
        event = Event()
        event.add("uid", shift_uid(schedule.name, shift))
        event.add("dtstamp", stamp)
        event.add("dtstart", shift.start.astimezone(UTC))
        event.add("dtend", shift.end.astimezone(UTC))
        event.add("summary", f"On call: {who.display} ({schedule.name})")
        contact = ", ".join(part for part in (f"Slack {who.user}", who.email) if part)
        event.add("description", f"{who.display} is on call for {schedule.name} ({contact}).")
        event.add("transp", "TRANSPARENT")  # being on call does not make anyone busy
        cal.add_component(event)
    return cal


def export_ics(schedule: Schedule, start: datetime, end: datetime, now: datetime | None = None) -> bytes:
    return calendar(schedule, start, end, now).to_ical()
