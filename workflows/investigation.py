"""InvestigationWorkflow: the automated investigation of one incident, as a child of it.

The incident starts it at declaration when it names devices (id
`<incident workflow id>-investigation`, parent close policy ABANDON, so it
outlives the incident's continue-as-new). It captures the baseline at once,
while the network still looks as it did when the incident was declared,
then waits: the plan runs when someone claims the incident (`investigate`),
not before, so the commander sees each step arrive in the thread. `stop`
(the incident was resolved before anyone claimed it) ends it without
touching the devices again.

Why a child and not more code in IncidentWorkflow: a plan on fifty devices
is hundreds of activities and posts; in a child they never push the
incident towards continue-as-new, the incident's main loop stays free for
claims and updates while the steps run, and the investigation can be read
(and retried) on its own in the Temporal UI.

It speaks to the incident by signal only: `baseline_captured` (Baseline)
and `investigation_done` (Analysis), by workflow id, so they reach the
incident's current run whatever it continued as.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, FailureError
from temporalio.exceptions import TimeoutError as ActivityTimeout

with workflow.unsafe.imports_passed_through():
    # Pure data: imported once by the worker, not again in every run's sandbox.
    from .device_models import (
        ANALYSE_INVESTIGATION,
        CAPTURE_BASELINE,
        PLAN_INVESTIGATION,
        RUN_INVESTIGATION_STEP,
        VERIFY_AGAINST_BASELINE,
        Analysis,
        AnalysisRequest,
        Baseline,
        BaselineRequest,
        InvestigationPlan,
        InvestigationStep,
        StepRequest,
        StepResult,
        StepStatus,
        Verification,
        VerificationRequest,
    )
    from .investigation_models import (
        InvestigationInput,
        InvestigationOutcome,
        InvestigationSignal,
        SlackThread,
        VerificationReport,
    )
    from .models import PostedMessage, SlackFileUpload, SlackPost, UploadedFile
    from .retries import failure_reason, unlimited_retries

# Activity names, registered by worker.py (workflow code must not import activities/).
POST_SLACK_MESSAGE = "post_slack_message"
UPLOAD_SLACK_FILE = "upload_slack_file"

# Signals this workflow sends to the incident.
BASELINE_CAPTURED = "baseline_captured"
INVESTIGATION_DONE = "investigation_done"
VERIFICATION_DONE = "verification_done"
# How long an investigation that verifies on request waits for the incident's resolution.
WAIT_FOR_RESOLUTION = timedelta(days=30)

# Errors in the plan or testbed files: a person has to fix a file, retrying cannot help.
FILE_ERRORS = ["PlanError", "TestbedError"]


@workflow.defn
class InvestigationWorkflow:
    @workflow.init
    def __init__(self, input: InvestigationInput) -> None:
        self._input = input
        self._investigate: InvestigationSignal | None = None
        self._stop: InvestigationSignal | None = None
        self._verify: InvestigationSignal | None = None
        self._outcome = InvestigationOutcome(incident_key=input.request.incident_key)
        self._thread: SlackThread | None = (
            None
            if input.thread_follows
            else SlackThread(channel=input.slack_channel, thread_ts=input.slack_thread_ts)
        )

    @workflow.signal
    def investigate(self, signal: InvestigationSignal) -> None:
        self._investigate = signal

    @workflow.signal
    def stop(self, signal: InvestigationSignal) -> None:
        # Honoured only before the plan starts: once the commander watches the
        # steps arrive, the rest of them is worth having for the review.
        self._stop = signal

    @workflow.signal
    def verify(self, signal: InvestigationSignal) -> None:
        # The incident is resolved: before the plan started, that also stops it.
        self._verify = signal

    @workflow.signal
    def thread(self, thread: SlackThread) -> None:
        self._thread = thread

    @workflow.query
    def progress(self) -> InvestigationOutcome:
        return self._outcome

    @workflow.run
    async def run(self, input: InvestigationInput) -> InvestigationOutcome:
        out = self._outcome
        out.baseline = await self._capture_baseline()
        if out.baseline is not None:
            await self._tell_incident(BASELINE_CAPTURED, out.baseline)

        if not input.investigate_now:
            try:
                await workflow.wait_condition(
                    lambda: (
                        self._investigate is not None or self._stop is not None or self._verify is not None
                    ),
                    timeout=input.wait_at_most,
                )
            except TimeoutError:
                self._stop = InvestigationSignal(reason=f"nobody asked for it within {input.wait_at_most}")
        if self._investigate is None and not input.investigate_now:
            stop = self._stop or self._verify
            assert stop is not None
            out.stopped = True
            out.stopped_because = stop.reason or "the incident was resolved before anyone claimed it"
        else:
            out.investigated = True
            out.started_by = self._investigate.user if self._investigate else ""
            out.analysis = await self._run_plan()
            await self._tell_incident(INVESTIGATION_DONE, out.analysis)
        if input.verify_on_request:
            await self._verify_when_resolved()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return out

    async def _verify_when_resolved(self) -> None:
        """The devices against the baseline, once the incident is resolved; the incident hears the result."""
        try:
            await workflow.wait_condition(
                lambda: self._verify is not None,
                timeout=WAIT_FOR_RESOLUTION,
                timeout_summary="the incident's resolution, to verify",
            )
        except TimeoutError:
            return  # the incident verifies by itself if it is resolved later (it cannot tell us)
        baseline = self._outcome.baseline
        if baseline is None or not baseline.devices:
            report = VerificationReport(problem="verification could not run: no baseline was captured")
        else:
            report = await self._verification(baseline)
        await self._tell_incident(VERIFICATION_DONE, report)

    async def _verification(self, baseline: Baseline) -> VerificationReport:
        request = self._input.request
        options = self._device_options()
        options["retry_policy"] = RetryPolicy(maximum_attempts=3, non_retryable_error_types=FILE_ERRORS)
        try:
            verification = await workflow.execute_activity(
                VERIFY_AGAINST_BASELINE,
                VerificationRequest(incident_key=request.incident_key, baseline=baseline),
                result_type=Verification,
                summary="verify the devices against the baseline",
                **options,
            )
        except ActivityError as err:
            return VerificationReport(problem=f"verification could not run: {failure_reason(err)}")
        self._outcome.verification = verification
        return VerificationReport(verification=verification)

    # ------------------------------------------------------------ the plan

    async def _capture_baseline(self) -> Baseline | None:
        request = self._input.request
        try:
            return await workflow.execute_activity(
                CAPTURE_BASELINE,
                BaselineRequest(
                    incident_key=request.incident_key, devices=request.devices, upstream=request.upstream
                ),
                result_type=Baseline,
                summary="capture the baseline",
                **self._device_options(),
            )
        except ActivityError as err:
            self._outcome.problems.append(f"baseline not captured: {failure_reason(err)}")
            return None

    async def _run_plan(self) -> Analysis:
        out = self._outcome
        request = self._input.request
        try:
            plan = await workflow.execute_activity(
                PLAN_INVESTIGATION,
                request,
                result_type=InvestigationPlan,
                summary="plan the investigation",
                **self._quick_options(),
            )
        except ActivityError as err:
            analysis = Analysis(
                incident_key=request.incident_key,
                likely_cause=f"unknown: the investigation could not start ({failure_reason(err)})",
            )
            await self._post(
                "analysis", "investigation_analysis", {"analysis": analysis.model_dump(mode="json")}
            )
            return analysis
        out.plan = plan
        await self._post("plan", "investigation_plan", {"plan": plan.model_dump(mode="json")})

        async def group(indexes: list[int]) -> None:
            # Steps of one group share the device's session: one after another.
            for index in indexes:
                await self._run_step(plan.step(index))

        # Groups are different devices: all at once.
        await asyncio.gather(*(group(g) for g in plan.groups))
        out.results.sort(key=lambda r: r.index)

        try:
            analysis = await workflow.execute_activity(
                ANALYSE_INVESTIGATION,
                AnalysisRequest(incident_key=request.incident_key, plan=plan, results=out.results),
                result_type=Analysis,
                summary="analyse the findings",
                **self._quick_options(),
            )
        except ActivityError as err:
            analysis = Analysis(
                incident_key=request.incident_key,
                likely_cause=f"unknown: the findings could not be analysed ({failure_reason(err)})",
                steps_failed=sum(r.status == StepStatus.error for r in out.results),
            )
        await self._post("analysis", "investigation_analysis", {"analysis": analysis.model_dump(mode="json")})
        return analysis

    async def _run_step(self, step: InvestigationStep) -> None:
        options = self._device_options()
        if step.timeout_seconds:
            options["start_to_close_timeout"] = max(
                options["start_to_close_timeout"],
                timedelta(seconds=step.timeout_seconds) + self._input.timeouts.device,
            )
        try:
            result = await workflow.execute_activity(
                RUN_INVESTIGATION_STEP,
                StepRequest(incident_key=self._input.request.incident_key, step=step),
                result_type=StepResult,
                summary=f"step {step.index}: {step.device} {step.command}"[:200],
                **options,
            )
        except ActivityError as err:
            # The worker could not finish the step (it timed out, or failed every attempt):
            # reported like a device that did not answer, and the others go on.
            result = _step_not_finished(step, err, options["start_to_close_timeout"])
        self._outcome.results.append(result.model_copy(update={"raw_output": ""}))
        await self._post(
            f"step-{step.index}",
            "investigation_step",
            {"step": result.model_dump(mode="json", exclude={"raw_output"})},
        )
        if result.attach_raw and result.raw_output:
            await self._attach(result)

    # -------------------------------------------------------- side effects

    async def _where(self) -> tuple[str | None, str | None]:
        """The incident's thread; waits for it when the declaration was not posted yet."""
        if self._thread is None:
            await workflow.wait_condition(lambda: self._thread is not None)
        assert self._thread is not None
        return self._thread.channel, self._thread.thread_ts

    async def _post(self, part: str, template: str, extra: dict[str, Any]) -> None:
        channel, thread_ts = await self._where()
        if channel is None or thread_ts is None:
            return
        post = SlackPost(
            channel=channel,
            thread_ts=thread_ts,
            # Distinct from the incident's own `<incident id>/<n>/<template>` keys, stable over replays.
            idempotency_key=f"{workflow.info().workflow_id}/{part}/{template}",
            template=template,
            incident=self._input.incident,
            extra=extra,
        )
        try:
            await workflow.execute_activity(
                POST_SLACK_MESSAGE,
                post,
                result_type=PostedMessage,
                summary=f"post {template.replace('_', ' ')}",
                **self._slack_options(),
            )
        except ActivityError as err:
            self._outcome.problems.append(f"{part} not posted: {failure_reason(err)}")

    async def _attach(self, result: StepResult) -> None:
        channel, thread_ts = await self._where()
        if channel is None or thread_ts is None:
            return
        upload = SlackFileUpload(
            channel=channel,
            thread_ts=thread_ts,
            filename=result.raw_filename or f"step-{result.index}.txt",
            title=f"{result.device} {result.command} (step {result.index}/{result.total})",
            content=result.raw_output,  # the device activities masked credentials already
        )
        try:
            await workflow.execute_activity(
                UPLOAD_SLACK_FILE,
                upload,
                result_type=UploadedFile,
                summary=f"attach the output of step {result.index}",
                **self._slack_options(),
            )
        except ActivityError as err:
            self._outcome.problems.append(
                f"output of step {result.index} not attached: {failure_reason(err)}"
            )

    async def _tell_incident(self, signal: str, payload: BaseModel) -> None:
        parent = workflow.info().parent
        incident_id = parent.workflow_id if parent else self._input.incident.workflow_id
        try:
            await workflow.get_external_workflow_handle(incident_id).signal(signal, payload)
        except FailureError as err:
            # The incident is gone (completed, terminated): the results stay in the thread and here.
            self._outcome.problems.append(f"{signal} not delivered to {incident_id}: {err.message}")

    # ------------------------------------------------------------- options

    def _device_options(self) -> dict[str, Any]:
        t = self._input.timeouts
        return {
            "start_to_close_timeout": t.device,
            "heartbeat_timeout": t.device_heartbeat,
            "retry_policy": RetryPolicy(
                maximum_attempts=t.device_attempts, non_retryable_error_types=FILE_ERRORS
            ),
        }

    def _quick_options(self) -> dict[str, Any]:
        return {
            "start_to_close_timeout": self._input.timeouts.planning,
            "retry_policy": RetryPolicy(maximum_attempts=3, non_retryable_error_types=FILE_ERRORS),
        }

    def _slack_options(self) -> dict[str, Any]:
        t = self._input.timeouts
        return {
            "start_to_close_timeout": t.slack,
            # Unlimited attempts, as for the incident's own posts: a Slack outage
            # delays the results, it never drops them. Bad tokens and unknown
            # channels are raised non-retryable by the activity.
            "retry_policy": unlimited_retries(t.slack_max_retry_interval),
        }


def _step_not_finished(step: InvestigationStep, err: ActivityError, limit: timedelta) -> StepResult:
    timed_out = isinstance(err.cause, ActivityTimeout)
    finding = (
        f"`{step.command}` on {step.device} did not finish within {_seconds(limit)}"
        if timed_out
        else f"`{step.command}` on {step.device} failed: {failure_reason(err)}"
    )
    return StepResult.of(
        step,
        StepStatus.error,
        finding,
        facts={"device": step.device},
        error_kind="timeout" if timed_out else "failed",
    )


def _seconds(value: timedelta) -> str:
    return f"{value.total_seconds():g} s"
