"""On-call schedules as a pure function: handoffs to the second, daylight saving in both directions,
layers, restrictions, overrides, the secondary's offset, and file errors that name the field."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from activities.paging.schedule import (
    OnCallError,
    OnCallFile,
    Override,
    Schedule,
    active_override,
    current_shift,
    layer_shifts,
    load_oncall,
    load_oncall_file,
    on_call,
    shifts,
    wall_to_utc,
)

ROOT = Path(__file__).resolve().parent.parent
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
SECOND = timedelta(seconds=1)
PEOPLE = {
    u: {"name": u.removeprefix("U0").title()} for u in ("U0ALICE", "U0BOB", "U0CAROL", "U0DAVE", "U0ERIN")
}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def local(tz: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=tz)  # type: ignore[misc]


def layer(**fields: Any) -> dict[str, Any]:
    base = {
        "participants": ["U0ALICE", "U0BOB", "U0CAROL"],
        "length": "weekly",
        "handoff": "monday 10:00",
        "start": date(2026, 1, 5),
    }
    return base | fields


def schedule(
    *layers: dict[str, Any], zone: str = "Europe/Berlin", overrides: list[Override] = ()
) -> Schedule:  # type: ignore[assignment]
    file = OnCallFile.model_validate(
        {"people": PEOPLE, "schedules": {"s": {"time_zone": zone, "layers": list(layers)}}}
    )
    return file.schedule("s", overrides)


def who(s: Schedule, at: datetime) -> str | None:
    people = on_call(s, at)
    assert len(people) <= 1
    return people[0].user if people else None


def override(user: str, start: datetime, end: datetime, name: str = "s") -> Override:
    return Override.model_validate({"schedule": name, "user": user, "from": start, "to": end})


# ------------------------------------------------------------------ handoffs


def test_weekly_handoff_happens_exactly_at_the_second():
    s = schedule(layer(time_zone="UTC"), zone="UTC")
    handoff = utc(2026, 1, 12, 10, 0)
    assert who(s, handoff - SECOND) == "U0ALICE"
    assert who(s, handoff) == "U0BOB"
    assert who(s, handoff + SECOND) == "U0BOB"
    # and round the rotation: Carol, then Alice again
    assert who(s, utc(2026, 1, 19, 10, 0)) == "U0CAROL"
    assert who(s, utc(2026, 1, 26, 10, 0)) == "U0ALICE"


def test_nobody_is_on_call_before_the_rotation_starts():
    s = schedule(layer(start=date(2026, 1, 7)))  # a Wednesday: first Monday 10:00 on/after it
    assert who(s, utc(2026, 1, 12, 8, 59, 59)) is None
    assert who(s, utc(2026, 1, 12, 9, 0)) == "U0ALICE"  # 10:00 Berlin in winter


def test_daily_rotation_hands_off_at_its_time():
    s = schedule(layer(length="daily", handoff="09:00"))
    # Berlin winter: 09:00 local = 08:00 UTC
    assert who(s, utc(2026, 1, 5, 7, 59, 59)) is None
    assert who(s, utc(2026, 1, 5, 8, 0)) == "U0ALICE"
    assert who(s, utc(2026, 1, 6, 7, 59, 59)) == "U0ALICE"
    assert who(s, utc(2026, 1, 6, 8, 0)) == "U0BOB"
    assert who(s, utc(2026, 1, 7, 8, 0)) == "U0CAROL"
    assert who(s, utc(2026, 1, 8, 8, 0)) == "U0ALICE"


def test_every_12_hours_hands_off_at_the_same_local_hours():
    s = schedule(layer(length="every 12 hours", handoff="08:00", participants=["U0ALICE", "U0BOB"]))
    got = [(sh.start, sh.participant.user) for sh in shifts(s, utc(2026, 1, 5), utc(2026, 1, 7))]
    assert got == [
        (utc(2026, 1, 5, 7), "U0ALICE"),  # 08:00 CET
        (utc(2026, 1, 5, 19), "U0BOB"),  # 20:00 CET
        (utc(2026, 1, 6, 7), "U0ALICE"),
        (utc(2026, 1, 6, 19), "U0BOB"),
    ]
    # Across spring-forward (Sunday 29 March 2026): still 08:00 and 20:00 local; the night shift is 11 h.
    march = shifts(s, utc(2026, 3, 28, 12), utc(2026, 3, 30, 12))
    assert [sh.start.astimezone(BERLIN).strftime("%d %H:%M") for sh in march[1:]] == [
        "28 20:00",
        "29 08:00",
        "29 20:00",
        "30 08:00",
    ]
    assert march[1].end - march[1].start == timedelta(hours=11)


def test_every_two_weeks_counts_from_start():
    s = schedule(layer(length="every 2 weeks", participants=["U0ALICE", "U0BOB"]), zone="UTC")
    assert who(s, utc(2026, 1, 18, 23)) == "U0ALICE"
    assert who(s, utc(2026, 1, 19, 10)) == "U0BOB"
    assert who(s, utc(2026, 2, 2, 9, 59, 59)) == "U0BOB"
    assert who(s, utc(2026, 2, 2, 10)) == "U0ALICE"


def test_current_shift_runs_from_handoff_to_next_handoff():
    s = schedule(layer(), zone="UTC")
    shift = current_shift(s, utc(2026, 1, 14, 3))
    assert shift is not None
    assert (shift.start, shift.end, shift.participant.user) == (
        utc(2026, 1, 12, 10),
        utc(2026, 1, 19, 10),
        "U0BOB",
    )
    assert shift.participant.name == "Bob"


def test_a_rotation_years_after_its_start_is_still_counted_right():
    s = schedule(layer(), zone="UTC")
    # 2030-01-07 is 209 weeks after 2026-01-05: 209 % 3 == 2 -> Carol
    assert who(s, utc(2030, 1, 7, 10, 0)) == "U0CAROL"
    assert who(s, utc(2030, 1, 7, 9, 59, 59)) == "U0BOB"


# ------------------------------------------------------------------ daylight saving


def test_berlin_monday_1000_handoff_stays_1000_local_across_spring_forward():
    s = schedule(layer())
    # Before: Monday 23 March 2026, 10:00 CET = 09:00 UTC.
    assert who(s, utc(2026, 3, 23, 8, 59, 59)) != who(s, utc(2026, 3, 23, 9, 0))
    # After the clocks go forward on Sunday 29 March: Monday 30 March, 10:00 CEST = 08:00 UTC.
    before, at = utc(2026, 3, 30, 7, 59, 59), utc(2026, 3, 30, 8, 0)
    assert who(s, before) != who(s, at)
    assert who(s, at) == who(s, utc(2026, 3, 30, 9, 0))  # 09:00 UTC is not a handoff any more
    shift = current_shift(s, at)
    assert shift is not None
    assert shift.start.astimezone(BERLIN).strftime("%a %H:%M %Z") == "Mon 10:00 CEST"
    assert shift.end.astimezone(BERLIN).strftime("%a %H:%M %Z") == "Mon 10:00 CEST"
    # The week of the change is an hour shorter, as the wall clock says it should be.
    previous = current_shift(s, before)
    assert previous is not None
    assert previous.end - previous.start == timedelta(days=7) - timedelta(hours=1)


def test_berlin_monday_1000_handoff_stays_1000_local_across_fall_back():
    s = schedule(layer())
    assert who(s, utc(2026, 10, 19, 7, 59, 59)) != who(s, utc(2026, 10, 19, 8, 0))  # 10:00 CEST
    # Clocks go back on Sunday 25 October: Monday 26 October, 10:00 CET = 09:00 UTC.
    assert who(s, utc(2026, 10, 26, 8, 59, 59)) == who(s, utc(2026, 10, 26, 8, 0))
    assert who(s, utc(2026, 10, 26, 8, 59, 59)) != who(s, utc(2026, 10, 26, 9, 0))
    shift = current_shift(s, utc(2026, 10, 26, 9, 0))
    assert shift is not None
    assert shift.start == utc(2026, 10, 26, 9, 0)
    assert shift.start.astimezone(BERLIN).strftime("%H:%M %Z") == "10:00 CET"
    longer = current_shift(s, utc(2026, 10, 25, 12))
    assert longer is not None
    assert longer.end - longer.start == timedelta(days=7, hours=1)


def test_new_york_monday_1000_handoff_follows_its_own_dst_dates():
    s = schedule(layer(), zone="America/New_York")
    # US clocks go forward on 8 March 2026 (Europe only on 29 March).
    assert who(s, utc(2026, 3, 2, 14, 59, 59)) != who(s, utc(2026, 3, 2, 15, 0))  # 10:00 EST
    assert who(s, utc(2026, 3, 9, 13, 59, 59)) != who(s, utc(2026, 3, 9, 14, 0))  # 10:00 EDT
    # ...and back on 1 November 2026.
    assert who(s, utc(2026, 10, 26, 13, 59, 59)) != who(s, utc(2026, 10, 26, 14, 0))  # EDT
    assert who(s, utc(2026, 11, 2, 14, 59, 59)) != who(s, utc(2026, 11, 2, 15, 0))  # EST
    assert who(s, utc(2026, 11, 2, 14, 0)) == who(s, utc(2026, 11, 2, 14, 59, 59))


def test_handoff_inside_the_spring_forward_gap_happens_after_it():
    """02:30 does not exist in Berlin on 29 March 2026: it is read with the winter offset, = 03:30 CEST."""
    s = schedule(layer(length="daily", handoff="02:30"))
    assert wall_to_utc(datetime(2026, 3, 29, 2, 30), BERLIN) == utc(2026, 3, 29, 1, 30)
    handoff = utc(2026, 3, 29, 1, 30)
    assert who(s, handoff - SECOND) != who(s, handoff)
    assert handoff.astimezone(BERLIN).strftime("%H:%M %Z") == "03:30 CEST"
    # The day before and after: 02:30 local as usual.
    assert who(s, utc(2026, 3, 28, 1, 29, 59)) != who(s, utc(2026, 3, 28, 1, 30))  # 02:30 CET
    assert who(s, utc(2026, 3, 30, 0, 29, 59)) != who(s, utc(2026, 3, 30, 0, 30))  # 02:30 CEST


def test_handoff_inside_the_fall_back_overlap_happens_the_first_time():
    """02:30 happens twice in Berlin on 25 October 2026: the first (CEST, 00:30 UTC) is the handoff."""
    s = schedule(layer(length="daily", handoff="02:30"))
    assert wall_to_utc(datetime(2026, 10, 25, 2, 30), BERLIN) == utc(2026, 10, 25, 0, 30)
    first = utc(2026, 10, 25, 0, 30)
    assert who(s, first - SECOND) != who(s, first)
    assert who(s, first) == who(s, utc(2026, 10, 25, 1, 30))  # the second 02:30 (CET) is not a handoff


def test_new_york_gap_and_overlap():
    assert wall_to_utc(datetime(2026, 3, 8, 2, 30), NEW_YORK) == utc(2026, 3, 8, 7, 30)  # = 03:30 EDT
    assert wall_to_utc(datetime(2026, 11, 1, 1, 30), NEW_YORK) == utc(2026, 11, 1, 5, 30)  # first: EDT
    s = schedule(layer(length="daily", handoff="01:30"), zone="America/New_York")
    assert who(s, utc(2026, 11, 1, 5, 29, 59)) != who(s, utc(2026, 11, 1, 5, 30))


def test_hourly_rotation_through_the_gap_never_has_an_empty_or_backward_shift():
    s = schedule(layer(length="hourly", handoff="00:00", participants=["U0ALICE", "U0BOB", "U0CAROL"]))
    got = shifts(s, utc(2026, 3, 28, 22), utc(2026, 3, 29, 4))
    assert all(sh.end > sh.start for sh in got)
    assert all(a.end == b.start for a, b in zip(got, got[1:], strict=False))
    # 02:00 local does not exist: its shift has no length, the rotation moves on.
    assert [sh.start.astimezone(BERLIN).strftime("%H:%M") for sh in got] == [
        "23:00",
        "00:00",
        "01:00",
        "03:00",
        "04:00",
        "05:00",
    ]


# ------------------------------------------------------------------ layers and restrictions


def business_hours_layer() -> dict[str, Any]:
    return layer(
        name="business hours",
        participants=["U0ERIN", "U0DAVE"],  # Dave in the week of 12 January
        restrict={"days": "weekdays", "hours": "09:00-17:00"},
    )


def test_restricted_layer_covers_only_weekdays_9_to_17_local():
    s = schedule(business_hours_layer())
    wednesday = local(BERLIN, 2026, 1, 14, 9, 0)
    assert who(s, wednesday - SECOND) is None
    assert who(s, wednesday) == "U0DAVE"
    assert who(s, local(BERLIN, 2026, 1, 14, 16, 59, 59)) == "U0DAVE"
    assert who(s, local(BERLIN, 2026, 1, 14, 17, 0)) is None
    assert who(s, local(BERLIN, 2026, 1, 17, 12, 0)) is None  # Saturday


def test_higher_layer_wins_where_it_covers_and_lower_shows_through_elsewhere():
    s = schedule(layer(), business_hours_layer())
    assert who(s, local(BERLIN, 2026, 1, 14, 8, 59, 59)) == "U0BOB"  # week 2 of the base rotation
    assert who(s, local(BERLIN, 2026, 1, 14, 9, 0)) == "U0DAVE"
    assert who(s, local(BERLIN, 2026, 1, 14, 17, 0)) == "U0BOB"
    assert who(s, local(BERLIN, 2026, 1, 17, 12, 0)) == "U0BOB"
    # The weekday's pieces, in order.
    day = shifts(s, local(BERLIN, 2026, 1, 14), local(BERLIN, 2026, 1, 15))
    assert [(sh.start.astimezone(BERLIN).hour, sh.participant.user) for sh in day] == [
        (0, "U0BOB"),
        (9, "U0DAVE"),
        (17, "U0BOB"),
    ]


def test_restriction_past_midnight_and_a_handoff_inside_the_window():
    night = layer(
        length="daily",
        handoff="00:00",
        participants=["U0ALICE", "U0BOB"],
        restrict={"days": ["friday"], "hours": "22:00-06:00"},
    )
    s = schedule(night)
    # Friday 16 Jan 22:00 -> Saturday 06:00, split at the midnight handoff.
    got = shifts(s, local(BERLIN, 2026, 1, 16, 12), local(BERLIN, 2026, 1, 17, 12))
    assert [(sh.start.astimezone(BERLIN).strftime("%a %H:%M"), sh.participant.user) for sh in got] == [
        ("Fri 22:00", "U0BOB"),
        ("Sat 00:00", "U0ALICE"),
    ]
    assert got[-1].end == local(BERLIN, 2026, 1, 17, 6)


def test_restriction_hours_are_local_across_dst():
    s = schedule(business_hours_layer())
    # 9:00 Berlin is 08:00 UTC in winter, 07:00 UTC in summer.
    assert who(s, utc(2026, 3, 27, 8, 0)) is not None and who(s, utc(2026, 3, 27, 7, 59)) is None
    assert who(s, utc(2026, 3, 30, 7, 0)) is not None and who(s, utc(2026, 3, 30, 6, 59)) is None


# ------------------------------------------------------------------ overrides


def test_override_wins_over_every_layer_to_the_second():
    start, end = local(BERLIN, 2026, 1, 14, 12, 0), local(BERLIN, 2026, 1, 14, 18, 0)
    s = schedule(layer(), business_hours_layer(), overrides=[override("U0ERIN", start, end)])
    assert who(s, start - SECOND) == "U0DAVE"
    assert who(s, start) == "U0ERIN"
    assert who(s, end - SECOND) == "U0ERIN"
    assert who(s, end) == "U0BOB"
    assert active_override(s, start) is not None and active_override(s, end) is None
    shift = current_shift(s, start)
    assert shift is not None and (shift.start, shift.end) == (start, end)


def test_later_override_wins_over_an_earlier_one():
    a = override("U0ERIN", utc(2026, 1, 14, 0), utc(2026, 1, 15, 0))
    b = override("U0DAVE", utc(2026, 1, 14, 6), utc(2026, 1, 14, 7))
    s = schedule(layer(), overrides=[a, b])
    assert [who(s, utc(2026, 1, 14, h)) for h in (5, 6, 7)] == ["U0ERIN", "U0DAVE", "U0ERIN"]


def test_override_by_the_person_already_on_call_is_one_shift():
    s = schedule(layer(), overrides=[override("U0BOB", utc(2026, 1, 19, 0), utc(2026, 1, 20, 0))])
    shift = current_shift(s, utc(2026, 1, 18))
    assert shift is not None
    assert (shift.start, shift.end) == (utc(2026, 1, 12, 9), utc(2026, 1, 20, 0))


def test_override_for_another_schedule_is_ignored():
    s = schedule(layer(), overrides=[override("U0ERIN", utc(2026, 1, 14), utc(2026, 1, 15), name="other")])
    assert who(s, utc(2026, 1, 14, 12)) == "U0BOB"


# ------------------------------------------------------------------ secondary


def primary_and_secondary(**secondary: Any) -> OnCallFile:
    return OnCallFile.model_validate(
        {
            "people": PEOPLE,
            "schedules": {
                "primary": {"time_zone": "Europe/Berlin", "layers": [layer()]},
                "secondary": {"offset_from": "primary", "offset": 1} | secondary,
            },
        }
    )


def test_secondary_is_the_next_person_in_the_primary_rotation():
    file = primary_and_secondary()
    primary, secondary = file.schedule("primary"), file.schedule("secondary")
    assert secondary.time_zone == "Europe/Berlin"
    for week in range(6):
        at = local(BERLIN, 2026, 1, 5, 10) + timedelta(weeks=week)
        p, s = who(primary, at), who(secondary, at)
        assert p != s
        assert who(primary, at + timedelta(weeks=1)) == s  # next week's primary
    # It hands off at the primary's handoff.
    handoff = local(BERLIN, 2026, 1, 12, 10)
    assert who(secondary, handoff - SECOND) == "U0BOB"
    assert who(secondary, handoff) == "U0CAROL"


def test_secondary_has_its_own_overrides():
    file = primary_and_secondary()
    cover = override("U0ERIN", utc(2026, 1, 6), utc(2026, 1, 7), name="secondary")
    assert who(file.schedule("primary", [cover]), utc(2026, 1, 6, 12)) == "U0ALICE"
    assert who(file.schedule("secondary", [cover]), utc(2026, 1, 6, 12)) == "U0ERIN"


def test_offset_that_names_the_primary_person_is_refused():
    with pytest.raises(ValueError, match=r"schedules.secondary.offset: 3 with 3 participant\(s\)"):
        primary_and_secondary(offset=3)


# ------------------------------------------------------------------ the default file


def test_default_file_loads_with_primary_secondary_manager_and_executive():
    oncall = load_oncall(ROOT / "config" / "oncall.yaml", ROOT / "does-not-exist.yaml")
    assert oncall.names() == [
        "network-primary",
        "network-secondary",
        "network-lead",
        "engineering-manager",
        "executive",
    ]
    at = local(BERLIN, 2026, 3, 30, 10)
    people = {name: who(oncall.schedule(name), at) for name in oncall.names()}
    assert people["network-primary"] != people["network-secondary"]
    assert all(people.values())
    assert oncall.schedule("network-primary").participant("U0ALICE").email == "alice@example.com"


def test_schedule_survives_a_trip_through_json():
    s = schedule(
        layer(), business_hours_layer(), overrides=[override("U0ERIN", utc(2026, 1, 14), utc(2026, 1, 15))]
    )
    again = Schedule.model_validate_json(s.model_dump_json())
    window = (utc(2026, 1, 1), utc(2026, 3, 1))
    assert shifts(again, *window) == shifts(s, *window)


def test_naive_instants_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        on_call(schedule(layer()), datetime(2026, 1, 14, 12))


# ------------------------------------------------------------------ file errors


def write(tmp_path: Path, content: Any, name: str = "oncall.yaml") -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False))
    return path


def good_file(**schedule_fields: Any) -> dict[str, Any]:
    sched = {"time_zone": "Europe/Berlin", "layers": [layer(start="2026-01-05")]} | schedule_fields
    return {"people": PEOPLE, "schedules": {"primary": sched}}


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        (
            good_file(time_zone="Europe/Berln"),
            ["schedules.primary.time_zone", "'Europe/Berln' is not an IANA time zone"],
        ),
        (
            good_file(layers=[layer(start="2026-01-05", time_zone="Mars/Olympus")]),
            ["schedules.primary.layers.0.time_zone", "not an IANA time zone"],
        ),
        (
            good_file(layers=[layer(start="2026-01-05", handoff="munday 10:00")]),
            ["schedules.primary.layers.0.handoff", "'munday 10:00' is not a handoff"],
        ),
        (
            good_file(layers=[layer(start="2026-01-05", handoff="monday 25:00")]),
            ["schedules.primary.layers.0.handoff", "is not a handoff"],
        ),
        (
            good_file(layers=[layer(start="2026-01-05", length="daily", handoff="monday 10:00")]),
            ["schedules.primary.layers.0", "only a weekly rotation has"],
        ),
        (
            good_file(layers=[layer(start="2026-01-05", participants=[])]),
            ["schedules.primary.layers.0.participants", "at least one participant"],
        ),
        (
            good_file(layers=[layer(start="2026-01-05", participants=["U0ALICE", "U0ZED"])]),
            ["schedules.primary.layers.0.participants.1", "U0ZED is not under people"],
        ),
        (
            good_file(layers=[layer(start="2026-01-05", participants=["alice"])]),
            ["schedules.primary.layers.0.participants", "'alice' is not a Slack user id"],
        ),
        (
            good_file(layers=[layer(start="2026-01-05", length="fortnightly")]),
            ["schedules.primary.layers.0.length", "'fortnightly' is not a shift length"],
        ),
        (
            good_file(
                layers=[layer(start="2026-01-05", restrict={"days": "weekdays", "hours": "17:00-17:00"})]
            ),
            ["schedules.primary.layers.0.restrict.0.hours", "is empty"],
        ),
        (
            good_file(layers=[layer(start="2026-01-05", rotation="weekly")]),
            ["schedules.primary.layers.0.rotation", "Extra inputs are not permitted"],
        ),
        (good_file(layers=[]), ["schedules.primary", "at least one layer"]),
        (
            {"people": PEOPLE, "schedules": {"secondary": {"offset_from": "primary", "offset": 1}}},
            ["schedules.secondary.offset_from", "unknown schedule 'primary'"],
        ),
        ({"people": {"U0ALICE": {"phone": 4930555}}, "schedules": {}}, ["people.U0ALICE.phone", "in quotes"]),
        ("schedules: [", ["not valid YAML"]),
        ("- a list", ["expected a mapping"]),
    ],
)
def test_bad_schedule_file_names_file_field_and_reason(tmp_path: Path, content: Any, needles: list[str]):
    path = write(tmp_path, content)
    with pytest.raises(OnCallError) as caught:
        load_oncall_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    for needle in needles:
        assert needle in message, message


def test_missing_schedule_file_says_so(tmp_path: Path):
    with pytest.raises(OnCallError, match="on-call schedule file not found"):
        load_oncall_file(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("entry", "needles"),
    [
        (
            {"schedule": "primary", "user": "U0BOB", "from": "2026-01-14T18:00", "to": "2026-01-14T12:00"},
            ["overrides.0", "ends (2026-01-14T11:00:00+00:00) before it starts (2026-01-14T17:00:00+00:00)"],
        ),
        (
            {"schedule": "nope", "user": "U0BOB", "from": "2026-01-14T12:00", "to": "2026-01-14T18:00"},
            ["overrides.0.schedule", "unknown schedule 'nope'"],
        ),
        (
            {"schedule": "primary", "user": "U0ZED", "from": "2026-01-14T12:00", "to": "2026-01-14T18:00"},
            ["overrides.0.user", "U0ZED is not a participant of any schedule"],
        ),
        (
            {"schedule": "primary", "user": "U0BOB", "from": "tomorrow", "to": "2026-01-14T18:00"},
            ["overrides.0.from"],
        ),
    ],
)
def test_bad_override_names_file_entry_and_reason(tmp_path: Path, entry: dict[str, Any], needles: list[str]):
    schedules = write(tmp_path, good_file())
    overrides = write(tmp_path, {"overrides": [entry]}, "oncall-overrides.yaml")
    with pytest.raises(OnCallError) as caught:
        load_oncall(schedules, overrides)
    message = str(caught.value)
    assert message.startswith(f"{overrides}: "), message
    for needle in needles:
        assert needle in message, message


def test_override_without_offset_means_the_schedules_zone(tmp_path: Path):
    schedules = write(tmp_path, good_file())
    entry = {"schedule": "primary", "user": "U0CAROL", "from": "2026-07-01T09:00", "to": "2026-07-01T17:00"}
    write(tmp_path, {"overrides": [entry]}, "oncall-overrides.yaml")  # found next to the schedule file
    oncall = load_oncall(schedules)
    (only,) = oncall.overrides
    assert only.start == utc(2026, 7, 1, 7, 0)  # 09:00 CEST
    assert who(oncall.schedule("primary"), utc(2026, 7, 1, 7, 0)) == "U0CAROL"


# ------------------------------------------------------------------ properties

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]


@st.composite
def layers(draw: st.DrawFn) -> dict[str, Any]:
    unit = draw(st.sampled_from(["hours", "days", "weeks"]))
    count = draw(st.integers(1, {"hours": 30, "days": 9, "weeks": 3}[unit]))
    clock = f"{draw(st.integers(0, 23)):02d}:{draw(st.sampled_from([0, 15, 30, 45])):02d}"
    day = draw(st.sampled_from(["monday", "wednesday", "sunday"]))
    fields: dict[str, Any] = {
        "participants": draw(st.lists(st.sampled_from(sorted(PEOPLE)), min_size=1, max_size=4)),
        "length": f"every {count} {unit}",
        "handoff": f"{day} {clock}" if unit == "weeks" else clock,
        "start": draw(st.dates(date(2025, 6, 1), date(2026, 6, 1))),
        "time_zone": draw(st.sampled_from(ZONES)),
    }
    if draw(st.booleans()):
        start = draw(st.integers(0, 23))
        fields["restrict"] = {
            "days": draw(st.sampled_from(["weekdays", "weekends", ["friday"], "every day"])),
            "hours": f"{start:02d}:00-{draw(st.integers(0, 23).filter(lambda h: h != start)):02d}:30",
        }
    return fields


instants = st.datetimes(datetime(2026, 1, 1), datetime(2027, 12, 31)).map(lambda d: d.replace(tzinfo=UTC))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stack=st.lists(layers(), min_size=1, max_size=3), begin=instants, hours=st.integers(1, 24 * 21))
def test_shifts_partition_time_and_agree_with_on_call(
    stack: list[dict[str, Any]], begin: datetime, hours: int
):
    s = schedule(*stack)
    end = begin + timedelta(hours=hours)
    got = shifts(s, begin, end)
    for shift in got:
        assert begin <= shift.start < shift.end <= end
    for a, b in zip(got, got[1:], strict=False):
        assert a.end <= b.start  # no overlap: one person at a time
        assert a.end < b.start or a.participant != b.participant  # adjacent shifts change person
    # Every instant's answer is the shift it falls in, or nobody in the gaps.
    probes = [begin, end - SECOND] + [sh.start for sh in got] + [sh.end - SECOND for sh in got]
    for at in probes:
        inside = [sh.participant.user for sh in got if sh.start <= at < sh.end]
        assert [p.user for p in on_call(s, at)] == inside


@settings(max_examples=150, deadline=None)
@given(spec=layers(), begin=instants, hours=st.integers(1, 24 * 21))
def test_an_unrestricted_layer_has_exactly_one_person_at_every_instant(
    spec: dict[str, Any], begin: datetime, hours: int
):
    spec.pop("restrict", None)
    s = schedule(spec)
    (only,) = s.layers
    tz = ZoneInfo(only.time_zone or "UTC")
    first = wall_to_utc(only.first_handoff(), tz)
    begin = max(begin, first)
    end = begin + timedelta(hours=hours)
    pieces = layer_shifts(only, begin, end)
    assert pieces[0][0] == begin and pieces[-1][1] == end
    assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:], strict=False))  # no gap, no overlap
    # Every handoff is at the handoff's local time (or just after a gap the clock skipped).
    handoff = only.first_handoff().time()
    for start, _, _ in pieces[1:]:
        wall = start.astimezone(tz)
        if only.length.endswith("hours") or only.length == "hourly":
            continue  # hourly rotations hand off at many local times
        if wall.time() != handoff:
            # only where the clock skipped the handoff's time that day
            meant = datetime.combine(wall.date(), handoff)
            assert wall_to_utc(meant, tz) == start
            assert start.astimezone(tz).replace(tzinfo=None) != meant


def test_override_times_come_back_in_utc():
    cover = override("U0ERIN", local(BERLIN, 2026, 1, 14, 12), local(BERLIN, 2026, 1, 14, 18))
    (got,) = [
        sh
        for sh in shifts(schedule(layer(), overrides=[cover]), utc(2026, 1, 14), utc(2026, 1, 15))
        if sh.participant.user == "U0ERIN"
    ]
    assert (got.start, got.end) == (utc(2026, 1, 14, 11), utc(2026, 1, 14, 17))
    assert got.start.utcoffset() == timedelta(0) and got.end.utcoffset() == timedelta(0)


def test_schedules_stay_out_of_workflow_code():
    """workflows/ never imports the paging library, and the schedules import no Temporal or workflow code."""
    import ast

    def imports(path: Path) -> set[str]:
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
        return names

    for path in (ROOT / "workflows").rglob("*.py"):
        assert not any(name.startswith("activities") for name in imports(path)), path
    for path in (ROOT / "activities" / "paging" / "schedule.py", ROOT / "activities" / "paging" / "ical.py"):
        assert not any(name.startswith(("temporalio", "workflows")) for name in imports(path)), path
