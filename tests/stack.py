"""The real parts, wired for tests: the Slack sandbox over HTTP and a worker with the real activities."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, TypeVar

import httpx
from slack_sdk.web.async_client import AsyncWebClient
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

from activities.chat.slack import METADATA_EVENT
from activities.settings import Settings
from sandbox.slack import ADMIN_TOKEN
from starter.declare import declare_incident
from worker import build_worker
from workflows.announcer_models import announcer_id
from workflows.incident import IncidentWorkflow
from workflows.models import IncidentDeclaration, IncidentState
from workflows.policy import Policy

TOKEN = "xoxb-test-token"
T = TypeVar("T")


def fast_retry_policy(policy: Policy) -> Policy:
    """The default policy with Slack calls retried within seconds, so tests of outages stay short."""
    return policy.model_copy(
        update={
            "chat": policy.chat.model_copy(
                update={"call_timeout": timedelta(seconds=2), "max_retry_interval": timedelta(seconds=1)}
            )
        }
    )


async def eventually(
    probe: Callable[[], Awaitable[T | None]], timeout: float = 20.0, what: str = "condition"
) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


class SlackSandbox:
    """A client for the sandbox: the real slack_sdk for Slack methods, httpx for its control API."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.api_url = url + "/api/"
        # The test's own hands (e.g. a person's war-room channel): every scope. The worker and the
        # Slack handler use TOKEN, with only the app's scopes (sandbox.slack.DEFAULT_SCOPES).
        self.web = AsyncWebClient(token=ADMIN_TOKEN, base_url=self.api_url)
        self.control = httpx.AsyncClient(base_url=url, timeout=10)

    async def act(self, kind: str, **spec: Any) -> dict[str, Any]:
        """Do what a person does in Slack; the sandbox's answer includes the handler's (status, body)."""
        response = await self.control.post(f"/_sandbox/act/{kind}", json=spec)
        answer = response.json()
        assert response.status_code == 200 and answer["ok"], answer
        return answer

    async def state(self) -> dict[str, Any]:
        """The sandbox's whole state: channels, messages, what each person was told privately, views."""
        return (await self.control.get("/_sandbox/state")).json()

    async def fault(self, **fault: Any) -> None:
        response = await self.control.post("/_sandbox/faults", json=fault)
        response.raise_for_status()

    async def clear_faults(self) -> None:
        (await self.control.delete("/_sandbox/faults")).raise_for_status()

    async def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """The declaration followed by its replies, as slack_sdk reads them."""
        response = await self.web.conversations_replies(
            channel=channel, ts=ts, include_all_metadata=True, limit=1000
        )
        return list(response["messages"])

    async def history(self, channel: str) -> list[dict[str, Any]]:
        response = await self.web.conversations_history(
            channel=channel, include_all_metadata=True, limit=1000
        )
        return list(response["messages"])

    async def reactions(self, channel: str, ts: str) -> list[str]:
        messages = await self.thread(channel, ts)
        return [r["name"] for r in messages[0].get("reactions", [])]


async def first_pages_out(handle: WorkflowHandle, policy: Policy, timeout: float = 20.0) -> IncidentState:
    """The incident's state once its chain's first level is paged through each of its services.

    A severity with a chain pages at its declaration, beside the incident's loop; a page is
    recorded in `state.paging.pages` when its service answered (a service the worker does not
    page through is not paged: the timeline says so). Tests of something else wait for it before
    they claim, as a person takes a few seconds to: a claim stops the chain, and one that lands
    while the level's targets are still being looked up makes the level's pages "not paged"
    (the thread then has no "Paged ..." message). On the time-skipping test server it is worse:
    a claim that cancels a page activity as it completes strands the run (the server refuses
    that workflow task, ACTIVITY_UNKNOWN, and never retries it, as with a timer cancelled as it
    fires, sdk-java #3088). tests/test_paging_chain.py is about the chain itself.
    """

    async def paged() -> IncidentState | None:
        state = await handle.query(IncidentWorkflow.state)
        chain = policy.for_severity(state.severity).paging
        if chain is None:
            return state  # mentions instead (P4): nothing paged, nothing to wait for
        services = {service for t in chain.levels[0].targets for service in (t.via or chain.via)}
        # A service the worker does not page through is cut, and said once in the timeline.
        notes = " ".join(e.text for e in state.timeline if e.kind == "paging_note")
        services = {v for v in services if f"not paged through {v.value}" not in notes}
        recorded = {p.service for p in state.paging.pages if p.level == 1 and p.loop == 0}
        return state if recorded >= services else None

    return await eventually(paged, timeout=timeout, what="the first level's pages")


def idempotency_keys(messages: list[dict[str, Any]]) -> list[str]:
    return [
        m["metadata"]["event_payload"]["key"]
        for m in messages
        if (m.get("metadata") or {}).get("event_type") == METADATA_EVENT
    ]


def templates_of(messages: list[dict[str, Any]]) -> list[str]:
    """`incident-x/3/status_update` -> `status_update`, in thread order."""
    return [key.rsplit("/", 1)[1] for key in idempotency_keys(messages)]


@asynccontextmanager
async def incident_worker(client: Client, slack_api_url: str, policy: Policy, **settings: Any):
    """An in-process worker with the real activities; yields a `declare` function.

    `settings` are worker Settings on top (servicenow_url, pyats_testbed, ...);
    without servicenow_url, tickets are off.
    """
    queue = f"incidents-{uuid.uuid4().hex[:8]}"
    started: list[WorkflowHandle] = []

    async def declare(severity: str = "P1", **fields: Any) -> WorkflowHandle:
        fields.setdefault("title", "R1 unreachable, WAN outage Site A")
        fields.setdefault("key", f"e2e-{uuid.uuid4().hex[:10]}")
        handle = await declare_incident(client, IncidentDeclaration(severity=severity, **fields), queue)
        started.append(handle)
        return handle

    declare.task_queue = queue  # type: ignore[attr-defined]
    worker_settings = Settings(
        temporal_task_queue=queue, slack_api_url=slack_api_url, slack_bot_token=TOKEN, **settings
    )
    async with build_worker(client, worker_settings, policy):
        try:
            yield declare
        finally:
            await terminate_all(started)
            await end_announcers(client, policy, queue)


async def end_announcers(client: Client, policy: Policy, queue: str | None) -> None:
    """End the channel announcers that ran on this worker's queue (None: on any queue).

    Their ids are per channel, not per test: one left running on a queue whose
    worker is gone would take the next test's signals and never act on them. A
    receiver can still be telling an announcer of a declaration when its test's
    worker stops, so tests that count roll-ups end any announcer before they start.
    """
    for channel in set(policy.chat.channels.values()):
        handle = client.get_workflow_handle(announcer_id(channel))
        try:
            described = await handle.describe()
            ours = queue is None or described.task_queue == queue
            if ours and described.status == WorkflowExecutionStatus.RUNNING:
                await handle.terminate("test over")
        except Exception:
            pass  # never started, or ended already


async def terminate_all(handles: list[WorkflowHandle]) -> None:
    """End what a test started, and its ticket and investigation children, so nothing runs on."""
    for handle in handles:
        ids = [handle.id, f"{handle.id}-ticket", f"{handle.id}-investigation", f"{handle.id}-actions"]
        for workflow_id in ids:
            try:
                await handle._client.get_workflow_handle(workflow_id).terminate("test over")
            except Exception:
                pass  # completed already, or never started


async def posted_state(handle: WorkflowHandle) -> IncidentState:
    """The incident's state once its declaration is in Slack."""

    async def probe() -> IncidentState | None:
        state = await handle.query(IncidentWorkflow.state)
        return state if state.slack_thread_ts else None

    return await eventually(probe, what="the declaration to reach Slack")
