"""jinja2 rendering of every message and document, from activities/templates/.

Operators change wording by editing the templates; no code changes.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
_SLACK_ID = re.compile(r"^[UW][A-Z0-9]{6,}$")


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
    """`U123ABC` becomes a real Slack mention; `@oncall` stays as written."""
    name = name.strip()
    if _SLACK_ID.match(name.lstrip("@")):
        return f"<@{name.lstrip('@')}>"
    return name if name.startswith(("@", "<")) else f"@{name}"


def _duration(value: timedelta | float | None) -> str:
    if value is None:
        return "—"
    seconds = int(value.total_seconds() if isinstance(value, timedelta) else value)
    hours, rest = divmod(seconds, 3600)
    minutes = rest // 60
    if hours >= 24:
        return f"{hours // 24}d {hours % 24}h"
    return f"{hours}h {minutes}m" if hours else f"{minutes} min"


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        autoescape=False,  # Slack mrkdwn, not HTML
    )
    env.filters.update(hhmm=_hhmm, when=_when, mention=_mention, duration=_duration)
    return env


def render(template: str, **context: Any) -> str:
    """Render `slack/<template>.md.j2` (or a path relative to templates/)."""
    name = template if "/" in template else f"slack/{template}.md.j2"
    return environment().get_template(name).render(**context).strip()
