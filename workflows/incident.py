"""IncidentWorkflow: one durable workflow per incident, through six phases.

declared -> triage -> investigating -> monitoring -> resolved -> review

Signals only append to an inbox; the main loop handles them one at a time,
in arrival order, between timers. That keeps Slack posts in order and makes
every decision in one place, where the timers are too.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    # The mixins of IncidentWorkflow: code without state of its own, so one copy serves every run.
    # Pure data and the children's definitions, imported once by the worker instead of
    # again in every run's sandbox (pydantic builds each model class on import: that
    # was most of a run's CPU, and a 200-incident burst's throughput, measured).
    from .action_models import ActionItemDoneSignal, ActionItemSignal
    from .alert_intake import take_alerts
    from .commands import OPEN_PHASES
    from .deadlines import Deadline, DeadlineTable
    from .device_models import (
        Analysis,
        Baseline,
    )
    from .figures import figures_of
    from .incident_actions import ACTION_ITEMS_PATCH, ActionItems
    from .incident_children import EARLY_PER_OCCURRENCE_PATCH, INVESTIGATION_IN_TURN_PATCH, Children
    from .incident_commands import CommandSurface, Rejected
    from .incident_input import CHILD_MODELS, IncidentInput, PendingSignal
    from .incident_paging import Paging
    from .incident_review import Review
    from .incident_snooze import Snooze
    from .incident_stakeholders import Stakeholders
    from .incident_triggers import Triggers
    from .incident_war_room import WarRooms
    from .investigation_models import (
        VerificationReport,
    )
    from .maintenance import MaintenanceNotice
    from .models import (
        COMMANDER_ATTR,
        PHASE_ATTR,
        ROLES,
        SERVICE_ATTR,
        SEVERITY_ATTR,
        TICKET_ATTR,
        AcknowledgeSignal,
        AlertBatch,
        ClaimSignal,
        Conversation,
        DeadlineEntry,
        IncidentDeclaration,
        IncidentState,
        IncidentSummary,
        Phase,
        ResolveSignal,
        ReviewDoneSignal,
        RoleSignal,
        Severity,
        SeveritySignal,
        Signal,
        SnoozeSignal,
        StakeholderSignal,
        TicketReference,
        TimelineEntry,
        TimelineNote,
        UpdateSignal,
        WarRoomSignal,
        role_name,
    )
    from .paging_models import PagingAction
    from .policy import Policy, Reactions, SeverityPolicy, format_duration
    from .retries import history_too_long
    from .ticket_models import (
        TicketChangeKind,
        TicketProblem,
        TicketRef,
    )
    from .ui import (  # noqa: F401 - the starters import these from here
        details_markdown,
        initial_search_attributes,
        markdown_escape,
        static_details,
        static_summary,
    )
    from .voice import OUTBOX_PATCH, SlackVoice, start_outbox


# Activity names, registered by worker.py (workflow code must not import activities/).
LOAD_POLICY = "load_incident_policy"
# The patch of this release: the slack-outbox, ticket-per-occurrence-early and investigation-in-turn paths.
RELEASE_2026_12_01 = "release-2026-12-01"
# The next release's: a P1's war room, the severity triggers, the team's checklist kept true
# (asked when the run starts, before the policy's local activity: see _read_patches).
RELEASE_2026_12_01B = "release-2026-12-01b"
# The header's last word when the incident completes: "closed" (asked then; no local activity
# precedes it in that task, so an incident from before the release says closed too).
CLOSED_HEADER_PATCH = "closed-header"
# Who a level pages is asked in the level's own workflow task (a local activity), so its pages are
# scheduled in that task: the first page of a new incident one server round trip sooner. And the
# search attributes the run starts with are not written again (the patch's own marker costs an
# upsert of TemporalChangeVersion: the incident writes no more to visibility than before).
FIRST_PAGE_FIRST = "first-page-first"
# Paging follows the incident: a resolution stops the pages still being sent (and resolves at the
# service one that went out anyway); a new severity starts its own chain from level 1 now (raised)
# or goes on from where the chain was, one wait from now (lowered), instead of paging every level
# the new chain's offsets say are overdue at once.
PAGING_FOLLOWS = "paging-follows-incident"
# The post-incident review drafted and attached with its artifacts, its meeting on a business day
# with a reminder, closed at its deadline plus the policy's grace (incident_review.py).
REVIEW_2026_12_02 = "review-document"


@workflow.defn
class IncidentWorkflow(
    CommandSurface,
    Children,
    SlackVoice,
    Paging,
    Snooze,
    WarRooms,
    Triggers,
    Stakeholders,
    Review,
    ActionItems,
):
    @workflow.init
    def __init__(self, input: IncidentInput) -> None:
        self._policy: Policy | None = input.policy
        self._inbox: list[PendingSignal] = list(input.inbox)
        self._outbox = list(input.outbox)
        self._outbox_on = False  # the slack-outbox patch, read when the run starts
        self._sending = self._outbox_held = self._verifying = False
        self._per_occurrence_early = self._investigation_in_turn = False
        self._release_b = False
        self._first_page_first = False  # the first-page-first patch, read when the run starts
        self._paging_follows = False  # the paging-follows-incident patch, read when the run starts
        self._review_doc = False  # the review-document patch, read when the run starts
        self._actions_on = False  # the action-items patch, read when the run starts
        self._patches_read = False
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
                runbook=d.runbook,
                reporter=d.reporter,
                devices=list(d.devices),
                upstream=dict(d.upstream),
                declared_at=_declared_at(d, workflow.now()),
                detected_at=d.detected_at,
            )
        # What the declaration says for the severity triggers (incident_triggers.py).
        self._declared_flags = (input.declaration.customer_impact, input.declaration.data_integrity)
        # A command's outcome by its request id: what its update answers, and how a command
        # sent twice (an update that timed out, then the same as a signal) is applied once.
        self._outcomes: dict[str, TimelineEntry] = {
            e.request_id: e for e in self._state.timeline if e.request_id is not None
        }
        self._deadline_table = DeadlineTable()
        # First: a snooze ends before what it held (moved to its end) fires at the same instant.
        self._add_snooze_deadline()
        self._deadline_table.add("escalation", self._escalation_due, self._escalate)
        self._deadline_table.add("reminder", self._reminder_due, self._remind)
        self._deadline_table.add("review", self._review_due, self._review_expired)
        self._add_paging_deadlines()
        self._add_trigger_deadlines()
        self._add_stakeholder_deadlines()
        self._add_review_deadlines()
        self._add_action_deadlines()

    # ------------------------------------------------------------ messages

    @workflow.signal
    def alerts(self, batch: AlertBatch) -> None:
        self._enqueue("alerts", batch)

    @workflow.signal
    def maintenance(self, notice: MaintenanceNotice) -> None:
        self._enqueue("maintenance", notice)

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

    # ---------------------------------------------------------------- run

    @workflow.run
    async def run(self, input: IncidentInput) -> IncidentSummary:
        self._read_patches()
        if self._outbox_on:
            start_outbox(self)
            self._room_sender = asyncio.create_task(self._drain_rooms())
        if self._policy is None:
            self._policy = await workflow.execute_local_activity(
                LOAD_POLICY,
                result_type=Policy,
                start_to_close_timeout=timedelta(seconds=10),
                summary="load the incident policy",
            )
        self._schedule()
        self._publish()
        self._resume_filing()
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
                await self._pause_filing()  # the next run files them (found, not filed twice)
                if self._outbox_on:
                    await self._outbox_quiet()
                await workflow.wait_condition(self._beside_quiet)
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

        if workflow.patched(CLOSED_HEADER_PATCH):
            await self._refresh_header()  # it says closed (it read "Phase: review" before)
        self._archive_war_room()  # the policy says whether; after the review, as the last thing
        await self._hand_over_action_items()  # those still open go on in incident-<key>-actions
        # Commands that raced with completion are answered, not silently dropped.
        # The thread's last messages go out first, however long Slack takes; the children's
        # reports they wait for (the verification) are still heard meanwhile.
        while True:
            await self._refuse_leftovers()
            if (self._outbox_on and (self._outbox or self._sending)) or not self._beside_quiet():
                await workflow.wait_condition(
                    lambda: bool(self._inbox) or not (self._outbox or self._sending) and self._beside_quiet()
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
        # State only, no command: histories from before runbooks replay as they were recorded.
        s.runbook = s.runbook or self._require_policy().runbooks.for_service(s.service)
        self._record("declared", s.reporter, f"{s.severity.value} declared: {s.title}", at=s.declared_at)
        # Posted as it reads once declared (triage: awaiting a claim), so it needs no
        # chat.update straight after: one call fewer per incident against Slack's
        # per-channel rate limit in a storm.
        tickets = self._require_policy().tickets
        # Incidents declared before aa7130e posted first, then went to triage and refreshed the
        # header: they replay only so. No patch marker tells them from those declared since (none
        # has one); the policy they loaded does: it had no tickets.off_reason yet (9e93aaf).
        # Incidents started since the slack-outbox patch need no such guess.
        in_triage = self._outbox_on or "off_reason" in tickets.model_fields_set
        if in_triage:
            self._set_phase(Phase.triage)
        # The ticket opens while the declaration posts: neither waits on the other.
        s.ticket_status = "[INC pending]" if tickets.enabled else tickets.off_reason
        as_posted = s.ticket_status
        ticket = asyncio.create_task(self._start_ticket())
        channel = self._require_policy().channel(s.severity)
        posted = await self._post("declaration", channel=channel, in_thread=False, mentions=sev.notify)
        await ticket
        if posted is not None:  # before the outbox: posted already
            s.conversation = Conversation(channel=posted.channel, thread=posted.ts)
        if posted is not None or self._outbox_on:
            await self._react(self._reactions().declared)
        if self._war_room_for(s.severity):
            self._ask_for_war_room(s.reporter, f"{s.severity.value} declared")
        self._state.checklist_on = self._release_b
        await self._triggers_at_declaration(*self._declared_flags)
        if not in_triage:
            self._set_phase(Phase.triage)
        await self._start_investigation()
        if self._chain() is not None:  # a severity that pages: is its service in maintenance?
            await self._check_maintenance()
        if s.ticket_status != as_posted or not in_triage:
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
            elif isinstance(signal, AcknowledgeSignal):
                await self._on_acknowledge(signal)
            elif isinstance(signal, SnoozeSignal):
                await self._on_snooze(signal)
            elif isinstance(signal, UpdateSignal):
                await self._on_update(signal)
            elif isinstance(signal, ResolveSignal):
                await self._on_resolve(signal)
            elif isinstance(signal, SeveritySignal):
                await self._on_severity(signal)
            elif isinstance(signal, ReviewDoneSignal):
                await self._on_review_done(signal)
            elif isinstance(signal, RoleSignal):
                await self._on_role(signal)
            elif isinstance(signal, WarRoomSignal):
                await self._on_open_war_room(signal)
            elif isinstance(signal, StakeholderSignal):
                await self._on_stakeholder_update(signal)
            elif isinstance(signal, AlertBatch):
                await self._on_alerts(signal)
            elif isinstance(signal, TimelineNote):
                await self._on_note(signal)
            elif isinstance(signal, ActionItemSignal):
                await self._on_action_item(signal)
            elif isinstance(signal, ActionItemDoneSignal):
                await self._on_action_done(signal)
        except Rejected as reason:
            self._record("rejected", signal.user, f"{pending.kind}: {reason}", signal.request_id)
            self._publish()
        if request_id is not None and request_id not in self._outcomes:  # applied, nothing recorded
            self._outcomes[request_id] = TimelineEntry(
                at=workflow.now(), kind=pending.kind, actor=signal.user
            )

    async def _on_claim(self, signal: ClaimSignal) -> None:
        s = self._state
        self._refuse("claim", signal)
        previous = s.commander
        s.commander = signal.user
        if previous is None:
            self._stop_paging(signal.user, "claim")
            s.claimed_at = workflow.now()
            self._record("claimed", signal.user, f"{signal.user} is Incident Commander", signal.request_id)
            if s.phase in (Phase.declared, Phase.triage):
                self._set_phase(Phase.investigating)
            self._schedule()
            await self._post("team_formed")
            await self._react(self._reactions().claimed)
            await self._react(self._reactions().investigating)
            await self._tell_investigation("investigate", signal.user, "claimed")
        else:
            self._record(
                "handover", signal.user, f"IC handover: {previous} → {signal.user}", signal.request_id
            )
            self._publish()
            await self._post("handover", extra={"previous": previous}, mentions=[previous, signal.user])
        await self._refresh_header()
        await self._ticket(TicketChangeKind.claim, signal.user, assigned_to=signal.user)

    async def _on_role(self, signal: RoleSignal) -> None:
        s = self._state
        self._refuse("assign_role", signal)
        role = role_name(signal.role)
        assert role is not None  # refused otherwise
        who, name = signal.assignee, ROLES[role]
        previous = None
        if role == "sme":
            if signal.remove:
                s.experts.remove(who)
            else:
                s.experts.append(who)
        elif signal.remove:
            del s.roles[role]
        else:
            previous = s.roles.get(role)
            s.roles[role] = who
        if signal.remove:
            text = f"{who} is no longer {'a' if role == 'sme' else 'the'} {name}"
        elif previous:
            text = f"{name} handover: {previous} → {who}"
        else:
            text = f"{who} is {'a' if role == 'sme' else 'the'} {name}"
        self._record("role", signal.user, text, signal.request_id)
        self._publish()
        await self._post(
            "role_assigned",
            extra={
                "role": role,
                "role_name": name,
                "assignee": who,
                "previous": previous,
                "removed": signal.remove,
                "by": signal.user,
            },
            mentions=[] if signal.remove else [who],
        )
        await self._refresh_header()

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
        if status in ("fixing", "waiting"):
            await self._react(getattr(self._reactions(), status))
        await self._triggers_after_update(
            signal.user, status, signal.scope_doubled, signal.customer_impact, signal.data_integrity
        )
        await self._refresh_header()
        await self._ticket(
            TicketChangeKind.update, signal.user, text=signal.message, status=status, eta=signal.eta
        )

    async def _on_resolve(self, signal: ResolveSignal) -> None:
        s = self._state
        self._refuse("resolve", signal)
        s.resolved_at = workflow.now()
        if self._chain() is not None:
            self._tell_services(PagingAction.resolve, signal.user)
        s.resolution = signal.resolution
        s.root_cause = signal.root_cause or None
        self._record("resolved", signal.user, signal.resolution, signal.request_id)
        self._set_phase(Phase.resolved)
        self._schedule()
        await self._verify_resolution(signal.user)
        await self._post(
            "resolution",
            extra={
                "author": signal.user,
                "duration": format_duration(s.resolved_at - s.declared_at),
                "figures": figures_of(s).model_dump(mode="json"),
            },
            after_investigation=self._outbox_on,
        )
        await self._stakeholder_resolution()
        sev = self._severity_policy()
        await self._react(self._reactions().resolved)
        if sev.review_within is not None and self._review_doc:
            await self._schedule_review_meeting(sev.review_within)
            await self._react(self._reactions().review)
        elif sev.review_within is not None:
            s.review_due_at = s.resolved_at + sev.review_within
            self._record(
                "review_scheduled", "", f"post-incident review due by {s.review_due_at:%Y-%m-%d %H:%M} UTC"
            )
            self._set_phase(Phase.review)
            await self._post("review_scheduled")
            await self._react(self._reactions().review)
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
        self._refuse("set_severity", signal)
        await self._change_severity(
            Severity.parse(signal.severity), signal.user, signal.reason, signal.request_id
        )

    async def _change_severity(self, new: Severity, user: str, why: str, request_id: str | None) -> None:
        """A person's or a trigger's new severity: timers, thread, header and ticket follow."""
        s = self._state
        old = s.severity
        if new.value < old.value:  # P1 < P2: raised
            await self._end_snooze(f"severity raised to {new.value}")
            if self._war_room_for(new):
                self._ask_for_war_room(user, f"raised to {new.value}")
        s.severity = new
        self._severity_set()
        self._chain_follows(old)
        reason = f" ({why})" if why else ""
        self._record("severity", user, f"severity {old.value} → {new.value}{reason}", request_id)
        # The running timers follow the new severity at once: deadlines are
        # recomputed from the same starting points with the new durations.
        self._schedule()
        self._publish()
        await self._post("severity_changed", extra={"old": old.value, "author": user, "reason": why})
        await self._refresh_header()
        await self._ticket(
            TicketChangeKind.severity,
            user,
            severity=new,
            previous_severity=old,
            reason=why or "",
        )

    async def _on_review_done(self, signal: ReviewDoneSignal) -> None:
        s = self._state
        self._refuse("review_done", signal)
        s.reviewed_at = workflow.now()
        self._record(
            "review_done", signal.user, signal.notes or "post-incident review done", signal.request_id
        )
        await self._post(
            "review_done",
            extra={
                "author": signal.user,
                "notes": signal.notes,
                "figures": figures_of(s).model_dump(mode="json"),
            },
        )
        await self._ticket(
            TicketChangeKind.close, signal.user, text=signal.notes or "post-incident review done"
        )

    async def _on_alerts(self, batch: AlertBatch) -> None:
        """Alerts for this incident: symptoms and timeline grow, severity only goes up."""
        s = self._state
        first_batch = s.alerts_received == 0
        header_before = (s.severity, list(s.symptoms), list(s.devices))
        s.alerts_received += len(batch.alerts)
        taken = take_alerts(s, batch.alerts, workflow.now())
        s.timeline.extend(taken.entries)
        firing, cleared, raised_to = taken.firing, taken.cleared, taken.raised_to
        open_ = s.phase in OPEN_PHASES
        if open_ and (firing or raised_to is not None):
            await self._end_snooze("severity raised by an alert" if raised_to else "a new alert fired")
        if raised_to is not None and open_:
            old = s.severity
            s.severity = raised_to
            self._severity_set()
            self._chain_follows(old)
            if self._war_room_for(raised_to):
                self._ask_for_war_room(batch.user, f"raised to {raised_to.value} by an alert")
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
        await self._triggers_after_alerts(batch.alerts, batch.user)
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
        if isinstance(report, MaintenanceNotice):
            await self._on_maintenance(report)
            return
        if isinstance(report, TicketRef):
            if report.enabled:
                s.ticket_ref = TicketReference(
                    system=report.system, id=report.sys_id, number=report.number, url=report.url
                )
                s.ticket_status = ""
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
        if s.phase not in OPEN_PHASES or s.commander is not None or self._chain() is not None:
            return None  # a severity with an escalation chain pages instead (incident_paging.py)
        since = s.last_escalation_at or s.declared_at
        due = since + self._require_policy().escalation_delay(s.severity, since)
        return self._held(Deadline("escalation", due, f"escalation {s.escalations + 1} due"))

    def _reminder_due(self) -> Deadline | None:
        s = self._state
        if s.phase not in OPEN_PHASES or s.commander is None:
            return None
        since = max(t for t in (s.claimed_at, s.last_update_at, s.last_reminder_at) if t is not None)
        return self._held(
            Deadline("reminder", since + self._severity_policy().update_every, "update reminder due")
        )

    def _review_due(self) -> Deadline | None:
        s = self._state
        if s.phase != Phase.review or s.reviewed_at is not None or s.review_due_at is None:
            return None
        if s.review is not None:
            return self._review_closes()
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
                lambda: bool(self._inbox) or self._wake,
                timeout=timeout,
                timeout_summary=next_.label if next_ is not None else None,
            )
        except TimeoutError:
            pass  # a deadline passed: _fire_due_timers handles it
        self._wake = False

    async def _fire_due_timers(self) -> bool:
        # The table reads its rules itself; the state's copy is refreshed before the next sleep.
        fired = await self._deadline_table.fire_due(workflow.now())
        return fired is not None

    async def _review_expired(self, now: datetime) -> None:
        s = self._state
        s.reviewed_at = now
        if s.review is not None:
            self._record("review_expired", "", self._review_unheld())
            extra = {
                "figures": figures_of(s).model_dump(mode="json"),
                "grace": format_duration(self._require_policy().review.grace),
            }
            await self._post("review_expired", extra=extra)
        else:
            self._record(
                "review_expired", "", "review deadline passed without a review; closing the incident"
            )
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

    def _beside_quiet(self) -> bool:
        """No page, paging-service call or email in flight beside the loop."""
        return self._paging_quiet() and self._mail_quiet() and self._review_quiet()

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

    def _published_at_start(self) -> dict[str, str]:
        """The search attributes this run started with (its starter's, or carried over
        continue-as-new), as `_publish` compares them: what is there already is not written again."""
        found = workflow.info().typed_search_attributes
        return {
            "severity": found.get(SEVERITY_ATTR) or "",
            "phase": found.get(PHASE_ATTR) or "",
            "commander": found.get(COMMANDER_ATTR) or "",
            "service": found.get(SERVICE_ATTR) or "",
            "ticket": found.get(TICKET_ATTR) or "",
        }

    def _details_markdown(self) -> str:
        return details_markdown(self._state)

    def _summary(self) -> IncidentSummary:
        s = self._state
        common: dict[str, Any] = {
            "key": s.key,
            "severity": s.severity,
            "title": s.title,
            "commander": s.commander,
            "declared_at": s.declared_at,
            "claimed_at": s.claimed_at,
            "resolved_at": s.resolved_at,
            "updates": s.updates,
            "reminders": s.reminders,
            "escalations": s.escalations,
            "resolution": s.resolution,
            "root_cause": s.root_cause,
            "timeline": s.timeline,
            # For `incident report` (starter/report.py).
            "service": s.service,
            "reporter": s.reporter,
            "detected_at": s.detected_at,
            "review_due_at": s.review_due_at,
            "pages": s.paging.pages,
            "action_items": s.action_items,
        }
        if self._review_doc:  # the same figures as the closing message, the review and the CLI
            figures = figures_of(s)
            return IncidentSummary(
                **common,
                time_to_acknowledge_seconds=figures.time_to_acknowledge_seconds,
                time_to_resolve_seconds=figures.time_to_resolve_seconds,
                time_to_mitigate_seconds=figures.time_to_mitigate_seconds,
                time_to_detect_seconds=figures.time_to_detect_seconds,
                review=s.review,
            )
        return IncidentSummary(
            **common,
            time_to_acknowledge_seconds=(s.claimed_at - s.declared_at).total_seconds()
            if s.claimed_at
            else None,
            time_to_resolve_seconds=(s.resolved_at - s.declared_at).total_seconds()
            if s.resolved_at
            else None,
        )

    def _read_patches(self) -> None:
        """The patches this run takes, asked first, before the policy's local activity (a patch first
        asked after one can replay wrong when a query split that workflow task). On replay each
        one's marker says whether the incident was started since it."""
        self._patches_read = True
        self._review_doc = workflow.patched(REVIEW_2026_12_02)
        # The war room, the severity triggers and the team's checklist kept true: one marker.
        self._release_b = workflow.patched(RELEASE_2026_12_01B)
        self._actions_on = workflow.patched(ACTION_ITEMS_PATCH)  # incident_actions.py
        self._first_page_first = workflow.patched(FIRST_PAGE_FIRST)
        self._paging_follows = workflow.patched(PAGING_FOLLOWS)
        if self._first_page_first:
            self._published = self._published_at_start()
        # One marker for everything this release changed (one event in every new incident's
        # history, not three). The three before it were recorded separately during its work.
        if workflow.patched(RELEASE_2026_12_01):
            self._outbox_on = self._per_occurrence_early = self._investigation_in_turn = True
            return
        self._outbox_on = workflow.patched(OUTBOX_PATCH)
        # Incidents from before this marker ask ticket-per-occurrence later, where they did.
        self._per_occurrence_early = workflow.patched(EARLY_PER_OCCURRENCE_PATCH)
        # The investigation told to investigate and verify in the outbox's turn, so its posts
        # follow the incident's earlier ones (without it, under a 429 the plan came before Team Formed).
        self._investigation_in_turn = workflow.patched(INVESTIGATION_IN_TURN_PATCH)

    def _require_policy(self) -> Policy:
        assert self._policy is not None, "policy is loaded before anything is scheduled"
        return self._policy

    def _severity_policy(self) -> SeverityPolicy:
        return self._require_policy().for_severity(self._state.severity)

    def _reactions(self) -> Reactions:
        return self._require_policy().chat.reactions


def _declared_at(declaration: IncidentDeclaration, now: datetime) -> datetime:
    """When the declaration was accepted (never later than now: a starter's clock may run ahead)."""
    if declaration.declared_at is None:
        return now
    return min(declaration.declared_at, now)
