"""HTTP alert receivers: Alertmanager, Grafana, PagerDuty Events v2 and a small generic JSON.

    python -m starter.alerts --port 8000        (incident dev starts it too)

Each firing alert maps to an incident key and a severity and is delivered to
that incident's workflow with signal-with-start: the first alert for a key
declares the incident, later ones are added to it, and nothing is declared
twice however many arrive at once (Temporal starts one workflow per id).

A storm cannot be one Temporal call per alert (the dev server does 20-40
operations a second), so alerts for the same key are gathered for a short
window and delivered as one signal. The sender gets its 202 only after that
signal is durably in Temporal: a receiver crash never loses an acknowledged
alert, and a Temporal outage answers 503 so the sender retries.

Incidents this receiver declares are also handed to their Slack channel's
ChannelAnnouncer (workflows/announcer.py), which posts one roll-up for a storm
of new incidents instead of leaving each to queue behind Slack's rate limit.
That is presentation, so it happens after the 202, not before it.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import logging
import os
import re
import sys
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.settings import Settings, get_settings
from starter.connect import TemporalUnreachable, connect
from starter.declare import start_options
from workflows.announcer import ChannelAnnouncer
from workflows.announcer_models import (
    AnnouncerInput,
    DeclaredIncident,
    IncidentsDeclared,
    StormPolicy,
    announcer_id,
)
from workflows.incident import IncidentWorkflow
from workflows.incident_input import IncidentInput
from workflows.models import AlertBatch, AlertEvent, IncidentDeclaration, Severity, workflow_id_for
from workflows.policy import AlertMapping, Policy, load_policy

log = logging.getLogger("incident.alerts")

DEFAULT_PORT = 8000
# Long enough to gather a storm's alerts per key, short beside Temporal's own latency.
DEFAULT_BATCH_WINDOW = 0.05
# Once a key's incident is open, its later alerts only add to it: gathering them for
# longer makes a storm a few big signals (and Slack posts) instead of hundreds of small ones.
DEFAULT_FOLLOWUP_WINDOW = 0.25
# How long after its last delivery a key counts as open (the receiver cannot see it close).
OPEN_KEY_TTL = 600.0
OPEN_KEYS_KEPT = 10_000
# New incidents for one channel are told to its announcer together, after this long.
ANNOUNCE_WINDOW = 0.2
ANNOUNCE_ATTEMPTS = 4
_KEY_SAFE = re.compile(r"[^A-Za-z0-9._:@+=-]+")


class PayloadError(ValueError):
    """A payload we understand but cannot use; the message names the field."""


# ----------------------------------------------------------------- payloads


class _Payload(BaseModel):
    model_config = ConfigDict(extra="allow")


class AlertmanagerAlert(_Payload):
    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(min_length=1)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime | None = None
    endsAt: datetime | None = None
    fingerprint: str | None = None
    generatorURL: str | None = None


class AlertmanagerWebhook(_Payload):
    """Alertmanager webhook, version 4 (Grafana's webhook has the same core)."""

    version: str | None = None
    status: Literal["firing", "resolved"]
    groupKey: str = Field(min_length=1)
    receiver: str | None = None
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)
    externalURL: str | None = None
    alerts: list[AlertmanagerAlert] = Field(min_length=1)


class GrafanaWebhook(AlertmanagerWebhook):
    title: str | None = None
    message: str | None = None
    state: str | None = None
    orgId: int | None = None


class PagerDutyPayload(_Payload):
    summary: str = Field(min_length=1, max_length=1024)
    source: str = Field(min_length=1)
    severity: Literal["critical", "error", "warning", "info"]
    component: str | None = None
    group: str | None = None
    class_: str | None = Field(default=None, alias="class")
    custom_details: dict[str, Any] | str | None = None
    timestamp: datetime | None = None


class PagerDutyEvent(_Payload):
    routing_key: str = Field(min_length=1)
    event_action: Literal["trigger", "acknowledge", "resolve"]
    dedup_key: str | None = Field(default=None, max_length=255)
    payload: PagerDutyPayload | None = None
    client: str | None = None


class GenericAlert(_Payload):
    title: str = Field(min_length=1, max_length=200)
    severity: str
    dedup_key: str = Field(min_length=1, max_length=180)
    status: Literal["firing", "resolved"] = "firing"
    service: str = ""
    devices: list[str] = Field(default_factory=list)
    upstream: dict[str, str] = Field(default_factory=dict)
    symptoms: list[str] = Field(default_factory=list)
    impact: list[str] = Field(default_factory=list)


# ------------------------------------------------------------ normalisation


@dataclass
class Delivery:
    """One alert on its way to one incident."""

    key: str
    event: AlertEvent
    declaration: IncidentDeclaration


def incident_key(prefix: str, raw: str, hint: str = "") -> str:
    """A stable, readable, workflow-id-safe key: `am-HighLatency-1a2b3c4d`."""
    digest = hashlib.sha1(raw.encode()).hexdigest()[:10]
    readable = _KEY_SAFE.sub("-", hint).strip("-")[:60]
    return f"{prefix}-{readable}-{digest}" if readable else f"{prefix}-{digest}"


def _severity_from_labels(labels: dict[str, str], mapping: AlertMapping, where: str) -> Severity:
    for name in mapping.severity_labels:
        if name in labels:
            severity = mapping.severity_of(labels[name])
            if severity is None:
                known = ", ".join(sorted(mapping.severity_map))
                raise PayloadError(
                    f"{where}.{name}: unknown severity {labels[name]!r} (known: {known}, P1..P4, SEV1..SEV4)"
                )
            return severity
    return mapping.default_severity


def _devices(labels: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    devices = [d for d in (labels.get("device"), labels.get("instance_device")) if d]
    upstream: dict[str, str] = {}
    if labels.get("upstream_device"):
        if devices:
            upstream[devices[0]] = labels["upstream_device"]
        devices.append(labels["upstream_device"])
    return list(dict.fromkeys(devices)), upstream


def from_alertmanager(body: AlertmanagerWebhook, mapping: AlertMapping, source: str) -> list[Delivery]:
    name_hint = body.commonLabels.get("alertname") or body.groupLabels.get("alertname", "")
    key = incident_key("am" if source == "alertmanager" else "gf", body.groupKey, name_hint)
    deliveries = []
    for index, alert in enumerate(body.alerts):
        labels = {**body.commonLabels, **alert.labels}
        annotations = {**body.commonAnnotations, **alert.annotations}
        severity = _severity_from_labels(labels, mapping, f"alerts[{index}].labels")
        name = labels.get("alertname", "alert")
        summary = annotations.get("summary") or annotations.get("description") or ""
        fingerprint = (
            alert.fingerprint or hashlib.sha1(json.dumps(sorted(labels.items())).encode()).hexdigest()[:16]
        )
        devices, upstream = _devices(labels)
        event = AlertEvent(
            source=source,
            status=alert.status,
            fingerprint=fingerprint,
            name=name,
            summary=f"{name}: {summary}" if summary else name,
            severity=severity,
            devices=devices,
            upstream=upstream,
            labels=labels,
            starts_at=alert.startsAt,
        )
        title = getattr(body, "title", None) or body.commonAnnotations.get("summary") or summary or name
        impact = [annotations["impact"]] if annotations.get("impact") else []
        declaration = IncidentDeclaration(
            key=key,
            severity=severity,
            title=title[:200],
            service=labels.get("service", ""),
            symptoms=[],
            impact=impact,
            links=[u for u in (alert.generatorURL, body.externalURL) if u],
            reporter=f"{source} ({body.receiver})" if body.receiver else source,
            detected_at=alert.startsAt,
            devices=devices,
            upstream=upstream,
        )
        deliveries.append(Delivery(key, event, declaration))
    return deliveries


def from_pagerduty(body: PagerDutyEvent, mapping: AlertMapping) -> list[Delivery]:
    if body.event_action == "trigger" and body.payload is None:
        raise PayloadError("payload: required for event_action 'trigger'")
    if body.event_action != "trigger" and not body.dedup_key:
        raise PayloadError(f"dedup_key: required for event_action {body.event_action!r}")
    payload = body.payload
    raw_key = body.dedup_key or f"{payload.source}|{payload.summary}"  # type: ignore[union-attr]
    key = incident_key("pd", raw_key, body.dedup_key or "")
    severity = mapping.severity_of(payload.severity) if payload else None
    status = {"trigger": "firing", "resolve": "resolved", "acknowledge": "acknowledged"}[body.event_action]
    summary = payload.summary if payload else body.dedup_key or ""
    details = payload.custom_details if payload and isinstance(payload.custom_details, dict) else {}
    labels = {k: str(v) for k, v in details.items() if isinstance(v, (str, int, float))}
    devices, upstream = _devices({**labels, **({"device": payload.source} if payload else {})})
    event = AlertEvent(
        source="pagerduty",
        status=status,
        fingerprint=raw_key,
        name=summary,
        summary=summary,
        severity=severity,
        devices=devices,
        upstream=upstream,
        labels=labels,
        starts_at=payload.timestamp if payload else None,
    )
    declaration = IncidentDeclaration(
        key=key,
        severity=severity or mapping.default_severity,
        title=summary[:200] or key,
        service=(payload.component or payload.group or "") if payload else "",
        reporter="pagerduty",
        detected_at=payload.timestamp if payload else None,
        devices=devices,
        upstream=upstream,
    )
    return [Delivery(key, event, declaration)]


def from_generic(body: GenericAlert, mapping: AlertMapping) -> list[Delivery]:
    severity = mapping.severity_of(body.severity)
    if severity is None:
        raise PayloadError(
            f"severity: unknown severity {body.severity!r} (P1..P4, SEV1..SEV4 or {', '.join(mapping.severity_map)})"
        )
    key = incident_key("al", body.dedup_key, body.dedup_key)
    event = AlertEvent(
        source="generic",
        status=body.status,
        fingerprint=body.dedup_key + "|" + body.title,
        name=body.title,
        summary=body.title,
        severity=severity,
        devices=body.devices,
        upstream=body.upstream,
    )
    declaration = IncidentDeclaration(
        key=key,
        severity=severity,
        title=body.title,
        service=body.service,
        symptoms=body.symptoms,
        impact=body.impact,
        reporter="alert",
        devices=body.devices,
        upstream=body.upstream,
    )
    return [Delivery(key, event, declaration)]


# ------------------------------------------------------------------ batching


@dataclass
class _Batch:
    deliveries: list[Delivery] = field(default_factory=list)
    done: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclass
class Outcome:
    incident_id: str
    new: bool
    delivered: bool = True  # False: only resolved alerts, and no open incident to give them to


class AlertBatcher:
    """Gathers alerts per incident key for a short window and delivers them as one signal.

    Flushes for one key run one after another, so a key's alerts reach its
    workflow in the order they arrived. A key whose incident this receiver
    delivered to recently gathers for `followup_window` instead: the first
    alert of a key declares fast, the storm behind it costs a few signals.
    """

    def __init__(
        self,
        deliver: Callable[[str, list[Delivery]], Any],
        window: float = DEFAULT_BATCH_WINDOW,
        followup_window: float | None = None,
    ) -> None:
        self._deliver = deliver
        self._window = window
        self._followup_window = DEFAULT_FOLLOWUP_WINDOW if followup_window is None else followup_window
        self._pending: dict[str, _Batch] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._open: OrderedDict[str, float] = OrderedDict()  # key -> loop time of its last delivery

    async def submit(self, delivery: Delivery) -> Outcome:
        batch = self._pending.get(delivery.key)
        if batch is None:
            batch = self._pending[delivery.key] = _Batch()
            window = self._followup_window if self._is_open(delivery.key) else self._window
            asyncio.get_running_loop().call_later(window, self._start_flush, delivery.key)
        batch.deliveries.append(delivery)
        return await asyncio.shield(batch.done)

    def _is_open(self, key: str) -> bool:
        seen = self._open.get(key)
        return seen is not None and asyncio.get_running_loop().time() - seen < OPEN_KEY_TTL

    def _remember(self, key: str, outcome: Outcome) -> None:
        self._open.pop(key, None)
        if outcome.delivered:
            self._open[key] = asyncio.get_running_loop().time()
            while len(self._open) > OPEN_KEYS_KEPT:
                self._open.popitem(last=False)

    def _start_flush(self, key: str) -> None:
        asyncio.get_running_loop().create_task(self._flush(key))

    async def _flush(self, key: str) -> None:
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            batch = self._pending.pop(key)
            try:
                outcome = await self._deliver(key, batch.deliveries)
            except BaseException as exc:  # handed to every waiting request
                batch.done.set_exception(exc)
                batch.done.exception()  # mark retrieved: a request may have gone away
            else:
                self._remember(key, outcome)
                batch.done.set_result(outcome)
        if not lock.locked() and key not in self._pending:
            self._locks.pop(key, None)


class TemporalDelivery:
    """Signal-with-start into Temporal, connecting lazily (the receiver starts even if Temporal is down)."""

    def __init__(self, settings: Settings, client: Client | None = None) -> None:
        self._settings = settings
        self._client = client
        self._connecting = asyncio.Lock()
        # Told of each incident this receiver declared (after its signal-with-start returned).
        self.on_declared: Callable[[IncidentDeclaration], None] | None = None

    async def client(self) -> Client:
        if self._client is None:
            async with self._connecting:
                if self._client is None:
                    self._client = await connect(self._settings)
        return self._client

    async def __call__(self, key: str, deliveries: list[Delivery]) -> Outcome:
        client = await self.client()
        source = deliveries[0].event.source
        batch = AlertBatch(user=source, alerts=[d.event for d in deliveries])
        firing = [d for d in deliveries if d.event.status == "firing"]
        workflow_id = workflow_id_for(key)
        if not firing:
            # Nothing to declare: give the news to an open incident, or say there is none.
            try:
                await client.get_workflow_handle(workflow_id).signal(IncidentWorkflow.alerts, batch)
            except RPCError as exc:
                if exc.status == RPCStatusCode.NOT_FOUND:
                    return Outcome(workflow_id, new=False, delivered=False)
                raise
            return Outcome(workflow_id, new=False)
        declaration = _merge_declarations(firing)
        handle = await client.start_workflow(
            IncidentWorkflow.run,
            IncidentInput(declaration=declaration),
            start_signal="alerts",
            start_signal_args=[batch],
            **start_options(declaration, self._settings.temporal_task_queue),
        )
        response = getattr(handle, "_start_workflow_response", None)
        new = bool(getattr(response, "started", False))
        if new and self.on_declared is not None:
            self.on_declared(declaration)
        return Outcome(workflow_id, new=new)


class AnnouncerFeed:
    """Tells each Slack channel's ChannelAnnouncer which incidents this receiver just declared.

    New incidents are gathered per channel for ANNOUNCE_WINDOW and given to the
    announcer in one signal-with-start. This runs after the 202: the alert is
    already durable in its incident, and the incident announces itself in
    Slack whatever happens here. A failure is retried a few times, then logged.
    """

    def __init__(
        self,
        client: Callable[[], Awaitable[Client]],
        policy: Policy,
        task_queue: str,
        storm: StormPolicy | None = None,
        window: float = ANNOUNCE_WINDOW,
    ) -> None:
        self._client = client
        self._policy = policy
        self._task_queue = task_queue
        self._storm = storm or StormPolicy()
        self._window = window
        self._pending: dict[str, list[DeclaredIncident]] = {}
        self._tasks: set[asyncio.Task] = set()

    def declared(self, declaration: IncidentDeclaration) -> None:
        channel = self._policy.for_severity(declaration.severity).channel
        pending = self._pending.get(channel)
        if pending is None:
            pending = self._pending[channel] = []
            asyncio.get_running_loop().call_later(self._window, self._start_flush, channel)
        pending.append(
            DeclaredIncident(
                workflow_id=declaration.workflow_id,
                key=declaration.key,
                severity=declaration.severity,
                title=declaration.title,
                service=declaration.service,
            )
        )

    def _start_flush(self, channel: str) -> None:
        task = asyncio.get_running_loop().create_task(self._flush(channel))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(self, channel: str) -> None:
        batch = IncidentsDeclared(incidents=self._pending.pop(channel))
        for attempt in range(ANNOUNCE_ATTEMPTS):
            try:
                temporal = await self._client()
                await temporal.start_workflow(
                    ChannelAnnouncer.run,
                    AnnouncerInput(channel=channel, storm=self._storm),
                    id=announcer_id(channel),
                    task_queue=self._task_queue,
                    start_signal="declared",
                    start_signal_args=[batch],
                    static_summary=f"Slack announcer for #{channel}",
                )
                return
            except (TemporalUnreachable, RPCError) as exc:
                if attempt + 1 == ANNOUNCE_ATTEMPTS:
                    log.warning(
                        "announcer for #%s not told of %d incidents: %s",
                        channel,
                        len(batch.incidents),
                        _one_line(exc),
                    )
                    return
                await asyncio.sleep(2**attempt)


def _merge_declarations(firing: list[Delivery]) -> IncidentDeclaration:
    """The first alert's declaration, with the batch's worst severity, devices and symptoms."""
    declarations = [d.declaration for d in firing]
    first = declarations[0]
    symptoms = list(dict.fromkeys([*first.symptoms, *(d.event.summary or d.event.name for d in firing)]))
    worst = min(declarations, key=lambda d: d.severity.rank).severity
    devices = list(dict.fromkeys(dev for d in declarations for dev in d.devices))
    upstream: dict[str, str] = {}
    for d in declarations:
        for device, up in d.upstream.items():
            upstream.setdefault(device, up)
    return first.model_copy(
        update={"severity": worst, "devices": devices, "upstream": upstream, "symptoms": symptoms[:50]}
    )


# ----------------------------------------------------------------------- app


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error": message}, status_code=status)


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for item in exc.errors()[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "body"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def create_app(
    settings: Settings | None = None,
    policy: Policy | None = None,
    client: Client | None = None,
    batch_window: float = DEFAULT_BATCH_WINDOW,
    token: str | None = None,
    followup_window: float | None = None,
    storm: StormPolicy | None = None,
    rollup: bool = True,
) -> Starlette:
    """The receivers; `rollup=False` leaves the channel announcers out (each incident announces itself)."""
    settings = settings or get_settings()
    policy = policy or load_policy(settings.incident_policy)
    token = token if token is not None else os.environ.get("ALERT_RECEIVER_TOKEN") or None
    mapping = policy.alerts
    state: dict[str, Any] = {}

    def receiver() -> tuple[AlertBatcher, TemporalDelivery]:
        if "batcher" not in state:  # made inside the running loop
            delivery = TemporalDelivery(settings, client)
            if rollup:
                feed = AnnouncerFeed(delivery.client, policy, settings.temporal_task_queue, storm)
                delivery.on_declared = feed.declared
            state["delivery"] = delivery
            state["batcher"] = AlertBatcher(delivery, batch_window, followup_window)
        return state["batcher"], state["delivery"]

    def authorised(request: Request) -> bool:
        if not token:
            return True
        given = request.headers.get("authorization", "")
        return given.startswith("Bearer ") and hmac.compare_digest(given[7:], token)

    def endpoint(model: type[BaseModel], normalise: Callable[[Any], list[Delivery]]):
        async def receive(request: Request) -> JSONResponse:
            if not authorised(request):
                return _error(
                    401, "missing or wrong bearer token (Authorization: Bearer <ALERT_RECEIVER_TOKEN>)"
                )
            raw = await request.body()
            try:
                data = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                return _error(400, f"body is not JSON: {exc}")
            if not isinstance(data, dict):
                return _error(400, "body must be a JSON object")
            try:
                deliveries = normalise(model.model_validate(data))
            except ValidationError as exc:
                return _error(422, _validation_message(exc))
            except PayloadError as exc:
                return _error(422, str(exc))
            batcher, _ = receiver()
            try:
                outcomes = await asyncio.gather(*(batcher.submit(d) for d in deliveries))
            except (TemporalUnreachable, RPCError) as exc:
                log.warning("alert not delivered, answering 503: %s", exc)
                return _error(
                    503, f"Temporal is unreachable, alert not accepted; retry later ({_one_line(exc)})"
                )
            incidents: dict[str, dict[str, Any]] = {}
            for outcome in outcomes:
                entry = incidents.setdefault(
                    outcome.incident_id,
                    {"incident_id": outcome.incident_id, "new": False, "delivered": outcome.delivered},
                )
                entry["new"] = entry["new"] or outcome.new
            return JSONResponse(
                {"ok": True, "accepted": len(deliveries), "incidents": list(incidents.values())},
                status_code=202,
            )

        return receive

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    routes = [
        Route(
            "/alerts/alertmanager",
            endpoint(AlertmanagerWebhook, lambda b: from_alertmanager(b, mapping, "alertmanager")),
            methods=["POST"],
        ),
        Route(
            "/alerts/grafana",
            endpoint(GrafanaWebhook, lambda b: from_alertmanager(b, mapping, "grafana")),
            methods=["POST"],
        ),
        Route(
            "/alerts/pagerduty",
            endpoint(PagerDutyEvent, lambda b: from_pagerduty(b, mapping)),
            methods=["POST"],
        ),
        Route("/alerts", endpoint(GenericAlert, lambda b: from_generic(b, mapping)), methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    return Starlette(routes=routes)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def main(argv: Iterable[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="HTTP alert receivers for incidents")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("ALERT_RECEIVER_PORT") or DEFAULT_PORT)
    )
    parser.add_argument(
        "--batch-window",
        type=float,
        default=DEFAULT_BATCH_WINDOW,
        help="seconds a new key's alerts are gathered before its incident is declared",
    )
    parser.add_argument(
        "--no-rollup",
        dest="rollup",
        action="store_false",
        help="no storm roll-ups: each incident announces itself in Slack, however many arrive at once",
    )
    parser.add_argument(
        "--storm-threshold",
        type=int,
        default=StormPolicy().threshold,
        help="new incidents in one channel within 10 s that make a storm (and a roll-up)",
    )
    parser.add_argument(
        "--followup-window",
        type=float,
        default=DEFAULT_FOLLOWUP_WINDOW,
        help="seconds later alerts for an open incident are gathered into one signal",
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s alerts %(levelname)s %(message)s"
    )
    print(f"alert receivers listening on http://{args.host}:{args.port}/alerts", flush=True)
    app = create_app(
        batch_window=args.batch_window,
        followup_window=args.followup_window,
        storm=StormPolicy(threshold=args.storm_threshold),
        rollup=args.rollup,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
