"""What an InvestigationWorkflow is started with, is told, and reports.

Kept out of workflows/investigation.py so the worker builds these pydantic
models once, not again in every run's sandbox.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field

from .device_models import (
    Analysis,
    Baseline,
    InvestigationPlan,
    InvestigationRequest,
    StepResult,
    Verification,
)
from .models import IncidentState


def investigation_workflow_id(incident_workflow_id: str) -> str:
    return f"{incident_workflow_id}-investigation"


class InvestigationTimeouts(BaseModel):
    """How long each kind of call may take; tests make them short."""

    # A device activity (baseline, one step): connect, run, parse. A step whose
    # plan sets a longer command timeout gets that, and `device` again on top.
    device: timedelta = timedelta(minutes=5)
    # The device activities heartbeat while a thread sits in unicon.
    device_heartbeat: timedelta = timedelta(seconds=30)
    # Attempts of a device activity that failed or timed out; device findings
    # (unreachable, login refused) are results, not failures, and never retried.
    device_attempts: int = Field(default=3, ge=1)
    # Planning and analysis touch no device.
    planning: timedelta = timedelta(seconds=30)
    slack: timedelta = timedelta(seconds=15)
    slack_max_retry_interval: timedelta = timedelta(minutes=1)


class InvestigationInput(BaseModel):
    incident: IncidentState  # a snapshot, for the templates (and the incident's workflow id)
    request: InvestigationRequest
    slack_channel: str | None = None  # None: the declaration never reached Slack; post nothing
    slack_thread_ts: str | None = None
    # The incident's declaration is not posted yet (Slack is slow or down): the thread comes
    # by the `thread` signal, and posts wait for it instead of being dropped.
    thread_follows: bool = False
    investigate_now: bool = False  # do not wait for `investigate`
    # Stay for `verify` (sent when the incident is resolved) and verify the devices against
    # the baseline then; before the slack-outbox patch the incident verified them itself.
    verify_on_request: bool = False
    # Give up waiting for `investigate` or `stop` after this long (an incident
    # that was terminated never sends either); None waits as long as it takes.
    wait_at_most: timedelta | None = None
    timeouts: InvestigationTimeouts = Field(default_factory=InvestigationTimeouts)


class SlackThread(BaseModel):
    """`thread`: where the incident's thread is, once its declaration is posted (None: never)."""

    channel: str | None = None
    thread_ts: str | None = None


class InvestigationSignal(BaseModel):
    """`investigate` and `stop`: who caused it, for the record."""

    user: str = ""
    reason: str = ""


class VerificationReport(BaseModel):
    """`verification_done`, to the incident: the verification, or why there is none."""

    verification: Verification | None = None
    problem: str = ""  # "verification could not run: ..."


class InvestigationOutcome(BaseModel):
    """What the investigation found; also the `progress` query's answer while it runs."""

    incident_key: str
    baseline: Baseline | None = None
    investigated: bool = False
    stopped: bool = False  # ended without running the plan
    stopped_because: str = ""
    started_by: str = ""
    plan: InvestigationPlan | None = None
    results: list[StepResult] = Field(default_factory=list)  # without raw_output: that is in the thread
    analysis: Analysis | None = None
    verification: Verification | None = None
    problems: list[str] = Field(default_factory=list)  # what did not reach Slack or the incident, and why
