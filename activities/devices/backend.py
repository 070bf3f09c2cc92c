"""What a device backend provides: the five activities of an incident's investigation.

The workflow calls them by name (workflows/device_models.py), each with one request
model, and gets one model back; DEVICE_BACKEND chooses the implementation
(activities/backends.py). pyATS/Genie (DeviceActivities, activities.py) is the one
there is. Unlike chat and tickets, a device backend carries its activity definitions
itself: these names hold no vendor, and nothing around them is the same for every
backend. So a second backend decorates its methods as DeviceActivities does
(`@activity.defn(name="capture_baseline")`, ...).

Every operation only reads (show, ping, traceroute), so a retry reads again. A device
that cannot be reached is a finding, never an exception; a testbed or plan a person
must fix is a non-retryable ApplicationError.
"""

from __future__ import annotations

from typing import Protocol

from workflows.device_models import (
    Analysis,
    AnalysisRequest,
    Baseline,
    BaselineRequest,
    InvestigationPlan,
    InvestigationRequest,
    StepRequest,
    StepResult,
    Verification,
    VerificationRequest,
)


class DeviceBackend(Protocol):
    async def capture_baseline(self, request: BaselineRequest) -> Baseline:
        """The health of the incident's devices and their upstream neighbours, at declaration."""
        ...

    async def plan_investigation(self, request: InvestigationRequest) -> InvestigationPlan:
        """The diagnostic plan's steps for the incident's devices, grouped by the device they run on."""
        ...

    async def run_investigation_step(self, request: StepRequest) -> StepResult:
        """One step: its command on its device, and the finding."""
        ...

    async def analyse_investigation(self, request: AnalysisRequest) -> Analysis:
        """The most likely cause from the steps' findings."""
        ...

    async def verify_against_baseline(self, request: VerificationRequest) -> Verification:
        """The baseline's checks read again and compared; a failed check is reported, never raised."""
        ...
