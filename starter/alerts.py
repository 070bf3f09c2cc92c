"""HTTP alert receivers: Alertmanager, Grafana, PagerDuty Events v2 and a small generic JSON.

    python -m starter.alerts --port 8000        (incident dev starts it too)

The same app receives PagerDuty's and Opsgenie's acknowledgement webhooks at
/webhooks/pagerduty and /webhooks/opsgenie (starter/paging_webhooks.py).

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
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

import activities.settings as ports
from activities.settings import Settings, get_settings
from starter.connect import ALERT_CLIENT, TemporalUnreachable, connect
from starter.declare import start_options
from starter.edge import (
    RETRY_AFTER_SECONDS,
    Refused,
    is_transient,
    parse_json,
    read_bounded,
)
from starter.edge import error_response as _error
from starter.edge import one_line as _one_line
from starter.edge import validation_message as _validation_message
from starter.paging_webhooks import webhook_routes
from starter.receiver_metrics import ReceiverMetrics
from workflows import limits
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

DEFAULT_PORT = ports.ALERT_RECEIVER_PORT
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


# Field limits (workflows/limits.py): a value over one is refused with 422 naming the field.
LabelName = Annotated[str, StringConstraints(min_length=1, max_length=limits.MAX_LABEL_NAME)]
LabelValue = Annotated[str, StringConstraints(max_length=limits.MAX_LABEL_VALUE)]
AnnotationValue = Annotated[str, StringConstraints(max_length=limits.MAX_TEXT)]
Labels = Annotated[dict[LabelName, LabelValue], Field(max_length=limits.MAX_LABELS)]
Annotations = Annotated[dict[LabelName, AnnotationValue], Field(max_length=limits.MAX_LABELS)]
Url = Annotated[str, StringConstraints(max_length=limits.MAX_LINK)]
Short = Annotated[str, StringConstraints(max_length=limits.MAX_TITLE)]
Text = Annotated[str, StringConstraints(max_length=limits.MAX_TEXT)]
DeviceName = Annotated[str, StringConstraints(min_length=1, max_length=limits.MAX_DEVICE_NAME)]
Service = Annotated[str, StringConstraints(max_length=limits.MAX_SERVICE)]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="allow")


class AlertmanagerAlert(_Payload):
    status: Literal["firing", "resolved"]
    labels: Annotated[Labels, Field(min_length=1)]
    annotations: Annotations = Field(default_factory=dict)
    startsAt: datetime | None = None
    endsAt: datetime | None = None
    fingerprint: Short | None = None
    generatorURL: Url | None = None


class AlertmanagerWebhook(_Payload):
    """Alertmanager webhook, version 4 (Grafana's webhook has the same core)."""

    version: Short | None = None
    status: Literal["firing", "resolved"]
    groupKey: Annotated[str, StringConstraints(min_length=1, max_length=limits.MAX_TEXT)]
    receiver: Short | None = None
    groupLabels: Labels = Field(default_factory=dict)
    commonLabels: Labels = Field(default_factory=dict)
    commonAnnotations: Annotations = Field(default_factory=dict)
    externalURL: Url | None = None
    alerts: list[AlertmanagerAlert] = Field(min_length=1)

    @field_validator("alerts", mode="before")
    @classmethod
    def _not_too_many(cls, value: Any) -> Any:
        if isinstance(value, list) and len(value) > limits.MAX_ALERTS_PER_REQUEST:
            raise ValueError(
                f"{len(value):,} alerts in one group; at most {limits.MAX_ALERTS_PER_REQUEST:,} "
                "(set max_alerts in the webhook_config)"
            )
        return value


class GrafanaWebhook(AlertmanagerWebhook):
    title: Text | None = None
    message: str | None = None
    state: Short | None = None
    orgId: int | None = None


class PagerDutyPayload(_Payload):
    summary: str = Field(min_length=1, max_length=1024)
    source: DeviceName
    severity: Literal["critical", "error", "warning", "info"]
    component: Service | None = None
    group: Service | None = None
    class_: Short | None = Field(default=None, alias="class")
    custom_details: dict[str, Any] | str | None = None
    timestamp: datetime | None = None


class PagerDutyEvent(_Payload):
    routing_key: str = Field(min_length=1, max_length=128)
    event_action: Literal["trigger", "acknowledge", "resolve"]
    dedup_key: str | None = Field(default=None, max_length=255)
    payload: PagerDutyPayload | None = None
    client: Short | None = None


class GenericAlert(_Payload):
    title: str = Field(min_length=1, max_length=limits.MAX_TITLE)
    severity: str = Field(max_length=32)
    dedup_key: str = Field(min_length=1, max_length=180)
    status: Literal["firing", "resolved"] = "firing"
    service: Service = ""
    devices: list[DeviceName] = Field(default_factory=list, max_length=limits.MAX_ITEMS)
    upstream: Annotated[dict[DeviceName, DeviceName], Field(max_length=limits.MAX_ITEMS)] = Field(
        default_factory=dict
    )
    symptoms: list[Text] = Field(default_factory=list, max_length=limits.MAX_ITEMS)
    impact: list[Text] = Field(default_factory=list, max_length=limits.MAX_ITEMS)
    runbook_url: Text = ""  # the runbook to follow, as Prometheus alerts annotate it


# ------------------------------------------------------------ normalisation


@dataclass
class Delivery:
    """One alert on its way to one incident."""

    key: str
    event: AlertEvent
    declaration: IncidentDeclaration
    # When the receiver accepted it: the incident's `declared` time, however late a worker starts it.
    received_at: datetime | None = None


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


def _devices(labels: dict[str, str], where: str = "labels") -> tuple[list[str], dict[str, str]]:
    for name in ("device", "instance_device", "upstream_device"):
        if len(labels.get(name, "")) > limits.MAX_DEVICE_NAME:
            raise PayloadError(
                f"{where}.{name}: {len(labels[name]):,} characters; a device name is at most "
                f"{limits.MAX_DEVICE_NAME}"
            )
    devices = [d for d in (labels.get("device"), labels.get("instance_device")) if d]
    upstream: dict[str, str] = {}
    if labels.get("upstream_device"):
        if devices:
            upstream[devices[0]] = labels["upstream_device"]
        devices.append(labels["upstream_device"])
    return list(dict.fromkeys(devices)), upstream


def _service(value: str, where: str) -> str:
    if len(value) > limits.MAX_SERVICE:
        raise PayloadError(
            f"{where}: {len(value):,} characters; a service is at most {limits.MAX_SERVICE} "
            "(it becomes the IncidentService search attribute)"
        )
    return value


def _runbook(value: str, where: str) -> str:
    """An alert's runbook_url (Prometheus convention), checked: "" when it has none."""
    value = value.strip()
    problem = limits.http_url_problem(value) if value else None
    if problem:
        raise PayloadError(f"{where}: {problem}")
    return value


def _fingerprint(raw: str) -> str:
    """An alert's identity inside its incident, at most MAX_FINGERPRINT characters."""
    if len(raw) <= limits.MAX_FINGERPRINT:
        return raw
    return "sha1:" + hashlib.sha1(raw.encode()).hexdigest()


def _group_title(body: AlertmanagerWebhook) -> str:
    """What the alerts say is wrong: the group's summary, else its alert names (and one's summary).

    Not Grafana's notification title (`[FIRING:2]  (blue)`): that says how many fire, not what.
    """
    common = body.commonAnnotations.get("summary", "").strip()
    if common:
        return limits.shorten(common, limits.MAX_TITLE)
    names = list(
        dict.fromkeys(
            a.labels.get("alertname") or body.commonLabels.get("alertname", "") for a in body.alerts
        )
    )
    names = [n for n in names if n] or ["alert"]
    if len(names) == 1:
        first = body.alerts[0].annotations
        summary = (first.get("summary") or first.get("description") or "").strip()
        title = f"{names[0]}: {summary}" if summary else names[0]
    else:
        title = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return limits.shorten(" ".join(title.split()), limits.MAX_TITLE)


def from_alertmanager(body: AlertmanagerWebhook, mapping: AlertMapping, source: str) -> list[Delivery]:
    name_hint = body.commonLabels.get("alertname") or body.groupLabels.get("alertname", "")
    key = incident_key("am" if source == "alertmanager" else "gf", body.groupKey, name_hint)
    title = _group_title(body)
    deliveries = []
    for index, alert in enumerate(body.alerts):
        where = f"alerts[{index}].labels"
        labels = {**body.commonLabels, **alert.labels}
        annotations = {**body.commonAnnotations, **alert.annotations}
        severity = _severity_from_labels(labels, mapping, where)
        name = labels.get("alertname", "alert")
        summary = annotations.get("summary") or annotations.get("description") or ""
        fingerprint = _fingerprint(
            alert.fingerprint or hashlib.sha1(json.dumps(sorted(labels.items())).encode()).hexdigest()[:16]
        )
        devices, upstream = _devices(labels, where)
        service = _service(labels.get("service", ""), f"{where}.service")
        event = AlertEvent(
            source=source,
            status=alert.status,
            fingerprint=fingerprint,
            name=limits.shorten(name, limits.MAX_TITLE),
            summary=limits.shorten(f"{name}: {summary}" if summary else name, limits.MAX_TEXT),
            severity=severity,
            devices=devices,
            upstream=upstream,
            labels=labels,
            starts_at=alert.startsAt,
        )
        impact = [annotations["impact"]] if annotations.get("impact") else []
        given_in = (
            f"alerts[{index}].annotations" if "runbook_url" in alert.annotations else "commonAnnotations"
        )
        noted: list[str] = []
        try:
            runbook = _runbook(annotations.get("runbook_url", ""), f"{given_in}.runbook_url")
        except PayloadError as exc:
            # Alertmanager and Grafana never send a 4xx'd alert again: the alert is taken, the link
            # is not, and the declaration says why (escaped like every symptom).
            runbook = ""
            noted = [limits.shorten(f"runbook link ignored: {exc}", limits.MAX_TEXT)]
        declaration = IncidentDeclaration(
            key=key,
            severity=severity,
            title=title,
            service=service,
            symptoms=noted,
            impact=impact,
            links=[u for u in (alert.generatorURL, body.externalURL) if u],
            reporter=f"{source} ({body.receiver})" if body.receiver else source,
            detected_at=alert.startsAt,
            devices=devices,
            upstream=upstream,
            runbook=runbook,
        )
        deliveries.append(Delivery(key, event, declaration))
    return deliveries


def _detail_labels(details: dict[str, Any]) -> dict[str, str]:
    """PagerDuty custom_details that read as labels (short scalars); the rest stay with PagerDuty."""
    labels = {}
    for name, value in details.items():
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            continue
        text = str(value)
        if len(name) <= limits.MAX_LABEL_NAME and len(text) <= limits.MAX_LABEL_VALUE:
            labels[name] = text
        if len(labels) == limits.MAX_LABELS:
            break
    return labels


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
    labels = _detail_labels(details)
    devices, upstream = _devices(
        {**labels, **({"device": payload.source} if payload else {})}, "payload.custom_details"
    )
    event = AlertEvent(
        source="pagerduty",
        status=status,
        fingerprint=_fingerprint(raw_key),
        name=limits.shorten(summary, limits.MAX_TITLE),
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
        title=limits.shorten(" ".join(summary.split()), limits.MAX_TITLE) or key,
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
        fingerprint=_fingerprint(body.dedup_key + "|" + body.title),
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
        runbook=_runbook(body.runbook_url, "runbook_url"),
    )
    return [Delivery(key, event, declaration)]


# ------------------------------------------------------------------ batching


@dataclass
class _Batch:
    deliveries: list[Delivery] = field(default_factory=list)
    # One per delivery: a delivery Temporal refuses fails only its own request.
    waiting: list[asyncio.Future] = field(default_factory=list)


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

    When Temporal refuses a batch for a reason retrying cannot fix, each of its
    alerts is delivered alone, so one bad alert fails only its own request.
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
        loop = asyncio.get_running_loop()
        batch = self._pending.get(delivery.key)
        if batch is None:
            batch = self._pending[delivery.key] = _Batch()
            window = self._followup_window if self._is_open(delivery.key) else self._window
            loop.call_later(window, self._start_flush, delivery.key)
        done = loop.create_future()
        batch.deliveries.append(delivery)
        batch.waiting.append(done)
        return await asyncio.shield(done)

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
            except BaseException as exc:
                if len(batch.deliveries) > 1 and not is_transient(exc):
                    log.warning(
                        "Temporal refused a batch of %d alerts for %s; delivering each alone: %s",
                        len(batch.deliveries),
                        key,
                        _one_line(exc),
                    )
                    await self._deliver_each(key, batch)
                else:
                    for done in batch.waiting:
                        _fail(done, exc)
            else:
                self._settle(key, outcome, batch.waiting)
        if not lock.locked() and key not in self._pending:
            self._locks.pop(key, None)

    def _settle(self, key: str, outcome: Outcome, waiting: list[asyncio.Future]) -> None:
        self._remember(key, outcome)
        for done in waiting:
            if not done.done():
                done.set_result(outcome)

    async def _deliver_each(self, key: str, batch: _Batch) -> None:
        for delivery, done in zip(batch.deliveries, batch.waiting, strict=True):
            try:
                outcome = await self._deliver(key, [delivery])
            except BaseException as exc:  # handed to this delivery's request only
                _fail(done, exc)
            else:
                self._settle(key, outcome, [done])


def _fail(done: asyncio.Future, exc: BaseException) -> None:
    if not done.done():
        done.set_exception(exc)
        done.exception()  # mark retrieved: a request may have gone away


def _signal_chunks(deliveries: list[Delivery]) -> list[list[Delivery]]:
    """The deliveries in order, in chunks whose alerts fit one signal (MAX_SIGNAL_BYTES of JSON)."""
    chunks: list[list[Delivery]] = [[]]
    size = 0
    for delivery in deliveries:
        cost = len(delivery.event.model_dump_json()) + 2
        if chunks[-1] and size + cost > limits.MAX_SIGNAL_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(delivery)
        size += cost
    return chunks


class TemporalDelivery:
    """Signal-with-start into Temporal, connecting lazily (the receiver starts even if Temporal is down)."""

    def __init__(
        self, settings: Settings, client: Client | None = None, metrics: ReceiverMetrics | None = None
    ) -> None:
        self._settings = settings
        self._client = client
        self._metrics = metrics
        self._connecting = asyncio.Lock()
        # Told of each incident this receiver declared (after its signal-with-start returned).
        self.on_declared: Callable[[IncidentDeclaration], None] | None = None

    async def client(self) -> Client:
        if self._client is None:
            async with self._connecting:
                if self._client is None:
                    self._client = await connect(self._settings, role=ALERT_CLIENT)
        return self._client

    async def __call__(self, key: str, deliveries: list[Delivery]) -> Outcome:
        client = await self.client()
        source = deliveries[0].event.source
        firing = [d for d in deliveries if d.event.status == "firing"]
        workflow_id = workflow_id_for(key)
        chunks = _signal_chunks(deliveries)
        batches = [AlertBatch(user=source, alerts=[d.event for d in chunk]) for chunk in chunks]
        if not firing:
            # Nothing to declare: give the news to an open incident, or say there is none.
            handle = client.get_workflow_handle(workflow_id)
            try:
                for batch in batches:
                    await handle.signal(IncidentWorkflow.alerts, batch)
            except RPCError as exc:
                if exc.status == RPCStatusCode.NOT_FOUND:
                    self._count(Outcome(workflow_id, new=False, delivered=False), deliveries)
                    return Outcome(workflow_id, new=False, delivered=False)
                raise
            self._count(Outcome(workflow_id, new=False), deliveries)
            return Outcome(workflow_id, new=False)
        declaration = _merge_declarations(firing)
        handle = await client.start_workflow(
            IncidentWorkflow.run,
            IncidentInput(declaration=declaration),
            start_signal="alerts",
            start_signal_args=[batches[0]],
            **start_options(declaration, self._settings.temporal_task_queue),
        )
        response = getattr(handle, "_start_workflow_response", None)
        new = bool(getattr(response, "started", False))
        # A storm gathered for one key: the rest of its alerts follow, in order, as more signals.
        for batch in batches[1:]:
            await handle.signal(IncidentWorkflow.alerts, batch)
        if new and self.on_declared is not None:
            self.on_declared(declaration)
        self._count(Outcome(workflow_id, new=new), deliveries, declaration.severity.value)
        return Outcome(workflow_id, new=new)

    def _count(self, outcome: Outcome, deliveries: list[Delivery], severity: str = "") -> None:
        """Declared (the batch's first alert), deduplicated (the rest, or all of a batch for an
        incident already open), or for no incident (resolved alerts with none open)."""
        if self._metrics is None:
            return
        source = deliveries[0].event.source
        if not outcome.delivered:
            self._metrics.no_incident.labels(source).inc(len(deliveries))
            return
        folded = len(deliveries)
        if outcome.new:
            self._metrics.declared.labels(source, severity).inc()
            folded -= 1
        if folded:
            self._metrics.deduplicated.labels(source).inc(folded)


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
        channel = self._policy.channel(declaration.severity)
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
    devices = devices[: limits.MAX_ITEMS]
    upstream: dict[str, str] = {}
    for d in declarations:
        for device, up in d.upstream.items():
            if device in devices:
                upstream.setdefault(device, up)
    accepted = [d.received_at for d in firing if d.received_at is not None]
    return first.model_copy(
        update={
            "runbook": next((d.runbook for d in declarations if d.runbook), ""),
            "severity": worst,
            "devices": devices,
            "upstream": upstream,
            "symptoms": symptoms[: limits.MAX_ITEMS],
            "declared_at": min(accepted) if accepted else None,
        }
    )


# ----------------------------------------------------------------------- app


def too_large(size: int) -> JSONResponse:
    return _error(
        413,
        f"body: over {limits.MAX_BODY_BYTES // limits.MIB} MiB ({size:,} bytes or more); an Alertmanager "
        f"or Grafana group this big: set max_alerts (at most {limits.MAX_ALERTS_PER_REQUEST:,}) in its "
        "webhook configuration",
    )


def _refusals(deliveries: list[Delivery], outcomes: list[Any]) -> list[str]:
    return [
        f"{d.event.name!r}: {_one_line(o)}"
        for d, o in zip(deliveries, outcomes, strict=True)
        if isinstance(o, BaseException)
    ]


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
    metrics = ReceiverMetrics()

    def receiver() -> tuple[AlertBatcher, TemporalDelivery]:
        if "batcher" not in state:  # made inside the running loop
            delivery = TemporalDelivery(settings, client, metrics)
            if rollup:
                feed = AnnouncerFeed(delivery.client, policy, settings.temporal_task_queue, storm)
                delivery.on_declared = feed.declared
            state["delivery"] = delivery
            state["batcher"] = AlertBatcher(delivery, batch_window, followup_window)
        return state["batcher"], state["delivery"]

    def authorised(request: Request) -> bool:
        if not token:
            return True
        scheme, _, given = request.headers.get("authorization", "").strip().partition(" ")
        # The scheme is case-insensitive (RFC 9110): `bearer x` is as good as `Bearer x`.
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())

    def endpoint(model: type[BaseModel], normalise: Callable[[Any], list[Delivery]], name: str):
        async def counted(request: Request) -> JSONResponse:
            answer = await receive(request)
            if answer.status_code >= 400 and answer.status_code != 422:  # each 422 says its reason
                metrics.refusal(name, answer.status_code)
            return answer

        async def receive(request: Request) -> JSONResponse:
            received_at = datetime.now(UTC)
            if not authorised(request):
                return _error(
                    401,
                    "missing or wrong bearer token (Authorization: Bearer <ALERT_RECEIVER_TOKEN>)",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            try:
                raw = await read_bounded(request)
            except Refused as exc:
                return too_large(exc.size) if exc.status == 413 else _error(exc.status, exc.reason)
            try:
                data = parse_json(raw)
            except ValueError as exc:
                return _error(400, f"body is not JSON: {exc}")
            if not isinstance(data, dict):
                return _error(400, "body must be a JSON object")
            try:
                deliveries = normalise(model.model_validate(data))
            except ValidationError as exc:
                metrics.refusal(name, 422)
                return _error(422, _validation_message(exc))
            except PayloadError as exc:
                metrics.refusal(name, 422)
                return _error(422, str(exc))
            for delivery in deliveries:
                delivery.received_at = received_at
                metrics.received.labels(delivery.event.source).inc()
            batcher, _ = receiver()
            outcomes = await asyncio.gather(*(batcher.submit(d) for d in deliveries), return_exceptions=True)
            failed = [o for o in outcomes if isinstance(o, BaseException)]
            transient = [o for o in failed if is_transient(o)]
            if transient:
                for exc in transient:
                    if not isinstance(exc, TemporalUnreachable | RPCError):
                        log.error("alert not delivered", exc_info=exc)
                log.warning("alert not delivered, answering 503: %s", _one_line(transient[0]))
                return _error(
                    503,
                    "Temporal is unreachable or overloaded, alert not accepted; retry later "
                    f"({_one_line(transient[0])})",
                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                )
            incidents: dict[str, dict[str, Any]] = {}
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    continue
                entry = incidents.setdefault(
                    outcome.incident_id,
                    {"incident_id": outcome.incident_id, "new": False, "delivered": outcome.delivered},
                )
                entry["new"] = entry["new"] or outcome.new
            if failed:
                refused = _refusals(deliveries, list(outcomes))
                log.warning("Temporal refused %d of %d alerts: %s", len(failed), len(deliveries), refused[0])
                metrics.refusal(name, 422, "temporal_refused")
                return _error(
                    422,
                    f"Temporal refused {len(failed)} of {len(deliveries)} alerts (retrying cannot help): "
                    + "; ".join(refused[:5]),
                    accepted=len(deliveries) - len(failed),
                    incidents=list(incidents.values()),
                )
            return JSONResponse(
                {"ok": True, "accepted": len(deliveries), "incidents": list(incidents.values())},
                status_code=202,
            )

        return counted

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    routes = [
        Route(
            "/alerts/alertmanager",
            endpoint(
                AlertmanagerWebhook, lambda b: from_alertmanager(b, mapping, "alertmanager"), "alertmanager"
            ),
            methods=["POST"],
        ),
        Route(
            "/alerts/grafana",
            endpoint(GrafanaWebhook, lambda b: from_alertmanager(b, mapping, "grafana"), "grafana"),
            methods=["POST"],
        ),
        Route(
            "/alerts/pagerduty",
            endpoint(PagerDutyEvent, lambda b: from_pagerduty(b, mapping), "pagerduty"),
            methods=["POST"],
        ),
        Route(
            "/alerts", endpoint(GenericAlert, lambda b: from_generic(b, mapping), "generic"), methods=["POST"]
        ),
        Route("/healthz", healthz, methods=["GET"]),
        metrics.route(),
        # Acknowledgements from PagerDuty and Opsgenie: signed by them, not by ALERT_RECEIVER_TOKEN.
        *webhook_routes(settings, lambda: receiver()[1].client()),
    ]
    return Starlette(routes=routes)


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
