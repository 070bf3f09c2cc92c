"""IncidentWorkflow: one durable workflow per incident, through six phases.

declared -> triage -> investigating -> monitoring -> resolved -> review

Signals only append to an inbox; the main loop handles them one at a time,
in arrival order, between timers. That keeps Slack posts in order and makes
every decision in one place, where the timers are too.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError, ApplicationError, FailureError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    # Pure data and the children's definitions, imported once by the worker instead of
    # again in every run's sandbox (pydantic builds each model class on import: that
    # was most of a run's CPU, and a 200-incident burst's throughput, measured).
    from . import commands, limits
    from .commands import OPEN_PHASES, REFUSED
    from .deadlines import Deadline, DeadlineTable
    from .device_models import (
        VERIFY_AGAINST_BASELINE,
        Analysis,
        Baseline,
        InvestigationRequest,
        Verification,
        VerificationRequest,
    )
    from .incident_input import CHILD_MODELS, IncidentInput, PendingSignal
    from .investigation import InvestigationWorkflow
    from .investigation_models import (
        InvestigationInput,
        InvestigationSignal,
        InvestigationTimeouts,
        VerificationReport,
        investigation_workflow_id,
    )
    from .models import (
        COMMANDER_ATTR,
        PHASE_ATTR,
        SERVICE_ATTR,
        SEVERITY_ATTR,
        TICKET_ATTR,
        AlertBatch,
        ClaimSignal,
        DeadlineEntry,
        IncidentDeclaration,
        IncidentState,
        IncidentSummary,
        Phase,
        ResolveSignal,
        ReviewDoneSignal,
        Severity,
        SeveritySignal,
        Signal,
        TimelineEntry,
        TimelineNote,
        UpdateSignal,
    )
    from .policy import Policy, SeverityPolicy, format_duration
    from .retries import failure_reason, history_too_long
    from .ticket_models import (
        TicketChangeKind,
        TicketEvent,
        TicketInput,
        TicketOpen,
        TicketProblem,
        TicketRef,
        ticket_workflow_id,
    )
    from .tickets import TicketWorkflow

from .voice import OUTBOX_PATCH, SlackVoice, start_outbox

# Activity names, registered by worker.py (workflow code must not import activities/).
LOAD_POLICY = "load_incident_policy"

MAX_SYMPTOMS = 25  # the rest stay in the timeline; the header must stay readable


class Rejected(Exception):
    """A signal that cannot be applied; the reason goes to the timeline."""


@workflow.defn
class IncidentWorkflow(SlackVoice):
    @workflow.init
    def __init__(self, input: IncidentInput) -> None:
        self._policy: Policy | None = input.policy
        self._inbox: list[PendingSignal] = list(input.inbox)
        self._outbox = list(input.outbox)
        self._outbox_on = False  # the slack-outbox patch, read when the run starts
        self._sending = self._outbox_held = self._verifying = False
        self._published: dict[str, str] = {}
        if input.carried is not None:
            self._state = input.carried
        else:
            d = input.declaration
            self._state = IncidentState(
                key=d.key,
                workflow_id=workflow.info().workflow_id,
                severity=d.severity,
                title=d.title,
                service=d.service,
                symptoms=list(d.symptoms),
                impact=list(d.impact),
                links=list(d.links),
                reporter=d.reporter,
                devices=list(d.devices),
                upstream=dict(d.upstream),
                declared_at=_declared_at(d, workflow.now()),
                detected_at=d.detected_at,
            )
        # A command's outcome by its request id: what its update answers, and how a command
        # sent twice (an update that timed out, then the same as a signal) is applied once.
        self._outcomes: dict[str, TimelineEntry] = {
            e.request_id: e for e in self._state.timeline if e.request_id is not None
        }
        self._deadline_table = DeadlineTable()
        self._deadline_table.add("escalation", self._escalation_due, self._escalate)
        self._deadline_table.add("reminder", self._reminder_due, self._remind)
        self._deadline_table.add("review", self._review_due, self._review_expired)

    # ------------------------------------------------------------ messages

    # Commands: a signal and an update of each name. The signal's input is read here, not by
    # the SDK, so input that does not parse is refused in the timeline (with the field and
    # why), never dropped; the update is answered to its caller (_command).

    @workflow.signal
    def claim(self, raw: Any) -> None:
        self._command_signal("claim", raw)

    @workflow.signal
    def update(self, raw: Any) -> None:
        self._command_signal("update", raw)

    @workflow.signal
    def resolve(self, raw: Any) -> None:
        self._command_signal("resolve", raw)

    @workflow.signal
    def set_severity(self, raw: Any) -> None:
        self._command_signal("set_severity", raw)

    @workflow.signal
    def review_done(self, raw: Any) -> None:
        self._command_signal("review_done", raw)

    @workflow.update(name="claim")
    async def claim_command(self, command: ClaimSignal) -> TimelineEntry:
        return await self._command("claim", command)

    @workflow.update(name="update")
    async def update_command(self, command: UpdateSignal) -> TimelineEntry:
        return await self._command("update", command)

    @workflow.update(name="resolve")
    async def resolve_command(self, command: ResolveSignal) -> TimelineEntry:
        return await self._command("resolve", command)

    @workflow.update(name="set_severity")
    async def set_severity_command(self, command: SeveritySignal) -> TimelineEntry:
        return await self._command("set_severity", command)

    @workflow.update(name="review_done")
    async def review_done_command(self, command: ReviewDoneSignal) -> TimelineEntry:
        return await self._command("review_done", command)

    @workflow.update(name="add_to_timeline")
    async def add_to_timeline_command(self, command: TimelineNote) -> TimelineEntry:
        return await self._command("add_to_timeline", command)

    @claim_command.validator
    def _validate_claim(self, command: ClaimSignal) -> None:
        self._validate("claim", command)

    @update_command.validator
    def _validate_update(self, command: UpdateSignal) -> None:
        self._validate("update", command)

    @resolve_command.validator
    def _validate_resolve(self, command: ResolveSignal) -> None:
        self._validate("resolve", command)

    @set_severity_command.validator
    def _validate_set_severity(self, command: SeveritySignal) -> None:
        self._validate("set_severity", command)

    @review_done_command.validator
    def _validate_review_done(self, command: ReviewDoneSignal) -> None:
        self._validate("review_done", command)

    @add_to_timeline_command.validator
    def _validate_add_to_timeline(self, command: TimelineNote) -> None:
        self._validate("add_to_timeline", command)

    @workflow.signal
    def alerts(self, batch: AlertBatch) -> None:
        self._enqueue("alerts", batch)

    @workflow.signal
    def add_to_timeline(self, raw: Any) -> None:
        self._command_signal("add_to_timeline", raw)

    # From the children: the ticket and the investigation.

    @workflow.signal
    def ticket_opened(self, ref: TicketRef) -> None:
        self._enqueue("ticket_opened", ref)

    @workflow.signal
    def ticket_problem(self, problem: TicketProblem) -> None:
        self._enqueue("ticket_problem", problem)

    @workflow.signal
    def baseline_captured(self, baseline: Baseline) -> None:
        self._enqueue("baseline_captured", baseline)

    @workflow.signal
    def investigation_done(self, analysis: Analysis) -> None:
        self._enqueue("investigation_done", analysis)

    @workflow.signal
    def verification_done(self, report: VerificationReport) -> None:
        self._enqueue("verification_done", report)

    @workflow.query
    def state(self) -> IncidentState:
        return self._state

    def _enqueue(self, kind: str, signal: BaseModel) -> None:
        self._inbox.append(PendingSignal(kind=kind, payload=signal.model_dump(mode="json")))

    def _command_signal(self, kind: str, raw: Any) -> None:
        command, problem = commands.parse(kind, raw)
        if command is None:
            self._record("refused", commands.raw_user(raw), f"{kind} refused: {problem}")
            workflow.set_current_details(self._details_markdown())
            return
        self._enqueue(kind, command)

    def _validate(self, kind: str, command: Signal) -> None:
        """An update's validator: refused now, with the reason, and nothing in history."""
        if self._finished():
            raise ApplicationError("the incident is closed", type=REFUSED, non_retryable=True)
        reason = commands.refusal(kind, command, self._state)
        if reason is not None:
            raise ApplicationError(reason, type=REFUSED, non_retryable=True)

    async def _command(self, kind: str, command: Signal) -> TimelineEntry:
        """An accepted update waits its turn in the inbox; it answers with what the incident recorded."""
        if not command.request_id:
            command.request_id = workflow.current_update_info().id  # type: ignore[union-attr]
        request_id = command.request_id
        if request_id not in self._outcomes:
            self._enqueue(kind, command)
        await workflow.wait_condition(lambda: request_id in self._outcomes)
        entry = self._outcomes[request_id]
        if entry.kind == "rejected":
            raise ApplicationError(entry.text.removeprefix(f"{kind}: "), type=REFUSED, non_retryable=True)
        return entry

    # ---------------------------------------------------------------- run

    @workflow.run
    async def run(self, input: IncidentInput) -> IncidentSummary:
        self._outbox_on = workflow.patched(OUTBOX_PATCH)
        if self._outbox_on:
            start_outbox(self)
        if self._policy is None:
            self._policy = await workflow.execute_local_activity(
                LOAD_POLICY,
                result_type=Policy,
                start_to_close_timeout=timedelta(seconds=10),
                summary="load the incident policy",
            )
        self._schedule()
        self._publish()
        if self._state.phase == Phase.declared:
            await self._declare()

        while not self._finished():
            if self._inbox:
                await self._handle(self._inbox.pop(0))
                continue
            if await self._fire_due_timers():
                continue
            if self._history_too_long():
                # Updates still waiting for their answer finish first (their commands are
                # handled: the inbox is empty); one that arrives meanwhile is handled first.
                await workflow.wait_condition(lambda: workflow.all_handlers_finished() or bool(self._inbox))
                if self._inbox:
                    continue
                if self._outbox_on:
                    await self._outbox_quiet()
                workflow.continue_as_new(
                    IncidentInput(
                        declaration=input.declaration,
                        policy=self._policy,
                        carried=self._state,
                        inbox=self._inbox,
                        outbox=self._outbox,
                    )
                )
            await self._sleep_until_next_deadline()

        # Commands that raced with completion are answered, not silently dropped.
        # The thread's last messages go out first, however long Slack takes; the children's
        # reports they wait for (the verification) are still heard meanwhile.
        while True:
            await self._refuse_leftovers()
            if self._outbox_on and (self._outbox or self._sending):
                await workflow.wait_condition(
                    lambda: bool(self._inbox) or not (self._outbox or self._sending)
                )
                continue
            if workflow.all_handlers_finished():
                break
            await workflow.wait_condition(lambda: workflow.all_handlers_finished() or bool(self._inbox))
        return self._summary()

    async def _refuse_leftovers(self) -> None:
        while self._inbox:
            pending = self._inbox.pop(0)
            if pending.kind in CHILD_MODELS:
                if self._outbox_on:
                    await self._on_child_report(pending.parsed())
                continue  # before the outbox: a child's late report, the incident is over
            self._record(
                "rejected",
                pending.payload.get("user", ""),
                "the incident is closed",
                pending.payload.get("request_id"),
            )

    # ------------------------------------------------------------- phases

    async def _declare(self) -> None:
        s = self._state
        sev = self._severity_policy()
        self._record("declared", s.reporter, f"{s.severity.value} declared: {s.title}", at=s.declared_at)
        # Posted as it reads once declared (triage: awaiting a claim), so it needs no
        # chat.update straight after: one call fewer per incident against Slack's
        # per-channel rate limit in a storm.
        self._set_phase(Phase.triage)
        # The ticket opens while the declaration posts: neither waits on the other.
        tickets = self._require_policy().tickets
        s.ticket_status = "[INC pending]" if tickets.enabled else tickets.off_reason
        as_posted = s.ticket_status
        ticket = asyncio.create_task(self._start_ticket())
        posted = await self._post("declaration", channel=sev.channel, in_thread=False, mentions=sev.notify)
        await ticket
        if posted is not None:  # before the outbox: posted already
            s.slack_channel, s.slack_thread_ts = posted.channel, posted.ts
        if posted is not None or self._outbox_on:
            await self._react(sev.reactions.declared)
        await self._start_investigation()
        if s.ticket_status != as_posted:
            await self._refresh_header()  # the ticket child could not start

    async def _handle(self, pending: PendingSignal) -> None:
        message = pending.parsed()
        if not isinstance(message, Signal):
            await self._on_child_report(message)
            return
        signal = message
        request_id = signal.request_id
        if request_id is not None and request_id in self._outcomes:
            return  # sent twice (an update, then the same command as a signal): applied once
        try:
            if isinstance(signal, ClaimSignal):
                await self._on_claim(signal)
            elif isinstance(signal, UpdateSignal):
                await self._on_update(signal)
            elif isinstance(signal, ResolveSignal):
                await self._on_resolve(signal)
            elif isinstance(signal, SeveritySignal):
                await self._on_severity(signal)
            elif isinstance(signal, ReviewDoneSignal):
                await self._on_review_done(signal)
            elif isinstance(signal, AlertBatch):
                await self._on_alerts(signal)
            elif isinstance(signal, TimelineNote):
                await self._on_note(signal)
        except Rejected as reason:
            self._record("rejected", signal.user, f"{pending.kind}: {reason}", signal.request_id)
            self._publish()
        if request_id is not None and request_id not in self._outcomes:  # applied, nothing recorded
            self._outcomes[request_id] = TimelineEntry(
                at=workflow.now(), kind=pending.kind, actor=signal.user
            )

    def _refuse(self, kind: str, command: Signal) -> None:
        reason = commands.refusal(kind, command, self._state)
        if reason is not None:
            raise Rejected(reason)

    async def _on_claim(self, signal: ClaimSignal) -> None:
        s = self._state
        self._refuse("claim", signal)
        previous = s.commander
        s.commander = signal.user
        if previous is None:
            s.claimed_at = workflow.now()
            self._record("claimed", signal.user, f"{signal.user} is Incident Commander", signal.request_id)
            if s.phase in (Phase.declared, Phase.triage):
                self._set_phase(Phase.investigating)
            self._schedule()
            await self._post("team_formed")
            await self._react(self._severity_policy().reactions.claimed)
            await self._react(self._severity_policy().reactions.investigating)
            await self._tell_investigation("investigate", signal.user, "claimed")
        else:
            self._record(
                "handover", signal.user, f"IC handover: {previous} → {signal.user}", signal.request_id
            )
            self._publish()
            await self._post("handover", extra={"previous": previous}, mentions=[previous, signal.user])
        await self._refresh_header()
        await self._ticket(TicketChangeKind.claim, signal.user, assigned_to=signal.user)

    async def _on_update(self, signal: UpdateSignal) -> None:
        s = self._state
        self._refuse("update", signal)
        status = signal.status.strip().lower()
        now = workflow.now()
        s.updates += 1
        s.status = status
        s.last_update_at = now
        s.last_update = signal.message
        text = f"[{status}] {signal.message}" + (f" (ETA {signal.eta})" if signal.eta else "")
        self._record("update", signal.user, text, signal.request_id)
        if s.commander is not None and s.phase == Phase.investigating:
            self._set_phase(Phase.monitoring)
        self._schedule()
        await self._post(
            "status_update",
            extra={"status": status, "message": signal.message, "eta": signal.eta, "author": signal.user},
        )
        reactions = self._severity_policy().reactions
        if status in ("fixing", "waiting"):
            await self._react(getattr(reactions, status))
        await self._refresh_header()
        await self._ticket(
            TicketChangeKind.update, signal.user, text=signal.message, status=status, eta=signal.eta
        )

    async def _on_resolve(self, signal: ResolveSignal) -> None:
        s = self._state
        self._refuse("resolve", signal)
        s.resolved_at = workflow.now()
        s.resolution = signal.resolution
        s.root_cause = signal.root_cause or None
        self._record("resolved", signal.user, signal.resolution, signal.request_id)
        self._set_phase(Phase.resolved)
        self._schedule()
        await self._verify_resolution(signal.user)
        await self._post(
            "resolution",
            extra={"author": signal.user, "duration": format_duration(s.resolved_at - s.declared_at)},
            after_investigation=self._outbox_on,
        )
        sev = self._severity_policy()
        await self._react(sev.reactions.resolved)
        if sev.review_within is not None:
            s.review_due_at = s.resolved_at + sev.review_within
            self._record(
                "review_scheduled", "", f"post-incident review due by {s.review_due_at:%Y-%m-%d %H:%M} UTC"
            )
            self._set_phase(Phase.review)
            await self._post("review_scheduled")
            await self._react(sev.reactions.review)
        await self._refresh_header()
        await self._ticket(
            TicketChangeKind.resolve,
            signal.user,
            resolution=signal.resolution,
            root_cause=signal.root_cause or "",
        )
        if sev.review_within is None:
            await self._ticket(
                TicketChangeKind.close, signal.user, text="no post-incident review for this severity"
            )

    async def _on_severity(self, signal: SeveritySignal) -> None:
        s = self._state
        self._refuse("set_severity", signal)
        new = Severity.parse(signal.severity)
        old = s.severity
        s.severity = new
        reason = f" ({signal.reason})" if signal.reason else ""
        self._record(
            "severity", signal.user, f"severity {old.value} → {new.value}{reason}", signal.request_id
        )
        # The running timers follow the new severity at once: deadlines are
        # recomputed from the same starting points with the new durations.
        self._schedule()
        self._publish()
        await self._post(
            "severity_changed", extra={"old": old.value, "author": signal.user, "reason": signal.reason}
        )
        await self._refresh_header()
        await self._ticket(
            TicketChangeKind.severity,
            signal.user,
            severity=new,
            previous_severity=old,
            reason=signal.reason or "",
        )

    async def _on_review_done(self, signal: ReviewDoneSignal) -> None:
        s = self._state
        self._refuse("review_done", signal)
        s.reviewed_at = workflow.now()
        self._record(
            "review_done", signal.user, signal.notes or "post-incident review done", signal.request_id
        )
        await self._post("review_done", extra={"author": signal.user, "notes": signal.notes})
        await self._ticket(
            TicketChangeKind.close, signal.user, text=signal.notes or "post-incident review done"
        )

    async def _on_alerts(self, batch: AlertBatch) -> None:
        """Alerts for this incident: symptoms and timeline grow, severity only goes up."""
        s = self._state
        first_batch = s.alerts_received == 0
        header_before = (s.severity, list(s.symptoms), list(s.devices))
        s.alerts_received += len(batch.alerts)
        firing, cleared = [], []
        raised_to: Severity | None = None
        listed = sum(1 for e in s.timeline if e.kind in ("alert", "alert_cleared", "alert_acknowledged"))
        for alert in batch.alerts:
            # What the incident keeps of an alert is bounded, so however long a storm lasts its
            # state (carried over continue-as-new, answered to queries) stays far under 2 MiB.
            label = limits.shorten(alert.summary or alert.name, limits.KEPT_ALERT_LABEL)
            listing = listed < limits.TIMELINE_ALERTS - 1
            if listed == limits.TIMELINE_ALERTS - 1:
                self._record(
                    "alert",
                    alert.source,
                    f"{limits.TIMELINE_ALERTS} alerts listed: later alerts are counted, not listed",
                )
            if not listing:
                s.alerts_unlisted += 1
            listed += 1
            if alert.status == "acknowledged":
                if listing:
                    self._record(
                        "alert_acknowledged", alert.source, f"alert acknowledged in {alert.source}: {label}"
                    )
                continue
            if alert.status == "resolved":
                if s.alerts_firing.pop(alert.fingerprint, None) is not None or listing:
                    cleared.append(label)
                if listing:
                    self._record("alert_cleared", alert.source, f"alert cleared: {label}")
                continue
            new = alert.fingerprint not in s.alerts_firing
            if new and len(s.alerts_firing) >= limits.TRACKED_ALERTS:
                continue  # counted in alerts_received; too many to track for clearing
            s.alerts_firing[alert.fingerprint] = label
            if new:
                firing.append(label)
                if listing:
                    self._record("alert", alert.source, f"alert firing: {label}")
            if label not in s.symptoms and len(s.symptoms) < MAX_SYMPTOMS:
                s.symptoms.append(label)
            for device in alert.devices:
                if device not in s.devices and len(s.devices) < limits.MAX_ITEMS:
                    s.devices.append(device)
            for device, upstream in alert.upstream.items():
                if device in s.devices:
                    s.upstream.setdefault(device, upstream)
            if alert.severity is not None and alert.severity.rank < (raised_to or s.severity).rank:
                raised_to = alert.severity
        open_ = s.phase in OPEN_PHASES
        if raised_to is not None and open_:
            old = s.severity
            s.severity = raised_to
            self._record(
                "severity", batch.user, f"severity {old.value} → {raised_to.value} (raised by an alert)"
            )
            self._schedule()
            self._publish()
            await self._ticket(
                TicketChangeKind.severity,
                batch.user,
                severity=raised_to,
                previous_severity=old,
                reason="raised by an alert",
            )
        if open_ and s.devices and s.investigation_workflow_id is None and s.phase != Phase.declared:
            await self._start_investigation()  # the first alert to name a device
            if s.commander is not None:
                await self._tell_investigation("investigate", s.commander, "already claimed")
        if not first_batch and (firing or cleared):
            await self._post(
                "alerts_changed", extra={"firing": firing, "cleared": cleared, "source": batch.user}
            )
            lines = [f"alert firing: {a}" for a in firing] + [f"alert cleared: {a}" for a in cleared]
            await self._ticket(TicketChangeKind.note, batch.user, text="\n".join(lines))
        if open_ and cleared and not s.alerts_firing and self._severity_policy().resolve_when_alerts_clear:
            await self._on_resolve(
                ResolveSignal(
                    user=batch.user, resolution="All alerts cleared; resolved automatically by policy."
                )
            )
            return
        if (s.severity, s.symptoms, s.devices) != header_before:
            await self._refresh_header()  # else the header reads the same: no chat.update
        else:
            self._publish()

    async def _on_note(self, note: TimelineNote) -> None:
        author = f"{note.author}: " if note.author else ""
        self._record("note", note.user, f"{author}{note.text}", note.request_id)
        self._publish()
        await self._ticket(TicketChangeKind.note, note.user, text=f"{author}{note.text}")

    async def _on_child_report(self, report: BaseModel) -> None:
        """What the ticket and the investigation children tell the incident."""
        s = self._state
        if isinstance(report, TicketRef):
            if report.enabled:
                s.ticket, s.ticket_url, s.ticket_status = report.number, report.url, ""
                verb = "opened" if report.created else "found (opened by an earlier attempt)"
                self._record("ticket", "", f"ServiceNow {report.number} {verb}")
            else:
                s.ticket_status = report.reason
                self._record("ticket", "", report.reason)
            await self._refresh_header()
        elif isinstance(report, TicketProblem):
            self._record("ticket_problem", "", report.reason)
            self._publish()
            await self._post("ticket_problem", extra={"problem": report.model_dump(mode="json")})
        elif isinstance(report, Baseline):
            s.baseline = report
            reachable = len(report.devices) - len(report.unreachable)
            unreachable = f"; unreachable: {', '.join(report.unreachable)}" if report.unreachable else ""
            self._record(
                "baseline",
                "",
                f"baseline captured: {reachable}/{len(report.devices)} devices reachable{unreachable}",
            )
            self._publish()
        elif isinstance(report, VerificationReport):
            s.verification_pending = False
            if report.verification is not None:
                self._record_verification(report.verification)
            else:
                self._record("verification", "", report.problem)
            self._publish()
        elif isinstance(report, Analysis):
            s.investigation = report.likely_cause
            self._record("investigation", "", f"investigation: {report.likely_cause}")
            self._publish()

    # -------------------------------------------------------------- timers

    # The deadline table (workflows/deadlines.py): one rule and one handler per purpose.

    def _escalation_due(self) -> Deadline | None:
        s = self._state
        if s.phase not in OPEN_PHASES or s.commander is not None:
            return None
        since = s.last_escalation_at or s.declared_at
        due = since + self._require_policy().escalation_delay(s.severity, since)
        return Deadline("escalation", due, f"escalation {s.escalations + 1} due")

    def _reminder_due(self) -> Deadline | None:
        s = self._state
        if s.phase not in OPEN_PHASES or s.commander is None:
            return None
        since = max(t for t in (s.claimed_at, s.last_update_at, s.last_reminder_at) if t is not None)
        return Deadline("reminder", since + self._severity_policy().update_every, "update reminder due")

    def _review_due(self) -> Deadline | None:
        s = self._state
        if s.phase != Phase.review or s.reviewed_at is not None or s.review_due_at is None:
            return None
        return Deadline("review", s.review_due_at, "review deadline")

    def _schedule(self) -> None:
        """Recompute the deadline table from the state; the state shows it (UI, `incident status`)."""
        s = self._state
        entries = self._deadline_table.entries()
        s.deadlines = [DeadlineEntry(purpose=d.purpose, due=d.due, label=d.label) for d in entries]
        s.next_escalation_at = self._deadline_table.due("escalation")
        s.next_reminder_at = self._deadline_table.due("reminder")

    async def _sleep_until_next_deadline(self) -> None:
        """Wait for a message, or until the earliest deadline (the timer says which it is)."""
        self._schedule()
        workflow.set_current_details(self._details_markdown())
        next_ = self._deadline_table.next()
        timeout = None if next_ is None else max(next_.due - workflow.now(), timedelta(milliseconds=1))
        try:
            await workflow.wait_condition(
                lambda: bool(self._inbox),
                timeout=timeout,
                timeout_summary=next_.label if next_ is not None else None,
            )
        except TimeoutError:
            pass  # a deadline passed: _fire_due_timers handles it

    async def _fire_due_timers(self) -> bool:
        self._schedule()
        fired = await self._deadline_table.fire_due(workflow.now())
        return fired is not None

    async def _review_expired(self, now: datetime) -> None:
        s = self._state
        s.reviewed_at = now
        self._record("review_expired", "", "review deadline passed without a review; closing the incident")
        await self._post("review_expired")
        await self._ticket(TicketChangeKind.close, "", text="review deadline passed without a review")

    async def _escalate(self, now: datetime) -> None:
        s = self._state
        sev = self._severity_policy()
        tier = sev.tier(s.escalations)
        s.escalations += 1
        s.last_escalation_at = now
        waited = format_duration(now - s.declared_at)
        self._record(
            "escalation", "", f"escalation {s.escalations}: unclaimed for {waited}, paging {' '.join(tier)}"
        )
        self._schedule()
        await self._post(
            "escalation", extra={"tier": tier, "number": s.escalations, "waited": waited}, mentions=tier
        )
        await self._refresh_header()
        await self._ticket(
            TicketChangeKind.escalation,
            "",
            text=f"Escalation {s.escalations}: unclaimed for {waited}, paging {' '.join(tier)}",
        )

    async def _remind(self, now: datetime) -> None:
        s = self._state
        s.reminders += 1
        since = s.last_update_at or s.claimed_at or s.declared_at
        s.last_reminder_at = now
        overdue_for = format_duration(now - since)
        self._record("reminder", "", f"update due: no update for {overdue_for}, nudging {s.commander}")
        self._schedule()
        mentions = [s.commander] if s.commander else []
        await self._post("reminder", extra={"silent_for": overdue_for}, mentions=mentions)
        await self._refresh_header()

    def _finished(self) -> bool:
        s = self._state
        if self._inbox:
            return False
        if s.phase == Phase.resolved:
            return True  # no review for this severity
        return s.phase == Phase.review and s.reviewed_at is not None

    def _history_too_long(self) -> bool:
        return history_too_long(self._require_policy().max_history_events)

    # ------------------------------------------------------------ children

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
        if not workflow.patched("ticket-per-occurrence"):
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
        child_id = investigation_workflow_id(s.workflow_id)
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
                    thread_follows=self._declaration_waiting(),
                    verify_on_request=self._outbox_on,
                    wait_at_most=settings.wait_for_claim,
                    timeouts=InvestigationTimeouts(device=settings.device_timeout),
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

    async def _tell_investigation(self, signal: str, user: str, reason: str) -> bool:
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

    # ----------------------------------------------------------- bookkeeping

    def _record(
        self, kind: str, actor: str, text: str, request_id: str | None = None, at: datetime | None = None
    ) -> None:
        entry = TimelineEntry(
            at=at or workflow.now(), kind=kind, actor=actor, text=text, request_id=request_id
        )
        self._state.timeline.append(entry)
        if request_id is not None:
            self._outcomes.setdefault(request_id, entry)

    def _set_phase(self, phase: Phase) -> None:
        if self._state.phase != phase:
            self._state.phase = phase
            self._record("phase", "", f"phase → {phase.value}")
        self._publish()

    def _publish(self) -> None:
        """Mirror the state into search attributes and the UI's current details."""
        s = self._state
        wanted = {
            "severity": s.severity.value,
            "phase": s.phase.value,
            "commander": s.commander or "",
            "service": s.service,
            "ticket": s.ticket or "",
        }
        if wanted != self._published:
            updates = [SEVERITY_ATTR.value_set(wanted["severity"]), PHASE_ATTR.value_set(wanted["phase"])]
            if wanted["commander"]:
                updates.append(COMMANDER_ATTR.value_set(wanted["commander"]))
            if wanted["service"]:
                updates.append(SERVICE_ATTR.value_set(wanted["service"]))
            if wanted["ticket"]:
                updates.append(TICKET_ATTR.value_set(wanted["ticket"]))
            workflow.upsert_search_attributes(updates)
            self._published = wanted
        workflow.set_current_details(self._details_markdown())

    def _details_markdown(self) -> str:
        s = self._state

        def when(value: datetime | None) -> str:
            return f"{value:%Y-%m-%d %H:%M} UTC" if value else "—"

        md = markdown_escape
        lines = [
            f"**{s.severity.value} · {md(s.title)}**",
            "",
            f"- **Phase:** {s.phase.value}",
            f"- **Incident Commander:** {md(s.commander or 'awaiting claim')}",
            f"- **Status:** {md(s.status or '—')}",
            f"- **Last update:** {when(s.last_update_at)}"
            + (f" — {md(limits.shorten(s.last_update, 500))}" if s.last_update else ""),
            "- **Next:** " + (", ".join(f"{d.label} {when(d.due)}" for d in s.deadlines) or "—"),
            f"- **Updates / reminders / escalations:** {s.updates} / {s.reminders} / {s.escalations}",
        ]
        if s.review_due_at:
            lines.append(f"- **Review due:** {when(s.review_due_at)}")
        if s.slack_channel:
            lines.append(f"- **Slack:** channel {md(s.slack_channel)}, thread {md(s.slack_thread_ts or '')}")
        ticket = md(s.ticket or "")
        if ticket and s.ticket_url.startswith(("https://", "http://")):
            ticket = f"[{ticket}]({s.ticket_url.replace(')', '%29').replace(' ', '%20')})"
        lines.append(f"- **Ticket:** {ticket or md(limits.shorten(s.ticket_status, 300)) or '—'}")
        if s.investigation:
            lines.append(f"- **Investigation:** {md(limits.shorten(s.investigation, 500))}")
        if s.verification:
            lines.append(
                f"- **Verification:** {'passed' if s.verification.passed else 'FAILED'} — "
                f"{md(limits.shorten(s.verification.summary, 500))}"
            )
        return "\n".join(lines)

    def _summary(self) -> IncidentSummary:
        s = self._state
        return IncidentSummary(
            key=s.key,
            severity=s.severity,
            title=s.title,
            commander=s.commander,
            declared_at=s.declared_at,
            claimed_at=s.claimed_at,
            resolved_at=s.resolved_at,
            time_to_acknowledge_seconds=(s.claimed_at - s.declared_at).total_seconds()
            if s.claimed_at
            else None,
            time_to_resolve_seconds=(s.resolved_at - s.declared_at).total_seconds()
            if s.resolved_at
            else None,
            updates=s.updates,
            reminders=s.reminders,
            escalations=s.escalations,
            resolution=s.resolution,
            root_cause=s.root_cause,
            timeline=s.timeline,
        )

    def _require_policy(self) -> Policy:
        assert self._policy is not None, "policy is loaded before anything is scheduled"
        return self._policy

    def _severity_policy(self) -> SeverityPolicy:
        return self._require_policy().for_severity(self._state.severity)


def initial_search_attributes(declaration: IncidentDeclaration) -> TypedSearchAttributes:
    """What a starter sets when it starts the workflow, so the incident is findable at once."""
    pairs = [
        SearchAttributePair(SEVERITY_ATTR, declaration.severity.value),
        SearchAttributePair(PHASE_ATTR, Phase.declared.value),
    ]
    if declaration.service:
        pairs.append(SearchAttributePair(SERVICE_ATTR, declaration.service))
    return TypedSearchAttributes(pairs)


def static_details(declaration: IncidentDeclaration) -> str:
    """Markdown for the UI's detail page: symptoms, impact, links (everything from input escaped)."""
    md = markdown_escape
    parts = [f"**{declaration.severity.value} · {md(declaration.title)}**"]
    if declaration.service:
        parts.append(f"Service: {md(declaration.service)}")
    for heading, items in (
        ("Symptoms", declaration.symptoms),
        ("Impact", declaration.impact),
        ("Links", declaration.links),
    ):
        if items:
            shown = [f"- {md(limits.shorten(item, 500))}" for item in items[:10]]
            if len(items) > 10:
                shown.append(f"- … and {len(items) - 10} more")
            parts.append(f"**{heading}**\n" + "\n".join(shown))
    parts.append(f"Reported by {md(declaration.reporter)}")
    return "\n\n".join(parts)


def _declared_at(declaration: IncidentDeclaration, now: datetime) -> datetime:
    """When the declaration was accepted (never later than now: a starter's clock may run ahead)."""
    if declaration.declared_at is None:
        return now
    return min(declaration.declared_at, now)


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#!|~])")


def markdown_escape(text: str) -> str:
    """Text from alerts and people made literal in the Temporal UI's markdown (no links, images, HTML)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def static_summary(declaration: IncidentDeclaration) -> str:
    return f"{declaration.severity.value} · {markdown_escape(declaration.title)}"
