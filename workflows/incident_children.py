"""The incident's two children: the ticket (TicketWorkflow) and the investigation (InvestigationWorkflow).

Mixed into IncidentWorkflow: starting them, telling them what happened, and
verifying the devices when the incident is resolved (the investigation does it
since the slack-outbox patch; before, the incident did, in its own loop).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, FailureError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from .device_models import (
        VERIFY_AGAINST_BASELINE,
        InvestigationRequest,
        Verification,
        VerificationRequest,
    )
    from .incident_base import IncidentParts
    from .incident_input import OutboxItem
    from .investigation import InvestigationWorkflow
    from .investigation_models import (
        InvestigationInput,
        InvestigationSignal,
        InvestigationTimeouts,
        investigation_workflow_id,
    )
    from .retries import failure_reason
    from .ticket_models import (
        TicketChangeKind,
        TicketEvent,
        TicketInput,
        TicketOpen,
        ticket_workflow_id,
    )
    from .tickets import TicketWorkflow
    from .ui import markdown_escape


PER_OCCURRENCE_PATCH = "ticket-per-occurrence"
EARLY_PER_OCCURRENCE_PATCH = "ticket-per-occurrence-early"  # the same, asked at the start of the run
INVESTIGATION_IN_TURN_PATCH = "investigation-in-turn"


class Children(IncidentParts):
    """Mixed into IncidentWorkflow: its ticket and investigation children."""

    _outbox: list[OutboxItem]
    _outbox_on: bool
    _verifying: bool
    _per_occurrence_early: bool  # read at the start of the run
    _investigation_in_turn: bool  # likewise

    if TYPE_CHECKING:  # provided by IncidentWorkflow and the other mixins

        async def _tell_investigation_the_thread(self) -> None: ...

    async def _start_ticket(self) -> None:
        """The TicketWorkflow child opens the ticket and applies every change, in order."""
        s = self._state
        settings = self._require_policy().tickets
        if not settings.enabled:
            s.ticket_status = settings.off_reason
            return
        child_id = ticket_workflow_id(s.workflow_id)
        try:
            await workflow.start_child_workflow(
                TicketWorkflow.run,
                TicketInput(
                    open=TicketOpen(
                        incident_key=s.key,
                        correlation_id=self._correlation_id(),
                        workflow_id=s.workflow_id,
                        severity=s.severity,
                        title=s.title,
                        service=s.service,
                        symptoms=s.symptoms,
                        impact=s.impact,
                        links=s.links,
                        devices=s.devices,
                        reporter=s.reporter,
                        declared_at=s.declared_at,
                        assignment_group=settings.assignment_group,
                        category=settings.category,
                        system=settings.system,
                    ),
                    incident_workflow_id=s.workflow_id,
                ),
                id=child_id,
                # It outlives this run's continue-as-new and finishes the ticket after the incident.
                parent_close_policy=ParentClosePolicy.ABANDON,
                static_summary=f"Ticket · {markdown_escape(s.summary_line)}",
            )
        except WorkflowAlreadyStartedError as err:  # an earlier incident with this key: its ticket still runs
            s.ticket_status = f"no ticket: {err}"
            self._record("ticket_problem", "", s.ticket_status)
            return
        s.ticket_workflow_id = child_id

    def _correlation_id(self) -> str:
        """One ticket per occurrence of a key: an alert that fires again after its incident
        closed starts a new run of `incident-<key>`, and that is a new incident with its own ticket."""
        if not (self._per_occurrence_early or workflow.patched(PER_OCCURRENCE_PATCH)):
            return ""  # declared before the patch: the ticket is keyed by the incident key alone
        return f"{self._state.key}#{workflow.info().run_id[:8]}"

    async def _ticket(self, kind: TicketChangeKind, actor: str, **fields: Any) -> None:
        """Queue a change for the ticket; the TicketWorkflow applies it when ServiceNow lets it."""
        s = self._state
        if s.ticket_workflow_id is None:
            return
        s.ticket_changes += 1
        event = TicketEvent(
            incident_key=s.key,
            kind=kind,
            idempotency_key=f"{s.workflow_id}/ticket/{s.ticket_changes}/{kind.value}",
            at=workflow.now(),
            actor=actor,
            **fields,
        )
        try:
            await workflow.get_external_workflow_handle(s.ticket_workflow_id).signal("change", event)
        except FailureError as err:  # the ticket workflow is gone (terminated by hand)
            self._record("ticket_problem", "", f"ticket not told of the {kind.value}: {err.message}")

    async def _start_investigation(self) -> None:
        """Devices named: the InvestigationWorkflow captures the baseline now and runs its plan on claim."""
        s = self._state
        if not s.devices or s.investigation_workflow_id is not None:
            return
        settings = self._require_policy().investigation
        chat = self._require_policy().chat
        child_id = investigation_workflow_id(s.workflow_id)
        thread_follows = self._declaration_waiting()
        try:
            await workflow.start_child_workflow(
                InvestigationWorkflow.run,
                InvestigationInput(
                    incident=self._snapshot(),
                    request=InvestigationRequest(
                        incident_key=s.key, devices=s.devices, upstream=s.upstream, plan=settings.plan
                    ),
                    slack_channel=s.slack_channel,
                    slack_thread_ts=s.slack_thread_ts,
                    thread_follows=thread_follows,
                    verify_on_request=self._outbox_on,
                    wait_at_most=settings.wait_for_claim,
                    timeouts=InvestigationTimeouts(
                        device=settings.device_timeout,
                        slack=chat.call_timeout,
                        slack_max_retry_interval=chat.max_retry_interval,
                    ),
                ),
                id=child_id,
                parent_close_policy=ParentClosePolicy.ABANDON,
                static_summary=f"Investigation · {markdown_escape(s.summary_line)}",
            )
        except WorkflowAlreadyStartedError as err:  # an earlier incident with this key still investigates
            self._record("investigation", "", f"automated investigation not started: {err}")
            return
        s.investigation_workflow_id = child_id
        s.investigation_verifies = self._outbox_on
        self._record("investigation", "", f"automated investigation of {', '.join(s.devices)} started")
        if thread_follows and not self._declaration_waiting():
            # The declaration was posted while the child started: it did not know the child yet.
            await self._tell_investigation_the_thread()

    async def _tell_investigation(self, signal: str, user: str, reason: str) -> bool:
        """`investigate` and `verify` go in the outbox's turn (what it posts then follows the
        thread's earlier messages); before the outbox, and for `stop`, at once."""
        in_turn = self._outbox_on and self._investigation_in_turn
        if in_turn and signal in ("investigate", "verify") and self._state.investigation_workflow_id:
            self._outbox.append(OutboxItem(kind="tell", signal=signal, user=user, reason=reason))
            return True
        return await self._signal_investigation(signal, user, reason)

    async def _signal_investigation(self, signal: str, user: str, reason: str) -> bool:
        s = self._state
        if s.investigation_workflow_id is None:
            return False
        try:
            await workflow.get_external_workflow_handle(s.investigation_workflow_id).signal(
                signal, InvestigationSignal(user=user, reason=reason)
            )
        except FailureError as err:  # finished already (it gave up waiting) or terminated
            self._record("investigation", "", f"investigation not told to {signal}: {err.message}")
            return False
        return True

    def _declaration_waiting(self) -> bool:
        return any(i.post is not None and i.post.template == "declaration" for i in self._outbox)

    async def _verify_resolution(self, user: str) -> None:
        """Devices back to their baseline? The investigation checks (before: the incident, in its loop)."""
        s = self._state
        unclaimed = "the incident was resolved before anyone claimed it"
        if self._outbox_on and s.investigation_verifies:
            # The resolution waits for the verification in the outbox; the incident does not.
            s.verification_pending = await self._tell_investigation("verify", user, unclaimed)
            if not s.verification_pending:
                self._verify_beside()
            return
        if s.claimed_at is None:
            await self._tell_investigation("stop", user, unclaimed)
        if self._outbox_on:
            self._verify_beside()
        else:
            await self._verify()

    def _verify_beside(self) -> None:
        if self._state.baseline is None or not self._state.baseline.devices:
            return
        self._verifying = True

        async def verify() -> None:
            try:
                await self._verify()
            finally:
                self._verifying = False
                self._publish()

        asyncio.create_task(verify())

    async def _verify(self) -> None:
        """Re-run the baseline's checks; a failed verification is stated, never blocking."""
        s = self._state
        if s.baseline is None or not s.baseline.devices:
            return
        try:
            s.verification = await workflow.execute_activity(
                VERIFY_AGAINST_BASELINE,
                VerificationRequest(incident_key=s.key, baseline=s.baseline),
                result_type=Verification,
                start_to_close_timeout=self._require_policy().investigation.device_timeout,
                heartbeat_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_attempts=3, non_retryable_error_types=["TestbedError"]),
                summary="verify the devices against the baseline",
            )
        except ActivityError as err:
            self._record("verification", "", f"verification could not run: {failure_reason(err)}")
            return
        self._record_verification(s.verification)

    def _record_verification(self, verification: Verification) -> None:
        self._state.verification = verification
        mark = "✅" if verification.passed else "❌ FAILED:"
        self._record("verification", "", f"verification {mark} {verification.summary}")
