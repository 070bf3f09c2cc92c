"""An incident's war room: its own Slack channel (issue 13). Mixed into IncidentWorkflow.

A P1 (the policy's `war_room.severities`) gets one when it is declared or raised to one; any
incident gets one on request (the `open_war_room` command: `/incident warroom`, `incident
warroom KEY`). Everything the room needs goes through the outbox, in order with the thread's
messages and beside the incident's loop: opening it (channel, members, bookmarks, the pinned
summary), asking in the people who join the incident later, keeping the summary current (one
edit waiting is enough, as for the header) and archiving it when the incident completes.
Each is an activity safe to repeat (activities/chat/slack/war_room.py), so nothing is created,
posted or pinned twice across retries and worker crashes.

Incidents declared before this release never took these paths: declaring and raising the
severity ask the run's release marker first (`_release_b`, read when the run starts), and a
command they never received cannot replay differently.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from .incident_base import IncidentParts
    from .incident_input import OutboxItem
    from .models import SLACK_USER_ID, Severity, WarRoomRef, WarRoomSignal
    from .retries import failure_reason
    from .war_room_models import (
        OpenWarRoom,
        WarRoomArchive,
        WarRoomInvite,
        WarRoomSummary,
        room_bookmarks,
        war_room_name,
    )

OPEN_WAR_ROOM = "open_war_room"
INVITE_TO_WAR_ROOM = "invite_to_war_room"
UPDATE_WAR_ROOM_SUMMARY = "update_war_room_summary"
ARCHIVE_WAR_ROOM = "archive_war_room"


class WarRooms(IncidentParts):
    """Mixed into IncidentWorkflow: the war room's decisions; the outbox sends them."""

    _outbox: list[OutboxItem]
    _outbox_on: bool
    _outbox_held: bool
    _release_b: bool
    _room_sending: bool = False
    _room_item: OutboxItem | None = None

    if TYPE_CHECKING:  # provided by IncidentWorkflow and the other mixins

        def _declaration_waiting(self) -> bool: ...

    # ------------------------------------------------------------ deciding

    def _war_room_for(self, severity: Severity) -> bool:
        """Does this severity get a war room by itself? (Asks the patch: only incidents of this release.)"""
        s = self._state
        if not self._outbox_on or s.war_room is not None or s.war_room_opening:
            return False
        if severity not in self._require_policy().war_room.severities:
            return False
        return self._release_b

    def _ask_for_war_room(self, user: str, reason: str) -> None:
        self._state.war_room_opening = True
        self._outbox.append(OutboxItem(kind="room_open", user=user, reason=reason))

    async def _on_open_war_room(self, signal: WarRoomSignal) -> None:
        self._refuse("open_war_room", signal)
        if not self._outbox_on:
            self._record(
                "war_room", signal.user, "no war room: this incident predates them", signal.request_id
            )
            return
        self._record("war_room", signal.user, "war room asked for", signal.request_id)
        self._ask_for_war_room(signal.user, f"asked for by {signal.user}")

    def _room_changed(self) -> None:
        """The incident changed: the summary (and who is in the room) follows; one edit waiting is enough."""
        s = self._state
        if s.war_room is None or s.war_room.archived or not self._outbox_on:
            return
        self._queue_once("room_sync", self._room_item)

    def _archive_war_room(self) -> None:
        s = self._state
        if (
            s.war_room is None
            or s.war_room.archived
            or not self._require_policy().war_room.archive_after_review
        ):
            return
        self._outbox.append(OutboxItem(kind="room_archive"))

    def _room_members(self) -> list[str]:
        """Everyone on the incident: the IC, the roles, the people paged, whoever acted on it."""
        s = self._state
        people = [s.commander or "", s.reporter, *s.roles.values(), *s.experts]
        people += [p.user_id for p in s.paging.pages if p.outcome.startswith(("sent", "delivered"))]
        people += [e.actor for e in s.timeline if e.actor]
        return [p for p in dict.fromkeys(people) if SLACK_USER_ID.match(p)]

    # ------------------------------------------------------------ sending (from the outbox)

    async def _drain_rooms(self) -> None:
        """Beside the incident's loop and the thread's sender: the room's items, in order."""
        while True:
            await workflow.wait_condition(
                lambda: any(i.kind.startswith("room_") for i in self._outbox) and not self._outbox_held
            )
            self._room_sending = True
            item = self._room_item = next(i for i in self._outbox if i.kind.startswith("room_"))
            await self._send_room_item(item)
            self._outbox.pop(next(n for n, i in enumerate(self._outbox) if i is item))
            self._room_sending, self._room_item = False, None

    async def _send_room_item(self, item: OutboxItem) -> None:
        if item.kind == "room_open":
            await self._send_room_open(item)
        elif item.kind == "room_sync":
            await self._send_room_sync()
        elif item.kind == "room_archive":
            await self._send_room_archive()

    async def _send_room_open(self, item: OutboxItem) -> None:
        s = self._state
        # The incident is announced first; the room follows (and the thread can say where it is).
        await workflow.wait_condition(lambda: not self._declaration_waiting())
        name = war_room_name(s.title, s.declared_at, self._require_policy().war_room.name_prefix)
        snapshot = self._snapshot()
        try:
            room = await workflow.execute_activity(
                OPEN_WAR_ROOM,
                OpenWarRoom(name=name, members=self._room_members(), incident=snapshot),
                result_type=WarRoomRef,
                summary=f"open war room #{name}",
                **self._room_options(),
            )
        except ActivityError as err:
            s.war_room_opening = False
            self._record("war_room", "", f"no war room: {failure_reason(err)}")
            self._publish()
            return
        room.bookmarked = room_bookmarks(snapshot)
        s.war_room, s.war_room_opening = room, False
        self._record("war_room", item.user, f"war room #{room.name} opened ({item.reason})")
        await self._post("war_room_opened", extra={"channel": room.channel, "name": room.name})
        await self._refresh_header()

    async def _send_room_sync(self) -> None:
        s = self._state
        room = s.war_room
        if room is None or room.archived:
            return
        new = [m for m in self._room_members() if m not in room.invited]
        try:
            if new:
                await workflow.execute_activity(
                    INVITE_TO_WAR_ROOM,
                    WarRoomInvite(channel=room.channel, users=new),
                    result_type=list[str],
                    summary=f"invite {len(new)} to #{room.name}",
                    **self._room_options(),
                )
                room.invited += new  # those who cannot be invited are not asked again
            if room.summary_ts:
                wanted = room_bookmarks(s)
                bookmark = any(b not in room.bookmarked for b in wanted)
                await workflow.execute_activity(
                    UPDATE_WAR_ROOM_SUMMARY,
                    WarRoomSummary(
                        channel=room.channel, ts=room.summary_ts, incident=self._snapshot(), bookmark=bookmark
                    ),
                    summary=f"update #{room.name}'s summary",
                    **self._room_options(),
                )
                room.bookmarked = list(dict.fromkeys([*room.bookmarked, *wanted]))
        except ActivityError as err:
            self._record("slack_error", "", f"war room not kept current: {failure_reason(err)}")

    async def _send_room_archive(self) -> None:
        s = self._state
        room = s.war_room
        if room is None or room.archived:
            return
        await self._send_room_sync()  # the summary's last word first: resolved, reviewed
        try:
            await workflow.execute_activity(
                ARCHIVE_WAR_ROOM,
                WarRoomArchive(channel=room.channel, incident_workflow_id=s.workflow_id),
                summary=f"archive #{room.name}",
                **self._room_options(),
            )
        except ActivityError as err:
            self._record("slack_error", "", f"war room not archived: {failure_reason(err)}")
            return
        room.archived = True
        self._record("war_room", "", f"war room #{room.name} archived")
        self._publish()

    def _room_options(self) -> dict[str, Any]:
        options = self._slack_options()
        # Several Slack calls in one attempt (create, purpose, invites, bookmarks, pin): more time.
        options["start_to_close_timeout"] = options["start_to_close_timeout"] * 4
        return options
