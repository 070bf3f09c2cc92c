"""What the Temporal UI shows of an incident: its summary, details and current details, and
the search attributes it is found by. Everything from alerts and people is escaped.

Pure functions, imported once by the worker (passed through the sandbox).
"""

from __future__ import annotations

import re
from datetime import datetime

from temporalio.common import SearchAttributePair, TypedSearchAttributes

from . import limits
from .models import (
    PHASE_ATTR,
    SERVICE_ATTR,
    SEVERITY_ATTR,
    IncidentDeclaration,
    IncidentState,
    Phase,
)


def initial_search_attributes(declaration: IncidentDeclaration) -> TypedSearchAttributes:
    """What a starter sets when it starts the workflow, so the incident is findable at once."""
    pairs = [
        SearchAttributePair(SEVERITY_ATTR, declaration.severity.value),
        SearchAttributePair(PHASE_ATTR, Phase.declared.value),
    ]
    if declaration.service:
        pairs.append(SearchAttributePair(SERVICE_ATTR, declaration.service))
    return TypedSearchAttributes(pairs)


def static_details(declaration: IncidentDeclaration) -> str:
    """Markdown for the UI's detail page: symptoms, impact, links (everything from input escaped)."""
    md = markdown_escape
    parts = [f"**{declaration.severity.value} · {md(declaration.title)}**"]
    if declaration.service:
        parts.append(f"Service: {md(declaration.service)}")
    if declaration.runbook:
        parts.append(f"Runbook: {_markdown_link(declaration.runbook, 'Runbook')}")
    for heading, items in (
        ("Symptoms", declaration.symptoms),
        ("Impact", declaration.impact),
        ("Links", declaration.links),
    ):
        if items:
            shown = [f"- {md(limits.shorten(item, 500))}" for item in items[:10]]
            if len(items) > 10:
                shown.append(f"- … and {len(items) - 10} more")
            parts.append(f"**{heading}**\n" + "\n".join(shown))
    parts.append(f"Reported by {md(declaration.reporter)}")
    return "\n\n".join(parts)


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#!|~])")


def markdown_escape(text: str) -> str:
    """Text from alerts and people made literal in the Temporal UI's markdown (no links, images, HTML)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def static_summary(declaration: IncidentDeclaration) -> str:
    return f"{declaration.severity.value} · {markdown_escape(declaration.title)}"


def details_markdown(s: IncidentState) -> str:
    """The incident as the UI shows it while it runs (its current details); text from people escaped."""

    def when(value: datetime | None) -> str:
        return f"{value:%Y-%m-%d %H:%M} UTC" if value else "—"

    md = markdown_escape
    lines = [
        f"**{s.severity.value} · {md(s.title)}**",
        "",
        f"- **Phase:** {s.phase.value}",
        f"- **Incident Commander:** {md(s.commander or 'awaiting claim')}",
        f"- **Status:** {md(s.status or '—')}",
        f"- **Last update:** {when(s.last_update_at)}"
        + (f" — {md(limits.shorten(s.last_update, 500))}" if s.last_update else ""),
        "- **Next:** " + (", ".join(f"{d.label} {when(d.due)}" for d in s.deadlines) or "—"),
        f"- **Updates / reminders / escalations:** {s.updates} / {s.reminders} / {s.escalations}",
    ]
    if s.review_due_at:
        lines.append(f"- **Review due:** {when(s.review_due_at)}")
    if s.slack_channel:
        lines.append(f"- **Slack:** channel {md(s.slack_channel)}, thread {md(s.slack_thread_ts or '')}")
    ticket = md(s.ticket or "")
    if ticket and s.ticket_url.startswith(("https://", "http://")):
        ticket = f"[{ticket}]({s.ticket_url.replace(')', '%29').replace(' ', '%20')})"
    lines.append(f"- **Ticket:** {ticket or md(limits.shorten(s.ticket_status, 300)) or '—'}")
    if s.runbook:
        lines.append(f"- **Runbook:** {_markdown_link(s.runbook, 'Runbook')}")
    if s.investigation:
        lines.append(f"- **Investigation:** {md(limits.shorten(s.investigation, 500))}")
    if s.verification:
        lines.append(
            f"- **Verification:** {'passed' if s.verification.passed else 'FAILED'} — "
            f"{md(limits.shorten(s.verification.summary, 500))}"
        )
    return "\n".join(lines)


def _markdown_link(url: str, label: str) -> str:
    """A markdown link to an http(s) `url`; anything else (a path in the repository) as escaped text."""
    if url.lower().startswith(("https://", "http://")):
        return f"[{label}]({url.replace('(', '%28').replace(')', '%29').replace(' ', '%20')})"
    return markdown_escape(url)
