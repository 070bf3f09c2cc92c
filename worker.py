"""The Temporal worker: IncidentWorkflow, its ticket and investigation children, and every activity.

Run alone with `python -m worker` (or `python worker.py`) against any
TEMPORAL_ADDRESS; `incident dev` starts it for you.
"""

from __future__ import annotations

import asyncio
import compileall
import logging
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client
from temporalio.common import MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from activities.backends import BackendError, Backends, paging_backend_names
from activities.chat import ChatActivities
from activities.chat.slack import SlackChat
from activities.chat.slack.pager import SlackPager
from activities.email import EmailActivities
from activities.paging.activities import PagingActivities
from activities.paging.backend import PagingBackend
from activities.paging.schedule import OnCallError, load_oncall, schedules_named, unknown_schedules
from activities.policy import PolicyActivities
from activities.review.activities import ReviewActivities
from activities.settings import Settings, get_settings
from activities.temporal import TemporalActivities
from activities.tickets import TicketActivities
from workflows.action_followup import ActionFollowUpWorkflow
from workflows.announcer import ChannelAnnouncer
from workflows.incident import IncidentWorkflow
from workflows.investigation import InvestigationWorkflow
from workflows.maintenance import MaintenanceWorkflow
from workflows.metrics import OPEN_INCIDENTS, TIME_TO_ACKNOWLEDGE, TIME_TO_ACKNOWLEDGE_BUCKETS
from workflows.models import PHASE_ATTR, SEVERITY_ATTR, Phase, Severity
from workflows.paging_models import PagingService
from workflows.policy import Policy, PolicyError, load_policy
from workflows.tickets import TicketWorkflow

WORKFLOW_CODE = Path(sys.modules[IncidentWorkflow.__module__].__file__ or "").parent


def precompile_workflow_code() -> None:
    """Write the workflow modules' bytecode if it is missing or stale.

    The workflow sandbox imports a workflow's module afresh for every run; with
    no .pyc (PYTHONDONTWRITEBYTECODE, a fresh clone) that import compiles the
    source each time, about 6 ms of worker CPU per incident (measured).
    A read-only install just goes without.
    """
    try:
        compileall.compile_dir(WORKFLOW_CODE, quiet=2)
    except OSError:
        pass


def paging_activities(client: Client, settings: Settings, backends: Backends) -> PagingActivities:
    """Slack DMs (and Do Not Disturb) when the chat backend is Slack, and the paging services."""
    pagers: dict[PagingService, PagingBackend] = dict(backends.paging)
    dnd = None
    if isinstance(backends.chat, SlackChat):
        dnd = SlackPager(backends.chat)  # Do Not Disturb is asked of Slack whichever services page
        if PagingService.slack.value in paging_backend_names(settings):
            pagers[PagingService.slack] = dnd
    return PagingActivities(
        pagers,
        client,
        dnd,
        settings.incident_oncall,
        settings.incident_oncall_overrides,
        threads=dnd,
        ui_url=settings.incident_ui_url,
    )


def build_worker(
    client: Client, settings: Settings, policy: Policy, backends: Backends | None = None
) -> Worker:
    """The worker: every workflow, and the activities over the backends the settings chose."""
    precompile_workflow_code()
    if backends is None:
        backends = Backends.from_settings(settings)
    chat = ChatActivities(backends.chat)
    tickets = TicketActivities(
        backends.tickets, off_reason=backends.tickets_off_because, others=backends.all_tickets
    )
    devices = backends.devices
    policies = PolicyActivities(policy, tickets_off_because=backends.tickets_off_because)
    paging = paging_activities(client, settings, backends)
    email = EmailActivities(backends.email, off_reason=backends.email_off_because)
    temporal = TemporalActivities(client)
    review = ReviewActivities(client, backends.chat, settings.incident_ui_url)
    return Worker(
        client,
        task_queue=settings.temporal_task_queue,
        workflows=[
            IncidentWorkflow,
            TicketWorkflow,
            InvestigationWorkflow,
            ChannelAnnouncer,
            MaintenanceWorkflow,
            ActionFollowUpWorkflow,
        ],
        # A worker killed with kill -9 leaves its incidents' next tasks on its own sticky queue
        # until this passes; Temporal's 10 s default held an incident up for 10 s after a crash.
        # A busy worker that misses it only replays the history on another poll.
        sticky_queue_schedule_to_start_timeout=timedelta(seconds=3),
        max_cached_workflows=settings.worker_max_cached_workflows,
        activities=[
            policies.load_incident_policy,
            *chat.activities,
            tickets.open_ticket,
            tickets.update_ticket,
            tickets.file_action_item,
            temporal.incident_is_running,
            temporal.maintenance_window,
            devices.capture_baseline,
            devices.plan_investigation,
            devices.run_investigation_step,
            devices.analyse_investigation,
            devices.verify_against_baseline,
            *paging.activities,
            *email.activities,
            *review.activities,
        ],
    )


def metrics_runtime(settings: Settings) -> Runtime | None:
    """A runtime serving the SDK's Prometheus metrics, and the incidents' own (workflows/metrics.py),
    when WORKER_METRICS_ADDRESS is set."""
    if not settings.worker_metrics_address:
        return None
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=settings.worker_metrics_address,
                histogram_bucket_overrides={TIME_TO_ACKNOWLEDGE: list(TIME_TO_ACKNOWLEDGE_BUCKETS)},
            )
        )
    )


async def publish_open_incidents(client: Client, meter: MetricMeter, every: float) -> None:
    """`incident_open{severity,phase}`: the running incidents in Temporal's visibility, counted by
    their search attributes every `every` seconds (every combination written, so one that empties
    goes to 0). From visibility, not from workflow code: a gauge kept by the incidents themselves
    would drift with every worker that crashed between a phase change and its metric."""
    gauge = meter.create_gauge(OPEN_INCIDENTS, "Incidents running now, by severity and phase")
    query = "WorkflowType='IncidentWorkflow' AND ExecutionStatus='Running'"
    while True:
        counts = {(sev.value, phase.value): 0 for sev in Severity for phase in Phase}
        try:
            async for run in client.list_workflows(query):
                attrs = run.typed_search_attributes
                key = (attrs.get(SEVERITY_ATTR) or "", attrs.get(PHASE_ATTR) or "")
                if key in counts:
                    counts[key] += 1
        except Exception as exc:  # noqa: BLE001 - a visibility hiccup skips one reading, no more
            logging.warning("open incidents not counted: %s", exc)
        else:
            for (sev, phase), n in counts.items():
                gauge.set(n, {"severity": sev, "phase": phase})
        await asyncio.sleep(every)


def check_schedules(policy: Policy, settings: Settings) -> None:
    """The on-call file read (file, field and reason when it cannot be) and every schedule the
    policy names in it: a typo stops the worker here, not at an incident's first page."""
    if not schedules_named(policy):  # mentions only: no on-call file needed
        return
    oncall = load_oncall(settings.incident_oncall, settings.incident_oncall_overrides)
    unknown = unknown_schedules(policy, oncall.file)
    if unknown:
        where = settings.incident_policy or "config/policy.yaml"
        raise PolicyError(f"{where}: " + "; ".join(unknown))


async def run_worker(settings: Settings) -> None:
    from starter.connect import connect

    policy = load_policy(settings.incident_policy)
    check_schedules(policy, settings)
    backends = Backends.from_settings(settings)  # a backend it cannot use stops it before it connects
    runtime = metrics_runtime(settings)
    client = await connect(settings, runtime=runtime)
    worker = build_worker(client, settings, policy, backends)
    if runtime is not None:
        counting = asyncio.create_task(  # noqa: F841 - held while the worker runs
            publish_open_incidents(client, runtime.metric_meter, settings.worker_metrics_every)
        )
    logging.info(
        "worker polling task queue %r on %s (namespace %s), Slack at %s; %s",
        settings.temporal_task_queue,
        settings.temporal_address,
        settings.temporal_namespace,
        settings.slack_api_url,
        backends.names,
    )
    logging.info(
        "email: %s",
        f"smtp via {settings.smtp_host}:{settings.smtp_port}"
        if backends.email
        else backends.email_off_because,
    )
    # SIGTERM (docker stop, incident dev's Ctrl-C) lets in-flight activities finish
    # or time out cleanly; Temporal retries whatever did not.
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with worker:
        await stop.wait()


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s worker %(levelname)s %(message)s"
    )
    code = 0
    try:
        asyncio.run(run_worker(get_settings()))
    except PolicyError as exc:
        print(f"worker: bad policy: {exc}", file=sys.stderr)
        code = 2
    except BackendError as exc:
        print(f"worker: {exc}", file=sys.stderr)
        code = 2
    except OnCallError as exc:
        print(f"worker: bad on-call schedules: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 0
    except Exception as exc:  # one clear line for the operator; details in the log above
        print(f"worker: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip interpreter teardown, seen to crash after all work is done


if __name__ == "__main__":
    main()
