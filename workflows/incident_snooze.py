"""Snooze: hold the incident's reminders, escalation and paging for a while, then resume.

Mixed into IncidentWorkflow. `snooze 30m` (CLI, `/incident snooze`, the update or signal)
holds every purpose that nags or pages, says so, and the "snooze" purpose of the deadline
table ends it on time. A held deadline that falls due meanwhile fires when the snooze ends;
the escalation chain's clock stops for the time snoozed, so its later levels keep their
spacing. A new firing alert or a severity raise ends a snooze at once: something changed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from .deadlines import Deadline
    from .incident_base import IncidentParts
    from .incident_paging import CHECK_PRIORITY
    from .maintenance import MaintenanceNotice, MaintenanceQuestion
    from .models import SnoozeSignal
    from .policy import format_duration, parse_duration

# Activity names, registered by worker.py (workflow code must not import activities/).
MAINTENANCE_WINDOW = "maintenance_window"
# The escalation chain's purposes: their offsets move by the time snoozed.
CHAIN = ("page", "unresolved")


class Snooze(IncidentParts):
    def _add_snooze_deadline(self) -> None:
        self._deadline_table.add("snooze", self._snooze_due, self._snooze_over)

    def _held(self, deadline: Deadline | None) -> Deadline | None:
        """`deadline` as the snooze moves it: the chain's pages by the snooze's length (its clock
        stands still), a reminder or a mention escalation to the snooze's end."""
        s = self._state
        until = s.snoozed_until
        if deadline is None or until is None:
            return deadline
        due = deadline.due
        if deadline.purpose in CHAIN and s.snoozed_at is not None:
            due += until - s.snoozed_at  # where it will be once the snooze is over
        due = max(due, until)
        if due == deadline.due:
            return deadline
        return Deadline(deadline.purpose, due, f"{deadline.label} (snoozed)")

    # ------------------------------------------------------------ maintenance windows

    async def _check_maintenance(self) -> None:
        """At declaration, for a severity that pages: is the service in a maintenance window?"""
        s = self._state
        if not s.service:
            return
        try:
            notice = await workflow.execute_activity(
                MAINTENANCE_WINDOW,
                MaintenanceQuestion(service=s.service, incident_workflow_id=s.workflow_id),
                result_type=MaintenanceNotice,
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(maximum_attempts=3),
                priority=CHECK_PRIORITY,  # the first page waits for the answer
                summary=f"is {s.service} in maintenance?",
            )
        except ActivityError as err:
            self._record(
                "paging_note", "", f"maintenance window of {s.service} unknown: {err}; paging as usual"
            )
            return
        if notice.until is not None and notice.until > workflow.now():
            await self._on_maintenance(notice)

    async def _on_maintenance(self, notice: MaintenanceNotice) -> None:
        """The window starts, moves or ends: the escalation chain starts (again) at its end.

        The chain's offsets move by the change, so the first level is paged when the window ends
        and the next ones keep their spacing after it (not all at once)."""
        s = self._state
        now = workflow.now()
        if notice.until is None and s.maintenance_until is None:
            return
        was = max(s.maintenance_until, now) if s.maintenance_until is not None else now
        will = max(notice.until, now) if notice.until is not None else now
        s.paging.advanced -= will - was
        s.paging.held += will - was
        reason = f" ({notice.reason})" if notice.reason else ""
        if notice.until is None or notice.until <= now:
            s.maintenance_until = None
            self._record("maintenance", "", f"maintenance of {notice.service} over: paging as usual")
        else:
            s.maintenance_until = notice.until
            self._record(
                "maintenance",
                "",
                f"{notice.service} is in maintenance until {notice.until:%H:%M} UTC{reason}: paging held",
            )
        self._schedule()
        self._publish()
        await self._post(
            "maintenance", extra={"service": notice.service, "until": notice.until, "reason": notice.reason}
        )

    def _snooze_due(self) -> Deadline | None:
        until = self._state.snoozed_until
        return None if until is None else Deadline("snooze", until, "snooze ends")

    async def _on_snooze(self, signal: SnoozeSignal) -> None:
        self._refuse("snooze", signal)
        s = self._state
        now = workflow.now()
        if s.snoozed_until is not None:
            self._resume(now)  # a new snooze replaces the one running: its time so far counts
        length = parse_duration(signal.duration)
        s.snoozed_at, s.snoozed_until = now, now + length
        reason = f" ({signal.reason})" if signal.reason else ""
        self._record(
            "snoozed",
            signal.user,
            f"snoozed for {format_duration(length)} until {s.snoozed_until:%H:%M} UTC{reason}:"
            " reminders, escalation and paging held",
            signal.request_id,
        )
        self._schedule()
        self._publish()
        await self._post("snoozed", extra={"author": signal.user, "reason": signal.reason})

    async def _snooze_over(self, now: datetime) -> None:
        self._resume(now)
        self._record("snooze_over", "", "snooze over: reminders, escalation and paging resume")
        self._schedule()
        await self._post("snooze_over", extra={"why": ""})

    async def _end_snooze(self, why: str) -> None:
        """A new alert or a severity raise: whatever was held is due again now."""
        if self._state.snoozed_until is None:
            return
        self._resume(workflow.now())
        self._record("snooze_over", "", f"snooze ended early: {why}")
        self._schedule()
        await self._post("snooze_over", extra={"why": why})

    def _resume(self, now: datetime) -> None:
        s = self._state
        if s.snoozed_at is not None:
            # The chain's clock stood still while snoozed: later levels move by the time held.
            s.paging.advanced -= now - s.snoozed_at
            s.paging.held += now - s.snoozed_at
        s.snoozed_at = s.snoozed_until = None
