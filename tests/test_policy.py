"""The severity policy: defaults from the usual table, aliases, and bad files named precisely."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from workflows.models import Severity
from workflows.policy import Policy, PolicyError, default_policy_file, load_policy

from .conftest import ROOT


def test_default_policy_is_the_usual_severity_table(policy):
    """P1-P3 escalate through their paging chains (test_paging_chain checks the chains), P4 by mention."""
    expected = {
        "P1": (timedelta(minutes=15), timedelta(hours=48)),
        "P2": (timedelta(minutes=30), timedelta(weeks=1)),
        "P3": (timedelta(hours=2), timedelta(weeks=2)),
    }
    for name, (update_every, review_within) in expected.items():
        sev = policy.for_severity(Severity(name))
        assert (sev.update_every, sev.review_within) == (update_every, review_within)
        assert sev.paging is not None and sev.paging.levels, name
        assert (sev.escalate_after, sev.escalation_tiers) == (None, []), name
    p4 = policy.for_severity(Severity.P4)
    assert (p4.update_every, p4.escalate_after, p4.review_within, p4.paging) == (
        timedelta(days=1),
        "next_business_day",
        None,
        None,
    )
    assert p4.escalation_tiers == [["@network-queue"]]
    assert policy.channel(Severity.P1) == "incidents"
    assert policy.chat.reactions.declared == "rotating_light"


def test_legacy_policy_is_the_default_with_mentions_instead_of_chains(policy, legacy_policy):
    """config/policy-legacy.yaml, which the README offers to keep the escalation by thread mentions:
    the default from before the chains, and otherwise the default of today."""
    expected = {
        "P1": (timedelta(minutes=15), ["@oncall-primary", "@oncall-secondary"], 4),
        "P2": (timedelta(minutes=30), ["@oncall-primary", "@oncall-secondary"], 3),
        "P3": (timedelta(hours=4), ["@oncall-primary"], 2),
        "P4": ("next_business_day", ["@network-queue"], 1),
    }
    for name, (escalate_after, first_tier, tiers) in expected.items():
        sev = legacy_policy.for_severity(Severity(name))
        assert sev.paging is None, name
        assert (sev.escalate_after, sev.escalation_tiers[0], len(sev.escalation_tiers)) == (
            escalate_after,
            first_tier,
            tiers,
        ), name
    escalation = {"paging", "escalate_after", "escalation_tiers"}
    for severity in Severity:
        legacy = legacy_policy.for_severity(severity).model_dump(exclude=escalation | {"notify"})
        assert legacy == policy.for_severity(severity).model_dump(exclude=escalation | {"notify"})
    # P3's notify list mentions the on-call primary, whom the default's P3 chain pages instead.
    assert legacy_policy.for_severity(Severity.P3).notify == ["@oncall-primary"]
    assert policy.for_severity(Severity.P3).notify == []
    assert legacy_policy.model_dump(exclude={"severities"}) == policy.model_dump(exclude={"severities"})


def test_policy_from_before_the_chat_section_is_read_into_it(tmp_path, caplog):
    """Running incidents carry the policy they were declared with (per-severity `channel` and
    `reactions`, `timeouts.slack_*`): it still parses, into `chat`. An old file is read the same,
    with a warning naming what moved where."""
    current = load_policy()
    old = current.model_dump(mode="json", exclude={"chat"})
    for severity, entry in old["severities"].items():
        entry["channel"] = current.chat.channels[Severity(severity)]
        entry["reactions"] = {**current.chat.reactions.model_dump(), "declared": "fire"}
    old["timeouts"] = {"slack_start_to_close": "PT7S", "slack_max_retry_interval": "PT45S"}
    migrated = Policy.model_validate(old)
    assert migrated.chat.channels == current.chat.channels
    assert migrated.chat.reactions.declared == "fire"
    assert (migrated.chat.call_timeout, migrated.chat.max_retry_interval) == (
        timedelta(seconds=7),
        timedelta(seconds=45),
    )
    assert migrated.model_dump(exclude={"chat"}) == current.model_dump(exclude={"chat"})

    file = tmp_path / "old-policy.yaml"
    file.write_text(yaml.safe_dump(old))
    with caplog.at_level("WARNING"):
        assert load_policy(file) == migrated
    assert "severities.P1.channel -> chat.channels.P1" in caplog.text
    assert "timeouts.slack_start_to_close -> chat.call_timeout" in caplog.text


def test_a_policy_without_channels_says_so(tmp_path):
    file = tmp_path / "policy.yaml"
    raw = yaml.safe_load(default_policy_file().read_text())
    del raw["chat"]["channels"]["P3"]
    file.write_text(yaml.safe_dump(raw))
    with pytest.raises(PolicyError, match="chat.channels: Value error, no channel for P3"):
        load_policy(file)


@pytest.mark.parametrize(
    ("text", "expected"), [("SEV1", "P1"), ("sev2", "P2"), ("p3", "P3"), ("4", "P4"), ("S1", "P1")]
)
def test_sev_aliases(text, expected):
    assert Severity.parse(text).value == expected


def test_unknown_severity_names_the_choices():
    with pytest.raises(ValueError, match="unknown severity 'P9': use P1, P2, P3 or P4"):
        Severity.parse("P9")


def test_next_business_day_skips_the_weekend(policy):
    friday_evening = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
    assert policy.next_business_day_start(friday_evening) == datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    assert policy.escalation_delay(Severity.P4, friday_evening) == timedelta(days=2, hours=15)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("update_every: 15m        #", "update_every: soon        #"),
            "severities.P1.update_every: Value error, 'soon' is not a duration",
        ),
        (
            ("P4: netclaw-general", "P4: ''"),
            "chat.channels: Value error, the channel of P4 must not be empty",
        ),
        (("  P4:\n", "  P5:\n"), "severities: Value error, unknown severity 'P5'"),
        (
            ("    escalate_after: next_business_day", "    escalate_after: -5m"),
            "severities.P4.escalate_after",
        ),
        (
            ("network-primary}], escalate_after: 15m}", "network-primary}], escalate_after: -5m}"),
            "severities.P2.paging.levels.0.escalate_after: Value error, '-5m' is not a duration",
        ),
        (
            ("    review_within: 48h", "    review_within: 48h\n    colour: red"),
            "severities.P1.colour: Extra inputs are not permitted",
        ),
    ],
)
def test_bad_policy_file_names_file_field_and_reason(tmp_path, change, message):
    text = (ROOT / "config" / "policy.yaml").read_text()
    assert change[0] in text
    bad = tmp_path / "policy.yaml"
    bad.write_text(text.replace(change[0], change[1], 1))
    with pytest.raises(PolicyError) as err:
        load_policy(bad)
    assert str(err.value).startswith(f"{bad}: ")
    assert message in str(err.value)


def test_missing_and_unparseable_policy_files(tmp_path):
    with pytest.raises(PolicyError, match="policy file not found"):
        load_policy(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("severities: [unclosed")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(broken)


def test_worker_refuses_to_start_on_a_bad_policy(tmp_path):
    bad = tmp_path / "policy.yaml"
    bad.write_text("severities:\n  P1: {update_every: 15m}\n")
    result = subprocess.run(
        [sys.executable, "-m", "worker"],
        cwd=ROOT,
        env={**os.environ, "INCIDENT_POLICY": str(bad), "TEMPORAL_ADDRESS": "127.0.0.1:1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"worker: bad policy: {bad}: " in result.stderr
    assert (
        "severities.P1: Value error, either paging (an escalation chain) or escalate_after is required"
        in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_worker_refuses_to_start_on_a_schedule_the_oncall_file_lacks(tmp_path):
    policy = yaml.safe_load((ROOT / "config" / "policy.yaml").read_text())
    policy["severities"]["P2"]["paging"]["levels"][1]["targets"] = [{"schedule": "network-secondry"}]
    bad = tmp_path / "policy.yaml"
    bad.write_text(yaml.safe_dump(policy))
    result = subprocess.run(
        [sys.executable, "-m", "worker"],
        cwd=ROOT,
        env={**os.environ, "INCIDENT_POLICY": str(bad), "TEMPORAL_ADDRESS": "127.0.0.1:1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert (
        f"worker: bad policy: {bad}: severities.P2.paging.levels[1].targets[0].schedule: "
        "unknown schedule 'network-secondry' (the on-call file has: network-primary" in result.stderr
    )
    assert "Traceback" not in result.stderr
