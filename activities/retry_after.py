"""How an HTTP service's error answer becomes retry-later or give-up, with Retry-After as the
services the activities call (ServiceNow, Jira, PagerDuty, Opsgenie) send it.

429: retryable after Retry-After (or DEFAULT_RETRY_AFTER). 5xx, 408, 409: retryable, with
Retry-After when the service sent one. Anything else (400 a field, 401 credentials, 403
permissions, 404 no such thing): non-retryable, a person must act.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from temporalio.exceptions import ApplicationError

DEFAULT_RETRY_AFTER = timedelta(seconds=5)  # 429 without Retry-After


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


def http_failure(
    service: str, response: httpx.Response, what: str, reason: str, hint: str = ""
) -> ApplicationError:
    """The error answer as an ApplicationError of type `<service>RateLimited`, `...Unavailable`
    (both retried) or `...Rejected` (not); `reason` is what the service said, `hint` what to check."""
    status = response.status_code
    if status == 429:
        delay = retry_after(response) or DEFAULT_RETRY_AFTER
        return ApplicationError(
            f"{service} rate limit on the {what}: retry after {delay.total_seconds():.0f}s",
            {"status": status},
            type=f"{service}RateLimited",
            next_retry_delay=delay,
        )
    if status >= 500 or status in (408, 409):
        return ApplicationError(
            f"{service} could not take the {what} now: {status} {reason}",
            {"status": status},
            type=f"{service}Unavailable",
            next_retry_delay=retry_after(response),
        )
    return ApplicationError(
        f"{service} rejected the {what}: {status} {reason}" + (f" ({hint})" if hint else ""),
        {"status": status},
        type=f"{service}Rejected",
        non_retryable=True,
    )


async def call_service(
    client: httpx.AsyncClient,
    service: str,
    what: str,
    method: str,
    path: str,
    failure: Callable[[httpx.Response, str], ApplicationError],
    **kwargs: Any,
) -> httpx.Response:
    """One call to `service`: a timeout (`<service>Timeout`), a refused connection
    (`<service>Unreachable`, both retried) or an error answer (`failure(response, what)`) raised."""
    try:
        response = await client.request(method, path, **kwargs)
    except httpx.TimeoutException as exc:
        raise ApplicationError(
            f"{service} did not answer the {what} in time ({type(exc).__name__})", type=f"{service}Timeout"
        ) from None
    except httpx.TransportError as exc:
        raise ApplicationError(
            f"{service} is unreachable for the {what}: {type(exc).__name__}: {exc}",
            type=f"{service}Unreachable",
        ) from None
    if response.status_code >= 400:
        raise failure(response, what)
    return response
