"""How a paging service's HTTP answer becomes success, retry-later or give-up (both backends share it).

400/401/403/404/422: a person must change something (the routing key, the API key, a field);
non-retryable, with the service's own words. 429: retryable after Retry-After (or
activities/retry_after.py's DEFAULT_RETRY_AFTER). 5xx, 408, 409, timeouts and refused connections: retryable, with
Retry-After when the service sent one.
"""

from __future__ import annotations

from typing import Any

import httpx
from temporalio.exceptions import ApplicationError

from activities.retry_after import call_service, http_failure


async def send(
    client: httpx.AsyncClient, service: str, what: str, method: str, path: str, **kwargs: Any
) -> httpx.Response:
    """One call; a failure raised as an ApplicationError sorted into retry-later and give-up."""

    def failure(response: httpx.Response, what: str) -> ApplicationError:
        return as_application_error(service, response, what)

    return await call_service(client, service, what, method, path, failure, **kwargs)


def as_application_error(service: str, response: httpx.Response, what: str) -> ApplicationError:
    hint = {
        401: "check the API key / credentials",
        403: "the key lacks the permission",
        404: "check the URL and the identifier",
    }.get(response.status_code, "")
    return http_failure(service, response, what, error_reason(response), hint)


def error_reason(response: httpx.Response) -> str:
    """What the service said: PagerDuty's `errors` list, Opsgenie's `message` and `errors`, or the phrase."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return response.reason_phrase or "error"
    parts = [str(body.get("message") or response.reason_phrase or "error")]
    errors = body.get("errors")
    if isinstance(errors, list) and errors:
        parts.append("; ".join(str(e) for e in errors))
    elif isinstance(errors, dict) and errors:
        parts.append("; ".join(f"{k}: {v}" for k, v in errors.items()))
    return ": ".join(parts)
