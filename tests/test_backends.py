"""Each outside system's implementation is chosen by a setting (activities/backends.py).

A chat tool the project has never heard of plugs in from this file alone: registered
under a name, chosen by CHAT_BACKEND, and the incident's declaration, header and
reactions reach it through the same activity names the workflows always called.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from activities.backends import CHAT_BACKENDS, BackendError, Backends
from activities.chat.slack import SlackChat
from activities.devices import DeviceActivities
from activities.settings import Settings
from activities.tickets import ServiceNowTickets
from workflows.incident import IncidentWorkflow
from workflows.models import (
    ClaimSignal,
    PostedMessage,
    Severity,
    SlackFileUpload,
    SlackHeaderUpdate,
    SlackPost,
    SlackReaction,
    UploadedFile,
)

from .conftest import ROOT
from .stack import eventually, incident_worker, posted_state

SERVICENOW = {
    "servicenow_url": "http://127.0.0.1:9",
    "servicenow_user": "admin",
    "servicenow_password": "admin",
}


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


class RecordingChat:
    """A chat tool that only keeps what it was asked to do, in order."""

    def __init__(self) -> None:
        self.posts: list[SlackPost] = []
        self.headers: list[SlackHeaderUpdate] = []
        self.reactions: list[SlackReaction] = []

    async def post_message(self, post: SlackPost) -> PostedMessage:
        self.posts.append(post)
        return PostedMessage(channel="ROOM-1", ts=f"{len(self.posts)}.000000")

    async def update_header(self, header: SlackHeaderUpdate) -> None:
        self.headers.append(header)

    async def add_reaction(self, reaction: SlackReaction) -> None:
        self.reactions.append(reaction)

    async def upload_file(self, upload: SlackFileUpload) -> UploadedFile:
        return UploadedFile(channel=upload.channel, file_id="F1")


async def test_by_default_the_worker_speaks_slack_servicenow_when_it_has_a_url_and_pyats() -> None:
    with_url = Backends.from_settings(settings(**SERVICENOW))
    assert isinstance(with_url.chat, SlackChat)
    assert isinstance(with_url.tickets, ServiceNowTickets) and with_url.tickets_off_because is None
    assert isinstance(with_url.devices, DeviceActivities)
    assert with_url.names == "chat slack, tickets servicenow, devices pyats, paging slack"
    await with_url.tickets.aclose()

    without_url = Backends.from_settings(settings())
    assert without_url.tickets is None
    assert without_url.tickets_off_because == "tickets are off: SERVICENOW_URL is not set"


async def test_with_a_jira_url_too_the_worker_has_both_ticket_systems_servicenow_the_default(
    monkeypatch,
) -> None:
    jira = {"jira_url": "http://127.0.0.1:1", "jira_email": "a@example.com", "jira_api_token": "t"}
    both = Backends.from_settings(settings(**SERVICENOW, **jira, jira_project="OPS"))
    assert isinstance(both.tickets, ServiceNowTickets) and set(both.all_tickets) == {"servicenow", "jira"}
    assert both.names == "chat slack, tickets servicenow+jira, devices pyats, paging slack"
    for backend in both.all_tickets.values():
        await backend.aclose()
    monkeypatch.setenv("TICKET_BACKEND", "jira")
    with pytest.raises(BackendError, match="JIRA_PROJECT"):
        Backends.from_settings(settings(**jira))


def test_ticket_backend_turns_tickets_off_even_with_a_servicenow_url(monkeypatch) -> None:
    monkeypatch.setenv("TICKET_BACKEND", "off")
    off = Backends.from_settings(settings(**SERVICENOW))
    assert off.tickets is None and off.tickets_off_because == "tickets are off: TICKET_BACKEND is off"
    assert off.names == "chat slack, tickets off, devices pyats, paging slack"


@pytest.mark.parametrize(
    ("variable", "value", "choices"),
    [
        ("CHAT_BACKEND", "teams", "slack"),
        ("TICKET_BACKEND", "youtrack", "servicenow, jira, off"),
        ("DEVICE_BACKEND", "netmiko", "pyats"),
    ],
)
def test_an_unknown_backend_is_refused_naming_the_variable_and_the_choices(
    monkeypatch, variable: str, value: str, choices: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(BackendError) as refused:
        Backends.from_settings(settings())
    assert str(refused.value) == (
        f"{variable}={value!r} is not a backend this worker knows; choose one of: {choices}"
    )


def test_the_worker_stops_at_start_on_an_unknown_backend_before_it_connects() -> None:
    env = {**os.environ, "CHAT_BACKEND": "teams", "TEMPORAL_ADDRESS": "127.0.0.1:1"}
    done = subprocess.run(
        [sys.executable, "-m", "worker"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "worker: CHAT_BACKEND='teams' is not a backend this worker knows; choose one of: slack"
    )


def test_servicenow_chosen_by_name_needs_its_url() -> None:
    with pytest.raises(BackendError, match="TICKET_BACKEND is servicenow but SERVICENOW_URL is not set"):
        Backends.from_settings(settings(ticket_backend="servicenow"))


async def test_a_second_chat_backend_plugs_in_by_name_and_gets_the_same_activities(
    local_env, policy, monkeypatch
) -> None:
    chat = RecordingChat()
    monkeypatch.setitem(CHAT_BACKENDS, "recording", lambda _settings: chat)
    no_slack = "http://127.0.0.1:9/api/"  # nothing listens: every message must go to the recording
    async with incident_worker(local_env.client, no_slack, policy, chat_backend="recording") as declare:
        handle = await declare("P2", key=f"backend-{uuid.uuid4().hex[:8]}", title="Core switch down")
        state = await posted_state(handle)
        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="U0ALICE"))

        async def header_names_the_ic() -> SlackHeaderUpdate | None:
            # The declaration's edits (the team's checklist is edited through the same call).
            headers = [h for h in chat.headers if h.template == "declaration"]
            header = headers[-1] if headers else None
            return header if header and header.incident.commander == "U0ALICE" else None

        header = await eventually(header_names_the_ic, what="the header to name the IC")

    # The P2's first page (the default chain) is said in the thread too: here, between the two.
    declaration, team_formed = [p for p in chat.posts if p.template != "paged"][:2]
    assert (declaration.template, team_formed.template) == ("declaration", "team_formed")
    assert declaration.channel.lstrip("#") == policy.channel(Severity.P2)
    assert declaration.incident.title == "Core switch down"
    assert (state.slack_channel, state.slack_thread_ts) == ("ROOM-1", "1.000000")
    assert (team_formed.channel, team_formed.thread_ts) == ("ROOM-1", "1.000000")
    assert [r.name for r in chat.reactions[:2]] == ["rotating_light", "raised_hand"]
    assert {(r.channel, r.ts) for r in chat.reactions} == {("ROOM-1", "1.000000")}
    assert (header.channel, header.ts) == ("ROOM-1", "1.000000")
