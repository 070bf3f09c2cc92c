"""Running incidents survive the upgrade: one started on the previous release finishes on this one.

The previous release is `PreviousRelease` (tests/variant_workflows.py): this code without the
slack-outbox patch's marker, which is what Temporal sees of an incident started before it.
The recorded histories of the previous code itself replay on this path (tests/test_replay.py).
Slack is recorded by fake activities: the subject is which path each incident takes.
"""

from __future__ import annotations

import json
import uuid

from temporalio.worker import Worker

from workflows.incident import IncidentWorkflow
from workflows.incident_input import IncidentInput
from workflows.models import (
    ClaimSignal,
    IncidentDeclaration,
    IncidentSummary,
    ResolveSignal,
    ReviewDoneSignal,
    TimelineEntry,
)

from .fakes import RecordedSlack
from .stack import eventually
from .variant_workflows import PreviousRelease
from .workflow_harness import without_tickets


async def test_an_incident_started_on_the_previous_release_completes_on_this_one(local_env, policy):
    client = local_env.client
    queue = f"upgrade-{uuid.uuid4().hex[:8]}"
    slack = RecordedSlack(without_tickets(policy))

    def declaration(key: str) -> IncidentDeclaration:
        return IncidentDeclaration(
            key=f"{key}-{uuid.uuid4().hex[:8]}", severity="P2", title="core switch down"
        )

    old = declaration("before-upgrade")
    # The previous release's worker (no cache: its workflow tasks go nowhere sticky when it stops).
    async with Worker(
        client,
        task_queue=queue,
        workflows=[PreviousRelease],
        activities=slack.activities,
        max_cached_workflows=0,
    ):
        handle = await client.start_workflow(
            "IncidentWorkflow",
            IncidentInput(declaration=old),
            id=old.workflow_id,
            task_queue=queue,
            result_type=IncidentSummary,
        )
        await handle.signal("claim", ClaimSignal(user="alice"))
        await eventually(
            lambda: _posted(slack, old.key, "team_formed"), what="the old incident's claim posted"
        )

    # The upgrade: the new worker takes the same task queue.
    async with Worker(client, task_queue=queue, workflows=[IncidentWorkflow], activities=slack.activities):
        new = declaration("after-upgrade")
        new_handle = await client.start_workflow(
            IncidentWorkflow.run, IncidentInput(declaration=new), id=new.workflow_id, task_queue=queue
        )
        # The old incident takes this release's commands too (as updates), on its old path.
        resolved = await handle.execute_update(
            "resolve", ResolveSignal(user="alice", resolution="PSU swapped"), result_type=TimelineEntry
        )
        assert resolved.kind == "resolved"
        await handle.signal("review_done", ReviewDoneSignal(user="alice", notes="filed"))
        summary = await handle.result()
        await new_handle.execute_update(IncidentWorkflow.claim_command, ClaimSignal(user="bob"))
        await new_handle.terminate("test done")

    assert summary.resolved_at is not None and summary.commander == "alice"
    assert "slack-outbox" not in await patches(handle)  # it stayed on the previous release's path
    # New incidents take this release's markers (the releases of 2026-12-01, the first page first,
    # paging that follows the incident's severity and resolution, the review document, action items).
    assert await patches(new_handle) == {
        "release-2026-12-01",
        "release-2026-12-01b",
        "first-page-first",
        "paging-follows-incident",
        "review-document",
        "action-items",
    }
    assert [p.template for p in slack.posts if p.incident.key == old.key] == [
        "declaration",
        "team_formed",
        "resolution",
        "review_scheduled",
        "review_done",
    ]


async def patches(handle) -> set[str]:
    """The patch ids whose markers an incident's history holds."""
    found = set()
    for event in (await handle.fetch_history()).events:
        marker = event.marker_recorded_event_attributes
        if marker.marker_name == "core_patch":
            found.add(json.loads(marker.details["patch-data"].payloads[0].data)["id"])
    return found


async def _posted(slack: RecordedSlack, key: str, template: str) -> bool | None:
    return any(p.incident.key == key and p.template == template for p in slack.posts) or None
