"""Recorded histories replay with the current code (no non-determinism), and stay as recorded.

tests/histories/MANIFEST lists every recorded history with its sha256, its workflow type and
the commit whose code recorded it. Histories are append-only: one that changed, disappeared or
is not listed fails here, so a change that breaks running workflows cannot be hidden by
re-recording the histories it breaks.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.incident import IncidentWorkflow
from workflows.investigation import InvestigationWorkflow
from workflows.investigation_models import investigation_workflow_id
from workflows.models import workflow_id_for
from workflows.ticket_models import ticket_workflow_id
from workflows.tickets import TicketWorkflow

HISTORIES = Path(__file__).parent / "histories"
MANIFEST = HISTORIES / "MANIFEST"
WORKFLOWS: dict[str, type] = {
    w.__name__: w for w in (IncidentWorkflow, TicketWorkflow, InvestigationWorkflow)
}


@dataclass(frozen=True)
class Recorded:
    sha256: str
    name: str
    workflow_type: str
    recorded_from: str

    @property
    def path(self) -> Path:
        return HISTORIES / self.name


def read_manifest(text: str) -> list[Recorded]:
    """`<sha256> <file> <workflow type> <commit> [note]` per line; `#` starts a comment line."""
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split(maxsplit=4)
        if len(fields) < 4:
            raise ValueError(
                f"MANIFEST line {number}: want <sha256> <file> <workflow type> <commit>: {line!r}"
            )
        entries.append(Recorded(*fields[:4]))
    return entries


RECORDED = read_manifest(MANIFEST.read_text())


def test_manifest_is_well_formed():
    names = [r.name for r in RECORDED]
    assert len(RECORDED) >= 2, "run `python -m tests.record_histories`"
    assert len(names) == len(set(names)), f"a file is listed twice: {sorted(names)}"
    for r in RECORDED:
        assert len(r.sha256) == 64 and int(r.sha256, 16) >= 0, f"{r.name}: bad sha256 {r.sha256!r}"
        assert r.workflow_type in WORKFLOWS, f"{r.name}: unknown workflow type {r.workflow_type!r}"
        assert len(r.recorded_from) >= 7 and int(r.recorded_from, 16) >= 0, f"{r.name}: commit?"


def test_every_history_is_in_the_manifest():
    listed = {r.name for r in RECORDED}
    on_disk = {p.name for p in HISTORIES.iterdir() if p.name != MANIFEST.name}
    unlisted = sorted(on_disk - listed)
    assert not unlisted, (
        f"not in tests/histories/MANIFEST: {unlisted}. Histories are append-only: add a line for a "
        "new recording (sha256, file, workflow type, commit), never put a re-recording in an old name"
    )


@pytest.mark.parametrize("recorded", RECORDED, ids=lambda r: r.name)
def test_history_is_as_recorded(recorded: Recorded):
    assert recorded.path.is_file(), (
        f"{recorded.name} is listed in MANIFEST but gone: histories are append-only, restore it"
    )
    digest = hashlib.sha256(recorded.path.read_bytes()).hexdigest()
    assert digest == recorded.sha256, (
        f"{recorded.name} changed (sha256 {digest}, listed {recorded.sha256}): histories are "
        "append-only; restore it (git checkout) and record a new one under a new name instead"
    )


def workflow_id(workflow_type: str, started: dict) -> str:
    """The recorded run's workflow id, which the JSON history does not hold: from its input, as
    the starters name it (an incident starts its children under ids made from its own)."""
    payload = started["input"]["payloads"][0]
    input = json.loads(base64.b64decode(payload["data"]))
    if workflow_type == "IncidentWorkflow":
        return workflow_id_for(input["declaration"]["key"])
    if workflow_type == "TicketWorkflow":
        return ticket_workflow_id(input["incident_workflow_id"])
    return investigation_workflow_id(input["incident"]["workflow_id"])


@pytest.mark.parametrize("recorded", RECORDED, ids=lambda r: r.name)
async def test_recorded_history_replays_with_current_code(recorded: Recorded):
    text = recorded.path.read_text()
    started = json.loads(text)["events"][0]["workflowExecutionStartedEventAttributes"]
    assert started["workflowType"]["name"] == recorded.workflow_type, "MANIFEST names the wrong workflow type"
    history = WorkflowHistory.from_json(workflow_id(recorded.workflow_type, started), text)
    result = await Replayer(
        workflows=[WORKFLOWS[recorded.workflow_type]], data_converter=pydantic_data_converter
    ).replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, (
        f"{recorded.name} (recorded by {recorded.recorded_from[:9]}) no longer replays: "
        f"{result.replay_failure}"
    )
