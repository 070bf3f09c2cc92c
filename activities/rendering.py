"""jinja2 rendering of every message and document, from activities/templates/.

Operators change wording by editing the templates; no code changes.

Escaping: text from alerts, people and devices is escaped for the target
format *before* it reaches a template, so no template can forget it. For
Slack (`slack/*`) every string in the context is escaped for mrkdwn (`&`,
`<`, `>`): an alert summary `<!channel>` shows as text and notifies nobody.
The mentions and links the project makes itself are built by the filters
(`mention`, `link`), after escaping, so they stay live. For ServiceNow
(`servicenow/*`) the text is plain, but journal fields read `[code]...[/code]`
as HTML and the work notes carry our own `[ref: ...]` idempotency tags, so
both are neutralised in what people wrote. For email (`email/*`) the text is
plain and stays as written (`<!channel>` and `&` mean nothing there), less
control characters and bidirectional overrides; in a subject
(`email/*.subject.txt.j2`) line breaks become spaces too, so no text can add a
header.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context
from jinja2.runtime import Context
from pydantic import BaseModel

from workflows import limits
from workflows.stakeholder_models import one_line

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
_SLACK_ID = re.compile(r"^[UW][A-Z0-9]{6,}$")
_PARTIAL_ENTITY = re.compile(r"&[a-z]{0,3}$")
_SERVICENOW_TAG = re.compile(r"\[(/?code|ref:)", re.IGNORECASE)
_SHORTENED = "_shortened"
# Control characters but tab and newline, and the bidirectional overrides that make text read
# other than it is (the "Trojan Source" characters).
_EMAIL_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def mrkdwn_escape(text: str) -> str:
    """Text made inert for Slack's mrkdwn: `&`, `<` and `>` as Slack asks them escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def servicenow_neutralise(text: str) -> str:
    """`[code]` (HTML in journal fields) and `[ref:` (our idempotency tags) made plain text."""
    return _SERVICENOW_TAG.sub(lambda m: "(" + m.group(1), text)


def email_text(text: str) -> str:
    """Plain text for an email body: line ends as \\n, no control characters or bidi overrides."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n").replace("\u2029", "\n")
    return _EMAIL_UNSAFE.sub("", lines)


def email_header_text(text: str) -> str:
    """Text for an email header (the subject): one line, no control characters or bidi overrides."""
    return _EMAIL_UNSAFE.sub("", one_line(text))


def escaped(value: Any, escape: Any = mrkdwn_escape) -> Any:
    """`value` with every string in it escaped: models, lists and dicts are copied, enums kept."""
    if isinstance(value, Enum):
        return value
    if isinstance(value, str):
        return escape(value)
    if isinstance(value, BaseModel):
        return value.model_copy(
            update={name: escaped(getattr(value, name), escape) for name in type(value).model_fields}
        )
    if isinstance(value, list | tuple):
        return [escaped(item, escape) for item in value]
    if isinstance(value, dict):
        return {key: escaped(item, escape) for key, item in value.items()}
    return value


def _datetime(value: datetime | str | None) -> datetime | None:
    """Datetimes in `extra` arrive as ISO strings (they crossed Temporal as JSON)."""
    return datetime.fromisoformat(value) if isinstance(value, str) and value else value or None


def _hhmm(value: datetime | str | None) -> str:
    when = _datetime(value)
    return f"{when:%H:%M} UTC" if when else "—"


def _when(value: datetime | str | None) -> str:
    when = _datetime(value)
    return f"{when:%Y-%m-%d %H:%M} UTC" if when else "—"


def _mention(name: str) -> str:
    """`U123ABC` becomes a real Slack mention; `@oncall` stays as written (escaped text)."""
    name = name.strip()
    if _SLACK_ID.match(name.lstrip("@")):
        return f"<@{name.lstrip('@')}>"
    return name if name.startswith("@") else f"@{name}"


_GROUP_ID = re.compile(r"^S[A-Z0-9]{2,20}$")


def _broadcast(target: str) -> str:
    """`channel` becomes @channel and a user group id (S...) a group mention; anything else stays text."""
    target = target.strip()
    if target == "channel":
        return "<!channel>"
    if _GROUP_ID.match(target):
        return f"<!subteam^{target}>"
    return target


def _is_http(url: str | None) -> bool:
    return bool(url) and str(url).lower().startswith(("https://", "http://"))


def _link(url: str | None, label: str) -> str:
    """A Slack link `<url|label>` (both already escaped), or the label alone without an http(s) URL.

    Only http(s) URLs become links (no `javascript:`, no `slack://`); a `|` in the URL is
    percent-encoded, as Slack would read it as the end of the URL.
    """
    if not url or not _is_http(url):
        return label
    return f"<{url.replace('|', '%7C')}|{label}>"


def _url_label(url: str, limit: int = 80) -> str:
    """What a link to `url` says: the URL without its scheme (`wiki.example.com/runbooks/r1`); a long
    one as its host and last part (`git.example.com/…/wan-site-a-r1-unreachable.md`), shortened."""
    text = url.split("://", 1)[-1].rstrip("/")
    if len(text) <= limit:
        return text
    host, _, rest = text.partition("/")
    if rest:
        text = f"{host}/…/{rest.rsplit('/', 1)[-1]}"
    return text if len(text) <= limit else _PARTIAL_ENTITY.sub("", text[: limit - 1]) + "…"


def _duration(value: timedelta | float | None) -> str:
    if value is None:
        return "—"
    seconds = int(value.total_seconds() if isinstance(value, timedelta) else value)
    hours, rest = divmod(seconds, 3600)
    minutes = rest // 60
    if hours >= 24:
        return f"{hours // 24}d {hours % 24}h"
    return f"{hours}h {minutes}m" if hours else f"{minutes} min"


def _in_words(minutes: int | float | None) -> str:
    """15 -> "15 minutes", 60 -> "1 hour", 90 -> "1 hour 30 minutes", 1500 -> "1 day 1 hour"."""
    if minutes is None:
        return "—"
    total = max(0, int(minutes))
    days, rest = divmod(total, 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = [(days, "day"), (hours, "hour")] + ([] if days else [(mins, "minute")])
    words = [f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in parts if n]
    return " ".join(words) or "0 minutes"


def _day(value: date | datetime | str | None) -> str:
    if isinstance(value, str) and value:
        value = date.fromisoformat(value[:10])
    return f"{value:%Y-%m-%d}" if value else "—"


def _span(start: datetime | str | None, end: datetime | str | None) -> str:
    """Start to end and how long: `2026-12-01 14:32 to 15:10 UTC (38 minutes)`; both dates if they differ."""
    begin, finish = _datetime(start), _datetime(end)
    if begin is None or finish is None:
        return "—"
    begin, finish = begin.astimezone(UTC), finish.astimezone(UTC)
    total = _in_words((finish - begin).total_seconds() // 60)
    if begin.date() == finish.date():
        return f"{begin:%Y-%m-%d %H:%M} to {finish:%H:%M} UTC ({total})"
    return f"{begin:%Y-%m-%d %H:%M} UTC to {finish:%Y-%m-%d %H:%M} UTC ({total})"


@pass_context
def _shorten(context: Context, text: Any, limit: int) -> str:
    """At most `limit` characters, ending with an ellipsis when cut (never inside an escape)."""
    text = "" if text is None else str(text)
    if len(text) <= limit:
        return text
    cut = _PARTIAL_ENTITY.sub("", text[: max(0, limit - 1)]) + "…"
    marks = context.get(_SHORTENED)
    if isinstance(marks, list):
        marks.append(limit)
    return cut


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        autoescape=False,  # Slack mrkdwn, not HTML: the context is escaped instead (render)
    )
    env.filters.update(
        hhmm=_hhmm,
        when=_when,
        mention=_mention,
        broadcast=_broadcast,
        duration=_duration,
        shorten=_shorten,
        link=_link,
        in_words=_in_words,
        day=_day,
        span=_span,
        url_label=_url_label,
    )
    env.tests["http_url"] = _is_http
    env.globals["limits"] = limits
    env.globals["ticket_system"] = ticket_system
    return env


TICKET_SYSTEMS = {"servicenow": "ServiceNow", "jira": "Jira"}


def ticket_system(incident: Any) -> str:
    """How people name the incident's ticket system: "Jira", "ServiceNow" (also before it opened)."""
    ref = incident.get("ticket_ref") if isinstance(incident, dict) else getattr(incident, "ticket_ref", None)
    system = (ref.get("system") if isinstance(ref, dict) else getattr(ref, "system", None)) if ref else None
    return TICKET_SYSTEMS.get(str(system or ""), "ServiceNow")


def render(template: str, **context: Any) -> str:
    """Render `slack/<template>.md.j2` (or a path relative to templates/), its context escaped.

    A template can ask `shortened()` (after the text it shortened) whether any
    `shorten` filter cut something, to say where the full text is.
    """
    name = template if "/" in template else f"slack/{template}.md.j2"
    if name.startswith("slack/"):
        context = {key: escaped(value) for key, value in context.items()}
    elif name.startswith(("servicenow/", "jira/")):  # jira: our [ref: ...] tags likewise
        context = {key: escaped(value, servicenow_neutralise) for key, value in context.items()}
    elif name.startswith("email/"):
        escape = email_header_text if ".subject." in name else email_text
        context = {key: escaped(value, escape) for key, value in context.items()}
    marks: list[int] = []
    context[_SHORTENED] = marks
    context["shortened"] = lambda: bool(marks)
    return environment().get_template(name).render(**context).strip()
