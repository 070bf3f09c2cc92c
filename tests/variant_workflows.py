"""Workflow classes for tests: a deadline purpose the product does not have, and the previous release.

Its own module: the workflow sandbox imports it again for each run, so it imports nothing but workflows.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow

from workflows.deadlines import Deadline
from workflows.incident import IncidentWorkflow
from workflows.incident_input import IncidentInput
from workflows.models import IncidentSummary


@workflow.defn(name="IncidentWorkflow")
class WithCoffeeBreaks(IncidentWorkflow):
    """A purpose the product does not have, added the way a later issue adds one: a rule and a handler."""

    @workflow.init
    def __init__(self, input: IncidentInput) -> None:
        super().__init__(input)
        self._deadline_table.add("coffee", self._coffee_due, self._coffee)

    @workflow.run
    async def run(self, input: IncidentInput) -> IncidentSummary:
        return await super().run(input)

    def _coffee_due(self) -> Deadline | None:
        s = self._state
        if s.commander is None or s.phase.value not in ("investigating", "monitoring"):
            return None
        breaks = sum(1 for e in s.timeline if e.kind == "coffee")
        return Deadline(
            "coffee", s.declared_at + timedelta(minutes=50 * (breaks + 1)), f"coffee {breaks + 1}"
        )

    async def _coffee(self, now: datetime) -> None:
        self._record("coffee", "", "coffee break")


@workflow.defn(name="IncidentWorkflow")
class PreviousRelease(IncidentWorkflow):
    """The release before the slack-outbox patch, as far as Temporal can tell: no patch marker,
    Slack in the loop, verification in the incident. (Its commands are the previous code's:
    tests/test_replay.py replays that code's recorded histories on this path.)"""

    @workflow.init
    def __init__(self, input: IncidentInput) -> None:
        super().__init__(input)

    @workflow.run
    async def run(self, input: IncidentInput) -> IncidentSummary:
        return await super().run(input)

    def _read_patches(self) -> None:
        pass  # it knew none of them
