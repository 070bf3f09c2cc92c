"""The alert receivers' Prometheus series, served at `GET /metrics` beside `/healthz`.

Each app has a registry of its own (the tests run many apps in one process). What is counted
is what the receivers answered: an alert the incident already had (a signal to a running
incident rather than a new one) is deduplicated, a request refused is counted by its reason.
The worker's series (pages, acknowledgements, open incidents, activity failures) are served by
the worker at WORKER_METRICS_ADDRESS.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

# Why a request was refused, by its answer: the label values of incident_alerts_refused_total.
REFUSAL_REASONS = {
    400: "not_json",
    401: "unauthorised",
    413: "too_large",
    422: "invalid",
    503: "temporal_unavailable",
}


class ReceiverMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # prometheus_client adds `_total` to a counter's name itself.
        self.received = Counter(
            "incident_alerts_received",
            "Alerts received (each alert of a group counted), by source",
            ["source"],
            registry=self.registry,
        )
        self.declared = Counter(
            "incident_alerts_declared",
            "Alerts that declared a new incident, by source and severity",
            ["source", "severity"],
            registry=self.registry,
        )
        self.deduplicated = Counter(
            "incident_alerts_deduplicated",
            "Alerts given to an incident that was already open (same key), by source",
            ["source"],
            registry=self.registry,
        )
        self.no_incident = Counter(
            "incident_alerts_without_incident",
            "Resolved alerts for which no incident was open, by source",
            ["source"],
            registry=self.registry,
        )
        self.refused = Counter(
            "incident_alerts_refused",
            "Requests refused, by receiver and reason (not_json, unauthorised, too_large, invalid, "
            "temporal_refused, temporal_unavailable)",
            ["receiver", "reason"],
            registry=self.registry,
        )

    def refusal(self, receiver: str, status: int, reason: str | None = None) -> None:
        self.refused.labels(receiver, reason or REFUSAL_REASONS.get(status, str(status))).inc()

    def route(self) -> Route:
        async def metrics(request: Request) -> Response:
            return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

        return Route("/metrics", metrics, methods=["GET"])
