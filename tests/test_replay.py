"""Recorded histories of whole incidents replay with the current code (no non-determinism)."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.incident import IncidentWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_histories_are_recorded():
    assert len(HISTORIES) >= 2, "run `python -m tests.record_histories`"


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_recorded_incident_replays_with_current_code(path: Path):
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    result = await Replayer(
        workflows=[IncidentWorkflow], data_converter=pydantic_data_converter
    ).replay_workflow(history)
    assert result.replay_failure is None
