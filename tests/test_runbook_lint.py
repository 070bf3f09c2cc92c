"""`incident runbook lint` through the real CLI: the shipped R1 runbook passes, and each defect of a
runbook is found on its line with its code; --json, directories, and a path that is not there."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from starter.cli import app
from starter.runbook_lint import CODES, github_slug, parse_tested_date

from .conftest import ROOT

INCIDENT = Path(sys.executable).parent / "incident"
runner = CliRunner()
R1_RUNBOOK = ROOT / "docs" / "runbooks" / "wan-site-a-r1-unreachable.md"
GOOD = R1_RUNBOOK.read_text()
# The R1 runbook was last tested 2026-12-01: lint as of a fixed day, so the tests do not age.
AS_OF = ["--as-of", "2026-12-15"]


def lint(*args: str, **env: str):
    return runner.invoke(app, ["runbook", "lint", *args], env=env)


def line_of(text: str, needle: str) -> int:
    """The 1-based line of the first line of `text` holding `needle`."""
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def runbook(tmp_path: Path, text: str, name: str = "runbook.md") -> Path:
    """`text` as a runbook beside copies of the files the R1 runbook links (../../config/...)."""
    folder = tmp_path / "docs" / "runbooks"
    folder.mkdir(parents=True, exist_ok=True)
    for linked in ("testbed.yaml", "oncall.yaml", "policy.yaml", "plans/unreachable-device.yaml"):
        target = tmp_path / "config" / linked
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("# copy\n")
    path = folder / name
    path.write_text(text)
    return path


def with_line(text: str, starts: str, new: str) -> str:
    """`text` with its line starting with `starts` replaced by `new`."""
    return re.sub(rf"^{re.escape(starts)}.*$", new, text, count=1, flags=re.MULTILINE)


def findings(result) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.strip()]


def test_the_shipped_r1_runbook_passes_with_exit_0():
    result = lint(str(R1_RUNBOOK), *AS_OF)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "1 runbook(s), no findings" in result.output


def test_the_shipped_r1_runbook_follows_the_seeds_template():
    headings = [line for line in GOOD.splitlines() if line.startswith("#")]
    assert headings[0].startswith("# Runbook: ")
    for section in ("## Quick Reference", "## Detection", "## Diagnosis", "## Remediation", "## Escalation"):
        assert section in headings
    for field in ("Service", "Owner Team", "On-Call", "Dashboards", "Last Tested"):
        assert f"- **{field}**: " in GOOD
    # The R1 scenario of the Slack incident workflow seed: its symptoms, steps and verification.
    for fact in ("ping 10.1.1.1", "47 routes", "3/3 FULL", "show ip ospf neighbor", "about 200 users"):
        assert fact in GOOD


# (what is done to the good runbook, its code, the line it is found on (a needle in it, or a function
# of the text; None: line 1), words of its message)
DEFECTS = [
    pytest.param(
        lambda t: t.replace("## Detection", "## Signals"),
        "RB001",
        None,
        "missing section: Detection",
        id="no-detection",
    ),
    pytest.param(
        lambda t: t.replace("## Escalation", "## Contacts").replace("(#escalation)", "(#contacts)"),
        "RB001",
        None,
        "missing section: Escalation",
        id="no-escalation",
    ),
    *[
        pytest.param(
            lambda t, f=field: (
                "\n".join(line for line in t.splitlines() if not line.startswith(f"- **{f}**")) + "\n"
            ),
            "RB002",
            "## Quick Reference",
            f"Quick Reference has no {field}",
            id=f"no-{field.lower().replace(' ', '-')}",
        )
        for field in ("Service", "Owner Team", "On-Call", "Dashboards", "Last Tested")
    ],
    pytest.param(
        lambda t: with_line(t, "- **Owner Team**", "- **Owner Team**: [team name, Slack channel]"),
        "RB002",
        "- **Owner Team**",
        "Owner Team is still the placeholder [team name, Slack channel]",
        id="placeholder-owner",
    ),
    pytest.param(
        lambda t: t.replace("```text\n   R2# ping", "```\n   R2# ping", 1),
        "RB003",
        lambda t: line_of(t, "R2# ping 10.1.1.1") - 1,  # the fence's first line
        "code block without a language",
        id="fence-without-language",
    ),
    pytest.param(
        lambda t: t.replace("../../config/oncall.yaml", "../../config/on-call.yaml"),
        "RB004",
        "- **On-Call**",
        "link target not found: ../../config/on-call.yaml",
        id="local-link-not-found",
    ),
    pytest.param(
        lambda t: t.replace("(#escalation)", "(#escalation-path)"),
        "RB005",
        "(#escalation-path)",
        "anchor #escalation-path is no heading of this file",
        id="anchor-not-found",
    ),
    pytest.param(
        lambda t: t.replace("- **Last Tested**: 2026-12-01", "- **Last Tested**: 2026-08-01"),
        "RB006",
        "- **Last Tested**",
        "Last Tested 2026-08-01 is 136 days ago; at most 90 days allowed (runbooks.max_last_tested_age)",
        id="last-tested-too-old",
    ),
    pytest.param(
        lambda t: t.replace("- **Last Tested**: 2026-12-01", "- **Last Tested**: last spring's game day"),
        "RB007",
        "- **Last Tested**",
        "is not a date: write it as YYYY-MM-DD",
        id="last-tested-not-a-date",
    ),
    pytest.param(
        lambda t: t.replace("- **Last Tested**: 2026-12-01", "- **Last Tested**: 2027-03-01"),
        "RB007",
        "- **Last Tested**",
        "Last Tested 2027-03-01 is in the future",
        id="last-tested-in-the-future",
    ),
    pytest.param(
        lambda t: t.replace(
            "# Runbook: WAN Site A — R1 unreachable (WAN outage)",
            "# Runbook: [Service/Failure Scenario Name]",
        ),
        "RB008",
        "# Runbook:",
        "still needs the runbook's name",
        id="title-placeholder",
    ),
    pytest.param(
        lambda t: t.split("## Escalation\n")[0] + "## Escalation\n",
        "RB009",
        "## Escalation",
        "section 'Escalation' is empty",
        id="empty-escalation",
    ),
]


@pytest.mark.parametrize(("defect", "code", "where", "words"), DEFECTS)
def test_each_defect_is_one_finding_on_its_line_and_exit_1(tmp_path, defect, code, where, words):
    text = defect(GOOD)
    path = runbook(tmp_path, text)
    result = lint(str(path), *AS_OF)
    assert result.exit_code == 1, result.output
    line = where(text) if callable(where) else line_of(text, where) if where else 1
    [finding] = findings(result)
    assert finding.startswith(f"{path}:{line}: {code} "), finding
    assert words in finding, finding
    assert "Traceback" not in result.output


def test_a_runbook_with_every_defect_gets_each_finding_in_order(tmp_path):
    text = """\
# Runbook: [Service/Failure Scenario Name]

## Quick Reference
- **Service**: [service name and repo link]
- **Owner Team**: NetOps
- **Dashboards**:
- **Last Tested**: 2026-01-02

## Detection

## Diagnosis
1. See [the plan](plans/missing.md), [a heading](#no-such-heading) and [this](#quick-reference).

```
ping 10.1.1.1
```

## Mitigation

```bash
# ## Escalation  <- in a code block: not a heading
```

```sh
echo ok
```

More [here](other.md#nothing) and [there](other.md#known-heading).
"""
    path = runbook(tmp_path, text)
    (path.parent / "other.md").write_text("# Other\n\n## Known heading\n")
    result = lint(str(path), *AS_OF)
    assert result.exit_code == 1
    p = str(path)
    assert findings(result) == [
        f"{p}:1: RB001 missing section: Escalation (a heading such as `## Escalation` or `## Escalation Path`)",
        f"{p}:1: RB008 title 'Runbook: [Service/Failure Scenario Name]' still needs the runbook's name",
        f"{p}:3: RB002 Quick Reference has no On-Call (`- **On-Call**: ...`)",
        f"{p}:4: RB002 Quick Reference Service is still the placeholder [service name and repo link]",
        f"{p}:6: RB002 Quick Reference Dashboards is empty",
        f"{p}:7: RB006 Last Tested 2026-01-02 is 347 days ago; at most 90 days allowed "
        "(runbooks.max_last_tested_age): run a drill and update it",
        f"{p}:9: RB009 section 'Detection' is empty",
        f"{p}:12: RB004 link target not found: plans/missing.md",
        f"{p}:12: RB005 anchor #no-such-heading is no heading of this file",
        f"{p}:14: RB003 code block without a language (```bash, ```text, ...)",
        f"{p}:28: RB005 anchor #nothing is no heading of other.md",
    ]
    assert "11 finding(s) in 1 of 1 runbook(s)" in result.output


def test_json_lists_path_line_code_and_message(tmp_path):
    path = runbook(tmp_path, GOOD.replace("```text\n   R2# ping", "```\n   R2# ping", 1))
    result = lint("--json", str(path), *AS_OF)
    assert result.exit_code == 1
    assert json.loads(result.stdout) == [
        {
            "path": str(path),
            "line": line_of(GOOD, "R2# ping 10.1.1.1") - 1,
            "code": "RB003",
            "message": "code block without a language (```bash, ```text, ...)",
        }
    ]
    clean = lint("--json", str(R1_RUNBOOK), *AS_OF)
    assert clean.exit_code == 0 and json.loads(clean.stdout) == []


def test_a_directory_is_searched_for_markdown_and_hidden_directories_are_skipped(tmp_path):
    good = runbook(tmp_path, GOOD, "good.md")
    bad = runbook(tmp_path, GOOD.replace("## Remediation", "## Next steps"), "bad.md")
    hidden = tmp_path / "docs" / "runbooks" / ".drafts"
    hidden.mkdir()
    (hidden / "draft.md").write_text("nothing\n")
    (tmp_path / "docs" / "runbooks" / "notes.txt").write_text("not markdown\n")
    result = lint(str(tmp_path / "docs"), *AS_OF)
    assert result.exit_code == 1
    assert findings(result) == [
        f"{bad}:1: RB001 missing section: Remediation (a heading such as `## Remediation`)"
    ]
    assert "1 finding(s) in 1 of 2 runbook(s)" in result.output
    both = lint(str(good), str(tmp_path / "docs"), *AS_OF)  # a file named twice is linted once
    assert len(findings(both)) == 1


def test_a_path_that_is_not_there_is_exit_2_and_one_line_naming_it(tmp_path):
    result = lint(str(R1_RUNBOOK), str(tmp_path / "nope.md"), *AS_OF)
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [f"error: no such file or directory: {tmp_path / 'nope.md'}"]
    bad_day = lint(str(R1_RUNBOOK), "--as-of", "yesterday")
    assert bad_day.exit_code == 2 and "--as-of 'yesterday' is not a day" in bad_day.output
    bad_age = lint(str(R1_RUNBOOK), "--max-age", "soon")
    assert bad_age.exit_code == 2 and "--max-age: 'soon' is not a duration" in bad_age.output


def test_max_age_comes_from_the_policy_or_the_option(tmp_path):
    policy = (
        (ROOT / "config" / "policy.yaml")
        .read_text()
        .replace("max_last_tested_age: 90d", "max_last_tested_age: 1w")
    )
    assert "max_last_tested_age: 1w" in policy
    (tmp_path / "policy.yaml").write_text(policy)
    strict = lint(str(R1_RUNBOOK), *AS_OF, INCIDENT_POLICY=str(tmp_path / "policy.yaml"))
    assert strict.exit_code == 1
    assert (
        "RB006 Last Tested 2026-12-01 is 14 days ago; at most 7 days allowed (runbooks.max_last_tested_age)"
        in (strict.stdout)
    )
    option = lint(str(R1_RUNBOOK), *AS_OF, "--max-age", "10d", INCIDENT_POLICY=str(tmp_path / "policy.yaml"))
    assert "at most 10 days allowed (--max-age)" in option.stdout
    lenient = lint(str(R1_RUNBOOK), *AS_OF, "--max-age", "2w")
    assert lenient.exit_code == 0


def test_headings_and_fields_are_matched_as_people_write_them(tmp_path):
    text = """\
---
owner: netops
---
# Runbook: Core switch CPU

## 1. Quick reference

| Field | Value |
|---|---|
| Service name | core |
| Owner | [NetOps](https://example.com/netops) |
| On call | `network-primary` |
| Dashboard | <https://grafana.example.com/d/core> |
| Last tested | 18 Nov 2026 (game day) |

## Detection & Alerts
CPU over 90%.

## Diagnostics
Look.

### Indented code is still code

    show processes cpu

## Mitigation
Reload.

## Escalation Path
Call the lead.
"""
    path = runbook(tmp_path, text)
    result = lint(str(path), *AS_OF)
    assert findings(result) == [
        f"{path}:24: RB003 indented code block has no language: fence it (```bash, ```text, ...)"
    ]


def test_the_console_script_exits_0_1_and_2(tmp_path):
    bad = runbook(tmp_path, GOOD.replace("## Diagnosis", "## Notes"))
    for args, code in (([str(R1_RUNBOOK)], 0), ([str(bad)], 1), ([str(tmp_path / "missing")], 2)):
        done = subprocess.run(
            [str(INCIDENT), "runbook", "lint", *args, *AS_OF], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == code, done.stdout + done.stderr
        assert "Traceback" not in done.stderr
    assert done.stderr.strip() == f"error: no such file or directory: {tmp_path / 'missing'}"


def test_codes_dates_and_slugs():
    assert sorted(CODES) == [f"RB00{n}" for n in range(10)]
    assert parse_tested_date("2026-11-18 (game day)").isoformat() == "2026-11-18"
    assert parse_tested_date("November 18, 2026").isoformat() == "2026-11-18"
    assert parse_tested_date("2026-02-30") is None and parse_tested_date("Q3") is None
    assert github_slug("Option A: Rollback (preferred)") == "option-a-rollback-preferred"
