"""A local stand-in for PagerDuty's Events API v2 (``POST /v2/enqueue``), and its V3 webhooks.

A Starlette app that answers as ``https://events.pagerduty.com`` does, so the project's
httpx backend (activities/paging/pagerduty.py) and any Events API v2 client work against it::

    python -m sandbox.pagerduty --port 8903 --data-dir .data/pagerduty
    curl -X POST http://127.0.0.1:8903/v2/enqueue -H 'Content-Type: application/json' -d \
      '{"routing_key": "R0UTINGKEY000000000000000000DEV1", "event_action": "trigger", "dedup_key": "k1",
        "payload": {"summary": "R1 down", "source": "r1", "severity": "critical"}}'

What it does, as PagerDuty documents it (developer.pagerduty.com, "Send an Alert Event"):

- ``routing_key`` is a service integration's 32-character key: the sandbox accepts the keys it
  was started with (``--routing-key``, repeatable, or env ``PAGERDUTY_SANDBOX_ROUTING_KEYS``,
  comma separated; default DEFAULT_ROUTING_KEY). Anything else, and any malformed event, is
  400 ``{"status": "invalid event", "message": "Event object is invalid", "errors": [...]}``,
  one error per problem, each naming the field.
- ``event_action`` trigger | acknowledge | resolve; ``dedup_key`` at most 255 characters,
  generated (a UUID hex) for a trigger without one; a trigger needs ``payload.summary``
  (at most 1024), ``payload.source`` and ``payload.severity`` (critical, error, warning, info).
- Accepted: 202 ``{"status": "success", "message": "Event processed", "dedup_key": "..."}``,
  the same answer whatever the event did (PagerDuty does not say whether it deduplicated).
- Alerts by dedup key, per routing key: a trigger with the key of an open (triggered or
  acknowledged) alert is appended to it as a deduplicated event and notifies nobody again;
  acknowledge and resolve change the open alert's status (or are dropped when there is none,
  or when they come through another routing key); a key whose alert was resolved opens a new
  alert on its next trigger. Each alert belongs to an incident (``Q...`` id, a number) whose
  ``incident_key`` is the alert's dedup key, as for incidents PagerDuty opens from an event.

Acting as a person in PagerDuty's app: ``POST /_sandbox/acknowledge {"dedup_key", "user"}``
(and ``/_sandbox/resolve``) changes the open alert as the Acknowledge button does and sends a
V3 webhook (``incident.acknowledged`` / ``incident.resolved``) to ``--webhook-url``, signed
``X-PagerDuty-Signature: v1=<hex HMAC-SHA256 of the raw body>`` with ``--webhook-secret`` (env
``PAGERDUTY_WEBHOOK_SECRET``). The event's ``data`` is PagerDuty's ``incident`` object with
``incident_key`` = the dedup key and ``title`` = the alert's summary; the receiver finds the
incident by ``incident_key``. Best effort: a few tries on a connection error or 5xx; the answer
says what happened.

Everything received is kept in ``<data dir>/pagerduty-sandbox.json`` (a restart keeps it) and
shown at ``GET /``. Control endpoints (plain JSON): ``GET /_sandbox/events`` (``?since=``), ``GET
/_sandbox/alerts``, ``GET|POST|DELETE /_sandbox/faults``, ``POST /_sandbox/reset``,
``GET|POST /_sandbox/config`` (webhook URL and secret), ``GET /_sandbox/webhooks``,
``GET /_sandbox/health``.

Not modelled: the REST API, services and escalation policies, change events
(``/v2/change/enqueue``), images and links beyond keeping them, rate limits (use a 429 fault),
event rules and suppression, alert grouping into one incident.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import html
import json
import os
import secrets
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

DEFAULT_PORT = 8903
DEFAULT_ROUTING_KEY = "R0UTINGKEY" + "0" * 18 + "DEV1"  # 32 characters, as an integration key
ROUTING_KEYS_ENV = "PAGERDUTY_SANDBOX_ROUTING_KEYS"
WEBHOOK_SECRET_ENV = "PAGERDUTY_WEBHOOK_SECRET"
STATE_FILE_NAME = "pagerduty-sandbox.json"
STATE_VERSION = 1
ROUTING_KEY_LENGTH = 32
MAX_DEDUP_KEY = 255
MAX_SUMMARY = 1024
MAX_EVENT_BYTES = 512 * 1024
SEVERITIES = ("critical", "error", "warning", "info")
ACTIONS = ("trigger", "acknowledge", "resolve")
OPEN = ("triggered", "acknowledged")
EVENT_LOG_SIZE = 10_000
WEB_HOST = "https://sandbox.pagerduty.local"  # html_url of incidents, as acme.pagerduty.com would be

_FAULT_BODIES: dict[int, dict[str, Any]] = {
    429: {"status": "throttle event", "message": "Requests for this service are arriving too quickly"},
    500: {"status": "error", "message": "Internal Server Error"},
    502: {"status": "error", "message": "Bad Gateway"},
    503: {"status": "error", "message": "Service Unavailable"},
}


def pagerduty_signature(secret: str, body: bytes) -> str:
    """The ``X-PagerDuty-Signature`` value for one signing secret: ``v1=<hex HMAC-SHA256>``."""
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _mask(key: str) -> str:
    """Routing keys are secrets: the page and the event log show only their end."""
    return "…" + key[-4:] if len(key) > 4 else "…"


def _pd_id(prefix: str = "Q") -> str:
    """PagerDuty-style object id: a letter and six more, upper case."""
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
    return prefix + "".join(secrets.choice(alphabet) for _ in range(6))


class InvalidEvent(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class PagerDutySandbox:
    """All state of one sandbox. Only touched from the event loop, so no locking."""

    def __init__(
        self,
        state_file: str | Path | None = None,
        routing_keys: list[str] | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
    ) -> None:
        self.file = JsonStateFile(state_file, "pagerduty sandbox")
        self.routing_keys = list(routing_keys or [DEFAULT_ROUTING_KEY])
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.faults = FaultQueue()
        self.webhooks = WebhookLog()
        self._clear()
        loaded = self.file.load()
        if loaded is not None:
            try:
                self.alerts = list(loaded["alerts"])
                self.events = list(loaded["events"])
                self.incident_number = int(loaded.get("incident_number", len(self.alerts)))
            except (KeyError, TypeError, ValueError) as exc:
                self.file.move_aside(exc)
                self._clear()

    def _clear(self) -> None:
        self.alerts: list[dict[str, Any]] = []  # oldest first; a dedup key may have several (one open)
        self.events: list[dict[str, Any]] = []  # everything received, oldest first
        self.incident_number = 0

    def reset(self) -> None:
        self._clear()
        self.faults.clear()
        self.webhooks.clear()
        self.changed()

    def changed(self) -> None:
        self.file.save(
            {
                "version": STATE_VERSION,
                "alerts": self.alerts,
                "events": self.events,
                "incident_number": self.incident_number,
            }
        )

    # -- the Events API -------------------------------------------------------------

    def validate(self, event: Any) -> dict[str, Any]:
        """The event's fields, or InvalidEvent with every problem, each naming its field."""
        if not isinstance(event, dict):
            raise InvalidEvent(["Event object must be a JSON object"])
        errors: list[str] = []
        key = event.get("routing_key")
        if not isinstance(key, str) or not key.strip():
            errors.append("'routing_key' is missing or blank")
        elif len(key) != ROUTING_KEY_LENGTH:
            errors.append(f"'routing_key' is invalid: it must be {ROUTING_KEY_LENGTH} characters long")
        elif key not in self.routing_keys:
            errors.append("'routing_key' is invalid: no integration has this key (Invalid routing key)")
        action = event.get("event_action")
        if action not in ACTIONS:
            errors.append(f"'event_action' is invalid: it must be one of {', '.join(ACTIONS)}")
        dedup_key = event.get("dedup_key")
        if dedup_key is not None and not isinstance(dedup_key, str):
            errors.append("'dedup_key' must be a string")
        elif isinstance(dedup_key, str) and len(dedup_key) > MAX_DEDUP_KEY:
            errors.append(f"'dedup_key' is too long: at most {MAX_DEDUP_KEY} characters")
        elif action in ("acknowledge", "resolve") and not (dedup_key or "").strip():
            errors.append(f"'dedup_key' is missing or blank: {action} needs the alert's dedup_key")
        if action == "trigger":
            payload = event.get("payload")
            if not isinstance(payload, dict):
                errors.append("'payload' is missing or not an object")
            else:
                summary = payload.get("summary")
                if not isinstance(summary, str) or not summary.strip():
                    errors.append("'payload.summary' is missing or blank")
                elif len(summary) > MAX_SUMMARY:
                    errors.append(f"'payload.summary' is too long: at most {MAX_SUMMARY} characters")
                source = payload.get("source")
                if not isinstance(source, str) or not source.strip():
                    errors.append("'payload.source' is missing or blank")
                if payload.get("severity") not in SEVERITIES:
                    errors.append(f"'payload.severity' is invalid: it must be one of {', '.join(SEVERITIES)}")
                details = payload.get("custom_details")
                if details is not None and not isinstance(details, dict | list | str | int | float | bool):
                    errors.append("'payload.custom_details' must be JSON")
        if errors:
            raise InvalidEvent(errors)
        return event

    def open_alert(self, dedup_key: str, routing_key: str | None = None) -> dict[str, Any] | None:
        for alert in reversed(self.alerts):
            if alert["dedup_key"] == dedup_key and alert["status"] in OPEN:
                if routing_key is None or alert["routing_key"] == routing_key:
                    return alert
        return None

    def enqueue(self, event: dict[str, Any]) -> dict[str, Any]:
        """Apply a valid event; the event as recorded (its `outcome` says what it did)."""
        now = time.time()
        action = event["event_action"]
        routing_key = event["routing_key"]
        dedup_key = event.get("dedup_key") or uuid.uuid4().hex
        record: dict[str, Any] = {
            "id": uuid.uuid4().hex,
            "at": now,
            "received_at": iso(now),
            "event_action": action,
            "dedup_key": dedup_key,
            "routing_key": _mask(routing_key),
            "via": "events_api",
            "alert_id": None,
            "outcome": "",
            "event": {k: v for k, v in event.items() if k != "routing_key"},
        }
        alert = self.open_alert(dedup_key, routing_key)
        if action == "trigger":
            if alert is None:
                alert = self._new_alert(event, dedup_key, routing_key, now)
                record["outcome"] = "created"  # a new alert: its incident notifies on-call
            else:
                record["outcome"] = "deduplicated"  # appended to the open alert, nobody notified
                alert["dedup_count"] += 1
                alert["last_event_at"] = now
        elif alert is None:
            # No open alert with this key (never was, already resolved, or another routing key).
            record["outcome"] = "dropped"
        else:
            record["outcome"] = self._change(alert, action, by=None, now=now)
        if alert is not None:
            record["alert_id"] = alert["id"]
            alert["events"].append(record["id"])
        self.events.append(record)
        del self.events[:-EVENT_LOG_SIZE]
        self.changed()
        return record

    def _new_alert(
        self, event: dict[str, Any], dedup_key: str, routing_key: str, now: float
    ) -> dict[str, Any]:
        payload = event["payload"]
        self.incident_number += 1
        alert = {
            "id": _pd_id("Q"),
            "incident_id": _pd_id("P"),
            "incident_number": self.incident_number,
            "dedup_key": dedup_key,
            "routing_key": routing_key,
            "status": "triggered",
            "summary": payload["summary"],
            "source": payload["source"],
            "severity": payload["severity"],
            "component": payload.get("component"),
            "group": payload.get("group"),
            "class": payload.get("class"),
            "custom_details": payload.get("custom_details"),
            "links": event.get("links") or [],
            "client": event.get("client"),
            "client_url": event.get("client_url"),
            "created_at": now,
            "last_event_at": now,
            "acknowledged_at": None,
            "acknowledged_by": None,
            "resolved_at": None,
            "resolved_by": None,
            "dedup_count": 0,
            "notifications": 1,  # the trigger that opened it notified on-call once
            "events": [],
        }
        self.alerts.append(alert)
        return alert

    @staticmethod
    def _change(alert: dict[str, Any], action: str, by: str | None, now: float) -> str:
        """Acknowledge or resolve an open alert; the outcome ("acknowledged", "resolved", "unchanged")."""
        if action == "acknowledge":
            if alert["status"] == "acknowledged":
                return "unchanged"
            alert.update(status="acknowledged", acknowledged_at=now, acknowledged_by=by)
            return "acknowledged"
        alert.update(status="resolved", resolved_at=now, resolved_by=by)
        return "resolved"

    # -- a person in PagerDuty's app -----------------------------------------------

    def act(self, dedup_key: str, action: str, user: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """Acknowledge or resolve the open alert as `user` would; (alert, event) or None (no open alert)."""
        alert = self.open_alert(dedup_key)
        if alert is None:
            return None
        now = time.time()
        record = {
            "id": uuid.uuid4().hex,
            "at": now,
            "received_at": iso(now),
            "event_action": action,
            "dedup_key": dedup_key,
            "routing_key": _mask(alert["routing_key"]),
            "via": f"web ({user})",
            "alert_id": alert["id"],
            "outcome": self._change(alert, action, by=user, now=now),
            "event": {},
        }
        alert["events"].append(record["id"])
        self.events.append(record)
        del self.events[:-EVENT_LOG_SIZE]
        self.changed()
        return alert, record

    def webhook_body(self, alert: dict[str, Any], event_type: str, user: str, now: float) -> bytes:
        """A V3 webhook: one event whose data is the incident (developer.pagerduty.com, "V3 Overview")."""
        user_id = "P" + hashlib.sha1(user.encode()).hexdigest()[:6].upper()
        incident_id = alert["incident_id"]
        service_id = "PSANDBX"
        incident = {
            "id": incident_id,
            "type": "incident",
            "self": f"https://api.pagerduty.com/incidents/{incident_id}",
            "html_url": f"{WEB_HOST}/incidents/{incident_id}",
            "number": alert["incident_number"],
            "status": alert["status"],
            "incident_key": alert["dedup_key"],
            "created_at": iso(alert["created_at"])[:19] + "Z",
            "title": alert["summary"],
            "service": {
                "html_url": f"{WEB_HOST}/services/{service_id}",
                "id": service_id,
                "self": f"https://api.pagerduty.com/services/{service_id}",
                "summary": "Sandbox service",
                "type": "service_reference",
            },
            "assignees": [
                {
                    "html_url": f"{WEB_HOST}/users/{user_id}",
                    "id": user_id,
                    "self": f"https://api.pagerduty.com/users/{user_id}",
                    "summary": user,
                    "type": "user_reference",
                }
            ],
            "escalation_policy": {
                "html_url": f"{WEB_HOST}/escalation_policies/PSANDEP",
                "id": "PSANDEP",
                "self": "https://api.pagerduty.com/escalation_policies/PSANDEP",
                "summary": "Default",
                "type": "escalation_policy_reference",
            },
            "teams": [],
            "priority": None,
            "urgency": "high" if alert["severity"] in ("critical", "error") else "low",
            "conference_bridge": None,
            "resolve_reason": None,
        }
        envelope = {
            "event": {
                "id": str(uuid.uuid4()),
                "event_type": event_type,
                "resource_type": "incident",
                "occurred_at": iso(now),
                "agent": {
                    "html_url": f"{WEB_HOST}/users/{user_id}",
                    "id": user_id,
                    "self": f"https://api.pagerduty.com/users/{user_id}",
                    "summary": user,
                    "type": "user_reference",
                },
                "client": None,
                "data": incident,
            }
        }
        return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()

    def webhook_headers(self, body: bytes) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "PagerDuty-Webhook/V3.0",
            "X-Webhook-Id": str(uuid.uuid4()),
            "X-Webhook-Subscription": "PSANDWH",
        }
        if self.webhook_secret:
            headers["X-PagerDuty-Signature"] = pagerduty_signature(self.webhook_secret, body)
        return headers

    def alert_view(self, alert: dict[str, Any]) -> dict[str, Any]:
        view = {k: v for k, v in alert.items() if k != "routing_key"}
        view["routing_key"] = _mask(alert["routing_key"])
        return view


# -- the Events API endpoint -------------------------------------------------------------


def _invalid(errors: list[str]) -> JSONResponse:
    return JSONResponse(
        {"status": "invalid event", "message": "Event object is invalid", "errors": errors}, status_code=400
    )


def _fault_response(fault: dict[str, Any]) -> Response:
    status = fault["status"]
    headers = {"Retry-After": str(fault["retry_after"])} if fault["retry_after"] is not None else None
    if status == 400:
        return _invalid(["injected by the sandbox's fault switch"])
    body = _FAULT_BODIES.get(status, {"status": "error", "message": f"HTTP {status}"})
    return JSONResponse(body, status_code=status, headers=headers)


async def enqueue_endpoint(request: Request) -> Response:
    sb: PagerDutySandbox = request.app.state.sandbox
    fault = sb.faults.take()
    response: Response | None = None
    if fault is None or fault["perform"]:
        response = await _enqueue(sb, request)
    if fault is not None:
        if fault["delay"] > 0:
            await asyncio.sleep(fault["delay"])  # done, but the answer comes late (or never, to a client)
        if fault["status"] is not None:
            response = _fault_response(fault)
    assert response is not None
    return response


async def _enqueue(sb: PagerDutySandbox, request: Request) -> Response:
    raw = await request.body()
    if len(raw) > MAX_EVENT_BYTES:
        return _invalid([f"Event object is too large: at most {MAX_EVENT_BYTES // 1024} KB"])
    try:
        event = json.loads(raw)
    except ValueError:
        return _invalid(["Event object is not valid JSON"])
    try:
        sb.validate(event)
    except InvalidEvent as exc:
        return _invalid(exc.errors)
    record = sb.enqueue(event)
    return JSONResponse(
        {"status": "success", "message": "Event processed", "dedup_key": record["dedup_key"]},
        status_code=202,
    )


# -- control API (/_sandbox) -------------------------------------------------------------


async def control_events(request: Request) -> Response:
    """Every event received, oldest first; ?dedup_key= filters, ?since=<epoch seconds> keeps those
    received at or after it (a poller that keeps up with a busy sandbox asks only for what is new)."""
    sb: PagerDutySandbox = request.app.state.sandbox
    wanted = request.query_params.get("dedup_key")
    try:
        since = float(request.query_params.get("since") or 0)
    except ValueError:
        return bad_request("since: epoch seconds, e.g. 1764600000.5")
    events = sb.events
    if since:
        # Received in order: find the first event at or after `since` from the end.
        start = len(events)
        while start > 0 and events[start - 1]["at"] >= since:
            start -= 1
        events = events[start:]
    return JSONResponse([e for e in events if wanted is None or e["dedup_key"] == wanted])


async def control_alerts(request: Request) -> Response:
    """Every alert, oldest first; ?dedup_key= filters."""
    sb: PagerDutySandbox = request.app.state.sandbox
    wanted = request.query_params.get("dedup_key")
    return JSONResponse([sb.alert_view(a) for a in sb.alerts if wanted is None or a["dedup_key"] == wanted])


async def control_config(request: Request) -> Response:
    """GET: where webhooks go; POST {"webhook_url"?, "webhook_secret"?} changes it (the secret is not shown)."""
    sb: PagerDutySandbox = request.app.state.sandbox
    if request.method == "POST":
        try:
            spec = await control_json(request)
            if not isinstance(spec, dict):
                raise ValueError("expected {'webhook_url'?: str, 'webhook_secret'?: str}")
        except ValueError as exc:
            return bad_request(str(exc))
        if "webhook_url" in spec:
            sb.webhook_url = spec["webhook_url"] or None
        if "webhook_secret" in spec:
            sb.webhook_secret = spec["webhook_secret"] or None
    return JSONResponse(
        {
            "ok": True,
            "webhook_url": sb.webhook_url,
            "webhook_signed": bool(sb.webhook_secret),
            "routing_keys": [_mask(k) for k in sb.routing_keys],
        }
    )


async def control_webhooks(request: Request) -> Response:
    return JSONResponse(list(request.app.state.sandbox.webhooks.entries))


def _person_action(action: str, event_type: str):
    async def endpoint(request: Request) -> Response:
        """POST {"dedup_key", "user"}: a person acts on the open alert in PagerDuty's app; a V3 webhook follows."""
        sb: PagerDutySandbox = request.app.state.sandbox
        try:
            spec = await control_json(request)
            dedup_key = str(spec["dedup_key"])
            user = str(spec.get("user") or "Sandbox User")
        except (ValueError, TypeError, KeyError) as exc:
            return bad_request(f"expected {{'dedup_key': str, 'user'?: str}}: {exc}")
        done = sb.act(dedup_key, action, user)
        if done is None:
            return bad_request(f"no open alert with dedup_key {dedup_key!r}", status=404)
        alert, record = done
        body = sb.webhook_body(alert, event_type, user, record["at"])
        delivery = await deliver_webhook(
            sb.webhook_url, body, sb.webhook_headers(body), sb.webhooks, event_type
        )
        return JSONResponse({"ok": True, "alert": sb.alert_view(alert), "webhook": delivery})

    return endpoint


async def control_health(request: Request) -> Response:
    return JSONResponse({"ok": True})


# -- the human view ------------------------------------------------------------------------

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">{refresh}
<title>PagerDuty sandbox</title>
<style>{style} header {{ background: #06ac38; }}</style></head><body>
<header>PagerDuty sandbox <small>Events API v2 &middot; {alerts} alert(s), {events} event(s)</small></header>
<main>{body}</main></body></html>"""


def _alert_html(sb: PagerDutySandbox, alert: dict[str, Any]) -> str:
    e = html.escape
    by_id = {ev["id"]: ev for ev in sb.events}
    rows = []
    for event_id in alert["events"]:
        ev = by_id.get(event_id)
        if ev is None:
            continue  # fell off the event log
        summary = ((ev.get("event") or {}).get("payload") or {}).get("summary", "")
        rows.append(
            f"<tr><td>{e(ev['received_at'])}</td><td>{e(ev['event_action'])}</td>"
            f"<td class='status'>{e(ev['outcome'])}</td><td>{e(ev['via'])}</td><td>{e(str(summary))}</td></tr>"
        )
    details = json.dumps(alert.get("custom_details"), indent=1, ensure_ascii=False)
    return (
        f"<h2 id='{e(alert['id'])}'>{e(alert['dedup_key'])} "
        f"<span class='status {e(alert['status'])}'>{e(alert['status'])}</span> "
        f"<span class='muted'>#{alert['incident_number']} &middot; {e(alert['severity'])} &middot; "
        f"{e(alert['source'])} &middot; deduplicated {alert['dedup_count']}&times;"
        f"{' &middot; acknowledged by ' + e(alert['acknowledged_by']) if alert.get('acknowledged_by') else ''}"
        f"</span></h2>"
        f"<div>{e(alert['summary'])}</div><pre class='muted'>{e(details)}</pre>"
        "<table><tr><th>Received</th><th>Action</th><th>Outcome</th><th>Via</th><th>Summary</th></tr>"
        + "".join(rows)
        + "</table>"
    )


async def index_page(request: Request) -> Response:
    sb: PagerDutySandbox = request.app.state.sandbox
    refresh = request.query_params.get("refresh", "5")
    body = "\n".join(_alert_html(sb, a) for a in reversed(sb.alerts)) or "<p class='muted'>No alerts yet.</p>"
    page = _PAGE.format(
        refresh=f'<meta http-equiv="refresh" content="{html.escape(refresh)}">' if refresh != "0" else "",
        style=PAGE_STYLE,
        alerts=len(sb.alerts),
        events=len(sb.events),
        body=body,
    )
    return HTMLResponse(page)


# -- the app ------------------------------------------------------------------------------


def create_app(
    data_dir: str | Path | None = None,
    routing_keys: list[str] | None = None,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
) -> Starlette:
    """The sandbox as an ASGI app; ``app.state.sandbox`` is its PagerDutySandbox.

    `data_dir`: where its state file lives (None: nothing kept across restarts).
    """
    state_file = Path(data_dir) / STATE_FILE_NAME if data_dir else None
    sandbox = PagerDutySandbox(state_file, routing_keys, webhook_url, webhook_secret)
    routes = [
        Route("/", index_page, methods=["GET"]),
        Route("/v2/enqueue", enqueue_endpoint, methods=["POST"]),
        Route("/_sandbox/health", control_health, methods=["GET"]),
        Route("/_sandbox/events", control_events, methods=["GET"]),
        Route("/_sandbox/alerts", control_alerts, methods=["GET"]),
        Route("/_sandbox/faults", control_faults, methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/reset", control_reset, methods=["POST"]),
        Route("/_sandbox/config", control_config, methods=["GET", "POST"]),
        Route("/_sandbox/webhooks", control_webhooks, methods=["GET"]),
        Route(
            "/_sandbox/acknowledge", _person_action("acknowledge", "incident.acknowledged"), methods=["POST"]
        ),
        Route("/_sandbox/resolve", _person_action("resolve", "incident.resolved"), methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.sandbox = sandbox
    return app


@contextlib.asynccontextmanager
async def run_sandbox(
    data_dir: str | Path | None = None,
    routing_keys: list[str] | None = None,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> AsyncIterator[str]:
    """A PagerDuty sandbox on a free port for the length of the block; yields its base URL."""
    from .slack import serve_in_background

    app = create_app(data_dir, routing_keys, webhook_url, webhook_secret)
    async with serve_in_background(app, host=host, port=port) as url:
        yield url


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.pagerduty", description="Local PagerDuty Events API v2 sandbox"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("PAGERDUTY_SANDBOX_PORT") or DEFAULT_PORT)
    )
    parser.add_argument("--data-dir", default=None, help="keep the state here; nothing kept if omitted")
    parser.add_argument(
        "--routing-key",
        action="append",
        metavar="KEY",
        help=f"accepted integration key, 32 characters (repeatable; default env {ROUTING_KEYS_ENV}, "
        f"comma separated, else {DEFAULT_ROUTING_KEY})",
    )
    parser.add_argument("--webhook-url", default=os.environ.get("PAGERDUTY_SANDBOX_WEBHOOK_URL") or None)
    parser.add_argument(
        "--webhook-secret",
        default=None,
        help=f"V3 webhook signing secret (default env {WEBHOOK_SECRET_ENV}; prefer it: `ps` shows command lines)",
    )
    opts = parser.parse_args(argv)
    keys = opts.routing_key or parse_keys(os.environ.get(ROUTING_KEYS_ENV)) or [DEFAULT_ROUTING_KEY]
    bad = [k for k in keys if len(k) != ROUTING_KEY_LENGTH]
    if bad:
        raise SystemExit(f"a routing key is {ROUTING_KEY_LENGTH} characters; {len(bad)} given are not")
    secret = opts.webhook_secret or os.environ.get(WEBHOOK_SECRET_ENV) or None
    app = create_app(opts.data_dir, keys, opts.webhook_url, secret)
    print(
        f"PagerDuty sandbox: http://{opts.host}:{opts.port}/  "
        f"(Events API: http://{opts.host}:{opts.port}/v2/enqueue; webhooks to {opts.webhook_url or 'nowhere'})",
        flush=True,
    )
    uvicorn.run(app, host=opts.host, port=opts.port, log_level="warning", timeout_graceful_shutdown=2)


if __name__ == "__main__":
    main()
