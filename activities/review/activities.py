"""The review's activities: place the meeting (a local activity: it reads the zone database),
and draft the review and attach it to the incident's thread with its artifacts."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from temporalio import activity
from temporalio.client import Client, WorkflowHistory

from activities.audit import _first, derive_audit, fetch_histories, to_json_lines
from activities.chat.backend import ChatBackend
from workflows.device_models import CAPTURE_BASELINE, VERIFY_AGAINST_BASELINE
from workflows.models import SlackFileUpload
from workflows.review_draft import AttachedReview, ReviewDraftRequest
from workflows.review_models import (
    ARTIFACT_AUDIT,
    ARTIFACT_HEALTH,
    ARTIFACT_REVIEW,
    ARTIFACT_TIMELINE,
    ReviewSchedule,
    ReviewScheduleRequest,
)

from .document import health_text, render_review, timeline_text
from .schedule import review_schedule

RUN_INVESTIGATION_STEP = "run_investigation_step"
# The investigation's health readings, whose kept outputs are artifacts too: activity -> when.
HEALTH_READINGS = {CAPTURE_BASELINE: "baseline", VERIFY_AGAINST_BASELINE: "after the resolution"}
# Device outputs worth keeping for the review: read-only show commands.
_SHOW = re.compile(r"^show\s", re.IGNORECASE)
MAX_FILE = 900_000  # characters of one file (Slack takes far more; the thread should not)


@dataclass
class DeviceOutput:
    device: str
    command: str
    output: str


def device_outputs(histories: Sequence[WorkflowHistory]) -> list[DeviceOutput]:
    """The `show` outputs the investigation captured, from its steps' results in its history
    (the investigation keeps them out of its own state; its history has them, masked)."""
    found: list[DeviceOutput] = []
    for history in histories:
        scheduled: dict[int, str] = {}
        for event in history.events:
            if event.HasField("activity_task_scheduled_event_attributes"):
                a = event.activity_task_scheduled_event_attributes
                scheduled[event.event_id] = a.activity_type.name
            elif event.HasField("activity_task_completed_event_attributes"):
                done = event.activity_task_completed_event_attributes
                if scheduled.get(done.scheduled_event_id) != RUN_INVESTIGATION_STEP:
                    continue
                kind = scheduled.get(done.scheduled_event_id)
                result = _first(done.result)
                if kind in HEALTH_READINGS and isinstance(result, dict):
                    found += _health_outputs(result, HEALTH_READINGS[kind])
                    continue
                if kind != RUN_INVESTIGATION_STEP:
                    continue
                if not isinstance(result, dict) or not result.get("raw_output"):
                    continue
                if _SHOW.match(str(result.get("command", ""))):
                    found.append(
                        DeviceOutput(str(result["device"]), str(result["command"]), result["raw_output"])
                    )
    return found


def _health_outputs(reading: dict, when: str) -> list[DeviceOutput]:
    """The whole outputs a baseline or a verification kept (`show version`), per device."""
    found = []
    devices = reading.get("devices") or {}
    for name, health in devices.items() if isinstance(devices, dict) else ():
        outputs = health.get("outputs") if isinstance(health, dict) else None
        for command, text in (outputs or {}).items():
            if isinstance(text, str) and text and _SHOW.match(command):
                found.append(DeviceOutput(str(name), f"{command} ({when})", text))
    return found


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")


class ReviewActivities:
    def __init__(self, client: Client, chat: ChatBackend, ui_url: Callable[[str], str]) -> None:
        self._client = client
        self._chat = chat
        self._ui_url = ui_url

    @activity.defn(name="schedule_review")
    async def schedule_review(self, request: ReviewScheduleRequest) -> ReviewSchedule:
        """When the review meets and is reminded, in the team's zone (pure: safe to repeat)."""
        return review_schedule(request)

    @activity.defn(name="attach_review")
    async def attach_review(self, request: ReviewDraftRequest) -> AttachedReview:
        """Draft the review and attach it and its artifacts to the incident's thread.

        Idempotent: each file has a title unique in the thread (the incident's key in it), and
        `upload_file` looks for a file of that title before uploading again on a retry.
        """
        state = request.incident
        conversation = state.conversation
        if conversation is None:
            return AttachedReview(problems=["the incident has no Slack thread"])
        problems: list[str] = []
        files: list[tuple[str, str, str]] = []  # title, filename, content
        key = state.key
        ui_url = self._ui_url(state.workflow_id)
        files.append(
            (
                f"{ARTIFACT_REVIEW}: {key}",
                f"post-incident-review-{_slug(key)}.md",
                render_review(state, ui_url=ui_url),
            )
        )
        files.append((f"{ARTIFACT_TIMELINE}: {key}", f"timeline-{_slug(key)}.tsv", timeline_text(state)))
        histories: list[WorkflowHistory] = []
        try:
            histories = await fetch_histories(self._client, state.workflow_id)
        except Exception as err:  # noqa: BLE001 - the review goes out without its audit trail
            problems.append(f"audit trail not read: {err}")
        for output in device_outputs(histories):
            files.append(
                (
                    f"{output.device} {output.command}: {key}",
                    # Named apart from the investigation's own attachment of the same output
                    # (`R2-show-logging.txt`), which may be in the thread already.
                    f"review-{_slug(key)}-{_slug(output.device)}-{_slug(output.command)}.txt",
                    output.output,
                )
            )
        if histories:
            audit = to_json_lines(derive_audit(histories))
            files.append((f"{ARTIFACT_AUDIT}: {key}", f"audit-{_slug(key)}.jsonl", audit))
        files.append((f"{ARTIFACT_HEALTH}: {key}", f"health-{_slug(key)}.md", health_text(state)))
        attached: list[str] = []
        for title, filename, content in files:
            await self._chat.upload_file(
                SlackFileUpload(
                    channel=conversation.channel,
                    thread_ts=conversation.thread,
                    filename=filename,
                    title=title,
                    content=content[:MAX_FILE],
                )
            )
            attached.append(title)
            activity.heartbeat(title)
        return AttachedReview(attached=attached, problems=problems)

    @property
    def activities(self) -> list:
        return [self.schedule_review, self.attach_review]
