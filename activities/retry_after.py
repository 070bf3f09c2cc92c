"""Retry-After, as the HTTP services the activities call (ServiceNow, PagerDuty, Opsgenie) send it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import httpx


def retry_after(response: httpx.Response) -> timedelta | None:
    """Retry-After as seconds or an HTTP date; at least one second."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return timedelta(seconds=max(1.0, seconds))
