"""The chat activities the worker registers, under the names the workflows call, over one backend.

The names say Slack because running incidents call them so (workflows/voice.py,
announcer.py, investigation.py); whichever ChatBackend CHAT_BACKEND chose does the work.
"""

from __future__ import annotations

from temporalio import activity

from workflows.models import (
    PostedMessage,
    SlackFileUpload,
    SlackHeaderUpdate,
    SlackPost,
    SlackReaction,
    UploadedFile,
)
from workflows.war_room_models import OpenWarRoom, WarRoom, WarRoomArchive, WarRoomInvite, WarRoomSummary

from .backend import ChatBackend


class ChatActivities:
    def __init__(self, backend: ChatBackend) -> None:
        self._backend = backend

    @activity.defn(name="post_slack_message")
    async def post_slack_message(self, post: SlackPost) -> PostedMessage:
        """Post one incident message; a retry returns the earlier post instead of posting twice."""
        return await self._backend.post_message(post)

    @activity.defn(name="update_slack_header")
    async def update_slack_header(self, header: SlackHeaderUpdate) -> None:
        """Rewrite the declaration with the current state (idempotent by nature)."""
        await self._backend.update_header(header)

    @activity.defn(name="add_slack_reaction")
    async def add_slack_reaction(self, reaction: SlackReaction) -> None:
        """Add a reaction; one already there on a retry counts as done."""
        await self._backend.add_reaction(reaction)

    @activity.defn(name="upload_slack_file")
    async def upload_slack_file(self, upload: SlackFileUpload) -> UploadedFile:
        """Attach a text file to the incident's thread; a retry returns the earlier upload."""
        return await self._backend.upload_file(upload)

    @activity.defn(name="open_war_room")
    async def open_war_room(self, request: OpenWarRoom) -> WarRoom:
        """Open the incident's war room (or find it again), invite, bookmark, pin its summary."""
        return await self._backend.open_war_room(request)

    @activity.defn(name="invite_to_war_room")
    async def invite_to_war_room(self, invite: WarRoomInvite) -> list[str]:
        return await self._backend.invite(invite)

    @activity.defn(name="update_war_room_summary")
    async def update_war_room_summary(self, summary: WarRoomSummary) -> None:
        await self._backend.update_war_room_summary(summary)

    @activity.defn(name="archive_war_room")
    async def archive_war_room(self, archive: WarRoomArchive) -> None:
        await self._backend.archive_war_room(archive)

    @property
    def activities(self) -> list:
        return [
            self.post_slack_message,
            self.update_slack_header,
            self.add_slack_reaction,
            self.upload_slack_file,
            self.open_war_room,
            self.invite_to_war_room,
            self.update_war_room_summary,
            self.archive_war_room,
        ]
