"""Runbook links: the policy's per-service runbooks, validated at load and still absent from the
policies running incidents recorded."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest

from workflows import limits
from workflows.policy import Policy, PolicyError, RunbookSettings, load_policy

from .conftest import ROOT

HISTORIES = ROOT / "tests" / "histories"
R1_RUNBOOK = "docs/runbooks/wan-site-a-r1-unreachable.md"


def recorded_policies() -> list[tuple[str, dict]]:
    """The policy each recorded incident loaded (its `load_incident_policy` local activity's result)."""
    found = []
    for path in sorted(HISTORIES.glob("*.json")):
        for event in json.loads(path.read_text())["events"]:
            marker = event.get("markerRecordedEventAttributes")
            if not marker or "result" not in marker.get("details", {}):
                continue
            detail = json.loads(base64.b64decode(marker["details"]["data"]["payloads"][0]["data"]))
            if detail.get("activity_type") == "load_incident_policy":
                result = marker["details"]["result"]["payloads"][0]["data"]
                found.append((path.name, json.loads(base64.b64decode(result))))
    return found


def test_the_default_policy_links_the_r1_runbook_and_allows_90_days(policy):
    assert policy.runbooks.max_last_tested_age == timedelta(days=90)
    assert policy.runbooks.for_service("wan-site-a") == R1_RUNBOOK
    assert policy.runbooks.for_service("no-such-service") == "" and policy.runbooks.for_service("") == ""
    assert (ROOT / R1_RUNBOOK).is_file()


def test_policies_recorded_before_runbooks_still_load_with_none():
    recorded = recorded_policies()
    assert len(recorded) >= 5
    for name, raw in recorded:
        assert "runbooks" not in raw, name
        policy = Policy.model_validate(raw)
        assert policy.runbooks == RunbookSettings(), name
        assert policy.runbooks.for_service("wan-site-a") == "", name


def test_a_path_becomes_a_link_under_base_url_and_a_url_stays_itself():
    runbooks = RunbookSettings(
        base_url="https://git.example.com/netops/incident/blob/main/",
        services={"wan-site-a": R1_RUNBOOK, "core": "https://wiki.example.com/runbooks/core#cpu"},
    )
    assert (
        runbooks.for_service("wan-site-a")
        == f"https://git.example.com/netops/incident/blob/main/{R1_RUNBOOK}"
    )
    assert runbooks.for_service(" core ") == "https://wiki.example.com/runbooks/core#cpu"
    # Through JSON, as the policy travels in an incident's history.
    again = Policy.model_validate_json(
        load_policy().model_copy(update={"runbooks": runbooks}).model_dump_json()
    )
    assert again.runbooks == runbooks


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("max_last_tested_age: 90d", "max_last_tested_age: often"), "runbooks.max_last_tested_age"),
        (('base_url: ""', "base_url: ftp://files.example.com/"), "runbooks.base_url: Value error"),
        (
            (f"wan-site-a: {R1_RUNBOOK}", "wan-site-a: ../../etc/passwd"),
            "runbooks.services: Value error, wan-site-a: '../../etc/passwd': neither an http(s) URL nor a path",
        ),
        (
            (f"wan-site-a: {R1_RUNBOOK}", "wan-site-a: javascript://alert(1)"),
            "wan-site-a: 'javascript://alert(1)': not an http(s) URL",
        ),
        (
            (f"wan-site-a: {R1_RUNBOOK}", "wan-site-a: https://wiki.example.com/" + "x" * limits.MAX_LINK),
            "characters; a URL is at most 2,000",
        ),
        (
            ("  services:\n", "  colour: red\n  services:\n"),
            "runbooks.colour: Extra inputs are not permitted",
        ),
    ],
)
def test_a_bad_runbooks_section_names_the_field_at_load(tmp_path, change, message):
    text = (ROOT / "config" / "policy.yaml").read_text()
    assert change[0] in text
    bad = tmp_path / "policy.yaml"
    bad.write_text(text.replace(change[0], change[1], 1))
    with pytest.raises(PolicyError) as err:
        load_policy(bad)
    assert message in str(err.value)
