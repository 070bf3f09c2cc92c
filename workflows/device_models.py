"""Pydantic models for the network investigation, as they cross the Temporal boundary.

The workflow calls five activities by name (below), each with ONE of these
objects, and gets one back. Nothing here knows pyATS: the activities in
activities/devices/ speak to the devices; the workflow only orders the
calls, keeps the baseline and posts what comes back.

This module imports nothing from the project, so `workflows/models.py` can
use `Baseline`, `Analysis` and `Verification` in the incident's state
without an import cycle. Every field added later must have a default.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field

# Activity names, registered by worker.py (workflow code must not import activities/).
CAPTURE_BASELINE = "capture_baseline"
PLAN_INVESTIGATION = "plan_investigation"
RUN_INVESTIGATION_STEP = "run_investigation_step"
ANALYSE_INVESTIGATION = "analyse_investigation"
VERIFY_AGAINST_BASELINE = "verify_against_baseline"

DEFAULT_PLAN = "unreachable-device"


class DeviceModel(BaseModel):
    model_config = ConfigDict(extra="ignore")


# ------------------------------------------------------------------ baseline


class BaselineRequest(DeviceModel):
    """Capture the health of the incident's devices (and their upstream neighbours)."""

    incident_key: str
    devices: list[str] = Field(default_factory=list)
    upstream: dict[str, str] = Field(default_factory=dict)  # device -> its upstream neighbour


class DeviceHealth(DeviceModel):
    """One device's health as the baseline checks see it.

    `source` says where the values come from: `live` (read from the device),
    `live+testbed` (read, then completed with the testbed's `known_good`
    values), `testbed` (the device did not answer; the testbed's known-good
    values stand in) or `none` (did not answer, nothing known).
    """

    device: str
    reachable: bool  # the device answered on its management connection
    error: str | None = None  # why not, in words fit for Slack: "connection refused", ...
    error_kind: str | None = None  # refused | timeout | auth | closed | unknown_device | failed
    checked_at: datetime | None = None
    source: str = "live"
    ping_from: str | None = None  # the upstream neighbour that pinged it
    ping_success_percent: float | None = None
    interfaces: dict[str, str] = Field(default_factory=dict)  # name -> "up/up", "down/down", ...
    ospf_neighbors: dict[str, str] = Field(default_factory=dict)  # router id -> FULL, INIT, ...
    bgp_peers: dict[str, str] = Field(default_factory=dict)  # address -> Established, Idle, Active, ...
    route_count: int | None = None
    uptime: str | None = None
    last_reload_reason: str | None = None
    # Raw outputs kept for the post-incident review's artifacts (masked): command -> text.
    outputs: dict[str, str] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)  # checks that could not be read, and why


class Baseline(DeviceModel):
    """What verification compares against; the workflow keeps it with the incident."""

    incident_key: str
    captured_at: datetime
    devices: dict[str, DeviceHealth] = Field(default_factory=dict)
    upstream: dict[str, str] = Field(default_factory=dict)

    @property
    def unreachable(self) -> list[str]:
        return [name for name, health in self.devices.items() if not health.reachable]


# ------------------------------------------------------------- investigation


class InvestigationRequest(DeviceModel):
    """Which devices to investigate, and with which plan (config/plans/<plan>.yaml)."""

    incident_key: str
    devices: list[str] = Field(default_factory=list)
    upstream: dict[str, str] = Field(default_factory=dict)
    plan: str = DEFAULT_PLAN


class InvestigationStep(DeviceModel):
    """One command on one device, its Genie parser and the check that reads the result."""

    index: int  # 1-based, in posting order
    total: int
    title: str  # "Ping from R2 to R1 (10.1.1.1)"
    device: str  # where the command runs
    target: str  # the incident's device this step is about
    upstream: str | None = None  # the target's upstream neighbour, when known
    command: str  # "ping 10.1.1.1 repeat 5"
    parser: str  # the command Genie parses it as: "ping 10.1.1.1"
    check: str  # a check in activities/devices/checks.py: ping_reachability, interface_health, ...
    params: dict[str, Any] = Field(default_factory=dict)  # resolved parameters for the check
    group: str  # steps of one group run one after another; groups run at the same time
    timeout_seconds: float | None = None  # the command's timeout when the plan sets one


class InvestigationPlan(DeviceModel):
    incident_key: str
    plan: str
    description: str = ""
    steps: list[InvestigationStep] = Field(default_factory=list)
    # Step indexes per group, in order. Run the groups concurrently and the
    # steps of a group sequentially (they share one device session).
    groups: list[list[int]] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)  # steps skipped and why (no upstream, unknown device)

    @property
    def total(self) -> int:
        return len(self.steps)

    def step(self, index: int) -> InvestigationStep:
        return self.steps[index - 1]


class StepRequest(DeviceModel):
    incident_key: str
    step: InvestigationStep


class StepStatus(str, Enum):
    ok = "ok"  # ran; nothing wrong found
    problem = "problem"  # ran; the check found something wrong
    error = "error"  # could not run: unreachable, timed out, refused the login, unparseable output


class StepResult(DeviceModel):
    index: int
    total: int
    title: str
    device: str
    target: str
    command: str
    check: str
    status: StepStatus
    finding: str  # one line
    conclusion: str = ""  # what it means, one line: "Physical layer looks OK from R2's side"
    evidence: list[str] = Field(default_factory=list)  # a few lines of output worth reading
    facts: dict[str, Any] = Field(default_factory=dict)  # structured, for the analysis
    error_kind: str | None = (
        None  # refused | timeout | auth | closed | command | parse | unknown_device | check
    )
    raw_output: str = ""  # the device's answer (capped); never contains credentials
    raw_truncated: bool = False
    attach_raw: bool = False  # long: attach raw_output to the thread as a file
    raw_filename: str = ""  # "R2-show-logging.txt"
    started_at: datetime | None = None
    duration_seconds: float = 0.0

    @classmethod
    def of(cls, step: InvestigationStep, status: StepStatus, finding: str, **fields: Any) -> StepResult:
        """The result of `step`: its place in the plan and what it ran, with what came of it."""
        return cls(
            index=step.index,
            total=step.total,
            title=step.title,
            device=step.device,
            target=step.target,
            command=step.command,
            check=step.check,
            status=status,
            finding=finding,
            **fields,
        )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return self.status == StepStatus.ok

    def one_line(self) -> str:
        """For the timeline: `step 2/5 R2 interface Gi1 (toward R1): up/up, 0 CRC errors`."""
        return f"step {self.index}/{self.total} {self.title}: {self.finding}"


class AnalysisRequest(DeviceModel):
    incident_key: str
    plan: InvestigationPlan
    results: list[StepResult] = Field(default_factory=list)


class Analysis(DeviceModel):
    incident_key: str
    likely_cause: str  # one line, names the device: "R1 itself: ..."
    suspect: str | None = None  # the device most likely at fault
    suspects: list[str] = Field(default_factory=list)
    confidence: str = "low"  # high | medium | low
    summary_lines: list[str] = Field(default_factory=list)  # the reasoning, in the seed's words
    next_steps: list[str] = Field(default_factory=list)
    steps_failed: int = 0  # steps that could not run


# -------------------------------------------------------------- verification


class VerificationRequest(DeviceModel):
    incident_key: str
    baseline: Baseline


class VerificationCheck(DeviceModel):
    device: str
    name: str  # "R1 reachable", "R1 OSPF neighbors", ...
    ok: bool
    detail: str  # "100% ping success from R2", "3/3 FULL", "31 routes (baseline 47, 16 missing)"


class Verification(DeviceModel):
    incident_key: str
    checked_at: datetime
    checks: list[VerificationCheck] = Field(default_factory=list)
    passed: bool
    summary: str  # one line for the resolution message and the timeline
    devices: dict[str, DeviceHealth] = Field(default_factory=dict)  # the health read now

    @property
    def failed(self) -> list[VerificationCheck]:
        return [check for check in self.checks if not check.ok]
