"""Phase 6, the post-incident review (review-document patch and later): the meeting placed on a
business day within the severity's deadline, announced with its artifacts and discussion topics,
reminded the business day before; the review drafted from the incident's own record and attached
to the thread with its artifacts; closed on `review_done`, or when the deadline has passed by
the policy's grace.

Incidents started before the patch keep the old Phase 6 (a due-by time, closed at it).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from .deadlines import Deadline
    from .figures import figures_of
    from .incident_base import IncidentParts
    from .incident_input import OutboxItem
    from .models import Phase
    from .policy import format_duration
    from .retries import failure_reason
    from .review_draft import AttachedReview, ReviewDraftRequest
    from .review_models import (
        ARTIFACT_AUDIT,
        ARTIFACT_HEALTH,
        ARTIFACT_REVIEW,
        ARTIFACT_TIMELINE,
        ReviewSchedule,
        ReviewScheduleRequest,
    )

# Activity names, registered by worker.py (workflow code must not import activities/).
SCHEDULE_REVIEW = "schedule_review"  # a local activity: the zone database is I/O
ATTACH_REVIEW = "attach_review"
# Reading the audit trail and uploading a handful of files; retried, not forever.
ATTACH_TIMEOUT = timedelta(minutes=5)
ATTACH_ATTEMPTS = 10


class Review(IncidentParts):
    """Mixed into IncidentWorkflow: the review's meeting, reminder, draft and artifacts."""

    _outbox: list[OutboxItem]
    _outbox_on: bool
    _review_doc: bool  # the review-document patch, read when the run starts
    _review_task: asyncio.Task[None] | None = None

    if TYPE_CHECKING:  # provided by IncidentWorkflow

        def _set_phase(self, phase: Phase) -> None: ...

    def _add_review_deadlines(self) -> None:
        self._deadline_table.add("review_reminder", self._review_reminder_due, self._remind_review)

    def _review_reminder_due(self) -> Deadline | None:
        s = self._state
        r = s.review
        if r is None or r.reminded or r.reminder_at is None or s.phase != Phase.review or s.reviewed_at:
            return None
        return Deadline("review_reminder", r.reminder_at, "review reminder due")

    def _review_closes(self) -> Deadline | None:
        """The review's deadline plus the grace: the incident closes without it then."""
        s = self._state
        assert s.review is not None
        return Deadline("review", s.review.closes_at, "review deadline passed (grace over)")

    def _review_artifacts(self) -> list[str]:
        s = self._state
        outputs = [f"{d}: device outputs the investigation captured" for d in s.devices]
        return [ARTIFACT_REVIEW, ARTIFACT_TIMELINE, *outputs, ARTIFACT_AUDIT, ARTIFACT_HEALTH]

    async def _schedule_review_meeting(self, within: timedelta) -> None:
        """Place the meeting, announce it, and draft and attach the review beside the loop."""
        s = self._state
        policy = self._require_policy()
        assert s.resolved_at is not None
        hours, review = policy.business_hours, policy.review
        schedule = await workflow.execute_local_activity(
            SCHEDULE_REVIEW,
            ReviewScheduleRequest(
                resolved_at=s.resolved_at,
                review_within=within,
                hour=review.hour,
                reminder_hour=review.reminder_hour,
                grace=review.grace,
                timezone=hours.timezone,
                utc_offset_hours=hours.utc_offset_hours,
                weekdays=hours.weekdays,
            ),
            result_type=ReviewSchedule,
            start_to_close_timeout=timedelta(seconds=10),
            summary="place the review meeting",
        )
        schedule.artifacts = self._review_artifacts()
        s.review = schedule
        s.review_due_at = schedule.deadline
        self._record(
            "review_scheduled",
            "",
            f"post-incident review {schedule.meeting_local} ({schedule.meeting_at:%Y-%m-%d %H:%M} UTC), "
            f"due by {schedule.deadline:%Y-%m-%d %H:%M} UTC",
        )
        self._set_phase(Phase.review)
        self._schedule()
        await self._post(
            "review_scheduled",
            extra={"figures": figures_of(s).model_dump(mode="json")},
            mentions=self._review_people(),
        )
        self._review_task = asyncio.create_task(self._attach_review())

    def _review_people(self) -> list[str]:
        s = self._state
        people = [p for p in [s.commander, *s.roles.values(), *s.experts] if p]
        return list(dict.fromkeys(people))

    async def _attach_review(self) -> None:
        """After the announcement is in the thread: the review and its artifacts under it."""
        s = self._state
        if self._outbox_on:
            await workflow.wait_condition(
                lambda: (
                    not any(
                        i.kind == "post" and i.post is not None and i.post.template == "review_scheduled"
                        for i in self._outbox
                    )
                )
            )
        try:
            attached = await workflow.execute_activity(
                ATTACH_REVIEW,
                ReviewDraftRequest(incident=s),
                result_type=AttachedReview,
                start_to_close_timeout=ATTACH_TIMEOUT,
                retry_policy=RetryPolicy(
                    maximum_attempts=ATTACH_ATTEMPTS, maximum_interval=timedelta(minutes=1)
                ),
                summary="draft the review and attach it with its artifacts",
            )
        except ActivityError as err:
            problem = f"review not attached: {failure_reason(err)}"
            if s.review is not None:
                s.review.attach_problems.append(problem)
            self._record("slack_error", "", problem)
            return
        if s.review is not None:
            s.review.attached = attached.attached
            s.review.attach_problems = attached.problems
        self._record(
            "review_drafted",
            "",
            f"review drafted and attached to the thread with {len(attached.attached) - 1} artifacts"
            + (f" ({'; '.join(attached.problems)})" if attached.problems else ""),
        )
        self._publish()

    def _review_quiet(self) -> bool:
        return self._review_task is None or self._review_task.done()

    async def _remind_review(self, now: datetime) -> None:
        s = self._state
        assert s.review is not None
        s.review.reminded = True
        self._record("review_reminder", "", f"reminder: post-incident review {s.review.meeting_local}")
        self._schedule()
        await self._post("review_reminder", mentions=self._review_people())

    def _review_unheld(self) -> str:
        """The deadline passed by the grace without `review_done`: what the timeline says."""
        s = self._state
        assert s.review is not None
        grace = self._require_policy().review.grace
        return (
            f"review deadline {s.review.deadline:%Y-%m-%d %H:%M} UTC passed by the policy's grace "
            f"({format_duration(grace)}) without a review; closing the incident"
        )
