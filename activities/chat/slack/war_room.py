"""An incident's war room in Slack: its own channel, members, bookmarks and a pinned summary.

Mixed into SlackChat (web_api.py). Each operation is safe to repeat, as every chat
operation must be (activities/chat/backend.py): the channel is found again by its purpose,
which names the incident's workflow id; people already in it, bookmarks already there and a
summary already pinned count as done.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from slack_sdk.web.async_client import AsyncWebClient
from temporalio.exceptions import ApplicationError

from activities.rendering import render
from workflows.models import SLACK_USER_ID
from workflows.war_room_models import (
    MAX_CHANNEL_NAME,
    OpenWarRoom,
    WarRoom,
    WarRoomArchive,
    WarRoomInvite,
    WarRoomSummary,
)

SUMMARY_EVENT = "incident_war_room_summary"
NUMBERED = 9  # `-2` ... `-9`, then the incident's key: a title that recurs all day still gets rooms


def room_names(name: str, key: str) -> list[str]:
    """The names tried in turn: the name, `-2` ... `-9`, then `-<the incident's key>` (unique)."""
    names = [name] + [f"{name[: MAX_CHANNEL_NAME - len(str(n)) - 1]}-{n}" for n in range(2, NUMBERED + 1)]
    slug = "-".join(re.findall(r"[a-z0-9]+", key.lower()))[:30]
    if slug:
        names.append(f"{name[: MAX_CHANNEL_NAME - len(slug) - 1]}-{slug}")
    return names


def purpose_for(workflow_id: str, title: str) -> str:
    return f"Incident {workflow_id}: {title}"[:250]


class SlackWarRoom:
    """The war-room half of SlackChat."""

    _client: AsyncWebClient
    ui_url: Callable[[str], str] | None = None  # the incident's Temporal UI page, for a bookmark

    if TYPE_CHECKING:

        async def _call(self, method: Callable[..., Awaitable[Any]], **kwargs: Any) -> Any: ...

        def _channels(self) -> Any: ...

    async def open_war_room(self, request: OpenWarRoom) -> WarRoom:
        incident = request.incident
        channel, name = await self._create_or_find(
            request.name, incident.workflow_id, incident.title, incident.key
        )
        invited = await self.invite(WarRoomInvite(channel=channel, users=request.members))
        await self._bookmark(channel, incident)
        ts = await self._pinned_summary(channel, incident)
        return WarRoom(channel=channel, name=name, summary_ts=ts, invited=invited)

    async def invite(self, invite: WarRoomInvite) -> list[str]:
        """Invite each Slack user (names that are no Slack id are skipped); those in it already count."""
        done = []
        for user in dict.fromkeys(invite.users):
            if not SLACK_USER_ID.match(user):
                continue
            try:
                await self._call(self._client.conversations_invite, channel=invite.channel, users=user)
            except ApplicationError as err:
                if err.type not in ("already_in_channel", "cant_invite_self"):
                    if err.type in ("user_not_found", "user_is_restricted", "user_disabled"):
                        continue  # this person cannot be invited; the others still are
                    raise
            done.append(user)
        return done

    async def update_war_room_summary(self, summary: WarRoomSummary) -> None:
        if summary.bookmark:
            await self._bookmark(summary.channel, summary.incident)
        text = render("war_room_summary", incident=summary.incident)
        await self._call(self._client.chat_update, channel=summary.channel, ts=summary.ts, text=text)

    async def archive_war_room(self, archive: WarRoomArchive) -> None:
        try:
            await self._call(self._client.conversations_archive, channel=archive.channel)
        except ApplicationError as err:
            if err.type != "already_archived":
                raise

    # ------------------------------------------------------------ helpers

    async def _create_or_find(self, name: str, workflow_id: str, title: str, key: str) -> tuple[str, str]:
        purpose = purpose_for(workflow_id, title)
        for candidate in room_names(name, key):
            try:
                response = await self._call(self._client.conversations_create, name=candidate)
            except ApplicationError as err:
                if err.type != "name_taken":
                    raise
                found = await self._find(candidate)
                if found is not None and workflow_id in ((found.get("purpose") or {}).get("value") or ""):
                    return found["id"], candidate  # ours, from an earlier attempt
                continue
            channel = response["channel"]["id"]
            await self._call(self._client.conversations_setPurpose, channel=channel, purpose=purpose)
            return channel, candidate
        raise ApplicationError(
            f"no free channel name for the war room: {name}, -2 ... -{NUMBERED} and -<incident key> are taken",
            type="war_room_name_taken",
            non_retryable=True,
        )

    async def _find(self, name: str) -> dict[str, Any] | None:
        """The channel of that name, with its purpose (conversations.list gives both)."""
        async for channel in self._channels():
            if channel.get("name") == name:
                return dict(channel)
        return None

    async def _bookmark(self, channel: str, incident: Any) -> None:
        wanted = []
        if self.ui_url is not None:
            wanted.append(("Temporal UI", self.ui_url(incident.workflow_id)))
        if incident.ticket and incident.ticket_url:
            wanted.append((f"Ticket {incident.ticket}", incident.ticket_url))
        # The incident's runbook when it is a link (a policy path without base_url is not), else
        # a runbook among the declaration's links.
        runbook = incident.runbook if incident.runbook.startswith(("http://", "https://")) else None
        runbook = runbook or next((link for link in incident.links if "runbook" in link.lower()), None)
        if runbook:
            wanted.append(("Runbook", runbook))
        wanted = [(title, link) for title, link in wanted if link.startswith(("http://", "https://"))]
        if not wanted:
            return
        have = await self._call(self._client.bookmarks_list, channel_id=channel)
        titles = {b.get("title") for b in have.get("bookmarks", [])}
        for title, link in wanted:
            if title not in titles:
                await self._call(
                    self._client.bookmarks_add, channel_id=channel, title=title, type="link", link=link
                )

    async def _pinned_summary(self, channel: str, incident: Any) -> str:
        """The summary's ts: posted and pinned once (a retry finds it by its metadata)."""
        history = await self._call(
            self._client.conversations_history, channel=channel, include_all_metadata=True, limit=200
        )
        ts = next(
            (
                str(m["ts"])
                for m in history.get("messages", [])
                if (m.get("metadata") or {}).get("event_type") == SUMMARY_EVENT
            ),
            None,
        )
        if ts is None:
            posted = await self._call(
                self._client.chat_postMessage,
                channel=channel,
                text=render("war_room_summary", incident=incident),
                metadata={"event_type": SUMMARY_EVENT, "event_payload": {"incident": incident.workflow_id}},
                unfurl_links=False,
            )
            ts = str(posted["ts"])
        try:
            await self._call(self._client.pins_add, channel=channel, timestamp=ts)
        except ApplicationError as err:
            if err.type != "already_pinned":
                raise
        return ts
