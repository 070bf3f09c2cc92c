"""Declaring and signalling incidents: shared by the CLI, the alert receivers and the Slack handler.

Everything here talks to Temporal through a `Client` made by `starter.connect.connect`
(pydantic data converter). Errors a person can act on are raised as `IncidentError`
subclasses whose message is one clear line.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowUpdateStage,
)
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

import activities.settings as ports
from workflows import limits
from workflows.commands import COMMAND_MODELS
from workflows.incident import (
    IncidentWorkflow,
    initial_search_attributes,
    static_details,
    static_summary,
)
from workflows.incident_input import IncidentInput
from workflows.models import (
    SEVERITY_ATTR,
    WORKFLOW_ID_PREFIX,
    IncidentDeclaration,
    IncidentState,
    Severity,
    Signal,
    TimelineEntry,
    workflow_id_for,
)

# Signal names as IncidentWorkflow defines them.
SIGNALS = ("claim", "acknowledge", "update", "resolve", "set_severity", "review_done")
# Commands, answered as updates of the same names (workflows/commands.py).
COMMANDS = tuple(COMMAND_MODELS)
STATE_QUERY = "state"


class IncidentError(Exception):
    """An error about one incident that a person can act on; str() is one line."""


class IncidentNotFound(IncidentError):
    pass


class IncidentClosed(IncidentError):
    pass


class CommandRefused(IncidentError):
    """The incident refused a command; str() is its reason (nothing was changed)."""

    def __init__(self, command: str, reason: str) -> None:
        super().__init__(reason)
        self.command = command
        self.reason = reason


class InputTooLong(IncidentError, ValueError):
    """A field over its limit (workflows/limits.py); str() names the field and the limit."""


class IncidentAlreadyExists(IncidentError, WorkflowAlreadyStartedError):
    """Raised by `declare_incident` when the workflow id is already running.

    It is also a `temporalio.exceptions.WorkflowAlreadyStartedError`, so code
    catching Temporal's error keeps working.
    """

    def __init__(
        self, declaration: IncidentDeclaration, cause: WorkflowAlreadyStartedError, closed: str = ""
    ) -> None:
        WorkflowAlreadyStartedError.__init__(
            self, cause.workflow_id, cause.workflow_type, run_id=cause.run_id, first_run_id=cause.first_run_id
        )
        self.key = declaration.key
        self.closed = closed
        if closed:
            self._text = (
                f"incident {declaration.key} already existed and is closed ({closed}); its key stays with "
                "its history and ticket: declare the new incident with another --key"
            )
        else:
            self._text = (
                f"incident {declaration.key} already exists (workflow {declaration.workflow_id} is running); "
                "use another --key, or signal the existing one"
            )

    def __str__(self) -> str:
        return self._text

    @property
    def message(self) -> str:
        return self._text


def new_incident_key(now: datetime | None = None) -> str:
    """A short key for a manual declaration: UTC `yymmdd-HHMM-xxxx`, e.g. `261122-1432-a3f9`."""
    now = now or datetime.now(UTC)
    return f"{now:%y%m%d-%H%M}-{secrets.token_hex(2)}"


def incident_key(workflow_id: str) -> str:
    """`incident-R1-outage` -> `R1-outage`."""
    return (
        workflow_id[len(WORKFLOW_ID_PREFIX) :] if workflow_id.startswith(WORKFLOW_ID_PREFIX) else workflow_id
    )


def ui_url(
    workflow_id: str,
    namespace: str = "default",
    ui_port: int = ports.TEMPORAL_UI_PORT,
    host: str = "localhost",
) -> str:
    """The incident's page in the Temporal UI."""
    return f"http://{host}:{ui_port}/namespaces/{quote(namespace, safe='')}/workflows/{quote(workflow_id, safe='')}"


def start_options(declaration: IncidentDeclaration, task_queue: str) -> dict[str, Any]:
    """Keyword arguments for `client.start_workflow(IncidentWorkflow.run, ...)`.

    The receivers use these with `start_signal=` for signal-with-start, so an
    alert storm lands in one incident and every start looks the same in the UI.
    """
    return {
        "id": declaration.workflow_id,
        "task_queue": task_queue,
        "search_attributes": initial_search_attributes(declaration),
        "static_summary": static_summary(declaration),
        "static_details": static_details(declaration),
    }


async def declare_incident(
    client: Client, declaration: IncidentDeclaration, task_queue: str
) -> WorkflowHandle[IncidentWorkflow, Any]:
    """Start the incident's workflow; `IncidentAlreadyExists` if its key was ever used.

    A person declaring with the key of a closed incident is refused, not given a second
    incident under the same name: the key keeps naming the incident they can look up
    (its history, its ticket). Alerts are different: an alert that fires again after its
    incident closed starts a new one with its own ticket (starter/alerts.py).
    """
    problems = limits.over_limits(declaration.model_dump())
    if problems:
        raise InputTooLong("; ".join(problems[:5]))
    if declaration.declared_at is None:
        declaration = declaration.model_copy(update={"declared_at": datetime.now(UTC)})
    try:
        return await client.start_workflow(
            IncidentWorkflow.run,
            IncidentInput(declaration=declaration),
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            **start_options(declaration, task_queue),
        )
    except WorkflowAlreadyStartedError as exc:
        closed = ""
        try:
            desc = await client.get_workflow_handle(declaration.workflow_id).describe()
            if desc.status != WorkflowExecutionStatus.RUNNING:
                when = f" at {desc.close_time:%Y-%m-%d %H:%M} UTC" if desc.close_time else ""
                closed = f"{_status_name(desc.status)}{when}"
        except RPCError:
            pass  # the plain "already exists" is still true
        raise IncidentAlreadyExists(declaration, exc, closed) from None


INCIDENT_WORKFLOW_TYPE = "IncidentWorkflow"  # what describe() says an incident is
# What a workflow that is not an incident is, for the error that says so.
_NOT_AN_INCIDENT = {
    "TicketWorkflow": "the ticket",
    "InvestigationWorkflow": "the investigation",
    "ChannelAnnouncer": "a channel announcer",
}
_CHILD_SUFFIXES = ("-ticket", "-investigation")


def _not_found(key_or_id: str, why: str = "") -> IncidentNotFound:
    workflow_id = workflow_id_for(key_or_id)
    return IncidentNotFound(f"no incident {incident_key(workflow_id)}: {why or f'no workflow {workflow_id}'}")


def _not_an_incident(workflow_id: str, workflow_type: str, parent_id: str | None) -> str:
    """`workflow incident-k-ticket is the ticket of incident k, not an incident`."""
    what = _NOT_AN_INCIDENT.get(workflow_type, f"a {workflow_type}")
    parent = parent_id
    if parent is None and workflow_type in ("TicketWorkflow", "InvestigationWorkflow"):
        parent = next((workflow_id.removesuffix(s) for s in _CHILD_SUFFIXES if workflow_id.endswith(s)), None)
    of = f" of incident {incident_key(parent)}" if parent and parent.startswith(WORKFLOW_ID_PREFIX) else ""
    return f"workflow {workflow_id} is {what}{of}, not an incident"


async def describe_incident(client: Client, key_or_id: str):
    """The incident workflow's description.

    `IncidentNotFound` when there is no such workflow, or when the workflow is not an
    incident (the ticket or investigation child `incident-<key>-ticket`, an announcer):
    nothing may be signalled or queried as an incident that is not one.
    """
    handle = client.get_workflow_handle(workflow_id_for(key_or_id))
    try:
        desc = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise _not_found(key_or_id) from None
        raise
    if desc.workflow_type != INCIDENT_WORKFLOW_TYPE:
        raise _not_found(key_or_id, _not_an_incident(handle.id, desc.workflow_type, desc.parent_id))
    return handle, desc


def build_list_query(
    open_only: bool = False, severity: Severity | None = None, closed_since: datetime | None = None
) -> str:
    """The visibility query `incident list` runs; reusable by anything listing incidents.

    `closed_since`: the open incidents and those closed since then (the status page's 90 days).
    """
    clauses = ["WorkflowType='IncidentWorkflow'"]
    if open_only:
        clauses.append("ExecutionStatus='Running'")
    elif closed_since is not None:
        since = closed_since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        clauses.append(f"(ExecutionStatus='Running' OR CloseTime >= '{since}')")
    if severity is not None:
        clauses.append(f"{SEVERITY_ATTR.name}='{severity.value}'")
    return " AND ".join(clauses)


async def query_state(handle: WorkflowHandle[Any, Any], wait: float = 5.0) -> IncidentState:
    """The `state` query. Without a running worker it waits `wait` s and raises RPCError."""
    return await handle.query(STATE_QUERY, result_type=IncidentState, rpc_timeout=timedelta(seconds=wait))


async def send_signal(client: Client, key_or_id: str, name: str, signal: Signal) -> str:
    """Send a signal to an open incident; returns the request id to look for in the timeline.

    Sets `signal.request_id` (a fresh uuid4 hex) when it is empty.
    Raises `IncidentNotFound` or `IncidentClosed`.
    """
    if name not in SIGNALS:
        raise ValueError(f"unknown signal {name!r}: use one of {', '.join(SIGNALS)}")
    handle, key = await _open_incident(client, key_or_id, signal)
    await _signal(handle, key, name, signal)
    return signal.request_id or ""


async def _open_incident(
    client: Client, key_or_id: str, command: Signal
) -> tuple[WorkflowHandle[Any, Any], str]:
    """The running incident's handle and key (IncidentNotFound, IncidentClosed); gives `command`
    a request id (a fresh uuid4 hex) when it has none."""
    if not command.request_id:
        command.request_id = uuid.uuid4().hex
    handle, desc = await describe_incident(client, key_or_id)
    key = incident_key(handle.id)
    if desc.status != WorkflowExecutionStatus.RUNNING:
        raise IncidentClosed(f"incident {key} is closed ({_status_name(desc.status)})")
    return handle, key


class CommandPending(IncidentError):
    """No worker answered in time: the command was sent as a signal and is applied when one runs."""


async def send_command(
    client: Client, key_or_id: str, name: str, command: Signal, wait: float = 10.0, task_queue: str = ""
) -> TimelineEntry:
    """Give an open incident a command and return what it recorded for it.

    The command goes as a Temporal update: a refusal comes back at once as
    `CommandRefused` with the incident's reason and leaves nothing in history; an
    accepted command returns once the workflow has applied it, in order with
    everything else it was sent. When no worker takes the update within `wait`
    seconds (none polls `task_queue`, or all are busy or down), the same command
    goes as a signal, which Temporal keeps until a worker runs, and
    `CommandPending` says so; its request id makes sure it is applied once even
    if the update is still delivered later. Raises `IncidentNotFound` or
    `IncidentClosed` too.
    """
    if name not in COMMANDS:
        raise ValueError(f"unknown command {name!r}: use one of {', '.join(COMMANDS)}")
    handle, key = await _open_incident(client, key_or_id, command)
    if task_queue and not await worker_polling(client, task_queue):
        await _signal(handle, key, name, command)
        raise CommandPending(
            f"sent {name} to incident {key}, but no worker is polling task queue {task_queue!r}; "
            "it is applied when a worker runs"
        )
    try:
        return await asyncio.wait_for(_update(handle, name, command), timeout=wait)
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError):
            raise CommandRefused(name, cause.message) from None
        raise
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:  # completed between describe and update
            raise IncidentClosed(f"incident {key} is closed") from None
        raise
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        # No worker took it in time (wait_for cancels the update's call, which the SDK raises
        # as its own error): the same command as a signal, applied once by its request id.
        await _signal(handle, key, name, command)
        raise CommandPending(
            f"sent {name} to incident {key}, but no worker answered within {wait:g} s; "
            "it is applied when a worker runs"
        ) from None


async def _update(handle: WorkflowHandle[Any, Any], name: str, command: Signal) -> TimelineEntry:
    update = await handle.start_update(
        name, command, wait_for_stage=WorkflowUpdateStage.ACCEPTED, result_type=TimelineEntry
    )
    return await update.result()


async def _signal(handle: WorkflowHandle[Any, Any], key: str, name: str, command: Signal) -> None:
    """IncidentClosed when the incident completed between its description and the signal."""
    try:
        await handle.signal(name, command)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise IncidentClosed(f"incident {key} is closed") from None
        raise


async def wait_for_outcome(
    handle: WorkflowHandle[Any, Any], request_id: str, wait: float = 10.0, interval: float = 0.2
) -> TimelineEntry | None:
    """Poll the `state` query until the timeline holds an entry for `request_id`.

    None when no worker answered within `wait` seconds (the signal stays
    delivered and is handled when a worker runs).
    """
    deadline = time.monotonic() + wait
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        try:
            state = await query_state(handle, wait=max(0.5, min(remaining, 3.0)))
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise
            state = None  # no worker yet, or the query timed out: try again until the deadline
        if state is not None:
            for entry in reversed(state.timeline):
                if entry.request_id == request_id:
                    return entry
        await asyncio.sleep(min(interval, max(0.0, deadline - time.monotonic())))


async def worker_polling(client: Client, task_queue: str, within: float = 90.0) -> bool:
    """Whether a worker has polled `task_queue` in the last `within` seconds.

    A worker's long poll lasts up to ~70 s, so a live worker is always seen
    within 90 s; a worker that died recently may still be seen (callers then
    just wait for their timeout). On any error this says True, to be safe.
    """
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    try:
        response = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(name=task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            ),
            timeout=timedelta(seconds=3),
        )
    except Exception:  # noqa: BLE001
        return True
    now = datetime.now(UTC).timestamp()
    for poller in response.pollers:
        if not poller.HasField("last_access_time"):
            return True
        if now - poller.last_access_time.ToDatetime(tzinfo=UTC).timestamp() <= within:
            return True
    return False


def _status_name(status: WorkflowExecutionStatus | None) -> str:
    return status.name.lower().replace("_", " ") if status is not None else "unknown"
