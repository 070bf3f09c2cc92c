"""What a chat tool must do for an incident: the interface every chat backend implements.

The workflows speak in these operations' terms (through ChatActivities, activities.py);
CHAT_BACKEND chooses the implementation (activities/backends.py). The models keep Slack's
words (`channel`, `thread_ts`, `ts`) because running incidents carry them: another tool
maps them onto its own (a room, the declaration as the root of the incident's thread, a
message id).

Each operation runs inside its Temporal activity and is retried there, so each is safe to
repeat: a retry must not post, react or upload twice. A failure retrying cannot fix (bad
token, missing permission, unknown channel) is a non-retryable ApplicationError whose
message says what a person must change; anything else is raised to be retried.
"""

from __future__ import annotations

from typing import Protocol

from workflows.models import (
    PostedMessage,
    SlackFileUpload,
    SlackHeaderUpdate,
    SlackPost,
    SlackReaction,
    UploadedFile,
)
from workflows.war_room_models import OpenWarRoom, WarRoom, WarRoomArchive, WarRoomInvite, WarRoomSummary


class ChatBackend(Protocol):
    async def post_message(self, post: SlackPost) -> PostedMessage:
        """Render `post.template` for the incident and post it: in the channel, or in the thread.

        Idempotent by `post.idempotency_key`: a retry that finds the message already
        posted returns it (`duplicate=True`) instead of posting again.
        """
        ...

    async def update_header(self, header: SlackHeaderUpdate) -> None:
        """Rewrite the declaration (the thread's root) with the incident's current state."""
        ...

    async def add_reaction(self, reaction: SlackReaction) -> None:
        """Mark a message (:raised_hand:, :white_check_mark:, ...); already marked counts as done."""
        ...

    async def upload_file(self, upload: SlackFileUpload) -> UploadedFile:
        """Attach a text file to the thread; a retry returns the earlier upload (`duplicate=True`)."""
        ...

    # The incident's war room: its own channel (optional: a backend without rooms raises
    # a non-retryable ApplicationError saying so, and the incident goes on without one).

    async def open_war_room(self, request: OpenWarRoom) -> WarRoom:
        """Open the room (or find it again, on a retry), invite the members, bookmark the incident's
        pages and pin a summary of it."""
        ...

    async def invite(self, invite: WarRoomInvite) -> list[str]:
        """Invite people to the room; those in it already count as invited. Returns who is in."""
        ...

    async def update_war_room_summary(self, summary: WarRoomSummary) -> None:
        """Rewrite the pinned summary with the incident as it is now."""
        ...

    async def archive_war_room(self, archive: WarRoomArchive) -> None:
        """Archive the room (after the review); archived already counts as done."""
        ...
