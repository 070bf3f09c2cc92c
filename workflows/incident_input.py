"""What an IncidentWorkflow is started with and carries in its inbox.

Kept out of workflows/incident.py so the worker builds these pydantic models
once: the workflow sandbox runs the workflow's own module again for every
run, and each model class costs milliseconds to build.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from .commands import COMMAND_MODELS
from .device_models import Analysis, Baseline
from .investigation_models import VerificationReport
from .maintenance import MaintenanceNotice
from .models import (
    AlertBatch,
    IncidentDeclaration,
    IncidentState,
    Signal,
    SlackPost,
)
from .policy import Policy
from .ticket_models import TicketProblem, TicketRef

# Every command by its name (workflows/commands.py), and the receivers' alerts.
SIGNAL_MODELS: dict[str, type[Signal]] = {"alerts": AlertBatch, **COMMAND_MODELS}
# What the incident's children report (workflows/tickets.py, workflows/investigation.py).
# They go through the same inbox, so they are handled in order and survive continue-as-new.
CHILD_MODELS: dict[str, type[BaseModel]] = {
    "ticket_opened": TicketRef,
    "ticket_problem": TicketProblem,
    "baseline_captured": Baseline,
    "investigation_done": Analysis,
    "verification_done": VerificationReport,
    "maintenance": MaintenanceNotice,  # from the service's MaintenanceWorkflow
}


class PendingSignal(BaseModel):
    """A signal received but not yet handled; carried over continue-as-new."""

    kind: str
    payload: dict[str, Any]

    def parsed(self) -> BaseModel:
        model = SIGNAL_MODELS.get(self.kind) or CHILD_MODELS[self.kind]
        return model.model_validate(self.payload)


class OutboxItem(BaseModel):
    """A Slack call the incident has decided on and not yet made (workflows/voice.py)."""

    kind: str  # "post", "react" or "header"
    post: SlackPost | None = None  # built when decided: its own time and content
    in_thread: bool = True  # the thread is looked up when the post is sent
    reaction: str = ""
    # The resolution: sent after the investigation's messages and the verification.
    after_investigation: bool = False
    # "tell": a signal to the investigation (investigate, verify), sent in turn so that what it
    # posts follows what the incident posted before (Team Formed before the plan).
    signal: str = ""
    user: str = ""
    reason: str = ""


class IncidentInput(BaseModel):
    declaration: IncidentDeclaration
    # None: ask the worker for its policy (INCIDENT_POLICY) once, at the start.
    policy: Policy | None = None
    # Set only by continue-as-new.
    carried: IncidentState | None = None
    inbox: list[PendingSignal] = Field(default_factory=list)
    outbox: list[OutboxItem] = Field(default_factory=list)
