"""The incident's Slack voice: every message, reaction and header edit it makes.

Before the `slack-outbox` patch each call was awaited in the incident's own loop,
so a Slack outage held up the incident itself: commands waited, timers fired
late, the ticket heard nothing. Incidents started since then decide what to say
in the loop and put it in an ordered outbox; one task beside the loop sends it,
retrying as long as Slack fails. So with Slack down for an hour the incident
goes on (commands applied when received, timers on time, the ticket told), and
afterwards the thread catches up in the order things happened, each message
once (its idempotency key) and each with the time and content it had when it
was decided. Incidents started before the patch keep the old path, which their
recorded histories need to replay.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, FailureError

with workflow.unsafe.imports_passed_through():
    from .incident_base import IncidentParts
    from .incident_input import OutboxItem
    from .investigation_models import SlackThread
    from .models import (
        Conversation,
        IncidentState,
        PostedMessage,
        SlackHeaderUpdate,
        SlackPost,
        SlackReaction,
    )
    from .retries import failure_reason, unlimited_retries

# Activity names, registered by worker.py (workflow code must not import activities/).
POST_SLACK_MESSAGE = "post_slack_message"
UPDATE_SLACK_HEADER = "update_slack_header"
ADD_SLACK_REACTION = "add_slack_reaction"
OUTBOX_PATCH = "slack-outbox"
# How long the resolution waits for the investigation's last messages before it is posted anyway.
INVESTIGATION_GRACE = timedelta(hours=2)


class SlackVoice(IncidentParts):
    """Mixed into IncidentWorkflow: what it says in Slack, and how it gets there."""

    _outbox: list[OutboxItem]
    _outbox_on: bool  # set by the patch at the start of the run
    _sending: bool
    _sending_item: OutboxItem | None = None  # the thread's item being sent
    _room_sending: bool = False  # the war room's sender is busy (incident_war_room.py)
    _checklist_sent: tuple[bool, ...] = ()  # the team's checklist as last edited
    _outbox_held: bool
    _verifying: bool

    if TYPE_CHECKING:  # provided by IncidentWorkflow and the other mixins

        async def _signal_investigation(self, signal: str, user: str, reason: str) -> bool: ...

        def _verify_beside(self) -> None: ...

        def _room_changed(self) -> None: ...

    def _slack_options(self) -> dict[str, Any]:
        chat = self._require_policy().chat
        return {
            "start_to_close_timeout": chat.call_timeout,
            # Unlimited attempts: a Slack outage delays messages, it never drops them.
            # Bad tokens, unknown channels and the like are raised non-retryable.
            "retry_policy": unlimited_retries(chat.max_retry_interval),
        }

    def _snapshot(self) -> IncidentState:
        """The state as a message or a child needs it: without what no template reads (the
        timeline, the baseline's and the verification's device readings, the deadline table),
        which would otherwise be copied into the history with every Slack call."""
        s = self._state
        verification = s.verification.model_copy(update={"devices": {}}) if s.verification else None
        return s.model_copy(
            update={"timeline": [], "baseline": None, "verification": verification, "deadlines": []}
        )

    # ------------------------------------------------------------ deciding

    async def _post(
        self,
        template: str,
        *,
        extra: dict[str, Any] | None = None,
        mentions: list[str] | None = None,
        channel: str | None = None,
        in_thread: bool = True,
        after_investigation: bool = False,
    ) -> PostedMessage | None:
        s = self._state
        if self._outbox_on:
            s.messages_posted += 1
            post = self._slack_post(template, channel or "", None, extra, mentions)
            self._outbox.append(
                OutboxItem(
                    kind="post", post=post, in_thread=in_thread, after_investigation=after_investigation
                )
            )
            return None
        channel = channel or s.slack_channel
        if channel is None or (in_thread and s.slack_thread_ts is None):
            return None  # the declaration never reached Slack; the timeline still has it all
        s.messages_posted += 1
        post = self._slack_post(template, channel, s.slack_thread_ts if in_thread else None, extra, mentions)
        return await self._send_post(post)

    def _slack_post(
        self,
        template: str,
        channel: str,
        thread_ts: str | None,
        extra: dict[str, Any] | None,
        mentions: list[str] | None,
    ) -> SlackPost:
        s = self._state
        return SlackPost(
            channel=channel,
            thread_ts=thread_ts,
            idempotency_key=f"{s.workflow_id}/{s.messages_posted}/{template}",
            template=template,
            incident=self._snapshot(),
            extra=extra or {},
            mentions=mentions or [],
        )

    async def _react(self, name: str) -> None:
        if not name:
            return
        if self._outbox_on:
            self._outbox.append(OutboxItem(kind="react", reaction=name))
            return
        await self._send_reaction(name)

    async def _refresh_header(self) -> None:
        self._publish()
        self._room_changed()
        if self._state.checklist_on and checklist(self._state) != self._checklist_sent:
            self._checklist_sent = checklist(self._state)
            self._checklist_changed()
        if self._outbox_on:
            # One header edit waiting is enough: it shows the state as it is when it is sent.
            self._queue_once("header", self._sending_item)
            return
        await self._send_header()

    # ------------------------------------------------------------- sending

    async def _drain_outbox(self) -> None:
        """Beside the incident's loop for the whole run: send what was decided, in order."""
        while True:
            # The war room's items have their own sender (incident_war_room.py): a room Slack is slow
            # to make does not hold up the thread.
            await workflow.wait_condition(
                lambda: any(not i.kind.startswith("room_") for i in self._outbox) and not self._outbox_held
            )
            self._sending = True
            item = next(i for i in self._outbox if not i.kind.startswith("room_"))
            self._sending_item = item
            if item.kind == "post" and item.post is not None:
                await self._send_outbox_post(item, item.post)
            elif item.kind == "react":
                await self._send_reaction(item.reaction)
            elif item.kind == "header":
                await self._send_header()
            elif item.kind == "checklist":
                await self._send_header("team_formed")
            elif item.kind == "tell":
                await self._tell_in_turn(item)
            self._outbox.pop(next(n for n, i in enumerate(self._outbox) if i is item))
            self._sending, self._sending_item = False, None

    async def _outbox_quiet(self) -> None:
        """Hold the outbox (for continue-as-new: what is left is carried over)."""
        self._outbox_held = True
        await workflow.wait_condition(
            lambda: not self._sending and not self._verifying and not self._room_sending
        )

    async def _send_outbox_post(self, item: OutboxItem, post: SlackPost) -> None:
        s = self._state
        if item.after_investigation:
            await self._wait_for_investigation()
            post = post.model_copy(update={"incident": self._snapshot()})
        if item.in_thread:
            if s.slack_channel is None or s.slack_thread_ts is None:
                return  # the declaration never reached Slack; the timeline still has it all
            post = post.model_copy(update={"channel": s.slack_channel, "thread_ts": s.slack_thread_ts})
        posted = await self._send_post(post)
        if post.template == "team_formed" and posted is not None and s.checklist_on:
            s.team_formed_ts = posted.ts
        if not item.in_thread and post.template == "declaration":
            if posted is not None:
                s.conversation = Conversation(channel=posted.channel, thread=posted.ts)
                self._publish()
            await self._tell_investigation_the_thread()

    async def _wait_for_investigation(self) -> None:
        """The resolution follows the investigation's steps and the verification into the thread."""
        s = self._state

        def settled() -> bool:
            investigating = s.investigation_workflow_id is not None and s.claimed_at is not None
            verifying = self._verifying or s.verification_pending
            return not verifying and (not investigating or bool(s.investigation))

        if settled():
            return
        try:
            await workflow.wait_condition(
                settled, timeout=INVESTIGATION_GRACE, timeout_summary="the investigation's messages first"
            )
        except TimeoutError:
            self._record("slack_error", "", "resolution posted before the investigation finished posting")

    async def _tell_in_turn(self, item: OutboxItem) -> None:
        if await self._signal_investigation(item.signal, item.user, item.reason):
            return
        if item.signal == "verify":  # the investigation is gone: the incident verifies itself
            self._state.verification_pending = False
            self._verify_beside()

    async def _tell_investigation_the_thread(self) -> None:
        """An investigation started before the declaration was posted waits for its thread."""
        s = self._state
        if s.investigation_workflow_id is None:
            return
        try:
            await workflow.get_external_workflow_handle(s.investigation_workflow_id).signal(
                "thread", SlackThread(channel=s.slack_channel, thread_ts=s.slack_thread_ts)
            )
        except FailureError as err:
            self._record("investigation", "", f"investigation not told its thread: {err.message}")

    async def _send_post(self, post: SlackPost) -> PostedMessage | None:
        try:
            return await workflow.execute_activity(
                POST_SLACK_MESSAGE,
                post,
                result_type=PostedMessage,
                summary=f"post {post.template.replace('_', ' ')}",
                **self._slack_options(),
            )
        except ActivityError as err:
            self._slack_failed(post.template, err)
            return None

    async def _send_reaction(self, name: str) -> None:
        s = self._state
        if s.slack_channel is None or s.slack_thread_ts is None:
            return
        try:
            await workflow.execute_activity(
                ADD_SLACK_REACTION,
                SlackReaction(channel=s.slack_channel, ts=s.slack_thread_ts, name=name),
                summary=f"react :{name}:",
                **self._slack_options(),
            )
        except ActivityError as err:
            self._slack_failed(f"reaction :{name}:", err)

    async def _send_header(self, template: str = "declaration") -> None:
        s = self._state
        ts = s.slack_thread_ts if template == "declaration" else s.team_formed_ts
        if s.slack_channel is None or ts is None:
            return
        update = SlackHeaderUpdate(
            channel=s.slack_channel, ts=ts, incident=self._snapshot(), template=template
        )
        try:
            await workflow.execute_activity(
                UPDATE_SLACK_HEADER,
                update,
                summary="update the declaration's header"
                if template == "declaration"
                else "tick the team's checklist",
                **self._slack_options(),
            )
        except ActivityError as err:
            self._slack_failed("header update" if template == "declaration" else "checklist update", err)

    def _checklist_changed(self) -> None:
        """An item of "Incident Team Formed" happened: its checklist is edited (one edit waiting is enough)."""
        s = self._state
        if not s.checklist_on or not self._outbox_on:
            return
        self._queue_once("checklist", self._sending_item)

    def _queue_once(self, kind: str, sending: OutboxItem | None) -> None:
        """An edit of `kind` for the outbox; one waiting is enough (it sends the state as it is
        when it goes). `sending`: the item a sender has in hand, which no longer counts as waiting."""
        if not any(i.kind == kind and i is not sending for i in self._outbox):
            self._outbox.append(OutboxItem(kind=kind))

    def _slack_failed(self, what: str, err: ActivityError) -> None:
        self._record("slack_error", "", f"{what} not posted: {failure_reason(err)}")


def checklist(s: IncidentState) -> tuple[bool, ...]:
    """The "Incident Team Formed" checklist's items that can still change: ticket created, upstream
    device checked (the investigation's analysis), blast radius confirmed (root cause identified),
    customer communication sent (a stakeholder update)."""
    return (bool(s.ticket), bool(s.investigation), s.identified_at is not None, s.stakeholder_updates > 0)


def start_outbox(voice: SlackVoice) -> asyncio.Task[None]:
    return asyncio.create_task(voice._drain_outbox())
