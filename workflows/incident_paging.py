"""The incident's escalation chain: who is paged, when, through which service, until acknowledged.

Mixed into IncidentWorkflow. The chain is the severity's `paging` policy, frozen into the
incident with the rest of its policy when it is declared (as PagerDuty and Grafana OnCall
freeze theirs). Each page of it is a step with a fixed offset from the declaration
(PagingPolicy.steps()), and the next step is one purpose of the incident's deadline table,
"page"; the time-based rules for an incident claimed but not resolved are another,
"unresolved". So a worker that was down pages what became due at once and the next level
at its own minute, and a claim or an acknowledgement takes the purposes out of the table:
nothing is paged after it.

Who is on call is asked when a level fires (a local activity, in the level's own workflow
task, reads the schedules and Slack's Do Not Disturb), so a rotation that hands off
mid-incident pages the new person. The pages themselves run beside the loop, one task per
level, each page an activity with its own idempotency key, so neither a slow paging service
nor a Slack outage holds up the incident, and PagerDuty is paged on time while Slack is down.
Paging's activities go first in the task queue (PAGE_PRIORITY): a storm's Slack posts do not
hold up its pages. A page task checks the acknowledgement before each page it sends, and an
acknowledgement cancels the tasks still running.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from temporalio import workflow
from temporalio.common import Priority, RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from .commands import OPEN_PHASES
    from .deadlines import Deadline
    from .incident_base import IncidentParts
    from .metrics import count_acknowledgement, count_page_sent
    from .models import AcknowledgeSignal, ClaimSignal, Severity
    from .paging_models import (
        Page,
        PageDelivered,
        PageRecord,
        PagingAction,
        PagingService,
        PagingUpdate,
        ResolvedTarget,
        ResolveTargets,
        TargetSpec,
        TargetsResolved,
    )
    from .policy import PagingPolicy, PagingTarget, format_duration
    from .retries import failure_reason, unlimited_retries

# Activity names, registered by worker.py (workflow code must not import activities/).
RESOLVE_PAGE_TARGETS = "resolve_page_targets"
SEND_PAGE = "send_page"
UPDATE_PAGING_SERVICE = "update_paging_service"
PAGE_TIMEOUT = timedelta(seconds=10)  # one call to a paging service before it is retried
PAGE_MAX_INTERVAL = timedelta(seconds=10)  # pages retry fast: a page minutes late is a page missed
# Paging's activities go ahead of the rest in the task queue (1 is first, unset is 3): in a storm
# a page does not wait behind every new incident's Slack posts (measured: bench/paging.py).
PAGE_PRIORITY = Priority(priority_key=1)
# What a first page waits for (the maintenance check) goes after the pages already decided and
# before the chat: in a storm, incidents whose page is due are paged before the next ones are
# checked, so first pages come out all along instead of all at the end.
CHECK_PRIORITY = Priority(priority_key=2)
TARGETS_TIMEOUT = timedelta(seconds=10)
TARGETS_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=5))


class Paging(IncidentParts):
    """Mixed into IncidentWorkflow: the escalation chain as two purposes of the deadline table."""

    _page_tasks: set[asyncio.Task[None]]  # pages being sent, one task per level (cancelled by an ack)
    _service_tasks: set[asyncio.Task[None]]  # acknowledging / resolving at the paging services
    _wake: bool  # the table changed beside the loop: it recomputes before sleeping on
    _first_page_first: bool  # the first-page-first patch (read at the start of the run)
    _paging_follows: bool  # the paging-follows-incident patch (read at the start of the run)

    if TYPE_CHECKING:  # provided by IncidentWorkflow and the other mixins

        async def _on_claim(self, signal: ClaimSignal) -> None: ...

        def _held(self, deadline: Deadline | None) -> Deadline | None: ...

    @workflow.query
    def paging_acknowledged(self) -> bool:
        """Asked by a page activity just before it pages: has anyone acknowledged meanwhile (or
        has the incident been resolved)? Either way the page is held."""
        return self._acknowledged() or self._state.resolved_at is not None

    def _held_why(self) -> str:
        if self._paging_follows and self._state.resolved_at is not None and not self._acknowledged():
            return "resolved"
        return "acknowledged"

    def _chain_follows(self, old: Severity) -> None:
        """A new severity, not yet acknowledged: its chain from level 1 now when raised, or from
        where the chain was, one wait from now, when lowered (since paging-follows). Before, the
        new chain's steps were due at their offsets from the declaration: raising a P3 an hour
        old to P1 paged every P1 level at once."""
        s = self._state
        if not self._paging_follows or s.phase not in OPEN_PHASES or self._acknowledged():
            return
        chain = self._chain()
        if chain is None or chain == self._require_policy().for_severity(old).paging:
            return
        steps = chain.steps()
        now = workflow.now()
        step = 0 if s.severity.value < old.value else min(s.paging.next_step, len(steps))
        s.paging.next_step = step
        if step >= len(steps):
            return  # lowered past the new chain's end: nothing more to page
        due = now if step == 0 else now + (steps[step][2] - steps[step - 1][2])
        s.paging.advanced = s.declared_at + steps[step][2] - due
        s.paging.restarts += 1
        s.paging.restart_reason = f"severity {old.value} → {s.severity.value}"
        self._wake = True

    def _add_paging_deadlines(self) -> None:
        self._page_tasks = set()
        self._service_tasks = set()
        self._wake = False
        self._deadline_table.add("page", self._page_due, self._page_level)
        self._deadline_table.add("unresolved", self._unresolved_due, self._page_unresolved)

    def _chain(self) -> PagingPolicy | None:
        return self._require_policy().for_severity(self._state.severity).paging

    def _acknowledged(self) -> bool:
        return self._state.paging.acknowledged_at is not None or self._state.commander is not None

    # ------------------------------------------------------------ the deadline table's rules

    def _page_due(self) -> Deadline | None:
        s, chain = self._state, self._chain()
        if chain is None or s.phase not in OPEN_PHASES or self._acknowledged():
            return None
        steps = chain.steps()
        if s.paging.next_step >= len(steps):
            return None
        loop, index, offset = steps[s.paging.next_step]
        label = f"page level {index + 1}" + (f" (repeat {loop})" if loop else "")
        return self._held(Deadline("page", self._step_due(offset), f"{label} due"))

    def _unresolved_due(self) -> Deadline | None:
        s, chain = self._state, self._chain()
        if chain is None or s.phase not in OPEN_PHASES or not self._acknowledged():
            return None
        if s.paging.unresolved_fired >= len(chain.unresolved):
            return None
        rule = chain.unresolved[s.paging.unresolved_fired]
        return self._held(
            Deadline("unresolved", self._rule_due(rule.after), f"unresolved {format_duration(rule.after)}")
        )

    def _step_due(self, offset: timedelta) -> datetime:
        """When a step of the chain is due: its offset, moved by skipped levels and snoozes."""
        return self._state.declared_at + offset - self._state.paging.advanced

    def _rule_due(self, after: timedelta) -> datetime:
        """When a time-based rule is due: its `after`, moved by the time snoozed."""
        return self._state.declared_at + after + self._state.paging.held

    # ------------------------------------------------------------ handlers

    async def _page_level(self, now: datetime) -> None:
        s, chain = self._state, self._chain()
        assert chain is not None
        loop, index, offset = chain.steps()[s.paging.next_step]
        s.paging.next_step += 1
        level = chain.levels[index]
        turn = None
        if level.notify == "round_robin":
            turn = s.paging.turns.get(index, 0)
            s.paging.turns[index] = turn + 1
        due = self._step_due(offset)
        late = now - due
        what = f"level {index + 1}" + (f", repeat {loop}" if loop else "")
        why = (
            (s.paging.restart_reason or "declared")
            if s.paging.next_step == 1
            else f"no acknowledgement after {format_duration(now - s.declared_at)}"
        )
        self._record(
            "paging",
            "",
            f"paging {what}: {', '.join(t.describe() for t in level.targets)} ({why}"
            + (f"; {format_duration(late)} late" if late >= timedelta(seconds=1) else "")
            + ")",
        )
        self._schedule()
        self._start_pages(
            level.targets,
            chain,
            what,
            loop=loop,
            level=index + 1,
            due=due,
            turn=turn,
            escalated="" if s.paging.next_step == 1 else why,
        )

    async def _page_unresolved(self, now: datetime) -> None:
        s, chain = self._state, self._chain()
        assert chain is not None
        rule = chain.unresolved[s.paging.unresolved_fired]
        s.paging.unresolved_fired += 1
        after = format_duration(rule.after)
        self._record(
            "paging", "", f"unresolved after {after}: paging {', '.join(t.describe() for t in rule.targets)}"
        )
        self._schedule()
        self._start_pages(
            rule.targets,
            chain,
            f"unresolved after {after}",
            loop=0,
            level=len(chain.levels) + s.paging.unresolved_fired,
            due=self._rule_due(rule.after),
            rule=f"unresolved {after}",
        )

    def _start_pages(self, targets: list[PagingTarget], chain: PagingPolicy, what: str, **kw: Any) -> None:
        specs = [
            TargetSpec(
                user=t.user,
                schedule=t.schedule,
                group=t.group,
                channel=t.channel,
                via=list(t.via or chain.via),
            )
            for t in targets
        ]
        task = asyncio.create_task(self._deliver(specs, what, **kw))
        self._page_tasks.add(task)
        task.add_done_callback(self._page_tasks.discard)

    # ------------------------------------------------------------ beside the loop

    async def _deliver(
        self,
        specs: list[TargetSpec],
        what: str,
        *,
        loop: int,
        level: int,
        due: datetime,
        turn: int | None = None,
        rule: str = "",
        escalated: str = "",
    ) -> None:
        """Ask who the targets are now, then page each of them through each of their services.

        `escalated`: why the chain moved on to these people ("no acknowledgement after 5m"), for
        the thread's "Escalated to ..." line.
        """
        s = self._state
        urgent = s.severity == Severity.P1
        try:
            found = await self._resolve_targets(
                ResolveTargets(
                    incident_workflow_id=s.workflow_id, targets=specs, at=workflow.now(), round_robin=turn
                ),
                what,
            )
        except (ActivityError, asyncio.CancelledError) as err:
            # Acknowledged (or resolved) while the targets were being looked up (the task was cancelled).
            held = self._acknowledged() or (self._paging_follows and s.resolved_at is not None)
            why = f"{self._held_why()} meanwhile" if held else str(err)
            self._record("paging_note", "", f"{what}: not paged, {why}")
            return
        for problem in found.problems:
            self._record("paging_note", "", f"{what}: {problem}")
        paged: list[tuple[ResolvedTarget, str]] = []
        for target in found.people:
            in_dnd = target.dnd is not None and target.dnd.snoozed
            if in_dnd and not urgent:
                self._note_page(
                    target, PagingService.slack, level, loop, due, "skipped: Do Not Disturb", rule
                )
                self._record(
                    "paging_note", "", f"{what}: {target.person.user_id} is in Do Not Disturb: skipped"
                )
                continue
            paged.append((target, "in Do Not Disturb, paged anyway (P1)" if in_dnd else ""))
        if found.people and not paged and rule == "":
            # Everyone at this level is in Do Not Disturb: the next level now, not at its minute.
            self._record(
                "paging_note", "", f"{what}: everyone is in Do Not Disturb; the next level is paged now"
            )
            self._skip_wait()
        if paged or found.broadcasts:
            await self._post(
                "paged",
                extra={
                    "what": what,
                    "escalated": escalated,
                    "people": [
                        {
                            "user": t.person.user_id,
                            "why": t.why,
                            "note": note,
                            "via": [v.value for v in t.via],
                        }
                        for t, note in paged
                    ],
                    "broadcasts": found.broadcasts,
                },
                mentions=[t.person.user_id for t, _ in paged],
            )
        await asyncio.gather(
            *(
                self._send_page(target, service, level, loop, due, urgent, what, rule)
                for target, _ in paged
                for service in target.via
            )
        )
        self._publish()

    async def _resolve_targets(self, request: ResolveTargets, what: str) -> TargetsResolved:
        """Who the targets are now. Since the first-page-first patch a local activity: it runs in
        the workflow task that fires the level, and the pages are scheduled in that same task
        (before: an activity task, then one more workflow task, before any page was scheduled)."""
        if self._first_page_first:
            return await workflow.execute_local_activity(
                RESOLVE_PAGE_TARGETS,
                request,
                result_type=TargetsResolved,
                start_to_close_timeout=TARGETS_TIMEOUT,
                retry_policy=TARGETS_RETRY,
                summary=f"who is paged: {what}",
            )
        return await workflow.execute_activity(
            RESOLVE_PAGE_TARGETS,
            request,
            result_type=TargetsResolved,
            start_to_close_timeout=TARGETS_TIMEOUT,
            retry_policy=TARGETS_RETRY,
            priority=PAGE_PRIORITY,
            summary=f"who is paged: {what}",
        )

    def _skip_wait(self) -> None:
        """The next page is due now: the rest of the chain moves up by the wait it skipped."""
        s, chain = self._state, self._chain()
        assert chain is not None
        steps = chain.steps()
        if s.paging.next_step < len(steps) and not self._acknowledged():
            s.paging.advanced = s.declared_at + steps[s.paging.next_step][2] - workflow.now()
            self._wake = True  # the loop sleeps until the old due time: recompute the table now

    async def _send_page(
        self,
        target: ResolvedTarget,
        service: PagingService,
        level: int,
        loop: int,
        due: datetime,
        urgent: bool,
        what: str,
        rule: str,
    ) -> None:
        s = self._state
        if self._acknowledged() and not rule:  # the unresolved rules page the acknowledged
            self._note_page(target, service, level, loop, due, "held: acknowledged", rule)
            return
        if self._paging_follows and s.resolved_at is not None:
            self._note_page(target, service, level, loop, due, "held: resolved", rule)
            return
        # A chain started again for a new severity pages afresh (its own keys).
        run = f"{rule or loop}" if not s.paging.restarts else f"r{s.paging.restarts}-{rule or loop}"
        key = f"{s.workflow_id}/page/{run}/{level}/{target.person.user_id}/{service.value}"
        page = Page(
            service=service,
            incident_workflow_id=s.workflow_id,
            incident_key=s.key,
            severity=s.severity,
            title=s.title,
            summary=s.summary_line,
            level=level,
            loop=loop,
            person=target.person,
            reason=f"{what}, {target.why}",
            urgent=urgent,
            idempotency_key=key,
            despite_acknowledgement=bool(rule),
            thread_channel=s.slack_channel,
            thread_ts=s.slack_thread_ts,
        )
        try:
            delivered = await workflow.execute_activity(
                SEND_PAGE,
                page,
                result_type=PageDelivered,
                start_to_close_timeout=PAGE_TIMEOUT,
                retry_policy=unlimited_retries(PAGE_MAX_INTERVAL),
                priority=PAGE_PRIORITY,
                summary=f"page {target.person.user_id} via {service.value} ({what})",
            )
        except ActivityError as err:
            self._note_page(target, service, level, loop, due, f"failed: {failure_reason(err)}", rule)
            return
        except asyncio.CancelledError:
            self._note_page(target, service, level, loop, due, f"held: {self._held_why()}", rule)
            return
        outcome = f"held: {self._held_why()}" if delivered.held else "sent"
        self._note_page(target, service, level, loop, due, outcome, rule)
        if self._paging_follows and outcome == "sent" and s.resolved_at is not None:
            # It went out as the incident was resolved: resolve it at the service too.
            self._tell_service(service, PagingAction.resolve, "")

    def _note_page(
        self,
        target: ResolvedTarget,
        service: PagingService,
        level: int,
        loop: int,
        due: datetime,
        outcome: str,
        rule: str,
    ) -> None:
        self._state.paging.pages.append(
            PageRecord(
                level=level,
                loop=loop,
                user_id=target.person.user_id,
                service=service,
                due=due,
                at=workflow.now(),
                outcome=outcome,
                rule=rule,
            )
        )
        if outcome == "sent":
            count_page_sent(self._state, service.value)

    # ------------------------------------------------------------ acknowledgement

    def _stop_paging(self, by: str, source: str) -> bool:
        """The first acknowledgement (or claim): no page after this moment. True when it was the first."""
        p = self._state.paging
        if p.acknowledged_at is not None:
            return False
        p.acknowledged_at = workflow.now()
        p.acknowledged_by = by
        paged = any(page.outcome == "sent" for page in p.pages)
        count_acknowledgement(self._state, p.acknowledged_at - self._state.declared_at, paged)
        for task in list(self._page_tasks):
            task.cancel()
        if self._chain() is not None:
            self._tell_services(PagingAction.acknowledge, by)
        return True

    def _tell_services(self, action: PagingAction, by: str) -> None:
        """Acknowledge or resolve the incident at each paging service that was paged for it."""
        s = self._state
        for service in sorted({p.service for p in s.paging.pages if p.outcome == "sent"}):
            self._tell_service(service, action, by)  # (Slack's DMs: nothing to tell)

    def _tell_service(self, service: PagingService, action: PagingAction, by: str) -> None:
        if service == PagingService.slack:
            return  # the thread says it; the DM's buttons answer that it is over
        update = PagingUpdate(service=service, incident_key=self._state.key, action=action, by=by)
        task = asyncio.create_task(self._update_service(update))
        self._service_tasks.add(task)
        task.add_done_callback(self._service_tasks.discard)

    async def _update_service(self, update: PagingUpdate) -> None:
        try:
            await workflow.execute_activity(
                UPDATE_PAGING_SERVICE,
                update,
                start_to_close_timeout=PAGE_TIMEOUT,
                retry_policy=unlimited_retries(PAGE_MAX_INTERVAL),
                priority=PAGE_PRIORITY,
                summary=f"{update.action.value} at {update.service.value}",
            )
        except ActivityError as err:
            self._record(
                "paging_note",
                "",
                f"{update.service.value}: {update.action.value} failed: {failure_reason(err)}",
            )

    async def _on_acknowledge(self, signal: AcknowledgeSignal) -> None:
        self._refuse("acknowledge", signal)
        s, chain = self._state, self._chain()
        source = f" via {signal.source}" if signal.source else ""
        self._stop_paging(signal.user, signal.source)
        self._record(
            "acknowledged",
            signal.user,
            f"{signal.user} acknowledged{source}: paging stopped",
            signal.request_id,
        )
        self._schedule()
        self._publish()
        await self._post("acknowledged", extra={"author": signal.user, "source": signal.source})
        if chain is not None and chain.acknowledge_claims and s.commander is None:
            await self._on_claim(ClaimSignal(user=signal.user))

    def _paging_quiet(self) -> bool:
        return not self._page_tasks and not self._service_tasks
