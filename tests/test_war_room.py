"""A P1's war room in the Slack sandbox, over real HTTP with slack_sdk (issue 13).

The real dev server, an in-process worker with the real activities, the Slack sandbox: the
channel's name, members, bookmarks and pinned summary; the summary after a role and an update;
the thread saying where the room is; archived after the review; nothing twice when the
activity is retried; a name already taken by someone else's channel.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from activities.chat.slack import SlackChat
from activities.chat.slack.war_room import NUMBERED, room_names
from activities.settings import Settings
from sandbox.slack import serve_in_background
from starter.alerts import create_app
from workflows.incident import IncidentWorkflow
from workflows.models import (
    ClaimSignal,
    IncidentState,
    ResolveSignal,
    ReviewDoneSignal,
    RoleSignal,
    UpdateSignal,
)
from workflows.war_room_models import OpenWarRoom, WarRoomArchive, war_room_name

from .stack import TOKEN, eventually, incident_worker


async def channel_named(sandbox, name: str) -> dict[str, Any] | None:
    listed = await sandbox.web.conversations_list(types="public_channel,private_channel", limit=1000)
    return next((c for c in listed["channels"] if c["name"] == name), None)


async def pinned_text(sandbox, channel: str) -> str:
    pins = await sandbox.web.pins_list(channel=channel)
    assert len(pins["items"]) == 1, pins["items"]
    return str(pins["items"][0]["message"]["text"])


async def test_a_p1_gets_a_war_room_with_members_bookmarks_and_a_summary_kept_current(
    local_env, sandbox, policy
):
    title = f"R1 unreachable, WAN outage Site A {uuid.uuid4().hex[:6]}"
    runbook = "https://runbooks.example.com/wan-site-a-r1-unreachable"
    async with incident_worker(local_env.client, sandbox.api_url, policy) as declare:
        # A critical Alertmanager alert with the Prometheus `runbook_url` annotation declares the P1.
        settings = Settings(temporal_task_queue=declare.task_queue)
        receiver = create_app(settings, policy, client=local_env.client, token="", rollup=False)
        async with serve_in_background(receiver) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
            body = {
                "version": "4",
                "status": "firing",
                "receiver": "incident",
                "groupKey": f'{{}}:{{alertname="{title}"}}',
                "groupLabels": {"alertname": "R1Down"},
                "commonLabels": {"alertname": "R1Down", "severity": "critical", "service": "wan-site-a"},
                "commonAnnotations": {"summary": title, "runbook_url": runbook},
                "externalURL": "http://alertmanager:9093",
                "alerts": [
                    {
                        "status": "firing",
                        "labels": {"alertname": "R1Down", "instance": f"r1-{uuid.uuid4().hex[:6]}"},
                        "annotations": {"summary": title},
                        "startsAt": "2026-12-01T14:02:00Z",
                        "endsAt": "0001-01-01T00:00:00Z",
                        "fingerprint": uuid.uuid4().hex[:16],
                    }
                ],
            }
            answer = await http.post("/alerts/alertmanager", json=body)
            assert answer.status_code == 202, answer.text
            handle = local_env.client.get_workflow_handle(answer.json()["incidents"][0]["incident_id"])

        async def opened() -> IncidentState | None:
            state = await handle.query(IncidentWorkflow.state)
            return state if state.war_room and state.war_room.summary_ts else None

        state = await eventually(opened, what="the war room")
        room = state.war_room
        assert room is not None
        name = war_room_name(title, state.declared_at)
        assert room.name == name and name.startswith(f"incident-{datetime.now(UTC):%Y-%m-%d}-r1-unreachable")
        channel = await channel_named(sandbox, name)
        assert channel is not None and channel["id"] == room.channel
        info = (await sandbox.web.conversations_info(channel=room.channel))["channel"]
        assert info["purpose"]["value"].startswith(f"Incident {handle.id}: ")
        members = (await sandbox.web.conversations_members(channel=room.channel))["members"]
        assert members[0] == "U0INCIDENTBOT"  # the reporter is the alert source, no Slack user
        bookmarks = {
            b["title"]: b["link"]
            for b in (await sandbox.web.bookmarks_list(channel_id=room.channel))["bookmarks"]
        }
        assert bookmarks["Temporal UI"].endswith(f"/namespaces/default/workflows/{handle.id}")
        assert bookmarks["Runbook"] == runbook  # the alert's runbook_url
        summary = await pinned_text(sandbox, room.channel)
        assert "*Incident summary*" in summary and "*Severity:* P1" in summary and "awaiting claim" in summary

        # The thread says where the room is.
        thread = await sandbox.thread(state.slack_channel, state.slack_thread_ts)
        assert any(f"<#{room.channel}>" in m.get("text", "") for m in thread[1:])

        # A claim, a role and an update: the IC and the comms lead are asked in, the summary follows.
        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="U0ALICE"))
        await handle.execute_update(
            IncidentWorkflow.assign_role_command,
            RoleSignal(user="U0ALICE", role="comms", assignee="U0ROBERT"),
        )
        await handle.signal(
            IncidentWorkflow.update,
            UpdateSignal(user="U0ALICE", status="identified", message="R1 line card crashed; reloading"),
        )

        async def current() -> str | None:
            text = await pinned_text(sandbox, room.channel)
            return text if "R1 line card crashed" in text and "Comms lead <@U0ROBERT>" in text else None

        summary = await eventually(current, what="the summary after the role and the update")
        assert "*Incident Commander:* <@U0ALICE>" in summary and "*Status:* Identified" in summary

        async def asked_in() -> list[str] | None:  # the invites are their own sends, beside the summary's
            members = (await sandbox.web.conversations_members(channel=room.channel))["members"]
            return members if {"U0ALICE", "U0ROBERT"} <= set(members) else None

        await eventually(asked_in, what="the IC and the comms lead in the room")

        # Resolved and reviewed: the room is archived, the summary's last word first.
        await handle.signal(IncidentWorkflow.resolve, ResolveSignal(user="U0ALICE", resolution="R1 reloaded"))
        await handle.signal(IncidentWorkflow.review_done, ReviewDoneSignal(user="U0ALICE"))
        await asyncio.wait_for(handle.result(), 60)
        info = (await sandbox.web.conversations_info(channel=room.channel))["channel"]
        assert info["is_archived"] is True
        assert "*Phase:* review" in await pinned_text(sandbox, room.channel)
        state = await handle.query(IncidentWorkflow.state)  # replayed from the start: deterministic
        assert [e.text for e in state.timeline if e.kind == "war_room"] == [
            f"war room #{name} opened (P1 declared)",
            f"war room #{name} archived",
        ]
        # One channel, one summary, each bookmark once.
        channels = await sandbox.web.conversations_list(types="public_channel", limit=1000)
        assert [c["name"] for c in channels["channels"]].count(name) == 1
        history = await sandbox.history(room.channel)
        assert len(history) == 1, history
        titles = [
            b["title"] for b in (await sandbox.web.bookmarks_list(channel_id=room.channel))["bookmarks"]
        ]
        assert sorted(titles) == ["Runbook", "Temporal UI"]


async def test_opening_again_after_a_lost_answer_finds_the_same_room_and_a_strangers_channel_is_left_alone(
    sandbox,
):
    chat = SlackChat.from_settings(sandbox.api_url, TOKEN)
    chat.ui_url = Settings().incident_ui_url
    now = datetime.now(UTC)
    title = f"Core switch down {uuid.uuid4().hex[:6]}"
    name = war_room_name(title, now)
    # Someone already has a channel of that name: ours becomes `-2`.
    await sandbox.web.conversations_create(name=name)
    incident = IncidentState(
        key="room-1",
        workflow_id=f"incident-room-{uuid.uuid4().hex[:6]}",
        severity="P1",
        title=title,
        declared_at=now,
    )
    request = OpenWarRoom(name=name, members=["U0ALICE", "alice-not-an-id"], incident=incident)
    first = await chat.open_war_room(request)
    again = await chat.open_war_room(request)  # the retry of an attempt whose answer was lost
    assert first.name == f"{name}-2" and (again.channel, again.name, again.summary_ts) == (
        first.channel,
        first.name,
        first.summary_ts,
    )
    assert first.invited == ["U0ALICE"]  # a name that is no Slack id is not invited
    assert len(await sandbox.history(first.channel)) == 1
    assert len((await sandbox.web.pins_list(channel=first.channel))["items"]) == 1
    assert len((await sandbox.web.bookmarks_list(channel_id=first.channel))["bookmarks"]) == 1
    stranger = await channel_named(sandbox, name)
    assert stranger is not None and stranger["id"] != first.channel
    await chat.archive_war_room(
        WarRoomArchive(channel=first.channel, incident_workflow_id=incident.workflow_id)
    )
    await chat.archive_war_room(
        WarRoomArchive(channel=first.channel, incident_workflow_id=incident.workflow_id)
    )
    with pytest.raises(Exception, match="is_archived"):
        await sandbox.web.chat_postMessage(channel=first.channel, text="after the archive")


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("R1 unreachable, WAN outage Site A", "incident-2026-12-01-r1-unreachable-wan-outage-site-a"),
        ("  ÜBER <script>alert(1)</script> !! ", "incident-2026-12-01-ber-script-alert-1-script"),
        ("", "incident-2026-12-01"),
    ],
)
def test_war_room_names_are_slack_channel_names(title: str, expected: str) -> None:
    assert war_room_name(title, datetime(2026, 12, 1, 23, 59, tzinfo=UTC)) == expected


def test_a_long_title_is_cut_at_a_word_within_slacks_80_characters() -> None:
    name = war_room_name("word " * 40, datetime(2026, 12, 1, tzinfo=UTC))
    assert len(name) <= 80 - 3 and name.endswith("-word") and "--" not in name


async def test_a_title_that_recurs_all_day_still_gets_a_room_named_by_its_key(sandbox) -> None:
    chat = SlackChat.from_settings(sandbox.api_url, TOKEN)
    now = datetime.now(UTC)
    title = f"Link flap {uuid.uuid4().hex[:6]}"
    name = war_room_name(title, now)
    for taken in room_names(name, "")[:NUMBERED]:  # the name and -2 ... -9, all someone else's
        await sandbox.web.conversations_create(name=taken)
    key = f"261201-1432-{uuid.uuid4().hex[:4]}"
    incident = IncidentState(
        key=key, workflow_id=f"incident-{key}", severity="P1", title=title, declared_at=now
    )
    room = await chat.open_war_room(OpenWarRoom(name=name, members=[], incident=incident))
    assert room.name == f"{name}-{key}" and len(room.name) <= 80
