"""TicketWorkflow: the incident's ticket, kept by a child so the incident never waits on ServiceNow.

One per incident, id `<incident workflow id>-ticket` (`ticket_workflow_id`).
It opens the ticket, then applies the incident's changes to it strictly in
the order they arrived, one at a time, and completes after the `close`
change. Every call is retried without limit, with backoff capped at
`max_retry_interval`: ServiceNow down for an hour delays the ticket by an
hour, it never drops a change and it never holds up the incident. Only what
retrying cannot fix (a 403, a 404, bad credentials) is given up on, and the
incident is told.

The contract with the incident (the parent):

- Start it once, at declaration, as a child with
  `parent_close_policy=ParentClosePolicy.ABANDON` (it must outlive the
  incident's continue-as-new, and finish the ticket after the incident has
  completed) and `TicketInput(open=TicketOpen(...), incident_workflow_id=
  <the incident's workflow id>)`. Do not wait for the ticket: go on at once.
- Send each change as signal `change` with a `TicketEvent`, through
  `workflow.get_external_workflow_handle(ticket_workflow_id(<incident id>))`
  (that also works after the incident continued as new and is no longer the
  parent): claim, update, severity, escalation, note, resolve, and `close`
  last, after the review. `idempotency_key` is `<incident workflow id>/ticket/
  <n>/<kind>`, `n` counting the incident's ticket changes (carry it over
  continue-as-new). Changes sent before the ticket exists wait for it. The
  signal returns as soon as the change is queued here.
- Handle signal `ticket_opened` (a `TicketRef`): the ticket's number and url;
  or `enabled=False` and a `reason` when there is no ticket (tickets are off,
  or ServiceNow refused the ticket: then `ticket_problem` came first). It
  comes once per incident.
- Handle signal `ticket_problem` (a `TicketProblem`): a change (or the open)
  that ServiceNow rejected for good; the ticket will not have it. Say so in
  the thread (template `ticket_problem`) and go on.

The incident is signalled by workflow id, not run id, so the signals reach
its current run whatever it continued as; once it has completed they are
dropped (there is nobody left to tell).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from temporalio import workflow
from temporalio.exceptions import ActivityError, FailureError

with workflow.unsafe.imports_passed_through():
    # Pure data; passed through so each run does not rebuild the pydantic models in the sandbox.
    from .retries import failure_reason, history_too_long, unlimited_retries
    from .ticket_models import (
        INCIDENT_IS_RUNNING,
        OPEN_TICKET,
        UPDATE_TICKET,
        TicketChanged,
        TicketChangeKind,
        TicketEvent,
        TicketInput,
        TicketProblem,
        TicketProgress,
        TicketRef,
    )

# Signals this workflow sends to the incident.
TICKET_OPENED = "ticket_opened"
TICKET_PROBLEM = "ticket_problem"
PROBLEMS_KEPT = 20
IDLE_CHECK = "ticket-idle-check"  # runs recorded before it wait for `close` without asking


@workflow.defn
class TicketWorkflow:
    @workflow.init
    def __init__(self, input: TicketInput) -> None:
        self._input = input
        self._progress = TicketProgress(
            ref=input.ref,
            pending=list(input.pending),
            applied=input.applied,
            dropped=input.dropped,
            problems=list(input.problems),
        )

    @workflow.signal
    def change(self, event: TicketEvent) -> None:
        # Only queued: the run loop applies changes one at a time, so a change
        # that waits out an outage keeps every later one behind it, in order.
        if event.at is None:
            event = event.model_copy(update={"at": workflow.now()})
        self._progress.pending.append(event)

    @workflow.query
    def progress(self) -> TicketProgress:
        return self._progress

    @workflow.run
    async def run(self, input: TicketInput) -> TicketProgress:
        p = self._progress
        ref = p.ref
        if ref is None:
            ref = p.ref = await self._open()
            await self._tell_incident(TICKET_OPENED, ref)

        while not p.closed:
            if workflow.patched(IDLE_CHECK):
                if not await self._next_change_while_incident_runs():
                    break
            else:
                await workflow.wait_condition(lambda: bool(p.pending))
            event = p.pending[0]
            await self._apply(ref, event)
            p.pending.pop(0)  # only now: continue-as-new carries a change until it is done
            p.closed = event.kind == TicketChangeKind.close
            if not p.closed and self._history_too_long():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    input.model_copy(
                        update={
                            "ref": ref,
                            "pending": p.pending,
                            "applied": p.applied,
                            "dropped": p.dropped,
                            "problems": p.problems,
                        }
                    )
                )

        await workflow.wait_condition(workflow.all_handlers_finished)
        if p.pending:
            workflow.logger.warning(
                "%d ticket change(s) arrived after close and were not applied: %s",
                len(p.pending),
                ", ".join(e.idempotency_key for e in p.pending),
            )
        return p

    # ------------------------------------------------------------ the ticket

    async def _open(self) -> TicketRef:
        try:
            return await workflow.execute_activity(
                OPEN_TICKET,
                self._input.open,
                result_type=TicketRef,
                summary="open the ticket",
                **self._options(),
            )
        except ActivityError as err:
            # Only a non-retryable failure ends up here (credentials, ACL, a bad field):
            # the incident runs without a ticket, and a person is told why.
            reason = failure_reason(err)
            await self._report_problem(TicketProblem(what="open", reason=reason, at=workflow.now()))
            return TicketRef.off(reason=f"no ticket: {reason}")

    async def _apply(self, ref: TicketRef, event: TicketEvent) -> None:
        p = self._progress
        if not ref.enabled:
            p.dropped += 1  # tickets are off: nothing to write, nothing to call
            return
        try:
            changed = await workflow.execute_activity(
                UPDATE_TICKET,
                event.to_change(ref),
                result_type=TicketChanged,
                summary=f"ticket: {event.kind.value}",
                **self._options(),
            )
            p.applied += 1
            if changed.problem:
                # Written, but not all of it (the IC has no account there): the thread hears it.
                # Results recorded before `problem` existed have none: old histories replay as they ran.
                await self._report_problem(
                    TicketProblem(
                        what=event.kind.value,
                        reason=changed.problem,
                        at=workflow.now(),
                        idempotency_key=event.idempotency_key,
                        partial=True,
                    )
                )
        except ActivityError as err:
            # Non-retryable: the ticket will not have this change; the next ones still go.
            await self._report_problem(
                TicketProblem(
                    what=event.kind.value,
                    reason=failure_reason(err),
                    at=workflow.now(),
                    idempotency_key=event.idempotency_key,
                )
            )

    # ------------------------------------------------------- the incident

    async def _next_change_while_incident_runs(self) -> bool:
        """Wait for a change; False if the incident ended meanwhile without sending `close`."""
        p, i = self._progress, self._input
        while True:
            try:
                await workflow.wait_condition(lambda: bool(p.pending), timeout=i.idle_check_every)
                return True
            except TimeoutError:
                pass
            running = await workflow.execute_activity(
                INCIDENT_IS_RUNNING,
                i.incident_workflow_id,
                result_type=bool,
                summary="is the incident still running?",
                **self._options(),
            )
            if running or p.pending:
                continue
            p.ended_because = f"{i.incident_workflow_id} is no longer running and never closed the ticket"
            workflow.logger.warning("ticket %s: %s", p.ref.number if p.ref else "-", p.ended_because)
            return False

    async def _report_problem(self, problem: TicketProblem) -> None:
        workflow.logger.warning("ticket %s: %s", problem.what, problem.reason)
        p = self._progress
        p.problems = [*p.problems, problem][-PROBLEMS_KEPT:]
        await self._tell_incident(TICKET_PROBLEM, problem)

    async def _tell_incident(self, signal: str, payload: BaseModel) -> None:
        incident_id = self._input.incident_workflow_id
        try:
            await workflow.get_external_workflow_handle(incident_id).signal(signal, payload)
        except FailureError as err:
            # The incident has completed (or was terminated): nobody is left to tell,
            # and the ticket still gets its changes.
            workflow.logger.info("%s not delivered to %s: %s", signal, incident_id, err.message)

    # ------------------------------------------------------------- options

    def _options(self) -> dict[str, Any]:
        i = self._input
        return {
            "start_to_close_timeout": i.start_to_close,
            # Unlimited attempts: an outage delays the ticket, it never loses a change.
            # Rejections (400/401/403/404) are raised non-retryable by the activities;
            # 429 and 503 come with Retry-After, which Temporal honours over the backoff.
            "retry_policy": unlimited_retries(i.max_retry_interval, i.initial_retry_interval),
        }

    def _history_too_long(self) -> bool:
        return history_too_long(self._input.max_history_events)
