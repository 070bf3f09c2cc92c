"""PagerDuty behind the paging interface: Events API v2 over httpx, and the V3 webhook signature check.

One PagerDuty alert per incident: every page triggers with `dedup_key` = the incident key
(not the page's idempotency key), so the first page opens the alert and PagerDuty's own
escalation policy notifies its on-call; later pages of the incident are deduplicated into the
open alert (they show in its log with the person, level and reason in `custom_details`, and
notify nobody again, as PagerDuty does while an alert is open). Acknowledge and resolve send
the same dedup key. After a resolve, the next trigger opens a new alert.

Exactly once: a retried page sends the same dedup key, so at worst it is one more
deduplicated event on the open alert, never a second alert or notification. PagerDuty's
answer is the same for a new alert and a deduplicated event, so `duplicate` is True only when
this worker already had a 202 for the page's idempotency key.

Failures (activities/paging/http.py): 400 (a bad or unknown routing key, a field PagerDuty
refuses; its `errors` name the field) is non-retryable; 429 retries after Retry-After; 5xx,
timeouts and refused connections retry.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

import httpx
from temporalio.exceptions import ApplicationError

from workflows.models import Severity
from workflows.paging_models import Page, PageDelivered, PagingAction, PagingService, PagingUpdate

from .http import send

SERVICE = "PagerDuty"
ENQUEUE = "/v2/enqueue"
SEVERITIES: dict[Severity, str] = {
    Severity.P1: "critical",
    Severity.P2: "error",
    Severity.P3: "warning",
    Severity.P4: "info",
}
MAX_DEDUP_KEY = 255
MAX_SUMMARY = 1024
SOURCE = "durable-incident"
REMEMBERED_PAGES = 10_000  # idempotency keys of pages this worker had a 202 for


def dedup_key_for(incident_key: str) -> str:
    """The incident key, or, past 255 characters, a stable shortened form of it."""
    if len(incident_key) <= MAX_DEDUP_KEY:
        return incident_key
    digest = hashlib.sha256(incident_key.encode()).hexdigest()[:32]
    return incident_key[: MAX_DEDUP_KEY - 33] + "~" + digest


def summary_for(page: Page) -> str:
    who = page.person.name or page.person.user_id
    text = f"[{page.severity.value}] {page.title} — paging {who} (level {page.level})"
    return text if len(text) <= MAX_SUMMARY else text[: MAX_SUMMARY - 1] + "…"


def verify_pagerduty_signature(secret: str, body: bytes, header: str | None) -> bool:
    """True when one of the header's `v1=<hex>` signatures is the HMAC-SHA256 of `body` with `secret`.

    PagerDuty sends several comma-separated signatures while a secret is rotated; one match is
    enough. `body` must be the raw bytes received. Constant-time comparison.
    """
    if not secret or not header:
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()
    found = False
    for part in header.split(","):
        version, _, signature = part.strip().partition("=")
        if version == "v1" and signature:
            # No early return: every candidate is compared, so the time taken says nothing.
            found |= hmac.compare_digest(expected, signature.strip().lower().encode())
    return found


class PagerDutyPaging:
    """Pages as Events API v2 alerts, one per incident key, over one pooled httpx client."""

    service = PagingService.pagerduty

    def __init__(
        self,
        url: str,
        routing_key: str,
        timeout: float = 10.0,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not routing_key:
            raise ValueError("PagerDuty needs PAGERDUTY_ROUTING_KEY (an Events API v2 integration key)")
        self.url = url.rstrip("/")
        self._routing_key = routing_key
        self._delivered: OrderedDict[str, str] = OrderedDict()  # idempotency key -> dedup key
        self._client = httpx.AsyncClient(
            base_url=self.url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
            headers={"Accept": "application/json", "User-Agent": "durable-incident"},
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def page(self, page: Page) -> PageDelivered:
        dedup_key = dedup_key_for(page.incident_key)
        if page.idempotency_key in self._delivered:
            return self._delivery(dedup_key, duplicate=True)
        event: dict[str, Any] = {
            "routing_key": self._routing_key,
            "event_action": "trigger",
            "dedup_key": dedup_key,
            "client": SOURCE,
            "payload": {
                "summary": summary_for(page),
                "source": SOURCE,
                "severity": SEVERITIES[page.severity],
                "component": page.incident_workflow_id,
                "class": "incident",
                "custom_details": {
                    "level": page.level,
                    "loop": page.loop,
                    "person": page.person.model_dump(exclude_none=True),
                    "reason": page.reason,
                    "summary": page.summary,
                    "urgent": page.urgent,
                    "idempotency_key": page.idempotency_key,
                    "incident": page.incident_workflow_id,
                    "link": page.link,
                },
            },
        }
        if page.link:
            event["client_url"] = page.link
            event["links"] = [{"href": page.link, "text": "The incident"}]
        answer = await self._enqueue(event, "page")
        self._delivered[page.idempotency_key] = dedup_key
        while len(self._delivered) > REMEMBERED_PAGES:
            self._delivered.popitem(last=False)
        return self._delivery(str(answer.get("dedup_key") or dedup_key), duplicate=False)

    async def update(self, update: PagingUpdate) -> None:
        action = "acknowledge" if update.action == PagingAction.acknowledge else "resolve"
        event = {
            "routing_key": self._routing_key,
            "event_action": action,
            "dedup_key": dedup_key_for(update.incident_key),
        }
        # Acknowledging an acknowledged alert, or resolving a resolved (or never opened) one, is
        # accepted and dropped by PagerDuty: repeating this is harmless.
        await self._enqueue(event, action)

    async def _enqueue(self, event: dict[str, Any], what: str) -> dict[str, Any]:
        response = await send(self._client, SERVICE, what, "POST", ENQUEUE, json=event)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or answer.get("status") != "success":
            raise ApplicationError(
                f"{SERVICE} answered the {what} with {response.status_code} but not an Events API result",
                type=f"{SERVICE}BadResponse",
            )
        return answer

    def _delivery(self, dedup_key: str, *, duplicate: bool) -> PageDelivered:
        return PageDelivered(
            service=self.service, reference=dedup_key, delivered_at=datetime.now(UTC), duplicate=duplicate
        )
