"""The Slack handler (starter/slack_app.py) end to end.

The real handler app over HTTP, the Slack sandbox acting as Slack toward it
(signed Events API, interactivity and slash-command requests, made by
`/_sandbox/act/...` as a person would click), and a real worker on the dev
server. Assertions are what people see: the incident's state and timeline,
the thread, and the messages only the acting person sees.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from slack_sdk.signature import SignatureVerifier
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from activities.chat.slack import METADATA_EVENT
from activities.settings import Settings
from sandbox.slack import APP_ID, TEAM_ID, serve_in_background
from sandbox.slack import create_app as create_sandbox
from starter.declare import IncidentNotFound, send_signal
from starter.slack_app import HELP, MAX_ETA, create_app, parse_command
from workflows.incident import IncidentWorkflow
from workflows.limits import MAX_TEXT, MAX_TITLE
from workflows.models import ClaimSignal, IncidentState, Phase, workflow_id_for
from workflows.ticket_models import TicketInput, TicketOpen, ticket_workflow_id

from .stack import TOKEN, SlackSandbox, eventually, incident_worker, posted_state, templates_of, terminate_all

SECRET = "test-signing-secret"
ALICE, BOB, CAROL = "U0ALICE", "U0BOB", "U0CAROL"


@dataclass
class Stack:
    sandbox: SlackSandbox
    declare: Any
    client: Client
    handler_url: str

    async def act(self, kind: str, **spec: Any) -> dict[str, Any]:
        return await self.sandbox.act(kind, **spec)

    async def state(self) -> dict[str, Any]:
        return await self.sandbox.state()

    async def heard(self, user: str, *needles: str) -> str:
        """The first message only `user` saw that contains every needle (waits for it)."""

        async def probe() -> str | None:
            for message in (await self.state())["ephemeral"].get(user, []):
                if all(n in message["text"] for n in needles):
                    return message["text"]
            return None

        return await eventually(probe, what=f"{user} to be told {needles}")

    async def incident(self, workflow_id: str) -> IncidentState:
        return await self.client.get_workflow_handle(workflow_id).query(IncidentWorkflow.state)


@pytest.fixture(scope="module")
async def stack(local_env, policy):
    async with serve_in_background(create_sandbox(signing_secret=SECRET)) as sandbox_url:
        sandbox = SlackSandbox(sandbox_url)
        async with incident_worker(local_env.client, sandbox.api_url, policy) as declare:
            settings = Settings(
                slack_api_url=sandbox.api_url,
                slack_bot_token=TOKEN,
                slack_signing_secret=SECRET,
                temporal_task_queue=declare.task_queue,  # where `/incident declare` starts incidents
            )

            async def temporal() -> Client:
                return local_env.client

            async with serve_in_background(create_app(settings, temporal)) as handler_url:
                configured = await sandbox.control.post(
                    "/_sandbox/config", json={"request_url": handler_url + "/slack/events"}
                )
                assert configured.json()["signing_secret_set"]
                yield Stack(sandbox, declare, local_env.client, handler_url)
        await sandbox.control.aclose()


async def declared(stack: Stack, severity: str = "P1", **fields: Any) -> IncidentState:
    handle = await stack.declare(severity, **fields)
    return await posted_state(handle)


async def reply(stack: Stack, incident: IncidentState, user: str, text: str) -> dict[str, Any]:
    """A person's message in the incident's thread."""
    response = await stack.sandbox.control.post(
        "/_sandbox/messages",
        json={
            "channel": incident.slack_channel,
            "user": user,
            "text": text,
            "thread_ts": incident.slack_thread_ts,
        },
    )
    return response.json()


def signed_headers(body: bytes, content_type: str = "application/json", **more: str) -> dict[str, str]:
    """Headers as Slack signs a request now, with SECRET."""
    stamp = str(int(time.time()))
    signature = SignatureVerifier(SECRET).generate_signature(timestamp=stamp, body=body)
    assert signature
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": signature,
        **more,
    }


def reaction_added(user: str, channel: str, ts: str, name: str, event_id: str) -> bytes:
    """A reaction_added event as the Events API delivers it."""
    envelope = {
        "token": "verification-token",
        "team_id": TEAM_ID,
        "api_app_id": APP_ID,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
        "event": {
            "type": "reaction_added",
            "user": user,
            "reaction": name,
            "item": {"type": "message", "channel": channel, "ts": ts},
            "event_ts": f"{time.time():.6f}",
        },
    }
    return json.dumps(envelope).encode()


# ------------------------------------------------------------------ reactions


async def test_raised_hand_on_the_declaration_claims_it_for_the_reacting_user(stack: Stack) -> None:
    incident = await declared(stack)
    answer = await stack.act(
        "reaction",
        user=ALICE,
        channel=incident.slack_channel,
        ts=incident.slack_thread_ts,
        name="raised_hand",
    )
    assert answer["status"] == 200

    async def claimed() -> IncidentState | None:
        state = await stack.incident(incident.workflow_id)
        return state if state.commander else None

    state = await eventually(claimed, what="the claim")
    assert state.commander == ALICE
    assert any(e.kind == "claimed" and e.actor == ALICE for e in state.timeline)
    told = await stack.heard(ALICE, incident.key, "claimed")
    assert f"{ALICE} is Incident Commander" in told


async def test_stopwatch_on_a_reply_and_a_pin_add_those_messages_to_the_timeline(stack: Stack) -> None:
    incident = await declared(stack, "P2")
    reply = (
        await stack.sandbox.control.post(
            "/_sandbox/messages",
            json={
                "channel": incident.slack_channel,
                "user": BOB,
                "text": "BGP to ISP-A flapped at 14:31",
                "thread_ts": incident.slack_thread_ts,
            },
        )
    ).json()
    await stack.act("reaction", user=ALICE, channel=incident.slack_channel, ts=reply["ts"], name="stopwatch")
    other = (
        await stack.sandbox.control.post(
            "/_sandbox/messages",
            json={
                "channel": incident.slack_channel,
                "user": CAROL,
                "text": "Optic on R1 Gi1 shows -40 dBm",
                "thread_ts": incident.slack_thread_ts,
            },
        )
    ).json()
    await stack.act("pin", user=BOB, channel=incident.slack_channel, ts=other["ts"])

    async def notes() -> list[tuple[str, str]] | None:
        state = await stack.incident(incident.workflow_id)
        found = [(e.actor, e.text) for e in state.timeline if e.kind == "note"]
        return found if len(found) == 2 else None

    assert sorted(await eventually(notes, what="two timeline notes")) == [
        (ALICE, f"{BOB}: BGP to ISP-A flapped at 14:31"),
        (BOB, f"{CAROL}: Optic on R1 Gi1 shows -40 dBm"),
    ]
    assert "added to the timeline" in await stack.heard(ALICE, incident.key)
    # A raised hand on a reply is only a reaction: nobody claims by it. The handler says nothing
    # about it, so Carol then adds the same reply to the timeline: once she is told that is done,
    # the handler had long read the raised hand's message and sent a claim, had it meant to (it
    # was delivered first, and the incident applies signals in order).
    await stack.act(
        "reaction", user=CAROL, channel=incident.slack_channel, ts=reply["ts"], name="raised_hand"
    )
    await stack.act("reaction", user=CAROL, channel=incident.slack_channel, ts=reply["ts"], name="stopwatch")
    await stack.heard(CAROL, incident.key, "added to the timeline")
    state = await stack.incident(incident.workflow_id)
    assert [e.actor for e in state.timeline if e.kind == "note"].count(CAROL) == 1
    assert state.commander is None
    assert not any(e.kind in ("claimed", "handover", "rejected") for e in state.timeline)
    told_carol = [
        m["text"] for m in (await stack.state())["ephemeral"].get(CAROL, []) if incident.key in m["text"]
    ]
    assert not any("claimed" in text for text in told_carol)


async def test_slack_resending_an_event_after_a_timeout_does_not_act_twice(stack: Stack) -> None:
    incident = await declared(stack, "P3")
    note = await reply(stack, incident, BOB, "Ping loss 40% on R1 Gi0/1")
    body = reaction_added(
        ALICE, incident.slack_channel, note["ts"], "stopwatch", f"Ev{uuid.uuid4().hex[:10]}"
    )
    async with httpx.AsyncClient(base_url=stack.handler_url) as http:
        first = await http.post("/slack/events", content=body, headers=signed_headers(body))
        # Slack heard nothing within 3 s (so it thinks) and delivers the very same event again.
        retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
        again = await http.post("/slack/events", content=body, headers=signed_headers(body, **retry))
    assert first.status_code == 200 and again.status_code == 200
    # Another note, delivered after both: once it is in the timeline, a second handling of the
    # retried event (begun before it, signals applied in order) would be there too.
    later = await reply(stack, incident, CAROL, "CRC errors rising on R1 Gi0/1")
    await stack.act("reaction", user=BOB, channel=incident.slack_channel, ts=later["ts"], name="stopwatch")
    assert "added to the timeline" in await stack.heard(BOB, incident.key)
    assert "added to the timeline" in await stack.heard(ALICE, incident.key)
    state = await stack.incident(incident.workflow_id)
    notes = [(e.actor, e.text) for e in state.timeline if e.kind == "note"]
    assert notes == [
        (ALICE, f"{BOB}: Ping loss 40% on R1 Gi0/1"),
        (BOB, f"{CAROL}: CRC errors rising on R1 Gi0/1"),
    ]
    told_alice = [m for m in (await stack.state())["ephemeral"][ALICE] if incident.key in m["text"]]
    assert len(told_alice) == 1


# -------------------------------------------------------------------- buttons


async def test_claim_button_claims_and_answers_through_the_response_url(stack: Stack) -> None:
    incident = await declared(stack, "P2")
    answer = await stack.act(
        "button",
        user=BOB,
        channel=incident.slack_channel,
        ts=incident.slack_thread_ts,
        action_id="incident_claim",
    )
    assert answer["status"] == 200
    told = await stack.heard(BOB, "claimed")
    assert incident.key in told
    assert (await stack.incident(incident.workflow_id)).commander == BOB
    sources = {m["source"] for m in (await stack.state())["ephemeral"][BOB]}
    assert "response_url" in sources


async def test_post_update_and_resolve_buttons_open_forms_whose_submissions_reach_the_thread(
    stack: Stack,
) -> None:
    incident = await declared(stack, "P1")
    where = {"channel": incident.slack_channel, "ts": incident.slack_thread_ts}
    await stack.act("button", user=CAROL, action_id="incident_claim", **where)
    await stack.heard(CAROL, "claimed")

    async def open_form(action_id: str) -> dict[str, Any]:
        answer = await stack.act("button", user=CAROL, action_id=action_id, **where)
        assert answer["status"] == 200

        async def opened() -> dict[str, Any] | None:
            views = (await stack.state())["views"]
            mine = [v for v in views if v["user"] == CAROL and v["status"] == "open"]
            return mine[-1] if mine else None

        return await eventually(opened, what=f"the {action_id} form")

    form = await open_form("incident_update")
    assert form["private_metadata"] == incident.workflow_id and form["title"]["text"] == "Post update"
    submitted = await stack.act(
        "submit",
        user=CAROL,
        view_id=form["id"],
        values={"status": "fixing", "message": "Reseating the R1 Gi1 optic", "eta": "15 min"},
    )
    assert submitted["status"] == 200 and submitted["view_status"] == "closed"
    assert "update posted" in await stack.heard(CAROL, "Reseating the R1 Gi1 optic")

    async def update_in_thread() -> list[dict[str, Any]] | None:
        thread = await stack.sandbox.thread(incident.slack_channel, incident.slack_thread_ts)
        return thread if "status_update" in templates_of(thread) else None

    thread = await eventually(update_in_thread, what="the update in the thread")
    update = next(m for m in thread if "Reseating the R1 Gi1 optic" in m["text"])
    assert "15 min" in update["text"]

    form = await open_form("incident_resolve")
    assert form["private_metadata"] == incident.workflow_id
    await stack.act("submit", user=CAROL, values={"resolution": "Optic replaced", "root_cause": "failed SFP"})
    assert "resolved" in await stack.heard(CAROL, "Optic replaced")
    state = await stack.incident(incident.workflow_id)
    assert state.phase in (Phase.resolved, Phase.review)
    assert state.resolution == "Optic replaced" and state.root_cause == "failed SFP"

    # Already resolved: the workflow refuses, and the person hears why.
    await stack.act("command", user=BOB, channel="incidents", text=f"claim {incident.key}")
    refused = await stack.heard(BOB, "refused the claim")
    assert "already review" in refused or "already resolved" in refused


async def test_the_headers_assign_role_button_opens_a_form_whose_submission_gives_the_role(
    stack: Stack,
) -> None:
    incident = await declared(stack, "P2")
    where = {"channel": incident.slack_channel, "ts": incident.slack_thread_ts}
    answer = await stack.act("button", user=ALICE, action_id="incident_role", **where)
    assert answer["status"] == 200

    async def opened() -> dict[str, Any] | None:
        views = (await stack.state())["views"]
        mine = [
            v
            for v in views
            if v["user"] == ALICE and v["status"] == "open" and v["title"]["text"] == "Assign role"
        ]
        return mine[-1] if mine else None

    form = await eventually(opened, what="the Assign role form")
    assert form["private_metadata"] == incident.workflow_id
    done = await stack.act(
        "submit", user=ALICE, view_id=form["id"], values={"role": "comms", "assignee": BOB}
    )
    assert done["status"] == 200 and done["view_status"] == "closed", done
    assert incident.key in await stack.heard(ALICE, "role assigned")
    state = await stack.incident(incident.workflow_id)
    assert state.roles.get("comms") == BOB, state.roles
    assert any(e.kind == "role" and BOB in e.text for e in state.timeline)


# -------------------------------------------------------------- slash command


async def test_update_with_an_unknown_status_answers_with_the_workflows_reason(stack: Stack) -> None:
    incident = await declared(stack, "P2")
    answer = await stack.act(
        "command", user=ALICE, channel="netclaw-alerts", text=f"update {incident.key} bogus text"
    )
    assert answer["status"] == 200
    told = await stack.heard(ALICE, "refused the update")
    assert "unknown status 'bogus'" in told and "investigating" in told
    state = await stack.incident(incident.workflow_id)
    assert state.updates == 0
    # Refused by the update's validator: answered to the person, nothing in the incident's timeline.
    assert not any("bogus" in e.text for e in state.timeline)


async def test_declare_from_slack_starts_an_incident_reported_by_the_user(stack: Stack) -> None:
    await stack.act("command", user=BOB, channel="incidents", text="declare P2 Core switch fans failing")
    told = await stack.heard(BOB, "Declared P2 incident")
    key = re.search(r"`([^`]+)`", told).group(1)
    handle = stack.client.get_workflow_handle(workflow_id_for(key))
    try:
        state = await posted_state(handle)
        assert state.title == "Core switch fans failing" and state.severity.value == "P2"
        assert state.reporter == BOB
        # and it is an incident like any other: /incident status finds it
        await stack.act("command", user=BOB, channel="incidents", text=f"status {key}")
        status = await stack.heard(BOB, "*P2 · Core switch fans failing*")
        assert "awaiting claim" in status
    finally:
        await terminate_all([handle])


async def test_in_the_war_room_the_incident_is_implied_elsewhere_it_must_be_named(stack: Stack) -> None:
    incident = await declared(stack, "P1")
    await stack.sandbox.web.conversations_create(name=f"inc-{incident.key}")

    await stack.act("command", user=CAROL, channel=f"inc-{incident.key}", text="claim")
    assert "claimed" in await stack.heard(CAROL, incident.key)
    await stack.act(
        "command", user=CAROL, channel=f"inc-{incident.key}", text="update identified Bad optic on R1"
    )
    assert "update posted" in await stack.heard(CAROL, "Bad optic on R1")

    # Outside the war room the ID is needed: the answer is the help, at once.
    answer = await stack.act("command", user=ALICE, channel="incidents", text="claim")
    assert "name the incident" in answer["body"] and "/incident declare P1" in answer["body"]
    assert "name the incident" in await stack.heard(ALICE, "/incident status")
    await stack.act("command", user=ALICE, channel="incidents", text="claim nope-123")
    assert "no incident nope-123" in await stack.heard(ALICE, "nope-123")


async def test_a_command_that_says_payload_is_still_a_command(stack: Stack) -> None:
    # bolt reads a form with "payload" anywhere in it as an interaction with no payload.
    await stack.act("command", user=CAROL, channel="incidents", text="declare P4 payload too large on R1")
    told = await stack.heard(CAROL, "Declared P4 incident", "payload too large on R1")
    key = re.search(r"`([^`]+)`", told).group(1)
    await terminate_all([stack.client.get_workflow_handle(workflow_id_for(key))])


async def test_a_workflow_that_is_not_an_incident_is_refused_and_never_signalled(stack: Stack) -> None:
    incident = await declared(stack, "P2")
    ticket_id = ticket_workflow_id(incident.workflow_id)
    # Tickets are off in this stack: a ticket child that no worker runs stands in for the real one.
    ticket = await stack.client.start_workflow(
        "TicketWorkflow",
        TicketInput(
            open=TicketOpen(incident_key=incident.key, severity="P2", title=incident.title),
            incident_workflow_id=incident.workflow_id,
        ),
        id=ticket_id,
        task_queue=f"nobody-polls-{uuid.uuid4().hex[:8]}",
    )
    expected = f"workflow {ticket_id} is the ticket of incident {incident.key}, not an incident"
    try:
        await stack.act("command", user=ALICE, channel="netclaw-alerts", text=f"claim {ticket_id}")
        told = await stack.heard(ALICE, "not an incident")
        assert expected in told and "went wrong" not in told
        await stack.act("command", user=CAROL, channel="netclaw-alerts", text=f"status {ticket_id}")
        assert expected in await stack.heard(CAROL, "not an incident")
        # A message whose metadata names the ticket (no message of ours does): :stopwatch: on it
        # goes the add_to_timeline way, which checks the same.
        odd = await stack.sandbox.web.chat_postMessage(
            channel=incident.slack_channel,
            text="names the ticket",
            metadata={"event_type": METADATA_EVENT, "event_payload": {"incident": ticket_id}},
        )
        await stack.act("reaction", user=BOB, channel=incident.slack_channel, ts=odd["ts"], name="stopwatch")
        assert expected in await stack.heard(BOB, "not an incident")
        # The CLI's way (starter.declare.send_signal) is refused the same, before any signal.
        with pytest.raises(IncidentNotFound, match="is the ticket of incident"):
            await send_signal(stack.client, ticket_id, "claim", ClaimSignal(user=ALICE))
        events = [event.event_type async for event in ticket.fetch_history_events()]
        assert events and EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED not in events
        state = await stack.incident(incident.workflow_id)
        assert state.commander is None and not any(e.kind == "note" for e in state.timeline)
    finally:
        await ticket.terminate("test over")


async def test_answers_escape_what_people_typed_and_keep_their_own_mentions_live(stack: Stack) -> None:
    title = "<!channel> R1 & R2 <down>"
    await stack.act("command", user=BOB, channel="incidents", text=f"declare P4 {title}")
    told = await stack.heard(BOB, "Declared P4 incident")
    assert "&lt;!channel&gt; R1 &amp; R2 &lt;down&gt;" in told and "<!" not in told
    key = re.search(r"`([^`]+)`", told).group(1)
    handle = stack.client.get_workflow_handle(workflow_id_for(key))
    try:
        state = await posted_state(handle)
        assert state.title == title  # the incident keeps what was typed; only Slack's text is escaped
        await stack.act("command", user=BOB, channel="incidents", text=f"claim {key}")
        await stack.heard(BOB, key, "claimed")
        await stack.act(
            "command",
            user=BOB,
            channel="incidents",
            text=f"update {key} fixing <!here> reseat <@U0ALICE>'s optic",
        )
        updated = await stack.heard(BOB, key, "update posted")
        assert "&lt;!here&gt; reseat &lt;@U0ALICE&gt;'s optic" in updated and "<!" not in updated
        await stack.act("command", user=BOB, channel="incidents", text=f"status {key}")
        status = await stack.heard(BOB, "*P4 · &lt;!channel&gt; R1 &amp; R2 &lt;down&gt;*")
        assert "[fixing] &lt;!here&gt; reseat &lt;@U0ALICE&gt;'s optic" in status
        assert "<!" not in status and "<@U0ALICE>" not in status
        assert f"*Incident Commander:* <@{BOB}>" in status  # the handler's own mention stays live
        assert f"<#{state.slack_channel}>" in status
    finally:
        await terminate_all([handle])
    # What a person typed, echoed in an error or in the help: escaped too.
    await stack.act("command", user=CAROL, channel="incidents", text="claim <!channel>")
    assert "&lt;!channel&gt;" in await stack.heard(CAROL, "no incident &lt;!channel&gt;")
    answer = await stack.act("command", user=CAROL, channel="incidents", text="<!everyone> now")
    assert "&lt;!everyone&gt;" in answer["body"] and "<!everyone>" not in answer["body"]


async def test_input_over_its_limit_is_refused_naming_the_field_and_the_limit(stack: Stack) -> None:
    answer = await stack.act(
        "command", user=ALICE, channel="incidents", text="declare P3 " + "t" * (MAX_TITLE + 1)
    )
    assert f"the title is {MAX_TITLE + 1} characters; at most {MAX_TITLE} are accepted" in answer["body"]
    incident = await declared(stack, "P3")
    long_text = "m" * (MAX_TEXT + 1)
    answer = await stack.act(
        "command", user=ALICE, channel="incidents", text=f"update {incident.key} fixing {long_text}"
    )
    assert f"the update message is {MAX_TEXT + 1:,} characters; at most {MAX_TEXT:,}" in answer["body"]
    answer = await stack.act(
        "command", user=ALICE, channel="incidents", text=f"resolve {incident.key} {long_text}"
    )
    assert f"the resolution is {MAX_TEXT + 1:,} characters; at most {MAX_TEXT:,}" in answer["body"]

    # The forms: Slack keeps each field within its max_length; a submission over it gets the field's error.
    where = {"channel": incident.slack_channel, "ts": incident.slack_thread_ts}

    async def open_form(action_id: str) -> dict[str, Any]:
        await stack.act("button", user=ALICE, action_id=action_id, **where)

        async def opened() -> dict[str, Any] | None:
            views = (await stack.state())["views"]
            mine = [v for v in views if v["user"] == ALICE and v["status"] == "open"]
            return mine[-1] if mine else None

        return await eventually(opened, what=f"the {action_id} form")

    form = await open_form("incident_update")
    limits = {b["block_id"]: b["element"].get("max_length") for b in form["blocks"] if b["type"] == "input"}
    assert limits == {"status": None, "message": MAX_TEXT, "eta": MAX_ETA}
    sent = await stack.act(
        "submit",
        user=ALICE,
        view_id=form["id"],
        values={"status": "fixing", "message": long_text, "eta": "e" * (MAX_ETA + 1)},
    )
    assert sent["view_status"] == "open"
    assert f"At most {MAX_TEXT:,} characters" in sent["view_errors"]["message"]
    assert f"At most {MAX_ETA:,} characters" in sent["view_errors"]["eta"]
    await stack.act("close", view_id=form["id"])

    form = await open_form("incident_resolve")
    limits = {b["block_id"]: b["element"].get("max_length") for b in form["blocks"] if b["type"] == "input"}
    assert limits == {"resolution": MAX_TEXT, "root_cause": MAX_TEXT}
    sent = await stack.act(
        "submit", user=ALICE, view_id=form["id"], values={"resolution": long_text, "root_cause": long_text}
    )
    assert sent["view_status"] == "open" and set(sent["view_errors"]) == {"resolution", "root_cause"}
    await stack.act("close", view_id=form["id"])

    state = await stack.incident(incident.workflow_id)
    assert state.updates == 0 and state.resolution is None and state.phase == Phase.triage
    assert not any(e.kind == "rejected" for e in state.timeline)


# ------------------------------------------------------------------ signatures


async def test_forged_or_stale_requests_get_401_and_change_nothing(stack: Stack) -> None:
    incident = await declared(stack, "P1")
    where = {"channel": incident.slack_channel, "ts": incident.slack_thread_ts}
    forged = await stack.act(
        "reaction", user=ALICE, name="raised_hand", signing_secret="not-the-secret", **where
    )
    assert forged["status"] == 401
    stale = await stack.act(
        "button", user=ALICE, action_id="incident_claim", request_timestamp=int(time.time()) - 600, **where
    )
    assert stale["status"] == 401
    async with httpx.AsyncClient() as http:
        event = {"type": "event_callback", "event": {"type": "reaction_added", "user": ALICE}}
        unsigned = await http.post(stack.handler_url + "/slack/events", json=event)
        tampered = await http.post(
            stack.handler_url + "/slack/events",
            json=event,
            headers={
                "X-Slack-Request-Timestamp": str(int(time.time())),
                "X-Slack-Signature": "v0=" + "0" * 64,
            },
        )
    assert unsigned.status_code == 401 and tampered.status_code == 401

    # A genuine request after them is handled: by then the forged claim would have shown too.
    await stack.act("reaction", user=BOB, name="stopwatch", **where)

    async def noted() -> IncidentState | None:
        state = await stack.incident(incident.workflow_id)
        return state if any(e.kind == "note" for e in state.timeline) else None

    state = await eventually(noted, what="the genuine request's note")
    assert state.commander is None
    assert not any(e.kind in ("claimed", "rejected") for e in state.timeline)
    told_alice = (await stack.state())["ephemeral"].get(ALICE, [])
    assert not any(incident.key in m["text"] for m in told_alice)


async def test_healthz(stack: Stack) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(stack.handler_url + "/healthz")
    assert response.status_code == 200 and response.json() == {"ok": True}


# ---------------------------------------------------------------- the parser


def test_parse_command_finds_the_incident_in_the_words_or_the_war_room() -> None:
    assert parse_command("").verb == "help" and parse_command("help").problem == ""
    declare = parse_command("declare sev1 R1 down hard")
    assert (declare.verb, declare.severity, declare.title) == ("declare", "P1", "R1 down hard")
    assert "unknown severity" in parse_command("declare P9 x").problem
    assert parse_command("claim k-1").incident == "k-1"
    assert "name the incident" in parse_command("claim").problem
    assert parse_command("claim", "inc-k-1").incident == "k-1"
    for verb in ("ack", "acknowledge", "ACK"):
        ack = parse_command(f"{verb} k-1")
        assert (ack.verb, ack.incident, ack.problem) == ("acknowledge", "k-1", "")
    assert (
        parse_command("ack", "inc-k-1").incident == "k-1"
        and "name the incident" in parse_command("ack").problem
    )
    snooze = parse_command("snooze k-1 30m")
    assert (snooze.verb, snooze.incident, snooze.message, snooze.problem) == ("snooze", "k-1", "30m", "")
    assert parse_command("snooze 2h", "inc-k-1").incident == "k-1"
    assert "name the incident" in parse_command("snooze 30m").problem
    assert "is not a duration" in parse_command("snooze k-1 soon").problem
    assert "at most 1d" in parse_command("snooze k-1 3d").problem
    update = parse_command("update k-1 bogus text here")
    assert (update.incident, update.status, update.message) == ("k-1", "bogus", "text here")
    assert "name the incident" in parse_command("update fixing the optic").problem
    update = parse_command("update fixing the optic", "inc-k-1")
    assert (update.incident, update.status, update.message) == ("k-1", "fixing", "the optic")
    update = parse_command("update incident-k-2 fixing the optic", "inc-k-1")
    assert update.incident == "incident-k-2"
    resolve = parse_command("resolve R1 rebooted", "inc-k-1")
    assert (resolve.incident, resolve.message) == ("k-1", "R1 rebooted")
    assert parse_command("resolve k-1").problem
    assert parse_command("frobnicate").problem and "/incident declare" in HELP
