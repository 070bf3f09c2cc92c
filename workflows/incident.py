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
    from . import limits
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
        investigation_workflow_id,
    )
    from .models import (
        COMMANDER_ATTR,
        PHASE_ATTR,
        SERVICE_ATTR,
        SEVERITY_ATTR,
        TICKET_ATTR,
        UPDATE_STATUSES,
        AlertBatch,
        ClaimSignal,
        IncidentDeclaration,
        IncidentState,
        IncidentSummary,
        Phase,
        PostedMessage,
        ResolveSignal,
        ReviewDoneSignal,
        Severity,
        SeveritySignal,
        Signal,
        SlackHeaderUpdate,
        SlackPost,
        SlackReaction,
        TimelineEntry,
        TimelineNote,
        UpdateSignal,
    )
    from .policy import Policy, SeverityPolicy, format_duration
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

# Activity names, registered by worker.py (workflow code must not import activities/).
LOAD_POLICY = "load_incident_policy"
POST_SLACK_MESSAGE = "post_slack_message"
UPDATE_SLACK_HEADER = "update_slack_header"
ADD_SLACK_REACTION = "add_slack_reaction"

MAX_SYMPTOMS = 25  # the rest stay in the timeline; the header must stay readable
OPEN_PHASES = (Phase.declared, Phase.triage, Phase.investigating, Phase.monitoring)


class Rejected(Exception):
    """A signal that cannot be applied; the reason goes to the timeline."""


@workflow.defn
class IncidentWorkflow:
    @workflow.init
    def __init__(self, input: IncidentInput) -> None:
        self._policy: Policy | None = input.policy
        self._inbox: list[PendingSignal] = list(input.inbox)
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

    # ------------------------------------------------------------ messages

    @workflow.signal
    def claim(self, signal: ClaimSignal) -> None:
        self._enqueue("claim", signal)

    @workflow.signal
    def update(self, signal: UpdateSignal) -> None:
        self._enqueue("update", signal)

    @workflow.signal
    def resolve(self, signal: ResolveSignal) -> None:
        self._enqueue("resolve", signal)

    @workflow.signal
    def set_severity(self, signal: SeveritySignal) -> None:
        self._enqueue("set_severity", signal)

    @workflow.signal
    def review_done(self, signal: ReviewDoneSignal) -> None:
        self._enqueue("review_done", signal)

    @workflow.signal
    def alerts(self, batch: AlertBatch) -> None:
        self._enqueue("alerts", batch)

    @workflow.signal
    def add_to_timeline(self, note: TimelineNote) -> None:
        self._enqueue("add_to_timeline", note)

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

    @workflow.query
    def state(self) -> IncidentState:
        return self._state

    def _enqueue(self, kind: str, signal: BaseModel) -> None:
        self._inbox.append(PendingSignal(kind=kind, payload=signal.model_dump(mode="json")))

    # ---------------------------------------------------------------- run

    @workflow.run
    async def run(self, input: IncidentInput) -> IncidentSummary:
        if self._policy is None:
            self._policy = await workflow.execute_local_activity(
                LOAD_POLICY,
                result_type=Policy,
                start_to_close_timeout=timedelta(seconds=10),
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
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    IncidentInput(
                        declaration=input.declaration,
                        policy=self._policy,
                        carried=self._state,
                        inbox=self._inbox,
                    )
                )
            try:
                await workflow.wait_condition(lambda: bool(self._inbox), timeout=self._until_next_deadline())
            except TimeoutError:
                pass  # a deadline passed: _fire_due_timers handles it

        # Signals that raced with completion are answered, not silently dropped.
        await workflow.wait_condition(workflow.all_handlers_finished)
        while self._inbox:
            pending = self._inbox.pop(0)
            if pending.kind in CHILD_MODELS:
                continue  # a child's late report: the incident is over
            self._record(
                "rejected",
                pending.payload.get("user", ""),
                "the incident is closed",
                pending.payload.get("request_id"),
            )
        return self._summary()

    # ------------------------------------------------------------- phases

    async def _declare(self) -> None:
        s = self._state
        sev = self._severity_policy()
        self._record("declared", s.reporter, f"{s.severity.value} declared: {s.title}", at=s.declared_at)
        # Posted as it reads once declared (triage: awaiting a claim), so it needs no
        # chat.update straight after: one call fewer per incident against Slack's
        # per-channel rate limit in a storm.
        tickets = self._require_policy().tickets
        # Incidents declared before aa7130e posted first, then went to triage and refreshed the
        # header: they replay only so. No patch marker tells them from those declared since (none
        # has one); the policy they loaded does: it had no tickets.off_reason yet (9e93aaf).
        in_triage = "off_reason" in tickets.model_fields_set
        if in_triage:
            self._set_phase(Phase.triage)
        # The ticket opens while the declaration posts: neither waits on the other.
        s.ticket_status = "[INC pending]" if tickets.enabled else tickets.off_reason
        as_posted = s.ticket_status
        ticket = asyncio.create_task(self._start_ticket())
        posted = await self._post("declaration", channel=sev.channel, in_thread=False, mentions=sev.notify)
        await ticket
        if posted is not None:
            s.slack_channel, s.slack_thread_ts = posted.channel, posted.ts
            await self._react(sev.reactions.declared)
        if not in_triage:
            self._set_phase(Phase.triage)
        await self._start_investigation()
        if s.ticket_status != as_posted or not in_triage:
            await self._refresh_header()  # the ticket child could not start

    async def _handle(self, pending: PendingSignal) -> None:
        message = pending.parsed()
        if not isinstance(message, Signal):
            await self._on_child_report(message)
            return
        signal = message
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

    async def _on_claim(self, signal: ClaimSignal) -> None:
        s = self._state
        if s.phase not in OPEN_PHASES:
            raise Rejected(f"the incident is already {s.phase.value}; it cannot be claimed")
        if s.commander == signal.user:
            raise Rejected(f"{signal.user} is already the Incident Commander")
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
        status = signal.status.strip().lower()
        if status not in UPDATE_STATUSES:
            raise Rejected(f"unknown status {signal.status!r}: use one of {', '.join(UPDATE_STATUSES)}")
        if s.phase not in OPEN_PHASES:
            raise Rejected(f"the incident is already {s.phase.value}; post-resolution notes go in the review")
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
        if s.phase not in OPEN_PHASES:
            raise Rejected(f"the incident is already {s.phase.value}")
        s.resolved_at = workflow.now()
        s.resolution = signal.resolution
        s.root_cause = signal.root_cause or None
        self._record("resolved", signal.user, signal.resolution, signal.request_id)
        self._set_phase(Phase.resolved)
        self._schedule()
        if s.claimed_at is None:
            await self._tell_investigation(
                "stop", signal.user, "the incident was resolved before anyone claimed it"
            )
        await self._verify()
        await self._post(
            "resolution",
            extra={"author": signal.user, "duration": format_duration(s.resolved_at - s.declared_at)},
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
        try:
            new = Severity.parse(signal.severity)
        except ValueError as exc:
            raise Rejected(str(exc)) from None
        if s.phase not in OPEN_PHASES:
            raise Rejected(f"the incident is already {s.phase.value}")
        if new == s.severity:
            raise Rejected(f"the incident is already {new.value}")
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
        if s.phase != Phase.review:
            raise Rejected(f"there is no open review (phase is {s.phase.value})")
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
        elif isinstance(report, Analysis):
            s.investigation = report.likely_cause
            self._record("investigation", "", f"investigation: {report.likely_cause}")
            self._publish()

    # -------------------------------------------------------------- timers

    def _schedule(self) -> None:
        """Recompute the next escalation, reminder and review deadlines from the state."""
        s = self._state
        policy = self._require_policy()
        sev = policy.for_severity(s.severity)
        open_ = s.phase in OPEN_PHASES
        if open_ and s.commander is None:
            since = s.last_escalation_at or s.declared_at
            s.next_escalation_at = since + policy.escalation_delay(s.severity, since)
        else:
            s.next_escalation_at = None
        if open_ and s.commander is not None:
            since = max(t for t in (s.claimed_at, s.last_update_at, s.last_reminder_at) if t is not None)
            s.next_reminder_at = since + sev.update_every
        else:
            s.next_reminder_at = None

    def _deadlines(self) -> list[datetime]:
        s = self._state
        candidates = [s.next_escalation_at, s.next_reminder_at]
        if s.phase == Phase.review and s.reviewed_at is None:
            candidates.append(s.review_due_at)
        return [d for d in candidates if d is not None]

    def _until_next_deadline(self) -> timedelta | None:
        deadlines = self._deadlines()
        if not deadlines:
            return None
        return max(min(deadlines) - workflow.now(), timedelta(milliseconds=1))

    async def _fire_due_timers(self) -> bool:
        s = self._state
        now = workflow.now()
        if s.next_escalation_at is not None and now >= s.next_escalation_at:
            await self._escalate(now)
            return True
        if s.next_reminder_at is not None and now >= s.next_reminder_at:
            await self._remind(now)
            return True
        if s.phase == Phase.review and s.reviewed_at is None and s.review_due_at and now >= s.review_due_at:
            s.reviewed_at = now
            self._record(
                "review_expired", "", "review deadline passed without a review; closing the incident"
            )
            await self._post("review_expired")
            await self._ticket(TicketChangeKind.close, "", text="review deadline passed without a review")
            return True
        return False

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
        info = workflow.info()
        return info.is_continue_as_new_suggested() or (
            info.get_current_history_length() > self._require_policy().max_history_events
        )

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
                static_summary=f"Ticket · {s.summary_line}",
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
                    wait_at_most=settings.wait_for_claim,
                    timeouts=InvestigationTimeouts(device=settings.device_timeout),
                ),
                id=child_id,
                parent_close_policy=ParentClosePolicy.ABANDON,
                static_summary=f"Investigation · {s.summary_line}",
            )
        except WorkflowAlreadyStartedError as err:  # an earlier incident with this key still investigates
            self._record("investigation", "", f"automated investigation not started: {err}")
            return
        s.investigation_workflow_id = child_id
        self._record("investigation", "", f"automated investigation of {', '.join(s.devices)} started")

    async def _tell_investigation(self, signal: str, user: str, reason: str) -> None:
        s = self._state
        if s.investigation_workflow_id is None:
            return
        try:
            await workflow.get_external_workflow_handle(s.investigation_workflow_id).signal(
                signal, InvestigationSignal(user=user, reason=reason)
            )
        except FailureError as err:  # finished already (it gave up waiting) or terminated
            self._record("investigation", "", f"investigation not told to {signal}: {err.message}")

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
            )
        except ActivityError as err:
            cause = err.cause
            reason = cause.message if isinstance(cause, FailureError) else str(cause or err)
            self._record("verification", "", f"verification could not run: {reason}")
            return
        mark = "✅" if s.verification.passed else "❌ FAILED:"
        self._record("verification", "", f"verification {mark} {s.verification.summary}")

    # -------------------------------------------------------- side effects

    def _slack_options(self) -> dict[str, Any]:
        timeouts = self._require_policy().timeouts
        return {
            "start_to_close_timeout": timeouts.slack_start_to_close,
            # Unlimited attempts: a Slack outage delays messages, it never drops them.
            # Bad tokens, unknown channels and the like are raised non-retryable.
            "retry_policy": RetryPolicy(
                initial_interval=timedelta(seconds=1),
                backoff_coefficient=2.0,
                maximum_interval=timeouts.slack_max_retry_interval,
            ),
        }

    def _snapshot(self) -> IncidentState:
        return self._state.model_copy(update={"timeline": []})

    async def _post(
        self,
        template: str,
        *,
        extra: dict[str, Any] | None = None,
        mentions: list[str] | None = None,
        channel: str | None = None,
        in_thread: bool = True,
    ) -> PostedMessage | None:
        s = self._state
        channel = channel or s.slack_channel
        if channel is None or (in_thread and s.slack_thread_ts is None):
            return None  # the declaration never reached Slack; the timeline still has it all
        s.messages_posted += 1
        post = SlackPost(
            channel=channel,
            thread_ts=s.slack_thread_ts if in_thread else None,
            idempotency_key=f"{s.workflow_id}/{s.messages_posted}/{template}",
            template=template,
            incident=self._snapshot(),
            extra=extra or {},
            mentions=mentions or [],
        )
        try:
            return await workflow.execute_activity(
                POST_SLACK_MESSAGE, post, result_type=PostedMessage, **self._slack_options()
            )
        except ActivityError as err:
            self._slack_failed(template, err)
            return None

    async def _react(self, name: str) -> None:
        s = self._state
        if not name or s.slack_channel is None or s.slack_thread_ts is None:
            return
        try:
            await workflow.execute_activity(
                ADD_SLACK_REACTION,
                SlackReaction(channel=s.slack_channel, ts=s.slack_thread_ts, name=name),
                **self._slack_options(),
            )
        except ActivityError as err:
            self._slack_failed(f"reaction :{name}:", err)

    async def _refresh_header(self) -> None:
        s = self._state
        self._publish()
        if s.slack_channel is None or s.slack_thread_ts is None:
            return
        try:
            await workflow.execute_activity(
                UPDATE_SLACK_HEADER,
                SlackHeaderUpdate(channel=s.slack_channel, ts=s.slack_thread_ts, incident=self._snapshot()),
                **self._slack_options(),
            )
        except ActivityError as err:
            self._slack_failed("header update", err)

    def _slack_failed(self, what: str, err: ActivityError) -> None:
        cause = err.cause
        reason = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
        self._record("slack_error", "", f"{what} not posted: {reason}")

    # ----------------------------------------------------------- bookkeeping

    def _record(
        self, kind: str, actor: str, text: str, request_id: str | None = None, at: datetime | None = None
    ) -> None:
        self._state.timeline.append(
            TimelineEntry(at=at or workflow.now(), kind=kind, actor=actor, text=text, request_id=request_id)
        )

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
            f"- **Next update due:** {when(s.next_reminder_at)}",
            f"- **Next escalation:** {when(s.next_escalation_at)}",
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
