"""Helpers to run IncidentWorkflow on the time-skipping test server with recorded Slack calls."""

from __future__ import annotations

import uuid
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from workflows.incident import IncidentWorkflow, initial_search_attributes, static_summary
from workflows.incident_input import IncidentInput
from workflows.models import SEARCH_ATTRIBUTES, IncidentDeclaration, IncidentState, IncidentSummary
from workflows.policy import Policy

from .fakes import RecordedSlack
from .stack import terminate_all

# The clients themselves, not their id()s: a new test server's client can reuse a freed one's id.
_registered: list[Client] = []


async def register_search_attributes(client: Client) -> None:
    if any(c is client for c in _registered):
        return
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=client.namespace,
            search_attributes={
                k.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for k in SEARCH_ATTRIBUTES
            },
        )
    )
    _registered.append(client)


@asynccontextmanager
async def recorded_worker(
    env: WorkflowEnvironment,
    policy: Policy,
    workflow_class: type = IncidentWorkflow,
    activities: list = (),
    more_workflows: list = (),
):
    """A worker with fake Slack activities; terminates what it started on exit.

    The incidents here keep no ticket (policy `tickets.enabled: false`) and name
    no devices, so they start no child workflows: the time-skipping test
    server stops skipping time, now and then, while a parent waits on a timer
    beside a child that signals it (temporalio/sdk-java#1618, #1540; seen
    here as a 48 h review timer that never fired). The children are tested on
    their own and, wired to the incident, on the dev server
    (tests/test_end_to_end.py).
    """
    policy = without_tickets(policy)
    await register_search_attributes(env.client)
    fake = RecordedSlack(policy)
    queue = f"tq-{uuid.uuid4().hex[:8]}"
    started: list[WorkflowHandle] = []

    async def declare(
        severity: str = "P1",
        title: str = "R1 unreachable, WAN outage Site A",
        policy: Policy | None = None,
        **kw,
    ) -> WorkflowHandle:
        d = IncidentDeclaration(key=f"t-{uuid.uuid4().hex[:10]}", severity=severity, title=title, **kw)
        handle = await env.client.start_workflow(
            "IncidentWorkflow",
            IncidentInput(declaration=d, policy=without_tickets(policy) if policy else None),
            id=d.workflow_id,
            task_queue=queue,
            result_type=IncidentSummary,
            search_attributes=initial_search_attributes(d),
            static_summary=static_summary(d),
        )
        started.append(handle)
        return handle

    # The test's own activities replace the fake's of the same name.
    by_name = {activity_name(a): a for a in [*fake.activities, *activities]}
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[workflow_class, *more_workflows],
        activities=list(by_name.values()),
    ):
        try:
            yield declare, fake
        finally:
            await terminate_all(started)


def activity_name(fn: Any) -> str:
    return activity._Definition.must_from_callable(fn).name


def without_tickets(policy: Policy) -> Policy:
    return policy.model_copy(update={"tickets": policy.tickets.model_copy(update={"enabled": False})})


async def state_of(handle: WorkflowHandle) -> IncidentState:
    return await handle.query(IncidentWorkflow.state)


def minutes(state: IncidentState, kind: str) -> list[int]:
    """The minute after declaration at which each timeline entry of `kind` happened."""
    return [
        round((e.at - state.declared_at) / timedelta(minutes=1)) for e in state.timeline if e.kind == kind
    ]


def at_minute(state: IncidentState, minute: int) -> datetime:
    return state.declared_at + timedelta(minutes=minute)
