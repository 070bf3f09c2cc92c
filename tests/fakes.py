"""Fake activities for unit tests of workflow logic (never for integration tests)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.paging.activities import PagingActivities
from workflows.maintenance import MaintenanceNotice, MaintenanceQuestion
from workflows.models import PostedMessage, SlackHeaderUpdate, SlackPost, SlackReaction
from workflows.paging_models import (
    Page,
    PageDelivered,
    PagingService,
    PagingUpdate,
    ResolveTargets,
    TargetsResolved,
)
from workflows.policy import Policy
from workflows.war_room_models import OpenWarRoom, WarRoom, WarRoomArchive, WarRoomInvite, WarRoomSummary


@dataclass
class RecordedSlack:
    """Records what the workflow asked Slack to do, in order.

    `down_until`: every Slack call whose attempt was scheduled before this time (the
    server's clock, so time skipping moves it) fails as Slack's 500 would, and is retried.
    """

    policy: Policy
    posts: list[SlackPost] = field(default_factory=list)
    reactions: list[SlackReaction] = field(default_factory=list)
    headers: int = 0
    down_until: datetime | None = None
    failed_attempts: int = 0

    def _outage(self) -> None:
        if self.down_until is not None and activity.info().current_attempt_scheduled_time < self.down_until:
            self.failed_attempts += 1
            raise ApplicationError("Slack answered 500 (internal_error)", type="SlackServerError")

    @activity.defn(name="load_incident_policy")
    async def load_incident_policy(self) -> Policy:
        return self.policy

    @activity.defn(name="post_slack_message")
    async def post_slack_message(self, post: SlackPost) -> PostedMessage:
        self._outage()
        self.posts.append(post)
        return PostedMessage(
            channel="C0" + post.channel.upper()[:8], ts=f"{len(self.posts)}.{uuid.uuid4().int % 10**6:06d}"
        )

    @activity.defn(name="update_slack_header")
    async def update_slack_header(self, header: SlackHeaderUpdate) -> None:
        self._outage()
        self.headers += 1

    @activity.defn(name="add_slack_reaction")
    async def add_slack_reaction(self, reaction: SlackReaction) -> None:
        self._outage()
        self.reactions.append(reaction)

    # Paging (the default policy's chains): who is on call from config/oncall.yaml, as the
    # worker resolves it; the pages themselves recorded. tests/test_paging_chain.py has its own.
    pages: list[Page] = field(default_factory=list)

    @activity.defn(name="resolve_page_targets")
    async def resolve_page_targets(self, request: ResolveTargets) -> TargetsResolved:
        # Every service reachable: send_page below records each page, whatever its service.
        everything: dict = dict.fromkeys(PagingService)
        return await PagingActivities(everything, client=None, dnd=None).resolve_page_targets(request)

    @activity.defn(name="send_page")
    async def send_page(self, page: Page) -> PageDelivered:
        self.pages.append(page)
        return PageDelivered(service=page.service, reference=f"page-{len(self.pages)}")

    @activity.defn(name="update_paging_service")
    async def update_paging_service(self, update: PagingUpdate) -> None:
        pass

    @activity.defn(name="maintenance_window")
    async def maintenance_window(self, question: MaintenanceQuestion) -> MaintenanceNotice:
        return MaintenanceNotice(service=question.service)  # no window open

    # The war room (a P1's own channel): what was asked, in order.
    rooms: list[OpenWarRoom] = field(default_factory=list)
    room_calls: list[str] = field(default_factory=list)  # "open #name", "invite U1,U2", "summary", "archive"

    @activity.defn(name="open_war_room")
    async def open_war_room(self, request: OpenWarRoom) -> WarRoom:
        self._outage()
        self.rooms.append(request)
        self.room_calls.append(f"open #{request.name}")
        return WarRoom(
            channel="C0ROOM" + str(len(self.rooms)),
            name=request.name,
            summary_ts="9.000001",
            invited=list(request.members),
        )

    @activity.defn(name="invite_to_war_room")
    async def invite_to_war_room(self, invite: WarRoomInvite) -> list[str]:
        self._outage()
        self.room_calls.append("invite " + ",".join(invite.users))
        return list(invite.users)

    @activity.defn(name="update_war_room_summary")
    async def update_war_room_summary(self, summary: WarRoomSummary) -> None:
        self._outage()
        self.room_calls.append(f"summary {summary.incident.phase.value}")

    @activity.defn(name="archive_war_room")
    async def archive_war_room(self, archive: WarRoomArchive) -> None:
        self._outage()
        self.room_calls.append("archive")

    @property
    def activities(self) -> list:
        return [
            self.open_war_room,
            self.invite_to_war_room,
            self.update_war_room_summary,
            self.archive_war_room,
            self.load_incident_policy,
            self.post_slack_message,
            self.update_slack_header,
            self.add_slack_reaction,
            self.resolve_page_targets,
            self.send_page,
            self.update_paging_service,
            self.maintenance_window,
        ]

    def templates(self) -> list[str]:
        return [p.template for p in self.posts]
