"""A local stand-in for Opsgenie's Alert API (``/v2/alerts``), and its outgoing webhook callbacks.

A Starlette app that answers as ``https://api.opsgenie.com`` (or ``api.eu.opsgenie.com``)
does, so the project's httpx backend (activities/paging/opsgenie.py) works against it::

    python -m sandbox.opsgenie --port 8904 --data-dir .data/opsgenie
    curl -X POST http://127.0.0.1:8904/v2/alerts -H 'Authorization: GenieKey sandbox-genie-key' \
      -H 'Content-Type: application/json' -d '{"message": "R1 down", "alias": "k1"}'

What it does, as Opsgenie documents its Alert API:

- ``Authorization: GenieKey <key>``: the keys it was started with (``--api-key``, or env
  ``OPSGENIE_SANDBOX_API_KEYS``, comma separated; default DEFAULT_API_KEY). Missing or another
  key: 401 ``{"message": "Could not authenticate", "took", "requestId"}``.
- Requests are asynchronous, as Opsgenie's are: every write answers 202 ``{"result": "Request
  will be processed", "took": 0.01, "requestId": "<uuid>"}``, and ``GET
  /v2/alerts/requests/{requestId}`` tells what became of it (``data``: ``success``,
  ``isSuccess``, ``action``, ``status``, ``alertId``, ``alias``, ``processedAt``,
  ``integrationId``); an unknown request id is 404. The sandbox processes at once, so the status
  is there as soon as the 202 is.
- ``POST /v2/alerts``: ``message`` (required, at most 130 characters), ``alias`` (at most 512),
  ``description``, ``responders`` ([{type: user|team|escalation|schedule, id|username|name}]),
  ``priority`` P1..P5 (default P3), ``details``, ``tags``, ``entity``, ``source``, ``user``,
  ``note``. A body that breaks these is 422 ``{"message": "Request body is not processable.
  Please check the errors.", "errors": {"<field>": "<reason>"}}``. Deduplication: an open alert
  with the same alias takes the create as one more occurrence (``count`` + 1, no new alert, its
  responders unchanged).
- ``POST /v2/alerts/{identifier}/acknowledge``, ``/close`` and ``/responders`` (body
  ``{"responder": {...}}``), with ``identifierType`` id (default), tiny or alias: 202 with a
  requestId; a missing alert makes the request fail (its status says "Alert does not exist"),
  as in Opsgenie. Adding a responder the alert already has changes nothing.
- ``GET /v2/alerts/{identifier}``: the alert (the newest with that alias), or 404.

Acting as a person in Opsgenie's app: ``POST /_sandbox/acknowledge {"alias", "user"}`` (and
``/_sandbox/close``) changes the open alert and sends the Webhook integration's callback
(``{"action": "Acknowledge", "alert": {alertId, alias, message, tinyId, username, ...},
"source": {"name", "type"}, "integrationId", "integrationName"}``) to ``--webhook-url``. Opsgenie
webhooks carry custom headers a user configures; here that is ``X-Opsgenie-Webhook-Token:
<--webhook-token or env OPSGENIE_WEBHOOK_TOKEN>``, a shared secret the receiver compares.

Everything received is kept in ``<data dir>/opsgenie-sandbox.json`` and shown at ``GET /``.
Control endpoints (plain JSON): ``GET /_sandbox/alerts``, ``GET /_sandbox/requests``,
``GET|POST|DELETE /_sandbox/faults``, ``POST /_sandbox/reset``, ``GET|POST /_sandbox/config``,
``GET /_sandbox/webhooks``, ``GET /_sandbox/health``.

Not modelled: notifications themselves (each responder added is counted as notified once),
teams, schedules and escalations as objects, alert policies, heartbeats, the list and search
endpoints, notes and attachments beyond the alert's log, rate limits (use a 429 fault).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import html
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from .paging_common import (
    PAGE_STYLE,
    FaultQueue,
    JsonStateFile,
    WebhookLog,
    bad_request,
    control_faults,
    control_json,
    control_reset,
    deliver_webhook,
    iso,
    parse_keys,
)

DEFAULT_PORT = 8904
DEFAULT_API_KEY = "sandbox-genie-key"
API_KEYS_ENV = "OPSGENIE_SANDBOX_API_KEYS"
WEBHOOK_TOKEN_ENV = "OPSGENIE_WEBHOOK_TOKEN"
WEBHOOK_TOKEN_HEADER = "X-Opsgenie-Webhook-Token"
STATE_FILE_NAME = "opsgenie-sandbox.json"
STATE_VERSION = 1
INTEGRATION_ID = "5a4db0c5-0000-4000-8000-000000000001"
INTEGRATION_NAME = "Sandbox API"
MAX_MESSAGE = 130
MAX_ALIAS = 512
MAX_DESCRIPTION = 15_000
PRIORITIES = ("P1", "P2", "P3", "P4", "P5")
RESPONDER_TYPES = ("user", "team", "escalation", "schedule")
IDENTIFIER_TYPES = ("id", "tiny", "alias")
REQUEST_LOG_SIZE = 10_000
UNPROCESSABLE = "Request body is not processable. Please check the errors."

_FAULT_MESSAGES = {
    400: "Bad request (injected by the sandbox's fault switch)",
    401: "Could not authenticate",
    403: "You are not authorized to perform this action",
    404: "Alert does not exist",
    422: UNPROCESSABLE,
    429: "You are making too many requests! To avoid errors, we recommend you limit requests.",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class Unprocessable(Exception):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def _took(started: float) -> float:
    return round(time.monotonic() - started, 3)


def responder_key(responder: dict[str, Any]) -> tuple[str, str]:
    """Who a responder is, whichever way they were named: (type, id | username | name), lower case."""
    for field in ("id", "username", "name"):
        if responder.get(field):
            return str(responder.get("type", "")).lower(), str(responder[field]).lower()
    return str(responder.get("type", "")).lower(), ""


class OpsgenieSandbox:
    """All state of one sandbox. Only touched from the event loop, so no locking."""

    def __init__(
        self,
        state_file: str | Path | None = None,
        api_keys: list[str] | None = None,
        webhook_url: str | None = None,
        webhook_token: str | None = None,
    ) -> None:
        self.file = JsonStateFile(state_file, "opsgenie sandbox")
        self.api_keys = list(api_keys or [DEFAULT_API_KEY])
        self.webhook_url = webhook_url
        self.webhook_token = webhook_token
        self.faults = FaultQueue()
        self.webhooks = WebhookLog()
        self._clear()
        loaded = self.file.load()
        if loaded is not None:
            try:
                self.alerts = list(loaded["alerts"])
                self.requests = dict(loaded["requests"])
                self.tiny = int(loaded.get("tiny", len(self.alerts)))
            except (KeyError, TypeError, ValueError) as exc:
                self.file.move_aside(exc)
                self._clear()

    def _clear(self) -> None:
        self.alerts: list[dict[str, Any]] = []  # oldest first
        self.requests: dict[str, dict[str, Any]] = {}  # requestId -> its status, in arrival order
        self.tiny = 0

    def reset(self) -> None:
        self._clear()
        self.faults.clear()
        self.webhooks.clear()
        self.changed()

    def changed(self) -> None:
        self.file.save(
            {"version": STATE_VERSION, "alerts": self.alerts, "requests": self.requests, "tiny": self.tiny}
        )

    # -- finding alerts --------------------------------------------------------------

    def find(self, identifier: str, identifier_type: str) -> dict[str, Any] | None:
        """The alert named so; by alias the open one, else the newest (closed alerts keep their alias)."""
        if identifier_type == "alias":
            same = [a for a in self.alerts if a["alias"] == identifier]
            open_ = [a for a in same if a["status"] == "open"]
            return (open_ or same or [None])[-1]
        field = "id" if identifier_type == "id" else "tinyId"
        return next((a for a in self.alerts if a[field] == identifier), None)

    # -- requests ----------------------------------------------------------------------

    def record(
        self, action: str, success: bool, status: str, alert: dict[str, Any] | None, alias: str = ""
    ) -> str:
        request_id = str(uuid.uuid4())
        self.requests[request_id] = {
            "success": success,
            "action": action,
            "processedAt": iso(time.time()),
            "integrationId": INTEGRATION_ID,
            "isSuccess": success,
            "status": status,
            "alertId": alert["id"] if alert else "",
            "alias": alert["alias"] if alert else alias,
        }
        while len(self.requests) > REQUEST_LOG_SIZE:
            self.requests.pop(next(iter(self.requests)))
        self.changed()
        return request_id

    @staticmethod
    def _log(alert: dict[str, Any], action: str, user: str = "", note: str = "") -> None:
        now = time.time()
        alert["updatedAt"] = iso(now)
        alert["log"].append({"at": now, "time": iso(now), "action": action, "user": user, "note": note})

    def create(self, body: Any) -> str:
        fields = validate_create(body)
        alias = fields["alias"]
        alert = self.find(alias, "alias") if alias else None
        user = str(body.get("user") or "")
        if alert is not None and alert["status"] == "open":
            alert["count"] += 1
            alert["lastOccurredAt"] = iso(time.time())
            self._log(alert, "Alert deduplicated", user, str(body.get("note") or ""))
            return self.record("Create", True, "Alert is deduplicated", alert)
        now = time.time()
        self.tiny += 1
        alert = {
            "id": str(uuid.uuid4()),
            "tinyId": str(self.tiny),
            "alias": alias,
            "message": fields["message"],
            "description": fields["description"],
            "responders": fields["responders"],
            "priority": fields["priority"],
            "details": fields["details"],
            "tags": fields["tags"],
            "entity": str(body.get("entity") or ""),
            "source": str(body.get("source") or "sandbox"),
            "status": "open",
            "acknowledged": False,
            "owner": "",
            "count": 1,
            "created": now,
            "createdAt": iso(now),
            "updatedAt": iso(now),
            "lastOccurredAt": iso(now),
            "acknowledgedBy": None,
            "closedBy": None,
            "notified": [responder_key(r) for r in fields["responders"]],
            "log": [],
        }
        if not alias:
            alert["alias"] = alert["id"]  # Opsgenie makes the id the alias when none is given
        self.alerts.append(alert)
        self._log(alert, "Alert created", user, str(body.get("note") or ""))
        return self.record("Create", True, "Created alert", alert)

    def act(
        self, identifier: str, identifier_type: str, action: str, body: dict[str, Any]
    ) -> tuple[str, dict[str, Any] | None]:
        """Acknowledge, Close or AddResponder; (requestId, the alert or None)."""
        alert = self.find(identifier, identifier_type)
        alias = identifier if identifier_type == "alias" else ""
        if alert is None:
            return self.record(action, False, "Alert does not exist", None, alias), None
        user, note = str(body.get("user") or ""), str(body.get("note") or "")
        if action == "Acknowledge":
            if alert["status"] == "closed":
                return self.record(action, False, "Alert is already closed", alert), alert
            if not alert["acknowledged"]:
                alert.update(acknowledged=True, acknowledgedBy=user or "API")
                alert["owner"] = user or alert["owner"]
                self._log(alert, "Acknowledged", user, note)
            return self.record(action, True, "Acknowledged", alert), alert
        if action == "Close":
            if alert["status"] != "closed":
                alert.update(status="closed", closedBy=user or "API")
                self._log(alert, "Closed", user, note)
            return self.record(action, True, "Closed", alert), alert
        responder = body["responder"]
        if responder_key(responder) in {responder_key(r) for r in alert["responders"]}:
            return self.record(action, True, "Responder already added", alert), alert
        alert["responders"].append(responder)
        alert["notified"].append(responder_key(responder))
        self._log(alert, "Responder added", user, note)
        return self.record(action, True, "Added responder", alert), alert

    def alert_view(self, alert: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in alert.items() if k != "notified"}

    def webhook_body(self, alert: dict[str, Any], action: str, user: str) -> bytes:
        """The Webhook integration's callback for one alert action (Opsgenie's "alert action data")."""
        now_ns = time.time_ns()
        payload = {
            "action": action,
            "alert": {
                "alertId": alert["id"],
                "alias": alert["alias"],
                "message": alert["message"],
                "tinyId": alert["tinyId"],
                "username": user,
                "userId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"opsgenie-sandbox:{user}")),
                "source": alert["source"],
                "entity": alert["entity"],
                "tags": alert["tags"],
                "teams": [],
                "recipients": [r for _, r in (responder_key(x) for x in alert["responders"])],
                "priority": alert["priority"],
                "createdAt": int(alert["created"] * 1000),
                "updatedAt": now_ns,
            },
            "source": {"name": "", "type": "web"},
            "integrationId": INTEGRATION_ID,
            "integrationName": "Webhook",
        }
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()

    def webhook_headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": "Opsgenie-Webhook"}
        if self.webhook_token:
            headers[WEBHOOK_TOKEN_HEADER] = self.webhook_token
        return headers


def validate_create(body: Any) -> dict[str, Any]:
    """The create request's fields, or Unprocessable naming each bad field."""
    if not isinstance(body, dict):
        raise Unprocessable({"body": "Request body must be a JSON object"})
    errors: dict[str, str] = {}
    message = body.get("message")
    if not isinstance(message, str) or not message.strip():
        errors["message"] = "Message can not be empty."
    elif len(message) > MAX_MESSAGE:
        errors["message"] = f"Message can not be longer than {MAX_MESSAGE} characters."
    alias = body.get("alias") or ""
    if not isinstance(alias, str):
        errors["alias"] = "Alias must be a string."
    elif len(alias) > MAX_ALIAS:
        errors["alias"] = f"Alias can not be longer than {MAX_ALIAS} characters."
    description = body.get("description") or ""
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        errors["description"] = f"Description must be a string of at most {MAX_DESCRIPTION} characters."
    priority = body.get("priority") or "P3"
    if priority not in PRIORITIES:
        errors["priority"] = f"Priority should be one of {list(PRIORITIES)}"
    responders = body.get("responders") or []
    if not isinstance(responders, list):
        errors["responders"] = "Responders must be a list."
        responders = []
    for i, responder in enumerate(responders):
        problem = responder_problem(responder)
        if problem:
            errors[f"responders[{i}]"] = problem
    details = body.get("details") or {}
    if not isinstance(details, dict):
        errors["details"] = "Details must be an object of strings."
    tags = body.get("tags") or []
    if not isinstance(tags, list):
        errors["tags"] = "Tags must be a list of strings."
    if errors:
        raise Unprocessable(errors)
    return {
        "message": message,
        "alias": alias,
        "description": description,
        "priority": priority,
        "responders": [dict(r) for r in responders],
        "details": {str(k): str(v) for k, v in details.items()},
        "tags": [str(t) for t in tags],
    }


def responder_problem(responder: Any) -> str | None:
    if not isinstance(responder, dict):
        return "Responder must be an object with type and id, username or name."
    if responder.get("type") not in RESPONDER_TYPES:
        return f"Responder type should be one of {list(RESPONDER_TYPES)}"
    if not any(responder.get(f) for f in ("id", "username", "name")):
        return "Responder must have one of id, username or name."
    return None


# -- the API endpoints -----------------------------------------------------------------------


def _error(status: int, message: str, started: float, errors: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"message": message, "took": _took(started), "requestId": str(uuid.uuid4())}
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status)


def _accepted(request_id: str, started: float) -> JSONResponse:
    return JSONResponse(
        {"result": "Request will be processed", "took": _took(started), "requestId": request_id},
        status_code=202,
    )


def _authorized(request: Request) -> bool:
    sb: OpsgenieSandbox = request.app.state.sandbox
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "geniekey" or not key.strip():
        return False
    return any(hmac.compare_digest(key.strip().encode(), k.encode()) for k in sb.api_keys)


def api(handler):
    """Authentication, faults and timing around one Alert API endpoint."""

    async def endpoint(request: Request) -> Response:
        sb: OpsgenieSandbox = request.app.state.sandbox
        started = time.monotonic()
        if not _authorized(request):
            return _error(401, "Could not authenticate", started)
        fault = sb.faults.take(request.method)
        response: Response | None = None
        if fault is None or fault["perform"]:
            try:
                response = await handler(sb, request, started)
            except ValueError:
                response = _error(400, "Request body is not valid JSON", started)
            except Unprocessable as exc:
                response = _error(422, UNPROCESSABLE, started, exc.errors)
        if fault is not None:
            if fault["delay"] > 0:
                await asyncio.sleep(fault["delay"])
            if fault["status"] is not None:
                status = fault["status"]
                response = _error(status, _FAULT_MESSAGES.get(status, f"HTTP {status}"), started)
                if fault["retry_after"] is not None:
                    response.headers["Retry-After"] = str(fault["retry_after"])
        assert response is not None
        return response

    return endpoint


def _identifier(request: Request) -> tuple[str, str]:
    kind = request.query_params.get("identifierType", "id")
    if kind not in IDENTIFIER_TYPES:
        raise Unprocessable({"identifierType": f"Identifier type should be one of {list(IDENTIFIER_TYPES)}"})
    return request.path_params["identifier"], kind


@api
async def create_alert(sb: OpsgenieSandbox, request: Request, started: float) -> Response:
    return _accepted(sb.create(await control_json(request)), started)


def _alert_action(action: str):
    async def handler(sb: OpsgenieSandbox, request: Request, started: float) -> Response:
        identifier, kind = _identifier(request)
        body = await control_json(request)
        if not isinstance(body, dict):
            raise Unprocessable({"body": "Request body must be a JSON object"})
        if action == "AddResponder":
            problem = responder_problem(body.get("responder"))
            if problem:
                raise Unprocessable({"responder": problem})
        request_id, _ = sb.act(identifier, kind, action, body)
        return _accepted(request_id, started)

    return api(handler)


@api
async def get_alert(sb: OpsgenieSandbox, request: Request, started: float) -> Response:
    identifier, kind = _identifier(request)
    alert = sb.find(identifier, kind)
    if alert is None:
        return _error(404, f"Alert with {kind} [{identifier}] does not exist", started)
    return JSONResponse(
        {"data": sb.alert_view(alert), "took": _took(started), "requestId": str(uuid.uuid4())}
    )


@api
async def request_status(sb: OpsgenieSandbox, request: Request, started: float) -> Response:
    found = sb.requests.get(request.path_params["request_id"])
    if found is None:
        return _error(404, "Request not found. It might not be processed, yet.", started)
    return JSONResponse({"data": found, "took": _took(started), "requestId": str(uuid.uuid4())})


# -- control API (/_sandbox) -----------------------------------------------------------------


async def control_alerts(request: Request) -> Response:
    """Every alert, oldest first, with who was notified; ?alias= filters."""
    sb: OpsgenieSandbox = request.app.state.sandbox
    wanted = request.query_params.get("alias")
    return JSONResponse([a for a in sb.alerts if wanted is None or a["alias"] == wanted])


async def control_requests(request: Request) -> Response:
    sb: OpsgenieSandbox = request.app.state.sandbox
    return JSONResponse([{"requestId": k, **v} for k, v in sb.requests.items()])


async def control_config(request: Request) -> Response:
    """GET: where callbacks go; POST {"webhook_url"?, "webhook_token"?} changes it (the token is not shown)."""
    sb: OpsgenieSandbox = request.app.state.sandbox
    if request.method == "POST":
        try:
            spec = await control_json(request)
            if not isinstance(spec, dict):
                raise ValueError("expected {'webhook_url'?: str, 'webhook_token'?: str}")
        except ValueError as exc:
            return bad_request(str(exc))
        if "webhook_url" in spec:
            sb.webhook_url = spec["webhook_url"] or None
        if "webhook_token" in spec:
            sb.webhook_token = spec["webhook_token"] or None
    return JSONResponse(
        {
            "ok": True,
            "webhook_url": sb.webhook_url,
            "webhook_header": WEBHOOK_TOKEN_HEADER if sb.webhook_token else None,
        }
    )


async def control_webhooks(request: Request) -> Response:
    return JSONResponse(list(request.app.state.sandbox.webhooks.entries))


def _person_action(action: str):
    async def endpoint(request: Request) -> Response:
        """POST {"alias", "user"}: a person acts on the alert in Opsgenie's app; the webhook callback follows."""
        sb: OpsgenieSandbox = request.app.state.sandbox
        try:
            spec = await control_json(request)
            alias = str(spec["alias"])
            user = str(spec.get("user") or "sandbox.user@example.com")
        except (ValueError, TypeError, KeyError) as exc:
            return bad_request(f"expected {{'alias': str, 'user'?: str}}: {exc}")
        alert = sb.find(alias, "alias")
        if alert is None or alert["status"] != "open":
            return bad_request(f"no open alert with alias {alias!r}", status=404)
        request_id, _ = sb.act(alias, "alias", action, {"user": user, "note": "from the app"})
        body = sb.webhook_body(alert, action, user)
        delivery = await deliver_webhook(sb.webhook_url, body, sb.webhook_headers(), sb.webhooks, action)
        return JSONResponse(
            {"ok": True, "requestId": request_id, "alert": sb.alert_view(alert), "webhook": delivery}
        )

    return endpoint


async def control_health(request: Request) -> Response:
    return JSONResponse({"ok": True})


# -- the human view --------------------------------------------------------------------------

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">{refresh}
<title>Opsgenie sandbox</title>
<style>{style} header {{ background: #2684ff; }}</style></head><body>
<header>Opsgenie sandbox <small>Alert API &middot; {alerts} alert(s), {requests} request(s)</small></header>
<main>{body}</main></body></html>"""


def _alert_html(alert: dict[str, Any]) -> str:
    e = html.escape
    status = "acknowledged" if alert["status"] == "open" and alert["acknowledged"] else alert["status"]
    responders = ", ".join(f"{t}:{who}" for t, who in (responder_key(r) for r in alert["responders"]))
    rows = "".join(
        f"<tr><td>{e(entry['time'])}</td><td>{e(entry['action'])}</td><td>{e(entry['user'])}</td>"
        f"<td>{e(entry['note'])}</td></tr>"
        for entry in alert["log"]
    )
    return (
        f"<h2 id='{e(alert['id'])}'>{e(alert['alias'])} <span class='status {e(status)}'>{e(status)}</span> "
        f"<span class='muted'>#{e(alert['tinyId'])} &middot; {e(alert['priority'])} &middot; "
        f"count {alert['count']} &middot; responders: {e(responders) or 'none'}</span></h2>"
        f"<div>{e(alert['message'])}</div><pre class='muted'>{e(alert['description'])}</pre>"
        "<table><tr><th>Time</th><th>Action</th><th>User</th><th>Note</th></tr>" + rows + "</table>"
    )


async def index_page(request: Request) -> Response:
    sb: OpsgenieSandbox = request.app.state.sandbox
    refresh = request.query_params.get("refresh", "5")
    body = "\n".join(_alert_html(a) for a in reversed(sb.alerts)) or "<p class='muted'>No alerts yet.</p>"
    page = _PAGE.format(
        refresh=f'<meta http-equiv="refresh" content="{html.escape(refresh)}">' if refresh != "0" else "",
        style=PAGE_STYLE,
        alerts=len(sb.alerts),
        requests=len(sb.requests),
        body=body,
    )
    return HTMLResponse(page)


# -- the app ----------------------------------------------------------------------------------


def create_app(
    data_dir: str | Path | None = None,
    api_keys: list[str] | None = None,
    webhook_url: str | None = None,
    webhook_token: str | None = None,
) -> Starlette:
    """The sandbox as an ASGI app; ``app.state.sandbox`` is its OpsgenieSandbox."""
    state_file = Path(data_dir) / STATE_FILE_NAME if data_dir else None
    sandbox = OpsgenieSandbox(state_file, api_keys, webhook_url, webhook_token)
    routes = [
        Route("/", index_page, methods=["GET"]),
        Route("/v2/alerts", create_alert, methods=["POST"]),
        Route("/v2/alerts/requests/{request_id:str}", request_status, methods=["GET"]),
        Route("/v2/alerts/{identifier:str}", get_alert, methods=["GET"]),
        Route("/v2/alerts/{identifier:str}/acknowledge", _alert_action("Acknowledge"), methods=["POST"]),
        Route("/v2/alerts/{identifier:str}/close", _alert_action("Close"), methods=["POST"]),
        Route("/v2/alerts/{identifier:str}/responders", _alert_action("AddResponder"), methods=["POST"]),
        Route("/_sandbox/health", control_health, methods=["GET"]),
        Route("/_sandbox/alerts", control_alerts, methods=["GET"]),
        Route("/_sandbox/requests", control_requests, methods=["GET"]),
        Route("/_sandbox/faults", control_faults, methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/reset", control_reset, methods=["POST"]),
        Route("/_sandbox/config", control_config, methods=["GET", "POST"]),
        Route("/_sandbox/webhooks", control_webhooks, methods=["GET"]),
        Route("/_sandbox/acknowledge", _person_action("Acknowledge"), methods=["POST"]),
        Route("/_sandbox/close", _person_action("Close"), methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.sandbox = sandbox
    return app


@contextlib.asynccontextmanager
async def run_sandbox(
    data_dir: str | Path | None = None,
    api_keys: list[str] | None = None,
    webhook_url: str | None = None,
    webhook_token: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> AsyncIterator[str]:
    """An Opsgenie sandbox on a free port for the length of the block; yields its base URL."""
    from .slack import serve_in_background

    app = create_app(data_dir, api_keys, webhook_url, webhook_token)
    async with serve_in_background(app, host=host, port=port) as url:
        yield url


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.opsgenie", description="Local Opsgenie Alert API sandbox"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("OPSGENIE_SANDBOX_PORT") or DEFAULT_PORT)
    )
    parser.add_argument("--data-dir", default=None, help="keep the state here; nothing kept if omitted")
    parser.add_argument(
        "--api-key",
        action="append",
        metavar="KEY",
        help=f"accepted GenieKey (repeatable; default env {API_KEYS_ENV}, comma separated, else {DEFAULT_API_KEY}); "
        "prefer the environment: `ps` shows command lines",
    )
    parser.add_argument("--webhook-url", default=os.environ.get("OPSGENIE_SANDBOX_WEBHOOK_URL") or None)
    parser.add_argument(
        "--webhook-token",
        default=None,
        help=f"sent as {WEBHOOK_TOKEN_HEADER} with each callback (default env {WEBHOOK_TOKEN_ENV})",
    )
    opts = parser.parse_args(argv)
    keys = opts.api_key or parse_keys(os.environ.get(API_KEYS_ENV)) or [DEFAULT_API_KEY]
    token = opts.webhook_token or os.environ.get(WEBHOOK_TOKEN_ENV) or None
    app = create_app(opts.data_dir, keys, opts.webhook_url, token)
    print(
        f"Opsgenie sandbox: http://{opts.host}:{opts.port}/  "
        f"(Alert API: http://{opts.host}:{opts.port}/v2/alerts; callbacks to {opts.webhook_url or 'nowhere'})",
        flush=True,
    )
    uvicorn.run(app, host=opts.host, port=opts.port, log_level="warning", timeout_graceful_shutdown=2)


if __name__ == "__main__":
    main()
