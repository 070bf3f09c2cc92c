"""When the post-incident review is held: a business day, at the policy's hour, in the team's zone.

Pure (no I/O but the zone database): the `schedule_review` local activity runs it, since
workflow code must not read tz files. The rules, from the policy's `review` and `business_hours`:

- deadline: the resolution plus the severity's `review_within`, counted in business time
  (the clock stops on days that are not business days: 48 h from Friday 16:00 is Tuesday 16:00);
- meeting: the first business day after the resolution's, at `review.hour`; if that is past the
  deadline, the last business day's slot before it; if none fits, the first slot anyway;
- reminder: the business day before the meeting, at `review.reminder_hour`; none when that is
  not after the resolution (the announcement went out that day);
- closes: the deadline plus `review.grace` (never before the meeting plus the grace).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

from activities.paging.schedule import utc_to_wall, wall_to_utc, zone
from workflows.review_models import ReviewSchedule, ReviewScheduleRequest


def team_zone(request: ReviewScheduleRequest) -> tuple[tzinfo, str]:
    """The team's zone and its name: the IANA zone, else the fixed UTC offset."""
    if request.timezone:
        return zone(request.timezone), request.timezone
    offset = request.utc_offset_hours
    fixed = timezone(timedelta(hours=offset))
    return fixed, "UTC" if offset == 0 else f"UTC{offset:+03d}:00"


def _to_utc(wall: datetime, tz: tzinfo) -> datetime:
    if isinstance(tz, ZoneInfo):
        return wall_to_utc(wall, tz)
    return wall.replace(tzinfo=tz).astimezone(UTC)


def _to_wall(instant: datetime, tz: tzinfo) -> datetime:
    if isinstance(tz, ZoneInfo):
        return utc_to_wall(instant, tz)
    return instant.astimezone(tz).replace(tzinfo=None)


def add_business_time(start: datetime, span: timedelta, weekdays: list[int]) -> datetime:
    """`start` (local wall time) plus `span`, not counting days that are not business days."""
    if not weekdays:
        return start + span
    cursor, left = start, span
    while True:
        midnight = datetime.combine(cursor.date() + timedelta(days=1), time())
        if cursor.weekday() in weekdays:
            if left <= midnight - cursor:
                return cursor + left
            left -= midnight - cursor
        cursor = midnight


def _business_day(day: date, weekdays: list[int], step: int) -> date:
    """The first business day from `day` (itself included) going `step` days at a time."""
    for _ in range(14):
        if not weekdays or day.weekday() in weekdays:
            return day
        day += timedelta(days=step)
    return day


def review_schedule(request: ReviewScheduleRequest) -> ReviewSchedule:
    tz, zone_name = team_zone(request)
    weekdays = request.weekdays
    resolved = request.resolved_at.astimezone(UTC)
    local = _to_wall(resolved, tz)
    deadline = _to_utc(add_business_time(local, request.review_within, weekdays), tz)

    def slot(day: date, hour: int) -> datetime:
        return _to_utc(datetime.combine(day, time(hour)), tz)

    day = _business_day(local.date() + timedelta(days=1), weekdays, 1)
    meeting = slot(day, request.hour)
    if meeting > deadline:
        earlier = _business_day(_to_wall(deadline, tz).date(), weekdays, -1)
        while earlier > local.date() and slot(earlier, request.hour) > deadline:
            earlier = _business_day(earlier - timedelta(days=1), weekdays, -1)
        if slot(earlier, request.hour) > resolved and slot(earlier, request.hour) <= deadline:
            day, meeting = earlier, slot(earlier, request.hour)
    before = _business_day(day - timedelta(days=1), weekdays, -1)
    reminder: datetime | None = slot(before, request.reminder_hour)
    if reminder is not None and not (resolved < reminder < meeting):
        reminder = None
    closes = max(deadline, meeting) + request.grace
    wall = _to_wall(meeting, tz)
    return ReviewSchedule(
        meeting_at=meeting,
        reminder_at=reminder,
        deadline=deadline,
        closes_at=closes,
        timezone=zone_name,
        meeting_local=f"{wall:%A %Y-%m-%d %H:%M} {zone_name}",
    )
