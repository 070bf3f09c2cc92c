"""Stakeholder updates as text: the Slack post for a stakeholder channel and the email.

The three formats of workflows/stakeholder_models.py, each a jinja2 template an operator can
reword: `slack/stakeholder_<kind>.md.j2` (mrkdwn, escaped as every Slack template is), and
`email/stakeholder_<kind>.subject.txt.j2` + `email/stakeholder_<kind>.txt.j2` (plain text: the
words stay as written, control characters go, and the subject is one line, so no text of the
incident can add a header).

The templates read the update as JSON (`model_dump(mode="json")`), which is also how it arrives
in `post_slack_message` when the incident posts it with `SlackPost(template=update.slack_template,
extra=update.slack_extra())`: the channel shows the same text either way.
"""

from __future__ import annotations

from dataclasses import dataclass

from workflows.stakeholder_models import StakeholderUpdate, one_line

from .rendering import render


@dataclass(frozen=True)
class StakeholderEmail:
    subject: str  # one line
    body: str  # plain text, \n line ends


def stakeholder_slack_text(update: StakeholderUpdate) -> str:
    """The update as a Slack message (mrkdwn) for a stakeholder channel."""
    return render(update.slack_template, **update.slack_extra())


def stakeholder_email(update: StakeholderUpdate) -> StakeholderEmail:
    """The update as an email: its subject line and plain-text body."""
    data = update.model_dump(mode="json")
    subject = render(f"email/stakeholder_{update.kind}.subject.txt.j2", update=data)
    body = render(f"email/stakeholder_{update.kind}.txt.j2", update=data)
    return StakeholderEmail(subject=one_line(subject), body=body + "\n")
