"""The stakeholder messages: the seed's three formats, for a Slack channel and for email.

Each is rendered from its template (activities/templates/slack/stakeholder_*.md.j2,
activities/templates/email/stakeholder_*) and read as a stakeholder would: the seed's headings,
in the seed's order, with the incident's words in them and nothing those words can do (no
Slack broadcast or mention, no extra email header).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from email import policy as email_policy
from email.parser import BytesParser

import pytest
from pydantic import ValidationError
from temporalio.contrib.pydantic import pydantic_data_converter

from activities.email.message import build_message
from activities.rendering import render
from activities.stakeholder import stakeholder_email, stakeholder_slack_text
from workflows.email_models import EmailToSend
from workflows.models import IncidentState, Severity, SlackPost, UpdateStatus
from workflows.stakeholder_models import (
    StakeholderInitial,
    StakeholderResolution,
    StakeholderStatus,
    StakeholderStatusUpdate,
)

INITIAL = StakeholderInitial(
    incident_key="r1-outage",
    severity=Severity.P1,
    service="wan-site-a",
    impact_brief="Site A has no WAN connectivity",
    impact="100% of users at Site A are experiencing no connectivity (ping 0%)",
    next_update_minutes=15,
    link="https://acme.slack.com/archives/C0INC/p1733063520",
)
UPDATE = StakeholderStatusUpdate(
    incident_key="r1-outage",
    severity=Severity.P1,
    service="wan-site-a",
    current_state="R1 reloaded, routing recovering",
    status=UpdateStatus.fixing,
    current_understanding="R1 crashed (software traceback in its logs) and reloaded by itself",
    actions_taken=["Confirmed R1 unreachable from R2", "Checked OSPF adjacencies on R2"],
    next_steps=["Watch OSPF and BGP re-converge"],
    next_update_minutes=15,
)
RESOLVED = StakeholderResolution(
    incident_key="r1-outage",
    severity=Severity.P1,
    service="wan-site-a",
    brief="WAN connectivity at Site A restored",
    resolution="R1 recovered after the reload; OSPF and BGP re-converged",
    started_at=datetime(2026, 12, 1, 14, 32, tzinfo=UTC),
    resolved_at=datetime(2026, 12, 1, 15, 10, tzinfo=UTC),
    impact_summary="Every user at Site A was without WAN access for 38 minutes",
    postmortem_on=date(2026, 12, 3),
    tracked_in="INC0010001",
)

SLACK_HEADINGS = {
    "initial": ["*Subject:*", "*Current Status:*", "*Impact:*", "*Next Update:*"],
    "update": [
        "*Subject:*",
        "*Status:*",
        "*Current Understanding:*",
        "*Actions Taken:*",
        "*Next Steps:*",
        "*Next Update:*",
    ],
    "resolved": ["*Subject:*", "*Resolution:*", "*Duration:*", "*Impact Summary:*", "*Follow-up:*"],
}
EMAIL_HEADINGS = {kind: [h.strip("*") for h in headings[1:]] for kind, headings in SLACK_HEADINGS.items()}


# ------------------------------------------------------------------ the formats


def test_initial_notification_for_slack_is_the_seeds_format() -> None:
    assert stakeholder_slack_text(INITIAL) == (
        ":mega: *Subject:* [P1] wan-site-a — Site A has no WAN connectivity\n"
        "*Current Status:* We are investigating an issue affecting wan-site-a.\n"
        "*Impact:* 100% of users at Site A are experiencing no connectivity (ping 0%)\n"
        "*Next Update:* In 15 minutes or when we have more information.\n"
        "_Follow the response: <https://acme.slack.com/archives/C0INC/p1733063520|incident r1-outage>_"
    )


def test_initial_notification_by_email_is_the_seeds_format() -> None:
    email = stakeholder_email(INITIAL)
    assert email.subject == "[P1] wan-site-a — Site A has no WAN connectivity"
    assert email.body == (
        "Current Status: We are investigating an issue affecting wan-site-a.\n"
        "Impact: 100% of users at Site A are experiencing no connectivity (ping 0%)\n"
        "Next Update: In 15 minutes or when we have more information.\n"
        "\n"
        "Follow the response: https://acme.slack.com/archives/C0INC/p1733063520\n"
        "-- \n"
        "Incident r1-outage (P1). Sent by the incident response system; replies are not read.\n"
    )


def test_status_update_for_slack_and_email_is_the_seeds_format() -> None:
    assert stakeholder_slack_text(UPDATE) == (
        ":mega: *Subject:* [P1 UPDATE] wan-site-a — R1 reloaded, routing recovering\n"
        "*Status:* Mitigating\n"
        "*Current Understanding:* R1 crashed (software traceback in its logs) and reloaded by itself\n"
        "*Actions Taken:*\n"
        "• Confirmed R1 unreachable from R2\n"
        "• Checked OSPF adjacencies on R2\n"
        "*Next Steps:* Watch OSPF and BGP re-converge\n"
        "*Next Update:* In 15 minutes."
    )
    email = stakeholder_email(UPDATE)
    assert email.subject == "[P1 UPDATE] wan-site-a — R1 reloaded, routing recovering"
    assert email.body.startswith(
        "Status: Mitigating\n"
        "Current Understanding: R1 crashed (software traceback in its logs) and reloaded by itself\n"
        "Actions Taken:\n"
        "- Confirmed R1 unreachable from R2\n"
        "- Checked OSPF adjacencies on R2\n"
        "Next Steps: Watch OSPF and BGP re-converge\n"
        "Next Update: In 15 minutes.\n"
    )


def test_resolution_for_slack_and_email_is_the_seeds_format() -> None:
    assert stakeholder_slack_text(RESOLVED) == (
        ":white_check_mark: *Subject:* [RESOLVED] wan-site-a — WAN connectivity at Site A restored\n"
        "*Resolution:* R1 recovered after the reload; OSPF and BGP re-converged\n"
        "*Duration:* 2026-12-01 14:32 to 15:10 UTC (38 minutes)\n"
        "*Impact Summary:* Every user at Site A was without WAN access for 38 minutes\n"
        "*Follow-up:* Post-mortem scheduled for 2026-12-03. Action items will be tracked in INC0010001."
    )
    email = stakeholder_email(RESOLVED)
    assert email.subject == "[RESOLVED] wan-site-a — WAN connectivity at Site A restored"
    assert email.body.startswith(
        "Resolution: R1 recovered after the reload; OSPF and BGP re-converged\n"
        "Duration: 2026-12-01 14:32 to 15:10 UTC (38 minutes)\n"
        "Impact Summary: Every user at Site A was without WAN access for 38 minutes\n"
        "Follow-up: Post-mortem scheduled for 2026-12-03. Action items will be tracked in INC0010001.\n"
    )


def headings(text: str, candidates: list[str]) -> list[str]:
    """The candidates that start a line of `text` (after an emoji), in the order the lines come."""
    lines = [re.sub(r"^:[a-z_]+: ", "", line) for line in text.splitlines()]
    return [h for line in lines for h in candidates if line.startswith(h)]


@pytest.mark.parametrize("update", [INITIAL, UPDATE, RESOLVED], ids=lambda u: u.kind)
def test_every_format_has_the_seeds_headings_in_the_seeds_order(update) -> None:
    wanted = SLACK_HEADINGS[update.kind]
    assert headings(stakeholder_slack_text(update), wanted) == wanted
    wanted = EMAIL_HEADINGS[update.kind]  # "Current Status:": the subject is a header there
    assert headings(stakeholder_email(update).body, wanted) == wanted


def test_what_is_not_known_yet_is_said_plainly() -> None:
    bare = UPDATE.model_copy(update={"actions_taken": [], "next_steps": [], "next_update_minutes": 90})
    text = stakeholder_slack_text(bare)
    assert (
        "*Actions Taken:* None yet.\n*Next Steps:* To be decided.\n*Next Update:* In 1 hour 30 minutes."
        in text
    )
    unscheduled = RESOLVED.model_copy(update={"postmortem_on": None, "tracked_in": None})
    assert stakeholder_email(unscheduled).body.splitlines()[3] == "Follow-up: Post-mortem to be scheduled."
    overnight = RESOLVED.model_copy(
        update={
            "started_at": datetime(2026, 12, 1, 23, 50, tzinfo=UTC),
            "resolved_at": datetime(2026, 12, 3, 1, 5, tzinfo=UTC),
        }
    )
    assert (
        "Duration: 2026-12-01 23:50 UTC to 2026-12-03 01:05 UTC (1 day 1 hour)"
        in stakeholder_email(overnight).body
    )


# ------------------------------------------------------------------ hostile text


HOSTILE = INITIAL.model_copy(
    update={
        "impact_brief": "Site A down <!channel> & <@U0BOSS>",
        "impact": "Users see <!here> errors & <https://evil.example|click here> <@U0CEO>",
    }
)


def test_slack_text_cannot_broadcast_mention_or_link() -> None:
    text = stakeholder_slack_text(HOSTILE)
    assert "Site A down &lt;!channel&gt; &amp; &lt;@U0BOSS&gt;" in text
    assert (
        "Users see &lt;!here&gt; errors &amp; &lt;https://evil.example|click here&gt; &lt;@U0CEO&gt;" in text
    )
    for live in ("<!channel>", "<!here>", "<@U0BOSS>", "<@U0CEO>", "<https://evil"):
        assert live not in text
    assert "<https://acme.slack.com/archives/C0INC/p1733063520|incident r1-outage>" in text  # ours stays live


def test_email_text_stays_as_written_without_slack_escaping() -> None:
    email = stakeholder_email(HOSTILE)
    assert email.subject == "[P1] wan-site-a — Site A down <!channel> & <@U0BOSS>"
    assert "Impact: Users see <!here> errors & <https://evil.example|click here> <@U0CEO>\n" in email.body
    assert "&amp;" not in email.body and "&lt;" not in email.body


def test_a_title_with_cr_lf_stays_one_subject_line_and_adds_no_header() -> None:
    forged = "R1 down\r\nBcc: evil@example.com\r\nX-Priority: 1\n\nforged body"
    update = INITIAL.model_copy(update={"impact_brief": forged, "service": "wan\r\nCc: x@example.com"})
    # As a workflow would build it from its state: the model makes subject parts one line, ...
    built = StakeholderInitial.model_validate(update.model_dump())
    assert built.impact_brief == "R1 down Bcc: evil@example.com X-Priority: 1 forged body"
    # ... and the subject template does too, whatever reaches it.
    subject = render("email/stakeholder_initial.subject.txt.j2", update=update.model_dump(mode="json"))
    assert "\r" not in subject and "\n" not in subject
    assert stakeholder_email(update).subject == (
        "[P1] wan Cc: x@example.com — R1 down Bcc: evil@example.com X-Priority: 1 forged body"
    )
    email = EmailToSend(
        incident_workflow_id="incident-r1-outage",
        idempotency_key="incident-r1-outage/stakeholder/initial",
        recipients=["ops@example.com"],
        update=built,
    )
    text = stakeholder_email(built)
    message = build_message(
        email, text.subject, text.body, "incidents@example.com", "incidents@example.com", datetime.now(UTC)
    )
    received = BytesParser(policy=email_policy.default).parsebytes(message.as_bytes())
    assert [name for name in received if name.lower() in ("bcc", "cc", "x-priority")] == []
    assert received["Subject"] == text.subject


def test_control_characters_and_bidi_overrides_do_not_reach_an_email() -> None:
    update = INITIAL.model_copy(update={"impact": "users\x1b[31m \u202eaffected\u202c at Site A\x07"})
    body = stakeholder_email(update).body
    assert "Impact: users[31m affected at Site A\n" in body


# ------------------------------------------------------------------ the models


def test_the_slack_post_the_incident_makes_renders_the_same_text_after_temporal() -> None:
    """SlackPost(template=update.slack_template, extra=update.slack_extra()) through the data converter."""
    incident = IncidentState(
        key="r1-outage",
        workflow_id="incident-r1-outage",
        severity=Severity.P1,
        title="R1 unreachable",
        declared_at=datetime(2026, 12, 1, 14, 32, tzinfo=UTC),
    )
    for update in (INITIAL, UPDATE, RESOLVED, HOSTILE):
        post = SlackPost(
            channel="#stakeholders",
            idempotency_key=f"incident-r1-outage/stakeholder/{update.kind}",
            template=update.slack_template,
            incident=incident,
            extra=update.slack_extra(),
        )
        [payload] = pydantic_data_converter.payload_converter.to_payloads([post])
        [arrived] = pydantic_data_converter.payload_converter.from_payloads([payload], [SlackPost])
        text = render(arrived.template, incident=arrived.incident, mentions=arrived.mentions, **arrived.extra)
        assert text == stakeholder_slack_text(update)


def test_a_responders_status_is_a_stakeholders_status() -> None:
    words = {s.value: StakeholderStatus.of(s).value for s in UpdateStatus}
    assert words == {
        "investigating": "investigating",
        "identified": "identified",
        "fixing": "mitigating",
        "waiting": "mitigating",
        "monitoring": "monitoring",
    }


def test_an_update_is_one_of_three_kinds_and_says_when_the_next_one_comes() -> None:
    email = EmailToSend(
        incident_workflow_id="incident-r1-outage",
        idempotency_key="k",
        recipients=["ops@example.com"],
        update=RESOLVED.model_dump(mode="json"),
    )
    assert isinstance(email.update, StakeholderResolution)
    with pytest.raises(ValidationError):
        StakeholderInitial.model_validate({**INITIAL.model_dump(), "next_update_minutes": 0})
    with pytest.raises(ValidationError, match="a stakeholder update, or a subject and a body"):
        EmailToSend(incident_workflow_id="i", idempotency_key="k", recipients=["ops@example.com"])
    with pytest.raises(ValidationError, match="not both"):
        EmailToSend(
            incident_workflow_id="i",
            idempotency_key="k",
            recipients=["a@example.com"],
            update=INITIAL,
            subject="s",
        )
