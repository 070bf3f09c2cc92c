"""Opsgenie behind the paging interface: the Alert API over httpx.

One Opsgenie alert per incident, `alias` = the incident key. Each page reaches its person:

1. the open alert with the incident's alias is looked up (GET /v2/alerts/{alias}?identifierType=alias);
2. if there is one, the person is added to it as a responder (POST .../responders), which is
   what makes Opsgenie notify them; if they are a responder already, an earlier attempt of this
   page (or another page of theirs) reached them: nothing is sent, `duplicate` is True;
3. if there is none, the alert is created with the person as its responder; should another
   page of the same incident have created it a moment before (two people at one level), the
   create is deduplicated by Opsgenie without adding our responder, so the alert is read back
   and the person added if missing.

The person is named by email (`username`) when the schedule has one, else by id.
Acknowledge and close act on the alert by alias; repeating them is harmless.

Opsgenie processes writes asynchronously (202 and a requestId); `reference` is the requestId
of the write that paged the person (or the alert's id for a duplicate).

Failures (activities/paging/http.py): 401 (API key), 403 (permission), 404 and 422 (a field
Opsgenie refuses, named in its `errors`) are non-retryable; 429 retries after Retry-After;
5xx, timeouts and refused connections retry.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
from temporalio.exceptions import ApplicationError

from workflows.models import Severity
from workflows.paging_models import Page, PageDelivered, PagingAction, PagingService, PagingUpdate

from .http import as_application_error, send

SERVICE = "Opsgenie"
ALERTS = "/v2/alerts"
PRIORITIES: dict[Severity, str] = {
    Severity.P1: "P1",
    Severity.P2: "P2",
    Severity.P3: "P3",
    Severity.P4: "P4",
}
MAX_MESSAGE = 130
MAX_ALIAS = 512
MAX_DESCRIPTION = 15_000
SOURCE = "durable-incident"


def alias_for(incident_key: str) -> str:
    """The incident key, or, past 512 characters, a stable shortened form of it."""
    if len(incident_key) <= MAX_ALIAS:
        return incident_key
    digest = hashlib.sha256(incident_key.encode()).hexdigest()[:32]
    return incident_key[: MAX_ALIAS - 33] + "~" + digest


def responder_for(page: Page) -> dict[str, str]:
    if page.person.email:
        return {"type": "user", "username": page.person.email}
    return {"type": "user", "id": page.person.user_id}


def _same_responder(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if str(a.get("type", "")).lower() != str(b.get("type", "")).lower():
        return False
    return any(
        a.get(f) and str(a.get(f)).lower() == str(b.get(f) or "").lower() for f in ("id", "username", "name")
    )


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class OpsgeniePaging:
    """Pages as responders of one Opsgenie alert per incident, over one pooled httpx client."""

    service = PagingService.opsgenie

    def __init__(
        self,
        url: str,
        api_key: str,
        timeout: float = 10.0,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("Opsgenie needs OPSGENIE_API_KEY (an API integration's key)")
        self.url = url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self.url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
            headers={
                "Accept": "application/json",
                "User-Agent": "durable-incident",
                "Authorization": f"GenieKey {api_key}",
            },
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def page(self, page: Page) -> PageDelivered:
        alias = alias_for(page.incident_key)
        responder = responder_for(page)
        alert = await self._open_alert(alias)
        if alert is not None:
            return await self._add_responder(alias, alert, responder, page)
        request_id = await self._write("POST", ALERTS, "page", self._alert_body(page, alias, responder))
        # A concurrent page of the same incident may have created the alert first; ours was then
        # deduplicated into it without our responder. (Not found yet: Opsgenie is still processing ours.)
        alert = await self._open_alert(alias)
        if alert is not None and not any(_same_responder(r, responder) for r in alert.get("responders", [])):
            return await self._add_responder(alias, alert, responder, page)
        return self._delivery(request_id, duplicate=False)

    async def update(self, update: PagingUpdate) -> None:
        action = "acknowledge" if update.action == PagingAction.acknowledge else "close"
        body = {"user": _cut(update.by or SOURCE, 100), "source": SOURCE}
        if update.note:
            body["note"] = _cut(update.note, 25_000)
        # Acknowledging an acknowledged alert, or closing a closed one, changes nothing in Opsgenie.
        await self._write(
            "POST", f"{self._alert_path(alias_for(update.incident_key))}/{action}", action, body
        )

    # ------------------------------------------------------------ helpers

    @staticmethod
    def _alert_path(alias: str) -> str:
        return f"{ALERTS}/{quote(alias, safe='')}"

    async def _open_alert(self, alias: str) -> dict[str, Any] | None:
        try:
            response = await send(
                self._client,
                SERVICE,
                "alert look-up",
                "GET",
                self._alert_path(alias),
                params={"identifierType": "alias"},
            )
        except ApplicationError as exc:
            if (exc.details or [{}])[0] == {"status": 404}:
                return None
            raise
        data = (response.json() or {}).get("data") or {}
        return data if data.get("status") == "open" else None

    async def _add_responder(
        self, alias: str, alert: dict[str, Any], responder: dict[str, str], page: Page
    ) -> PageDelivered:
        if any(_same_responder(r, responder) for r in alert.get("responders", [])):
            return self._delivery(str(alert.get("id") or alias), duplicate=True)
        body = {"responder": responder, "user": SOURCE, "source": SOURCE, "note": _cut(page.reason, 25_000)}
        request_id = await self._write(
            "POST", f"{self._alert_path(alias)}/responders", "page", body, params={"identifierType": "alias"}
        )
        return self._delivery(request_id, duplicate=False)

    async def _write(
        self, method: str, path: str, what: str, body: dict[str, Any], params: dict[str, str] | None = None
    ) -> str:
        if params is None and path != ALERTS:
            params = {"identifierType": "alias"}
        response = await send(self._client, SERVICE, what, method, path, json=body, params=params)
        try:
            request_id = response.json().get("requestId")
        except (ValueError, AttributeError):
            request_id = None
        if not request_id:
            raise (
                as_application_error(SERVICE, response, what)
                if response.status_code >= 400
                else ApplicationError(
                    f"{SERVICE} answered the {what} with {response.status_code} but no requestId",
                    type=f"{SERVICE}BadResponse",
                )
            )
        return str(request_id)

    @staticmethod
    def _alert_body(page: Page, alias: str, responder: dict[str, str]) -> dict[str, Any]:
        who = page.person.name or page.person.user_id
        description = "\n".join(
            line for line in (page.summary, f"Paging {who}: {page.reason}", page.link or "") if line
        )
        return {
            "message": _cut(f"[{page.severity.value}] {page.title}", MAX_MESSAGE),
            "alias": alias,
            "description": _cut(description, MAX_DESCRIPTION),
            "responders": [responder],
            "priority": PRIORITIES[page.severity],
            "source": SOURCE,
            "entity": page.incident_workflow_id,
            "tags": [SOURCE, page.severity.value],
            "details": {
                "level": str(page.level),
                "loop": str(page.loop),
                "person": page.person.user_id,
                "reason": page.reason,
                "idempotency_key": page.idempotency_key,
                "incident": page.incident_workflow_id,
                "link": page.link or "",
            },
            "note": _cut(page.reason, 25_000),
        }

    def _delivery(self, reference: str, *, duplicate: bool) -> PageDelivered:
        return PageDelivered(
            service=self.service, reference=reference, delivered_at=datetime.now(UTC), duplicate=duplicate
        )
