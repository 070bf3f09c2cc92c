"""The automated investigation as the incident runs it: a child workflow on a real worker.

Real parts throughout: the Temporal dev server, pyATS connecting to the mock
routers of the outage scenario, and the Slack sandbox over HTTP. A small
stand-in for IncidentWorkflow starts the child the way the incident does
(at declaration, ABANDON), sends `investigate` on claim and `stop` on a
resolve before any claim, and records the two signals it gets back. The
tests read what the commander would read: the incident's thread.

Connections cost ~2 s each, so one worker, one DeviceActivities (and its
kept device sessions) and one Slack sandbox serve the whole module.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from temporalio import workflow
from temporalio.client import WorkflowHandle
from temporalio.worker import Worker
from temporalio.workflow import ParentClosePolicy

from activities.chat import ChatActivities
from activities.chat.slack import SlackChat
from activities.devices import DeviceActivities
from activities.rendering import render
from sandbox.devices import write_testbed
from workflows.device_models import (
    Analysis,
    Baseline,
    InvestigationRequest,
    Verification,
    VerificationCheck,
)
from workflows.investigation import InvestigationWorkflow
from workflows.investigation_models import (
    InvestigationInput,
    InvestigationOutcome,
    InvestigationSignal,
    InvestigationTimeouts,
    investigation_workflow_id,
)
from workflows.models import IncidentState, Severity

from .stack import TOKEN, eventually

ROOT = Path(__file__).resolve().parent.parent
PLANS = ROOT / "config" / "plans"
CONNECT_TIMEOUT = 2.0  # DEAD's own, from the testbed: a device that never answers is reported quickly
LIVE_CONNECT_TIMEOUT = 30.0  # the worker's, for the mock devices: they start slowly on a loaded machine
PASSWORDS = ("sandbox-only", "not-the-password")
TIMEOUTS = InvestigationTimeouts(
    device=timedelta(seconds=30),
    device_heartbeat=timedelta(seconds=10),
    planning=timedelta(seconds=10),
    slack=timedelta(seconds=5),
    slack_max_retry_interval=timedelta(seconds=1),
)
COULD_NOT_RUN = ":x: _This step could not run; the investigation goes on without it._"


# ------------------------------------------------- the incident, standing in


class StandInInput(BaseModel):
    incident: IncidentState
    channel: str
    thread_ts: str
    timeouts: InvestigationTimeouts = TIMEOUTS


class StandInRecord(BaseModel):
    baseline: Baseline | None = None
    analysis: Analysis | None = None
    outcome: InvestigationOutcome | None = None


@workflow.defn(sandboxed=False)
class IncidentStandIn:
    """Starts and steers the investigation as IncidentWorkflow does; records what it signals back."""

    def __init__(self) -> None:
        self._record = StandInRecord()
        self._claimed_by: str | None = None
        self._resolved_by: str | None = None

    @workflow.signal
    def claim(self, signal: InvestigationSignal) -> None:
        self._claimed_by = signal.user

    @workflow.signal
    def resolve(self, signal: InvestigationSignal) -> None:
        self._resolved_by = signal.user

    @workflow.signal
    def baseline_captured(self, baseline: Baseline) -> None:
        self._record.baseline = baseline

    @workflow.signal
    def investigation_done(self, analysis: Analysis) -> None:
        self._record.analysis = analysis

    @workflow.query
    def record(self) -> StandInRecord:
        return self._record

    @workflow.run
    async def run(self, input: StandInInput) -> StandInRecord:
        s = input.incident
        child_id = investigation_workflow_id(workflow.info().workflow_id)
        child = await workflow.start_child_workflow(
            InvestigationWorkflow.run,
            InvestigationInput(
                incident=s,
                request=InvestigationRequest(incident_key=s.key, devices=s.devices, upstream=s.upstream),
                slack_channel=input.channel,
                slack_thread_ts=input.thread_ts,
                timeouts=input.timeouts,
            ),
            id=child_id,
            parent_close_policy=ParentClosePolicy.ABANDON,
            static_summary=f"Investigation · {s.summary_line}",
        )
        await workflow.wait_condition(lambda: bool(self._claimed_by or self._resolved_by))
        # By id, as the incident does: its handle to the child does not survive continue-as-new.
        investigation = workflow.get_external_workflow_handle(child_id)
        if self._claimed_by:
            await investigation.signal(
                InvestigationWorkflow.investigate, InvestigationSignal(user=self._claimed_by)
            )
        else:
            await investigation.signal(
                InvestigationWorkflow.stop,
                InvestigationSignal(user=self._resolved_by or "", reason="resolved before anyone claimed it"),
            )
        self._record.outcome = await child  # the stand-in waits for it; the incident need not
        return self._record


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def testbed(tmp_path_factory) -> Path:
    # DEAD opens the connection and never answers; SITEB is a site behind it (down too).
    return write_testbed(
        "outage",
        tmp_path_factory.mktemp("testbed") / "outage.yaml",
        extra={"DEAD": "silent", "SITEB": "refused"},
        connect_timeouts={"DEAD": CONNECT_TIMEOUT},
    )


@pytest.fixture(scope="module")
async def devices(testbed):
    devices = DeviceActivities(testbed, PLANS, connect_timeout=LIVE_CONNECT_TIMEOUT, command_timeout=15)
    yield devices
    await devices.close()


@pytest.fixture(scope="module")
async def task_queue(local_env, slack_sandbox, devices):
    """One worker for the module: the two workflows, the real Slack and device activities."""
    slack = ChatActivities(SlackChat.from_settings(slack_sandbox.api_url, TOKEN))
    queue = f"investigation-{uuid.uuid4().hex[:8]}"
    async with Worker(
        local_env.client,
        task_queue=queue,
        workflows=[IncidentStandIn, InvestigationWorkflow],
        activities=[
            slack.post_slack_message,
            slack.upload_slack_file,
            devices.capture_baseline,
            devices.plan_investigation,
            devices.run_investigation_step,
            devices.analyse_investigation,
        ],
    ):
        yield queue


class Incident:
    """One incident in the sandbox: its declaration in #incidents and the stand-in workflow."""

    def __init__(self, handle: WorkflowHandle, channel: str, ts: str, sandbox: Any) -> None:
        self.handle = handle
        self.channel = channel
        self.ts = ts
        self._sandbox = sandbox

    @property
    def child_id(self) -> str:
        return investigation_workflow_id(self.handle.id)

    async def record(self) -> StandInRecord:
        return await self.handle.query(IncidentStandIn.record)

    async def replies(self) -> list[dict[str, Any]]:
        return (await self._sandbox.thread(self.channel, self.ts))[1:]

    async def posts(self) -> list[str]:
        """The investigation's messages in the thread, in order."""
        return [m["text"] for m in await self.replies() if m.get("text")]

    async def keys(self) -> list[str]:
        return [m["metadata"]["event_payload"]["key"] for m in await self.replies() if m.get("metadata")]


@pytest.fixture
async def declare(local_env, sandbox, task_queue):
    started: list[WorkflowHandle] = []

    async def declare(devices: list[str], upstream: dict[str, str], **input: Any) -> Incident:
        key = f"inv-{uuid.uuid4().hex[:8]}"
        posted = await sandbox.web.chat_postMessage(
            channel="incidents", text=f":rotating_light: *INCIDENT DECLARED — {key}*"
        )
        incident = IncidentState(
            key=key,
            workflow_id=f"incident-{key}",
            severity=Severity.P1,
            title="Network Outage — R1 unreachable",
            declared_at=datetime.now(UTC),
            devices=devices,
            upstream=upstream,
            slack_channel=posted["channel"],
            slack_thread_ts=posted["ts"],
        )
        handle = await local_env.client.start_workflow(
            IncidentStandIn.run,
            StandInInput(incident=incident, channel=posted["channel"], thread_ts=posted["ts"], **input),
            id=incident.workflow_id,
            task_queue=task_queue,
            result_type=StandInRecord,
        )
        started.append(handle)
        started.append(local_env.client.get_workflow_handle(investigation_workflow_id(handle.id)))
        return Incident(handle, posted["channel"], posted["ts"], sandbox)

    yield declare
    for handle in started:
        try:
            await handle.terminate("test over")
        except Exception:
            pass  # completed already


async def baseline_of(incident: Incident) -> Baseline:
    async def probe() -> Baseline | None:
        return (await incident.record()).baseline

    return await eventually(probe, timeout=30, what="baseline_captured at the incident")


def assert_no_credentials(*texts: str) -> None:
    for text in texts:
        for password in PASSWORDS:
            assert password not in text, "a testbed password reached Slack"


# --------------------------------------------------------------------- tests


async def test_the_r1_outage_investigation_posts_the_seed_findings_in_the_thread(declare, sandbox) -> None:
    incident = await declare(["R1"], {"R1": "R2"})
    baseline = await baseline_of(incident)
    assert not baseline.devices["R1"].reachable and baseline.devices["R1"].error == "refused the connection"
    assert baseline.devices["R2"].reachable
    assert await incident.posts() == []  # nothing runs on the devices before someone claims

    # The file upload's answer is lost once (Slack did share it): the retry must not attach it twice.
    await sandbox.fault(method="files.completeUploadExternal", status=500, perform=True, count=1)
    await incident.handle.signal(IncidentStandIn.claim, InvestigationSignal(user="U123ENGINEER1"))
    record = await incident.handle.result()

    posts = await incident.posts()
    steps = [p for p in posts if "*Investigation Results — Step" in p]
    assert posts[0].startswith(":mag: *Automated Investigation — 5 steps* (plan `unreachable-device`)")
    assert "_Checking upstream device R2 for R1: steps 1, 2, 3, 4, 5_" in posts[0]
    assert [s.splitlines()[0] for s in steps] == [
        f":mag: *Investigation Results — Step {i}/5*" for i in range(1, 6)
    ]
    assert "*Ping from R2 to R1 (10.1.1.1):* 0% success — R1 unreachable from R2" in steps[0]
    assert "*R2 interface Gi1 (toward R1):* up/up, 0 CRC errors, last input 4 min ago" in steps[1]
    assert "→ Physical layer looks OK from R2's side" in steps[1]
    assert "R1 (1.1.1.1) missing from the neighbor table" in steps[2]
    assert "Gi1 flapped at 14:31, line protocol back up" in steps[3]
    assert "Nbr 1.1.1.1 on GigabitEthernet1 from FULL to DOWN" in steps[3]  # the evidence, under the finding
    assert "1.1.1.1 (AS 65001) Idle" in steps[4]
    analysis = posts[-1]
    assert analysis.startswith(":brain: *Analysis:* R2 saw Gi1 flap at 14:31.")
    assert "*Most likely cause:* R1 itself" in analysis
    assert_no_credentials(*posts)

    # Each message once, under keys of the child's own, after the plan and before the analysis.
    keys = await incident.keys()
    child = incident.child_id
    assert keys == [
        f"{child}/plan/investigation_plan",
        *(f"{child}/step-{i}/investigation_step" for i in range(1, 6)),
        f"{child}/analysis/investigation_analysis",
    ]

    # Long outputs (the interface, the log) are attached to the thread, once each, right after their step.
    replies = await incident.replies()
    order = [
        m["metadata"]["event_payload"]["key"].split("/")[-2] if m.get("metadata") else m["files"][0]["name"]
        for m in replies
    ]
    assert order == [
        "plan", "step-1", "step-2", "R2-show-interfaces-GigabitEthernet1.txt", "step-3",
        "step-4", "R2-show-logging.txt", "step-5", "analysis",
    ]  # fmt: skip
    log = next(f for m in replies for f in m.get("files", []) if f["name"] == "R2-show-logging.txt")
    assert log["title"] == "R2 show logging (step 4/5)"
    assert "attached: R2-show-logging.txt" in steps[3]
    content = (await sandbox.control.get(f"/_sandbox/files/{log['id']}")).text
    assert "%OSPF-5-ADJCHG: Process 1, Nbr 1.1.1.1 on GigabitEthernet1 from FULL to DOWN" in content
    assert_no_credentials(content)

    # The incident got both signals; the child's outcome agrees.
    assert record.analysis is not None and record.analysis.suspect == "R1"
    assert record.analysis.likely_cause.startswith("R1 itself")
    outcome = record.outcome
    assert outcome is not None and outcome.investigated and outcome.started_by == "U123ENGINEER1"
    assert [r.status.value for r in outcome.results] == ["problem", "ok", "problem", "problem", "problem"]
    assert outcome.problems == []


async def test_a_device_that_never_answers_is_reported_and_the_investigation_goes_on(declare) -> None:
    # R1 is looked at from R2 (answers); SITEB from DEAD, which opens the connection and says nothing.
    incident = await declare(["R1", "SITEB"], {"R1": "R2", "SITEB": "DEAD"})
    baseline = await baseline_of(incident)
    assert baseline.devices["DEAD"].error_kind == "timeout"
    await incident.handle.signal(IncidentStandIn.claim, InvestigationSignal(user="U123ENGINEER1"))
    record = await incident.handle.result()

    posts = await incident.posts()
    plan = posts[0]
    assert "_Checking upstream device R2 for R1: steps 1, 2, 3, 4, 5_" in plan
    assert "_Checking upstream device DEAD for SITEB: steps 6, 7, 8_" in plan
    assert "_2 devices checked at the same time._" in plan
    assert "skipped for SITEB: {target_ip} unknown" in plan  # no address known for SITEB: no ping

    steps = {int(p.split("Step ")[1].split("/")[0]): p for p in posts if "*Investigation Results — Step" in p}
    assert sorted(steps) == list(range(1, 9))  # every step reported, once
    for i in (6, 7, 8):
        assert f"DEAD did not answer within {CONNECT_TIMEOUT:g} s" in steps[i] and COULD_NOT_RUN in steps[i]
    assert "0% success — R1 unreachable from R2" in steps[1]  # R2's steps went on meanwhile
    assert COULD_NOT_RUN not in "".join(steps[i] for i in range(1, 6))
    assert "_3 steps could not run; see above._" in posts[-1]
    assert record.analysis is not None and record.analysis.steps_failed == 3
    assert record.analysis.suspect == "R1"
    # DEAD's timeouts ran beside R2's steps, not before them: both groups started together.
    assert record.outcome is not None
    first_on_r2, first_on_dead = record.outcome.results[0], record.outcome.results[5]
    assert first_on_r2.started_at and first_on_dead.started_at
    assert abs(first_on_r2.started_at - first_on_dead.started_at) < timedelta(seconds=1)


async def test_a_step_the_worker_cannot_finish_in_time_is_reported_and_the_rest_run(declare) -> None:
    # Here the activity itself runs out of time (1 s) before the device's own connect timeout (2 s).
    short = TIMEOUTS.model_copy(update={"device": timedelta(seconds=1), "device_attempts": 1})
    incident = await declare(["SITEB"], {"SITEB": "DEAD"}, timeouts=short)
    await incident.handle.signal(IncidentStandIn.claim, InvestigationSignal(user="U123ENGINEER1"))
    record = await incident.handle.result()

    assert record.baseline is None  # it could not be read within 1 s either, and the incident is told nothing
    outcome = record.outcome
    assert outcome is not None
    assert outcome.problems == ["baseline not captured: timed out (start-to-close)"]
    posts = await incident.posts()
    steps = [p for p in posts if "*Investigation Results — Step" in p]
    assert len(steps) == 3 and all(COULD_NOT_RUN in s for s in steps)
    assert "*DEAD OSPF neighbors:* `show ip ospf neighbor` on DEAD did not finish within 1 s" in steps[0]
    # The log step's plan allows its command 120 s: it waits for the device's own verdict.
    assert f"*DEAD logs:* DEAD did not answer within {CONNECT_TIMEOUT:g} s" in steps[1]
    assert posts[-1].startswith(":brain: *Analysis:*")
    assert record.analysis is not None and record.analysis.steps_failed == 3


async def test_a_resolve_before_anyone_claimed_stops_the_investigation_cleanly(declare, local_env) -> None:
    incident = await declare(["R1"], {"R1": "R2"})
    await baseline_of(incident)
    await incident.handle.signal(IncidentStandIn.resolve, InvestigationSignal(user="U123ENGINEER1"))
    record = await incident.handle.result()

    outcome = record.outcome
    assert outcome is not None and outcome.stopped and not outcome.investigated
    assert outcome.stopped_because == "resolved before anyone claimed it"
    assert outcome.plan is None and outcome.results == [] and record.analysis is None
    assert await incident.posts() == []  # not a word in the thread, no command on a device
    child = await local_env.client.get_workflow_handle(incident.child_id).describe()
    assert child.status.name == "COMPLETED"


async def test_an_investigation_whose_incident_is_gone_still_finishes(local_env, task_queue, sandbox) -> None:
    # Started on its own, for an incident that no longer runs: it cannot signal back, and says so.
    key = f"gone-{uuid.uuid4().hex[:8]}"
    posted = await sandbox.web.chat_postMessage(channel="incidents", text=f"incident {key}")
    incident = IncidentState(
        key=key, workflow_id=f"incident-{key}", severity=Severity.P3, title="gone",
        declared_at=datetime.now(UTC), devices=["R9"],
    )  # fmt: skip
    outcome = await local_env.client.execute_workflow(
        InvestigationWorkflow.run,
        InvestigationInput(
            incident=incident,
            request=InvestigationRequest(incident_key=key, devices=["R9"]),
            slack_channel=posted["channel"],
            slack_thread_ts=posted["ts"],
            investigate_now=True,
            timeouts=TIMEOUTS,
        ),
        id=investigation_workflow_id(incident.workflow_id),
        task_queue=task_queue,
        result_type=InvestigationOutcome,
    )
    assert outcome.investigated and outcome.analysis is not None
    assert [p.split(" not delivered")[0] for p in outcome.problems] == [
        "baseline_captured",
        "investigation_done",
    ]
    thread = await sandbox.thread(posted["channel"], posted["ts"])
    assert "_Nothing to run: no device of this incident is in the testbed._" in thread[1]["text"]
    assert "R9 is not in the testbed" in thread[1]["text"]


# ------------------------------------------------------ the resolution message


def _resolution(verification: Verification) -> str:
    incident = IncidentState(
        key="R1-outage", workflow_id="incident-R1-outage", severity=Severity.P1, title="R1 unreachable",
        declared_at=datetime(2024, 2, 21, 14, 32, tzinfo=UTC), resolved_at=datetime(2024, 2, 21, 15, 6, tzinfo=UTC),
        resolution="R1 reloaded and recovered.", verification=verification,
    )  # fmt: skip
    extra = {
        "verification": verification.model_dump(mode="json"),
        "author": "U123ENGINEER1",
        "duration": "34 min",
    }
    return render("resolution", incident=incident, mentions=[], **extra)


def test_the_resolution_lists_each_verification_check() -> None:
    checks = [
        VerificationCheck(device="R1", name="R1 reachable", ok=True, detail="100% ping success from R2"),
        VerificationCheck(device="R1", name="R1 OSPF neighbors", ok=True, detail="3/3 FULL"),
        VerificationCheck(device="R1", name="R1 route count", ok=True, detail="47 routes (matches baseline)"),
    ]
    text = _resolution(
        Verification(
            incident_key="R1-outage",
            checked_at=datetime.now(UTC),
            checks=checks,
            passed=True,
            summary="all 3 checks passed",
        )  # fmt: skip
    )
    assert (
        "*Post-Resolution Verification:*\n• R1 reachable: :white_check_mark: 100% ping success from R2"
        in text
    )
    assert "• R1 OSPF neighbors: :white_check_mark: 3/3 FULL" in text
    assert "• R1 route count: :white_check_mark: 47 routes (matches baseline)" in text
    assert "FAILED" not in text and ":x:" not in text
    assert text.index("*Resolution:*") < text.index("*Post-Resolution Verification:*")


def test_a_failed_verification_is_said_plainly_in_the_resolution() -> None:
    checks = [
        VerificationCheck(device="R1", name="R1 reachable", ok=False, detail="0% ping success from R2"),
        VerificationCheck(device="R2", name="R2 interfaces", ok=True, detail="4/4 up"),
    ]
    text = _resolution(
        Verification(
            incident_key="R1-outage",
            checked_at=datetime.now(UTC),
            checks=checks,
            passed=False,
            summary="1 of 2 checks failed: R1 reachable",
        )  # fmt: skip
    )
    assert ":x: *Verification FAILED:* 1 of 2 checks failed: R1 reachable" in text
    assert "• R1 reachable: :x: 0% ping success from R2" in text
    assert "• R2 interfaces: :white_check_mark: 4/4 up" in text


def test_a_resolution_without_verification_says_nothing_of_it() -> None:
    incident = IncidentState(
        key="k", workflow_id="incident-k", severity=Severity.P3, title="t", declared_at=datetime.now(UTC),
        resolved_at=datetime.now(UTC), resolution="fixed",
    )  # fmt: skip
    text = render("resolution", incident=incident, mentions=[], author="U1", duration="1 min")
    assert "Verification" not in text
