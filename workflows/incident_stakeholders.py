"""Stakeholder updates (issue 13): the seed's three messages, to a Slack channel and by email.

Mixed into IncidentWorkflow. For the policy's `stakeholders.severities` (P1 by default):

- the initial notification (Subject / Current Status / Impact / Next Update) goes out when the
  communications lead publishes the first update, or at the latest `initial_within` (10 min)
  after the declaration (or the raise to such a severity), from what the incident says;
- each later `stakeholder_update` command (`incident stakeholder KEY ...`) is a status update
  (Status / Current Understanding / Actions Taken / Next Steps / Next Update); one overdue (the
  severity's update cadence since the last) reminds the communications lead in the thread;
- the resolution (Resolution / Duration / Impact Summary / Follow-up) goes out when the
  incident is resolved.

The Slack message is a post of the outbox (once, by its idempotency key); the email is the
`send_email` activity beside the loop (once per recipient across retries). Each is a timeline
entry of kind `stakeholder` with what it said: the status page shows these and nothing else.
Incidents declared before this release never take them (the run's release marker).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from .commands import OPEN_PHASES
    from .deadlines import Deadline
    from .email_models import SEND_EMAIL, EmailSent, EmailToSend
    from .incident_base import IncidentParts
    from .models import StakeholderSignal
    from .policy import StakeholderSettings
    from .retries import failure_reason, unlimited_retries
    from .stakeholder_models import (
        StakeholderInitial,
        StakeholderResolution,
        StakeholderStatusUpdate,
    )

AnyUpdate = StakeholderInitial | StakeholderStatusUpdate | StakeholderResolution


class Stakeholders(IncidentParts):
    """Mixed into IncidentWorkflow."""

    _release_b: bool

    def _add_stakeholder_deadlines(self) -> None:
        self._mail_tasks: set[asyncio.Task[None]] = set()
        self._deadline_table.add("stakeholder", self._stakeholder_due, self._stakeholder_overdue)

    def _stakeholders(self) -> StakeholderSettings | None:
        """The settings, when this incident's stakeholders hear of it (now)."""
        s = self._state
        settings = self._require_policy().stakeholders
        if not self._release_b or s.severity not in settings.severities:
            return None
        if s.stakeholders_since is None:
            s.stakeholders_since = workflow.now()
        return settings

    def _mail_quiet(self) -> bool:
        return not self._mail_tasks

    # ------------------------------------------------------------ the deadline

    def _stakeholder_due(self) -> Deadline | None:
        s = self._state
        settings = self._stakeholders()
        if settings is None or s.phase not in OPEN_PHASES:
            return None
        if s.stakeholder_updates == 0:
            assert s.stakeholders_since is not None
            return Deadline(
                "stakeholder", s.stakeholders_since + settings.initial_within, "initial notification due"
            )
        last = max(t for t in (s.stakeholder_last_at, s.stakeholder_reminded_at) if t is not None)
        return Deadline("stakeholder", last + self._cadence(), "stakeholder update due")

    async def _stakeholder_overdue(self, now: datetime) -> None:
        s = self._state
        if s.stakeholder_updates == 0:
            await self._send_stakeholder(self._initial(None), "", None)
        s.stakeholder_reminded_at = now
        self._schedule()
        comms = s.roles.get("comms") or s.commander
        await self._post(
            "stakeholder_reminder",
            extra={"comms": comms, "cadence": int(self._cadence() / timedelta(minutes=1))},
            mentions=[comms] if comms else [],
        )

    def _cadence(self) -> timedelta:
        return self._severity_policy().update_every

    # ------------------------------------------------------------ what goes out

    def _base(self) -> dict[str, Any]:
        s = self._state
        return {"incident_key": s.key, "severity": s.severity, "service": s.service or s.title[:100]}

    def _initial(self, signal: StakeholderSignal | None) -> StakeholderInitial:
        s = self._state
        impact = (signal.impact or signal.understanding) if signal else "; ".join(s.impact) or s.title
        return StakeholderInitial(
            **self._base(),
            impact_brief=s.title,
            impact=impact,
            next_update_minutes=int(self._cadence() / timedelta(minutes=1)),
        )

    async def _on_stakeholder_update(self, signal: StakeholderSignal) -> None:
        self._refuse("stakeholder_update", signal)
        if self._stakeholders() is None:
            self._record(
                "rejected",
                signal.user,
                "stakeholder_update: this severity has no stakeholder updates",
                signal.request_id,
            )
            return
        s = self._state
        if s.stakeholder_updates == 0:
            update: AnyUpdate = self._initial(signal)
        else:
            update = StakeholderStatusUpdate(
                **self._base(),
                current_state=signal.understanding.splitlines()[0][:200] or s.title,
                status=signal.status.strip().lower(),
                current_understanding=signal.understanding,
                actions_taken=list(signal.actions),
                next_steps=list(signal.next_steps),
                next_update_minutes=int(self._cadence() / timedelta(minutes=1)),
            )
        await self._send_stakeholder(update, signal.user, signal.request_id)

    async def _stakeholder_resolution(self) -> None:
        s = self._state
        if self._stakeholders() is None or s.resolved_at is None:
            return
        review = self._severity_policy().review_within
        update = StakeholderResolution(
            **self._base(),
            brief=s.title,
            resolution=s.resolution or "resolved",
            started_at=s.detected_at or s.declared_at,
            resolved_at=s.resolved_at,
            impact_summary="; ".join(s.impact) or s.title,
            postmortem_on=(s.resolved_at + review).date() if review is not None else None,
            tracked_in=s.ticket_url or s.ticket,
        )
        await self._send_stakeholder(update, "", None)

    async def _send_stakeholder(self, update: AnyUpdate, user: str, request_id: str | None) -> None:
        s = self._state
        settings = self._require_policy().stakeholders
        s.stakeholder_updates += 1
        s.stakeholder_last_at = workflow.now()
        number = s.stakeholder_updates
        words = {"initial": "initial notification", "update": "status update", "resolved": "resolution"}
        self._record("stakeholder", user, f"{words[update.kind]}: {_said(update)}", request_id)
        self._schedule()
        if settings.channel:
            await self._post(
                update.slack_template, extra=update.slack_extra(), channel=settings.channel, in_thread=False
            )
        if settings.emails:
            email = EmailToSend(
                incident_workflow_id=s.workflow_id,
                idempotency_key=f"{s.workflow_id}/stakeholder/{number}/{update.kind}",
                recipients=list(settings.emails),
                update=update,
                follows_key=None if number == 1 else f"{s.workflow_id}/stakeholder/1/initial",
                decided_at=workflow.now(),
            )
            task = asyncio.create_task(self._send_email(email))
            self._mail_tasks.add(task)
            task.add_done_callback(self._mail_tasks.discard)
        await self._refresh_header()

    async def _send_email(self, email: EmailToSend) -> None:
        try:
            sent = await workflow.execute_activity(
                SEND_EMAIL,
                email,
                result_type=EmailSent,
                start_to_close_timeout=timedelta(seconds=60),
                heartbeat_timeout=timedelta(seconds=30),
                retry_policy=unlimited_retries(timedelta(minutes=1)),
                summary=f"email {email.idempotency_key.rsplit('/', 1)[-1]} to {len(email.recipients)}",
            )
        except ActivityError as err:
            self._record("email_error", "", f"stakeholder email not sent: {failure_reason(err)}")
            return
        if not sent.sent:
            self._record("email_error", "", f"stakeholder email not sent: {sent.off_because}")


def _said(update: AnyUpdate) -> str:
    if isinstance(update, StakeholderInitial):
        return update.impact
    if isinstance(update, StakeholderStatusUpdate):
        return f"[{update.status.value}] {update.current_understanding}"
    return update.resolution
