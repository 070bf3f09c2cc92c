"""Slack behind the chat interface: the incident's messages, header, reactions and files.

Every call goes through slack_sdk's AsyncWebClient, so pointing
`SLACK_API_URL` at the sandbox or at https://slack.com/api/ is the only
difference between a test and production.

Idempotency: each message carries Slack message metadata
(`event_type: incident_message`, `event_payload.key: <idempotency key>`).
When Temporal retries a post (attempt > 1: the previous attempt may have
reached Slack before the worker died or the answer was lost), the activity
first looks for a message with that key in the channel or thread and
returns it instead of posting again. A first attempt cannot have a twin, so
it posts straight away and costs one call; so does a retry whose previous
attempt this worker saw end before posting (rate limited, deferred).

Pacing: once Slack answers 429 for a channel, this worker queues its posts
there, roll-up first, then declarations, then thread replies, one a second
(pacing.py).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.rendering import render
from workflows.models import (
    IncidentState,
    PostedMessage,
    SlackFileUpload,
    SlackHeaderUpdate,
    SlackPost,
    SlackReaction,
    UploadedFile,
)

from .pacing import DECLARATION, REPLY, ROLLUP, ChannelPacer, Deferred
from .war_room import SlackWarRoom

METADATA_EVENT = "incident_message"
PRIORITY = {"storm_rollup": ROLLUP, "declaration": DECLARATION}  # the rest are REPLY
NOT_POSTED_KEPT = 10_000

# Errors retrying cannot fix: a person has to change a token, a scope or the policy.
PERMANENT_ERRORS = frozenset(
    {
        "not_authed",
        "invalid_auth",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "not_allowed_token_type",
        "channel_not_found",
        "is_archived",
        "not_in_channel",
        "restricted_action",
        "invalid_arguments",
        "invalid_blocks",
        "msg_too_long",
        "no_text",
        "thread_not_found",
        "message_not_found",
        "cant_update_message",
        "invalid_name",
        "invalid_metadata_format",
        "metadata_too_large",
        "team_access_not_granted",
    }
)
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{6,}$")
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")


class SlackChat(SlackWarRoom):
    """The chat backend for one Slack workspace, through one client (activities/chat/backend.py)."""

    def __init__(self, client: AsyncWebClient, pacer: ChannelPacer | None = None) -> None:
        self._client = client
        self._channel_ids: dict[str, str] = {}
        self._pacer = pacer or ChannelPacer()
        # idempotency key -> the attempt this worker saw end before it posted
        self._not_posted: dict[str, int] = {}

    @classmethod
    def from_settings(cls, api_url: str, token: str) -> SlackChat:
        base_url = api_url if api_url.endswith("/") else api_url + "/"
        return cls(AsyncWebClient(token=token, base_url=base_url, timeout=15))

    # ------------------------------------------------------------ backend

    async def post_message(self, post: SlackPost) -> PostedMessage:
        """Post one incident message; a retry returns the earlier post instead of posting twice."""
        text = fit_message(
            render(post.template, incident=post.incident, mentions=post.mentions, **post.extra)
        )
        info = activity.info()
        key, attempt = post.idempotency_key, info.attempt
        if attempt > 1 and self._not_posted.pop(key, None) != attempt - 1:
            earlier = await self._find_posted(post)
            if earlier is not None:
                activity.logger.info("message %s was already posted at %s", key, earlier.ts)
                return earlier
        priority = PRIORITY.get(post.template, REPLY)
        try:
            # Half the attempt's time at most: the post itself needs the rest.
            limit = info.start_to_close_timeout
            await self._pacer.turn(post.channel, key, priority, limit.total_seconds() / 2 if limit else None)
        except Deferred as deferred:
            self._remember_not_posted(key, attempt)
            raise ApplicationError(
                f"#{post.channel.lstrip('#')} is rate limited: {deferred}",
                type="channel_busy",
                next_retry_delay=timedelta(seconds=deferred.delay),
                category=ApplicationErrorCategory.BENIGN,
            ) from None
        metadata = {
            "event_type": METADATA_EVENT,
            "event_payload": {"key": key, "incident": post.incident.workflow_id},
        }
        try:
            response = await self._call(
                self._client.chat_postMessage,
                channel=post.channel,
                thread_ts=post.thread_ts,
                text=text,
                blocks=declaration_blocks(text, post.incident) if post.template == "declaration" else None,
                metadata=metadata,
                unfurl_links=False,
                unfurl_media=False,
            )
        except ApplicationError as err:
            if err.type == "ratelimited":
                delay = err.next_retry_delay.total_seconds() if err.next_retry_delay else 1.0
                self._pacer.limited(post.channel, key, priority, delay)
                self._remember_not_posted(key, attempt)
            elif err.non_retryable:
                self._pacer.release(post.channel, key)
            raise
        self._pacer.alias(post.channel, response["channel"])
        return PostedMessage(channel=response["channel"], ts=response["ts"])

    async def update_header(self, header: SlackHeaderUpdate) -> None:
        """Rewrite the declaration message with the current state (idempotent by nature)."""
        text = fit_message(render(header.template, incident=header.incident, mentions=[]))
        blocks = declaration_blocks(text, header.incident) if header.template == "declaration" else None
        await self._call(
            self._client.chat_update, channel=header.channel, ts=header.ts, text=text, blocks=blocks
        )

    async def add_reaction(self, reaction: SlackReaction) -> None:
        """Add a reaction; Slack's `already_reacted` on a retry counts as done."""
        try:
            await self._call(
                self._client.reactions_add,
                channel=reaction.channel,
                timestamp=reaction.ts,
                name=reaction.name,
            )
        except ApplicationError as err:
            if err.type != "already_reacted":
                raise

    async def upload_file(self, upload: SlackFileUpload) -> UploadedFile:
        """Attach a text file to the incident's thread; a retry returns the earlier upload.

        Files carry no message metadata, so a retry (attempt > 1) looks for a
        file with the same title among the thread's replies since the first
        attempt was scheduled, and returns it instead of uploading twice.
        """
        channel = await self._channel_id(upload.channel)
        if channel is None:
            raise ApplicationError(
                f"Slack refused: channel_not_found ({upload.channel})",
                type="channel_not_found",
                non_retryable=True,
            )
        if activity.info().attempt > 1:
            earlier = await self._find_uploaded(channel, upload)
            if earlier is not None:
                activity.logger.info("file %r was already uploaded as %s", upload.title, earlier.file_id)
                return earlier
        response = await self._call(
            self._client.files_upload_v2,
            channel=channel,  # files.completeUploadExternal wants the channel's id, not its name
            thread_ts=upload.thread_ts,
            content=upload.content.encode(),
            filename=upload.filename,
            title=upload.title,
            initial_comment=upload.initial_comment or None,
        )
        files = response.get("files") or [response.get("file") or {}]
        return UploadedFile(channel=channel, file_id=str(files[0].get("id", "")))

    # ------------------------------------------------------------- helpers

    def _remember_not_posted(self, key: str, attempt: int) -> None:
        if len(self._not_posted) >= NOT_POSTED_KEPT:
            self._not_posted.pop(next(iter(self._not_posted)))
        self._not_posted[key] = attempt

    async def _call(self, method: Callable[..., Awaitable[Any]], **kwargs: Any) -> Any:
        """One Web API call, its failure sorted into retry-later and give-up."""
        try:
            return await method(**{k: v for k, v in kwargs.items() if v is not None})
        except SlackApiError as exc:
            raise _as_application_error(exc) from None

    async def _find_posted(self, post: SlackPost) -> PostedMessage | None:
        channel = await self._channel_id(post.channel)
        if channel is None:
            return None
        if post.thread_ts:
            pages = self._pages(self._client.conversations_replies, channel=channel, ts=post.thread_ts)
        else:
            # A declaration is top-level: look back over the time this activity has been retried.
            since = activity.info().scheduled_time - timedelta(minutes=5)
            pages = self._pages(self._client.conversations_history, channel=channel, oldest=_slack_ts(since))
        async for message in pages:
            meta = message.get("metadata") or {}
            payload = meta.get("event_payload") or {}
            if meta.get("event_type") == METADATA_EVENT and payload.get("key") == post.idempotency_key:
                return PostedMessage(channel=channel, ts=message["ts"], duplicate=True)
        return None

    async def _find_uploaded(self, channel: str, upload: SlackFileUpload) -> UploadedFile | None:
        # Only around this activity's own attempts: an older file with the same title is not our twin.
        since = activity.info().scheduled_time - timedelta(minutes=5)
        pages = self._pages(
            self._client.conversations_replies, channel=channel, ts=upload.thread_ts, oldest=_slack_ts(since)
        )
        async for message in pages:
            for file in message.get("files") or []:
                if file.get("title") == upload.title:
                    return UploadedFile(
                        channel=channel, file_id=str(file.get("id", "")), ts=message.get("ts"), duplicate=True
                    )
        return None

    async def _pages(self, method: Callable[..., Awaitable[Any]], **kwargs: Any):  # type: ignore[no-untyped-def]
        cursor = None
        while True:
            response = await self._call(method, include_all_metadata=True, limit=200, cursor=cursor, **kwargs)
            for message in response.get("messages", []):
                yield message
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return

    async def _channel_id(self, channel: str) -> str | None:
        name = channel.lstrip("#")
        if _CHANNEL_ID.match(name):
            return name
        if _USER_ID.match(name):  # a DM (an action item's reminder): the bot's conversation with them
            opened = await self._call(self._client.conversations_open, users=name)
            return str(opened["channel"]["id"])
        if name not in self._channel_ids:
            async for found in self._channels():
                self._channel_ids[found["name"]] = found["id"]
        return self._channel_ids.get(name)

    async def _channels(self):  # type: ignore[no-untyped-def]
        cursor = None
        while True:
            response = await self._call(
                self._client.conversations_list,
                types="public_channel,private_channel",
                limit=200,
                cursor=cursor,
            )
            for channel in response.get("channels", []):
                yield channel
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return


# Action ids the Slack handler (starter/slack_app.py) listens for; each button's value is the workflow id.
CLAIM_ACTION = "incident_claim"
UPDATE_ACTION = "incident_update"
RESOLVE_ACTION = "incident_resolve"
ROLE_ACTION = "incident_role"
_SECTION_LIMIT = 3000  # Slack's limit for a section's text
_MESSAGE_LIMIT = 40_000  # Slack's limit for a message's text (msg_too_long above it)
_MESSAGE_CUT_NOTE = "\n_… the rest of this message is cut: Slack takes 40,000 characters at most._"


def fit_message(text: str) -> str:
    """A message's text within Slack's limit (the templates shorten long input; this is the net)."""
    if len(text) <= _MESSAGE_LIMIT:
        return text
    return text[: _MESSAGE_LIMIT - len(_MESSAGE_CUT_NOTE) - 1] + "…" + _MESSAGE_CUT_NOTE


def sections(text: str, limit: int = _SECTION_LIMIT) -> list[str]:
    """The text in as few sections as fit, split between lines; a line too long for one is cut."""
    parts: list[str] = []
    current = ""
    for line in text.split("\n"):
        if len(line) > limit:
            line = line[: limit - 1] + "…"
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            parts.append(current)
            candidate = line
        current = candidate
    if current or not parts:
        parts.append(current)
    return [part for part in parts if part.strip()] or [" "]


def declaration_blocks(text: str, incident: IncidentState) -> list[dict[str, Any]]:
    """The declaration as sections (3,000 characters each at most), with Claim / Post update /
    Assign role / Resolve.

    However long its symptoms, every line of the header is shown: the IC, the phase,
    the ticket and how to claim come after them and must not be cut off.
    """
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": part}} for part in sections(text)
    ]
    if incident.phase.value in ("resolved", "review"):
        return blocks
    buttons = [
        (CLAIM_ACTION, "Take over as IC" if incident.commander else "Claim", "primary"),
        (UPDATE_ACTION, "Post update", None),
        (ROLE_ACTION, "Assign role", None),
        (RESOLVE_ACTION, "Resolve", "danger"),
    ]
    elements = []
    for action_id, label, style in buttons:
        button: dict[str, Any] = {
            "type": "button",
            "action_id": action_id,
            "text": {"type": "plain_text", "text": label},
            "value": incident.workflow_id,
        }
        if style:
            button["style"] = style
        elements.append(button)
    blocks.append({"type": "actions", "block_id": "incident_actions", "elements": elements})
    return blocks


def _slack_ts(moment: datetime) -> str:
    return f"{moment.timestamp():.6f}"


def _as_application_error(exc: SlackApiError) -> ApplicationError:
    response = exc.response
    status = getattr(response, "status_code", None)
    error = (response.get("error") if hasattr(response, "get") else None) or f"http_{status}"
    if status == 429 or error == "ratelimited":
        retry_after = _retry_after(response)
        return ApplicationError(
            f"Slack rate limit: retry after {retry_after}s",
            type="ratelimited",
            next_retry_delay=timedelta(seconds=retry_after),
            category=ApplicationErrorCategory.BENIGN,  # expected in a storm: no warning per retry
        )
    if error in PERMANENT_ERRORS:
        # What a person must fix, said plainly: which scope to add, or where to invite the bot.
        hint = ""
        if error == "missing_scope" and hasattr(response, "get") and response.get("needed"):
            hint = f" (the app needs the scope {response.get('needed')}; add it and reinstall)"
        elif error == "not_in_channel":
            hint = " (invite the bot to the channel: /invite @<bot>)"
        return ApplicationError(f"Slack refused: {error}{hint}", type=error, non_retryable=True)
    if error == "already_reacted":
        return ApplicationError("already reacted", type=error, non_retryable=True)
    return ApplicationError(f"Slack error: {error}", type=error)


def _retry_after(response: Any) -> float:
    headers = getattr(response, "headers", None) or {}
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return max(1.0, float(value))
            except (TypeError, ValueError):
                break
    return 1.0
