"""`incident oncall`: who is on call, the .ics feed a calendar parses back, and overrides written to
their file (atomically) and refused with one clear line when they cannot be right."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import icalendar
import pytest
import yaml
from typer.testing import CliRunner

from starter.cli import app

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    schedules = tmp_path / "oncall.yaml"
    shutil.copy(ROOT / "config" / "oncall.yaml", schedules)
    return {"schedules": schedules, "overrides": tmp_path / "state" / "overrides.yaml", "dir": tmp_path}


def invoke(files: dict[str, Path], *args: str):
    env = {
        "INCIDENT_ONCALL": str(files["schedules"]),
        "INCIDENT_ONCALL_OVERRIDES": str(files["overrides"]),
        "INCIDENT_USER": "tester",
        "COLUMNS": "220",
    }
    return runner.invoke(app, ["oncall", *args], env=env)


def one_error(result, code: int, *needles: str) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def row(output: str, schedule: str) -> str:
    (line,) = [line for line in output.splitlines() if line.startswith(schedule + " ")]
    return line


# ------------------------------------------------------------------ who is on call


def test_who_is_on_call_for_each_schedule_in_local_time_and_utc(files):
    # Monday 30 March 2026, 10:00 Berlin: the first handoff after the clocks went forward.
    result = invoke(files, "--at", "2026-03-30T10:00")
    assert result.exit_code == 0, result.output
    assert "On call at Mon 2026-03-30 10:00 CEST (08:00 UTC)" in result.output
    primary = row(result.output, "network-primary")
    assert "Carol Weber (U0CAROL)" in primary
    assert "Mon 2026-03-30 10:00 CEST (08:00 UTC)" in primary  # since
    assert "Mon 2026-04-06 10:00 CEST (08:00 UTC)" in primary  # until the next handoff
    secondary = row(result.output, "network-secondary")
    assert "Dave Fischer (U0DAVE)" in secondary and "next in network-primary's rotation" in secondary
    assert "engineering-manager" in result.output and "executive" in result.output


def test_a_second_before_the_handoff_shows_the_previous_person(files):
    result = invoke(files, "--at", "2026-03-30T07:59:59Z", "--schedule", "network-primary")
    assert result.exit_code == 0, result.output
    primary = row(result.output, "network-primary")
    assert "Bob Meyer (U0BOB)" in primary
    assert "Mon 2026-03-23 10:00 CET (09:00 UTC)" in primary
    assert "Mon 2026-03-30 10:00 CEST (08:00 UTC)" in primary
    assert "network-secondary" not in result.output


def test_unknown_schedule_is_a_usage_error(files):
    one_error(invoke(files, "--schedule", "nope"), 2, "unknown schedule 'nope'", "network-primary")


def test_bad_time_is_a_usage_error(files):
    one_error(invoke(files, "--at", "yesterday"), 2, "--at 'yesterday' is not a time", "ISO 8601")


def test_time_without_offset_is_refused_when_schedules_disagree_on_the_zone(files):
    text = (
        files["schedules"]
        .read_text()
        .replace(
            "  executive:\n    description: Executive on call (level 4, paged at once when it gets that far)\n"
            "    time_zone: Europe/Berlin",
            "  executive:\n    time_zone: America/New_York",
        )
    )
    files["schedules"].write_text(text)
    one_error(
        invoke(files, "--at", "2026-03-30T10:00"), 2, "no UTC offset", "America/New_York, Europe/Berlin"
    )
    assert invoke(files, "--at", "2026-03-30T10:00+02:00").exit_code == 0
    assert invoke(files, "--at", "2026-03-30T10:00", "-s", "executive").exit_code == 0


def test_broken_schedule_file_names_file_and_field(files):
    files["schedules"].write_text(
        files["schedules"].read_text().replace("handoff: monday 10:00        #", "handoff: munday 10:00 #")
    )
    one_error(
        invoke(files),
        1,
        str(files["schedules"]),
        "schedules.network-primary.layers.0.handoff: 'munday 10:00' is not a handoff",
    )


# ------------------------------------------------------------------ export


def export(files, *args: str) -> icalendar.Calendar:
    out = files["dir"] / "primary.ics"
    result = invoke(files, "export", "network-primary", "--output", str(out), *args)
    assert result.exit_code == 0, result.output
    assert f"to {out}" in result.output
    return icalendar.Calendar.from_ical(out.read_bytes())


def test_export_writes_a_calendar_that_parses_back_with_one_event_per_shift(files):
    cal = export(files, "--from", "2026-03-23T12:00", "--weeks", "3")
    assert str(cal["X-WR-CALNAME"]) == "On call: network-primary"
    events = cal.walk("VEVENT")
    got = [(e.decoded("DTSTART"), e.decoded("DTEND"), str(e["SUMMARY"])) for e in events]
    assert got == [
        # The shift running at --from keeps its real start; winter, then summer time: 10:00 local both.
        (
            datetime(2026, 3, 23, 9, tzinfo=UTC),
            datetime(2026, 3, 30, 8, tzinfo=UTC),
            "On call: Bob Meyer (network-primary)",
        ),
        (
            datetime(2026, 3, 30, 8, tzinfo=UTC),
            datetime(2026, 4, 6, 8, tzinfo=UTC),
            "On call: Carol Weber (network-primary)",
        ),
        (
            datetime(2026, 4, 6, 8, tzinfo=UTC),
            datetime(2026, 4, 13, 8, tzinfo=UTC),
            "On call: Dave Fischer (network-primary)",
        ),
        # Three weeks from Monday noon end on Monday noon, inside Erin's shift: whole, to its real end.
        (
            datetime(2026, 4, 13, 8, tzinfo=UTC),
            datetime(2026, 4, 20, 8, tzinfo=UTC),
            "On call: Erin Wagner (network-primary)",
        ),
    ]
    assert all(e.decoded("DTSTART").tzinfo is not None for e in events)
    assert len({str(e["UID"]) for e in events}) == 4
    assert b"DTSTART:20260330T080000Z" in (files["dir"] / "primary.ics").read_bytes()  # UTC, no TZID needed


def test_export_uids_are_stable_from_one_export_to_the_next(files):
    def uids(cal: icalendar.Calendar) -> dict[datetime, str]:
        return {e.decoded("DTSTART"): str(e["UID"]) for e in cal.walk("VEVENT")}

    monday = uids(export(files, "--from", "2026-03-23T12:00", "--weeks", "2"))
    thursday = uids(export(files, "--from", "2026-03-26T18:00", "--weeks", "2"))
    shared = set(monday) & set(thursday)
    assert len(shared) >= 2
    assert all(monday[start] == thursday[start] for start in shared)


def test_export_to_standard_output_and_overrides_show_in_it(files):
    assert (
        invoke(
            files,
            "override",
            "network-primary",
            "--user",
            "U0ERIN",
            "--from",
            "2030-01-15T09:00",
            "--to",
            "2030-01-15T17:00",
        ).exit_code
        == 0
    )
    result = invoke(files, "export", "network-primary", "--from", "2030-01-14T12:00", "--weeks", "1")
    assert result.exit_code == 0, result.output
    cal = icalendar.Calendar.from_ical(result.output.encode())
    summaries = [str(e["SUMMARY"]) for e in cal.walk("VEVENT")]
    assert "On call: Erin Wagner (network-primary)" in summaries
    erin = next(e for e in cal.walk("VEVENT") if "Erin" in str(e["SUMMARY"]))
    assert erin.decoded("DTSTART") == datetime(2030, 1, 15, 8, tzinfo=UTC)  # 09:00 CET


def test_export_of_an_unknown_schedule_is_a_usage_error(files):
    one_error(invoke(files, "export", "nope"), 2, "unknown schedule 'nope'")


# ------------------------------------------------------------------ overrides


def test_override_is_written_atomically_and_wins(files):
    result = invoke(
        files,
        "override",
        "network-primary",
        "--user",
        "U0ERIN",
        "--from",
        "2030-01-14T12:00",
        "--to",
        "2030-01-14T18:00",
        "--reason",
        "Alice at the dentist",
    )
    assert result.exit_code == 0, result.output
    assert "Erin Wagner covers network-primary from Mon 2030-01-14 12:00 CET (11:00 UTC)" in result.output
    saved = yaml.safe_load(files["overrides"].read_text())["overrides"]
    assert len(saved) == 1
    entry = saved[0]
    assert entry["user"] == "U0ERIN" and entry["schedule"] == "network-primary"
    assert entry["from"] == "2030-01-14T12:00:00+01:00" and entry["to"] == "2030-01-14T18:00:00+01:00"
    assert entry["reason"] == "Alice at the dentist" and entry["created_by"] == "tester"
    # Nothing but the file (and its lock) in its directory: the temp file was renamed over it.
    assert sorted(p.name for p in files["overrides"].parent.iterdir()) == [
        ".overrides.yaml.lock",
        "overrides.yaml",
    ]

    during = invoke(files, "--at", "2030-01-14T12:00", "-s", "network-primary")
    line = row(during.output, "network-primary")
    assert "Erin Wagner (U0ERIN)" in line and f"override {entry['id']}: Alice at the dentist" in line
    assert "Mon 2030-01-14 18:00 CET (17:00 UTC)" in line  # until the override ends
    before = invoke(files, "--at", "2030-01-14T11:59:59", "-s", "network-primary")
    assert "Erin" not in row(before.output, "network-primary")
    after = invoke(files, "--at", "2030-01-14T18:00", "-s", "network-primary")
    assert "Erin" not in row(after.output, "network-primary")

    listed = invoke(files, "overrides")
    assert entry["id"] in listed.output and "Alice at the dentist" in listed.output
    assert entry["id"] not in invoke(files, "overrides", "engineering-manager").output

    removed = invoke(files, "override", "--remove", entry["id"])
    assert removed.exit_code == 0, removed.output
    assert yaml.safe_load(files["overrides"].read_text())["overrides"] == []
    assert "no overrides" in invoke(files, "overrides").output


def test_second_override_is_appended_and_a_repeat_refused(files):
    args = [
        "override",
        "executive",
        "--user",
        "U0HEIDI",
        "--from",
        "2030-02-01T00:00Z",
        "--to",
        "2030-02-02T00:00Z",
    ]
    assert invoke(files, *args).exit_code == 0
    assert (
        invoke(
            files,
            "override",
            "executive",
            "--user",
            "U0IVAN",
            "--from",
            "2030-03-01T00:00Z",
            "--to",
            "2030-03-02T00:00Z",
        ).exit_code
        == 0
    )
    one_error(invoke(files, *args), 2, "already has that override")
    assert len(yaml.safe_load(files["overrides"].read_text())["overrides"]) == 2


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (
            ["network-primary", "--user", "U0ZED", "--from", "2030-01-14T12:00", "--to", "2030-01-14T18:00"],
            ["--user 'U0ZED' is not a participant of any schedule"],
        ),
        (
            ["network-primary", "--user", "U0BOB", "--from", "2030-01-14T12:00", "--to", "2030-01-14T11:00"],
            ["--to Mon 2030-01-14 11:00 CET (10:00 UTC) is not after --from"],
        ),
        (
            ["network-primary", "--user", "U0BOB", "--from", "2030-01-14T12:00", "--to", "2030-01-14T12:00"],
            ["is not after --from"],
        ),
        (
            ["nope", "--user", "U0BOB", "--from", "2030-01-14T12:00", "--to", "2030-01-14T18:00"],
            ["unknown schedule 'nope'"],
        ),
        (
            ["network-primary", "--user", "U0BOB", "--from", "2020-01-14T12:00", "--to", "2020-01-14T18:00"],
            ["already be over"],
        ),
        (
            ["network-primary", "--user", "U0BOB", "--from", "noon", "--to", "2030-01-14T18:00"],
            ["--from 'noon' is not a time"],
        ),
        (["network-primary", "--user", "U0BOB"], ["missing --from, --to"]),
        (["--remove", "ov-1", "--user", "U0BOB"], ["--remove ID takes no"]),
    ],
)
def test_bad_override_is_refused_with_the_reason_and_nothing_written(
    files, args: list[str], needles: list[str]
):
    one_error(invoke(files, "override", *args), 2, *needles)
    assert not files["overrides"].exists()


def test_removing_an_unknown_override_fails(files):
    one_error(invoke(files, "override", "--remove", "ov-nothere"), 1, "no override 'ov-nothere'")


def test_broken_overrides_file_is_reported_not_overwritten(files):
    files["overrides"].parent.mkdir(parents=True)
    files["overrides"].write_text("overrides:\n- {schedule: network-primary, user: U0BOB, from: x, to: y}\n")
    one_error(
        invoke(
            files,
            "override",
            "network-primary",
            "--user",
            "U0BOB",
            "--from",
            "2030-01-14T12:00",
            "--to",
            "2030-01-14T18:00",
        ),
        1,
        str(files["overrides"]),
        "overrides.0.from",
    )
    assert "from: x" in files["overrides"].read_text()


def test_help_says_what_time_means(files):
    result = invoke(files, "override", "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "ISO 8601" in text and "the schedule's time zone" in text and "INCIDENT_ONCALL_OVERRIDES" in text
