"""Acknowledgements that come back from PagerDuty and Opsgenie, received beside the alert receivers.

    POST /webhooks/pagerduty   a V3 webhook subscription (incident.acknowledged),
                               signed X-PagerDuty-Signature with PAGERDUTY_WEBHOOK_SECRET
    POST /webhooks/opsgenie    an outgoing Webhook integration's alert callbacks (Acknowledge),
                               with the custom header X-Opsgenie-Webhook-Token: OPSGENIE_WEBHOOK_TOKEN

Someone acknowledges in PagerDuty's or Opsgenie's app: the incident whose key is the
PagerDuty incident's `incident_key` (our dedup key) or the Opsgenie alert's `alias` gets the
`acknowledge` command, as from Slack or the CLI, and all its paging stops. Nothing else
these services say changes an incident: a resolve or close there is answered "ignored"
(the incident is resolved by a person here, with a resolution and a root cause).

The command goes as an update (starter/declare.py `send_command`), so the answer says
whether it was applied:

- 202 `{"incident_id", "acknowledged": true}`: applied;
- 200 `{"incident_id", "acknowledged": false, "reason"}`: the incident refused it (already
  acknowledged, which is every echo of our own acknowledgement after a claim, or closed).
  Never a 4xx or 5xx: PagerDuty retries those and disables a subscription that keeps failing;
- 202 `{"incident_id", "acknowledged": null, "pending"}`: no worker answered within
  ACK_WAIT seconds; the command was sent as a signal and is applied when one runs;
- 200 `{"ignored": <event type or action>}`: not an acknowledgement;
- 401 a missing or wrong signature or token, or none configured on the receiver (nothing
  unsigned is trusted); 400 a body that is not JSON or lacks a field (named); 413 over
  MAX_BODY_BYTES; 404 no incident with that key; 503 with Retry-After: Temporal unreachable.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from temporalio.client import Client

from activities.paging.pagerduty import verify_pagerduty_signature
from activities.settings import Settings
from starter.declare import (
    CommandPending,
    CommandRefused,
    IncidentClosed,
    IncidentNotFound,
    send_command,
)
from starter.edge import (
    RETRY_AFTER_SECONDS,
    Refused,
    error_response,
    is_transient,
    one_line,
    parse_json,
    read_bounded,
    validation_message,
)
from workflows import limits
from workflows.models import AcknowledgeSignal, workflow_id_for

log = logging.getLogger("incident.webhooks")

# How long the sender waits for the incident's answer before it is sent as a signal instead:
# well inside PagerDuty's and Opsgenie's delivery timeouts.
ACK_WAIT = 5.0
SIGNATURE_HEADER = "X-PagerDuty-Signature"
TOKEN_HEADER = "X-Opsgenie-Webhook-Token"


class Malformed(ValueError):
    """A webhook body we cannot use; the message names the field."""


@dataclass(frozen=True)
class Acknowledgement:
    """Somebody acknowledged our incident at a paging service."""

    key: str  # the incident key (the PagerDuty incident_key, the Opsgenie alias)
    key_field: str  # where in the body it was, for a 404 that names it
    user: str
    source: str  # "pagerduty", "opsgenie"
    request_id: str | None = None  # the delivery's own id: a redelivery is the same command


@dataclass(frozen=True)
class Ignored:
    what: str  # the event type or action


# ------------------------------------------------------------------ payloads


class _Payload(BaseModel):
    model_config = ConfigDict(extra="allow")


class PagerDutyReference(_Payload):
    """A user (or service, integration) reference: who did it."""

    id: str | None = None
    summary: str | None = None
    email: str | None = None
    name: str | None = None
    type: str | None = None


class PagerDutyIncident(_Payload):
    id: str | None = None
    incident_key: str | None = None
    title: str | None = None


class PagerDutyEvent(_Payload):
    id: str | None = None
    event_type: str
    agent: PagerDutyReference | None = None
    data: dict[str, Any] | None = None  # the incident for incident.* events; checked only for those we act on


class PagerDutyWebhook(_Payload):
    """PagerDuty's V3 webhook envelope: one event, whose data is the incident."""

    event: PagerDutyEvent


class OpsgenieAlert(_Payload):
    alertId: str | None = None
    alias: str | None = None
    username: str | None = None


class OpsgenieSource(_Payload):
    name: str | None = None
    type: str | None = None


class OpsgenieCallback(_Payload):
    """The Webhook integration's alert callback (Opsgenie's "alert action data")."""

    action: str
    alert: OpsgenieAlert | None = None
    source: OpsgenieSource | None = None


# ------------------------------------------------------------- normalisation


def _readable(*candidates: str | None, fallback: str) -> str:
    """The first non-blank candidate on one line and within MAX_USER, else `fallback`."""
    for candidate in candidates:
        text = " ".join((candidate or "").split())
        if text:
            return limits.shorten(text, limits.MAX_USER)
    return fallback


def from_pagerduty(body: PagerDutyWebhook) -> Acknowledgement | Ignored:
    event = body.event
    if event.event_type != "incident.acknowledged":
        return Ignored(event.event_type)
    if event.data is None:
        raise Malformed("event.data: required for incident.acknowledged, the incident (an object)")
    try:
        incident = PagerDutyIncident.model_validate(event.data)
    except ValidationError as exc:
        raise Malformed(validation_message(exc, "event.data")) from None
    if not (incident.incident_key or "").strip():
        raise Malformed(
            "event.data.incident_key: required; the incident was not opened by this system's Events API "
            "integration (its dedup_key is our incident key)"
        )
    agent = event.agent or PagerDutyReference()
    return Acknowledgement(
        key=incident.incident_key.strip(),  # type: ignore[union-attr]
        key_field="event.data.incident_key",
        user=_readable(agent.summary, agent.email, agent.name, agent.id, fallback="PagerDuty"),
        source="pagerduty",
        request_id=f"pagerduty:{event.id}" if event.id else None,
    )


def from_opsgenie(body: OpsgenieCallback) -> Acknowledgement | Ignored:
    if body.action != "Acknowledge":
        return Ignored(body.action)
    if body.alert is None:
        raise Malformed("alert: required for action Acknowledge, the alert (an object)")
    if not (body.alert.alias or "").strip():
        raise Malformed(
            "alert.alias: required; the alert was not created by this system (its alias is our incident key)"
        )
    source = body.source or OpsgenieSource()
    return Acknowledgement(
        key=body.alert.alias.strip(),  # type: ignore[union-attr]
        key_field="alert.alias",
        user=_readable(body.alert.username, source.name, fallback="Opsgenie"),
        source="opsgenie",
    )


# ----------------------------------------------------------------- checks


def pagerduty_refusal(secret: str, raw: bytes, header: str | None) -> str | None:
    """Why a PagerDuty delivery is not trusted, or None when its signature is good."""
    if not secret:
        return (
            "PAGERDUTY_WEBHOOK_SECRET is not set on the receiver: no PagerDuty webhook is trusted "
            "(set it to the webhook subscription's signing secret)"
        )
    if not header:
        return f"{SIGNATURE_HEADER} is missing: PagerDuty signs every V3 webhook"
    if not verify_pagerduty_signature(secret, raw, header):
        return f"{SIGNATURE_HEADER}: no v1 signature matches the body signed with PAGERDUTY_WEBHOOK_SECRET"
    return None


def opsgenie_refusal(token: str, raw: bytes, header: str | None) -> str | None:
    """Why an Opsgenie callback is not trusted, or None when its token is good."""
    if not token:
        return (
            "OPSGENIE_WEBHOOK_TOKEN is not set on the receiver: no Opsgenie callback is trusted "
            f"(set it to the value of the Webhook integration's custom header {TOKEN_HEADER})"
        )
    if not header:
        return f"{TOKEN_HEADER} is missing: add it as a custom header of the Webhook integration"
    if not hmac.compare_digest(header.strip().encode(), token.encode()):
        return f"{TOKEN_HEADER} does not match OPSGENIE_WEBHOOK_TOKEN"
    return None


# ----------------------------------------------------------------------- app


async def acknowledge(client: Client, settings: Settings, ack: Acknowledgement) -> JSONResponse:
    """Give the incident the acknowledgement; the answer for the paging service."""
    workflow_id = workflow_id_for(ack.key)
    if len(ack.key) > limits.MAX_KEY:
        # Not one of ours (keys are at most MAX_KEY): no need to ask Temporal.
        return error_response(
            404,
            f"{ack.key_field}: no incident {limits.shorten(ack.key, 60)!r} (a key is at most {limits.MAX_KEY})",
        )
    command = AcknowledgeSignal(user=ack.user, source=ack.source, request_id=ack.request_id)
    try:
        entry = await send_command(
            client, ack.key, "acknowledge", command, wait=ACK_WAIT, task_queue=settings.temporal_task_queue
        )
    except IncidentNotFound as exc:
        return error_response(404, f"{ack.key_field}: {exc}")
    except (CommandRefused, IncidentClosed) as exc:
        log.info("%s acknowledgement of %s by %s not applied: %s", ack.source, workflow_id, ack.user, exc)
        return JSONResponse(
            {"ok": True, "incident_id": workflow_id, "acknowledged": False, "reason": str(exc)}
        )
    except CommandPending as exc:
        log.warning("%s acknowledgement of %s pending: %s", ack.source, workflow_id, exc)
        return JSONResponse(
            {"ok": True, "incident_id": workflow_id, "acknowledged": None, "pending": str(exc)},
            status_code=202,
        )
    except Exception as exc:
        if not is_transient(exc):
            raise
        log.warning(
            "%s acknowledgement of %s not delivered, answering 503: %s",
            ack.source,
            workflow_id,
            one_line(exc),
        )
        return error_response(
            503,
            f"Temporal is unreachable or overloaded, acknowledgement not delivered; retry later ({one_line(exc)})",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    log.info("%s acknowledged %s via %s", ack.user, workflow_id, ack.source)
    return JSONResponse(
        {"ok": True, "incident_id": workflow_id, "acknowledged": True, "text": entry.text}, status_code=202
    )


def webhook_routes(settings: Settings, client: Callable[[], Awaitable[Client]]) -> list[Route]:
    """The two webhook endpoints; `client` gives the receiver's (lazily connected) Temporal client."""

    def endpoint(
        model: type[BaseModel],
        normalise: Callable[[Any], Acknowledgement | Ignored],
        refusal: Callable[[bytes, str | None], str | None],
        header: str,
    ):
        async def receive(request: Request) -> JSONResponse:
            try:
                raw = await read_bounded(request)
            except Refused as exc:
                return error_response(exc.status, f"body: {exc.reason}")
            # Checked on the raw bytes, before anything in the body is believed.
            why = refusal(raw, request.headers.get(header))
            if why is not None:
                return error_response(401, why)
            try:
                data = parse_json(raw)
            except ValueError as exc:
                return error_response(400, f"body is not JSON: {exc}")
            if not isinstance(data, dict):
                return error_response(400, "body must be a JSON object")
            try:
                outcome = normalise(model.model_validate(data))
            except ValidationError as exc:
                return error_response(400, validation_message(exc))
            except Malformed as exc:
                return error_response(400, str(exc))
            if isinstance(outcome, Ignored):
                return JSONResponse({"ok": True, "ignored": limits.shorten(outcome.what, limits.MAX_TITLE)})
            try:
                temporal = await client()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                return error_response(
                    503,
                    f"Temporal is unreachable, acknowledgement not delivered; retry later ({one_line(exc)})",
                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                )
            return await acknowledge(temporal, settings, outcome)

        return receive

    return [
        Route(
            "/webhooks/pagerduty",
            endpoint(
                PagerDutyWebhook,
                from_pagerduty,
                lambda raw, given: pagerduty_refusal(settings.pagerduty_webhook_secret, raw, given),
                SIGNATURE_HEADER,
            ),
            methods=["POST"],
        ),
        Route(
            "/webhooks/opsgenie",
            endpoint(
                OpsgenieCallback,
                from_opsgenie,
                lambda raw, given: opsgenie_refusal(settings.opsgenie_webhook_token, raw, given),
                TOKEN_HEADER,
            ),
            methods=["POST"],
        ),
    ]
