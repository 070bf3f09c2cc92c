"""The Slack handler: the /incident command, reactions, pins and the declaration's buttons (slack_bolt).

    python -m starter.slack_app --port 3000            Events API, interactivity and the slash
                                                        command over HTTP at /slack/events
    SLACK_APP_TOKEN=xapp-... python -m starter.slack_app   Socket Mode: no public URL needed

In the Slack app's settings, point Event Subscriptions, Interactivity and the
`/incident` command at `https://<host>/slack/events`, subscribe to the bot
events `reaction_added` and `pin_added`, and grant the bot `commands`,
`chat:write`, `reactions:read`, `pins:read`, `channels:history` and
`groups:history`.

What a person can do:

- react :raised_hand: on a declaration: claim the incident (become its IC);
- react :stopwatch: on, or pin, any message of an incident's thread: add it,
  its author and time, to the incident's timeline;
- click Claim / Post update / Resolve on a declaration (the last two open a form);
- `/incident declare|claim|update|resolve|status|help` (see HELP).

Every listener acknowledges at once (Slack wants an answer within 3 s), then
signals the workflow and tells the person, in a message only they see, the
workflow's own verdict: done, or refused and why, read back from the
incident's timeline by request id. The handler keeps nothing of its own: it
finds the incident in the message's metadata (reactions, pins), the button's
value, the modal's private_metadata or the war-room channel's name
(`inc-<key>`), so it can restart at any time.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from activities.settings import Settings
from activities.slack import CLAIM_ACTION, METADATA_EVENT, RESOLVE_ACTION, UPDATE_ACTION
from starter.connect import TemporalUnreachable, connect
from starter.declare import (
    SIGNALS,
    IncidentClosed,
    IncidentError,
    declare_incident,
    describe_incident,
    incident_key,
    new_incident_key,
    query_state,
    send_signal,
    wait_for_outcome,
)
from workflows.models import (
    UPDATE_STATUSES,
    WORKFLOW_ID_PREFIX,
    ClaimSignal,
    IncidentDeclaration,
    IncidentState,
    ResolveSignal,
    Severity,
    Signal,
    TimelineNote,
    UpdateSignal,
    workflow_id_for,
)

log = logging.getLogger("incident.slack_app")

DEFAULT_PORT = 3000
COMMAND = "/incident"
CLAIM_REACTION = "raised_hand"
TIMELINE_REACTION = "stopwatch"
UPDATE_VIEW = "incident_update_modal"
RESOLVE_VIEW = "incident_resolve_modal"
WAR_ROOM_PREFIX = "inc-"  # an incident's own channel is #inc-<key>
# How long a person waits for the workflow's verdict before hearing "sent, not answered yet".
OUTCOME_WAIT = 5.0
MAX_NOTE = 3000  # characters of a message copied into the timeline

ClientFactory = Callable[[], Awaitable[Client]]

HELP = f"""*{COMMAND}*: declare and run incidents from Slack
• `{COMMAND} declare P1 <title>`: declare an incident (P1 to P4); you are its reporter
• `{COMMAND} claim [ID]`: become its Incident Commander
• `{COMMAND} update [ID] <status> <message>`: post a status update; status is one of {", ".join(UPDATE_STATUSES)}
• `{COMMAND} resolve [ID] <resolution>`: resolve it
• `{COMMAND} status [ID]`: where it stands
ID is the incident's key (`261122-1432-a3f9`) or workflow id (`incident-261122-1432-a3f9`); leave it out in the incident's own channel (#{WAR_ROOM_PREFIX}<key>).
On a declaration: the Claim / Post update / Resolve buttons, or react :{CLAIM_REACTION}: to claim it. React :{TIMELINE_REACTION}: to (or pin) a message in its thread to add it to the timeline."""

_SLACK_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_DONE = {
    "claim": "claimed",
    "update": "update posted",
    "resolve": "resolved",
    "add_to_timeline": "added to the timeline",
}
_WHAT = {"claim": "claim", "update": "update", "resolve": "resolution", "add_to_timeline": "timeline note"}


# ----------------------------------------------------------------- commands


@dataclass
class CommandRequest:
    """One `/incident ...` line, understood; `problem` says why it cannot run (answered with help)."""

    verb: str
    incident: str | None = None
    severity: str = ""
    title: str = ""
    status: str = ""
    message: str = ""
    problem: str = ""


def war_room_key(channel_name: str) -> str | None:
    """`inc-261122-1432-a3f9` -> `261122-1432-a3f9`; None for any other channel."""
    if channel_name.startswith(WAR_ROOM_PREFIX) and len(channel_name) > len(WAR_ROOM_PREFIX):
        return channel_name[len(WAR_ROOM_PREFIX) :]
    return None


def _names_incident(word: str, implied: str) -> bool:
    return word in (implied, workflow_id_for(implied)) or word.startswith(WORKFLOW_ID_PREFIX)


def _split_incident(
    words: list[str], implied: str | None, not_an_id: Callable[[str], bool] = lambda _: False
) -> tuple[str | None, list[str]]:
    """The incident a command names, and the words after it.

    In a war room the incident is implied unless the first word plainly names
    one (its key, or any `incident-...` id); elsewhere the first word is the
    ID, unless it cannot be one (`not_an_id`): then the ID is missing.
    """
    if implied is not None:
        if words and _names_incident(words[0], implied):
            return words[0], words[1:]
        return implied, words
    if not words or not_an_id(words[0]):
        return None, words
    return words[0], words[1:]


def parse_command(text: str, channel_name: str = "") -> CommandRequest:
    """`/incident` text -> what to do; no Temporal, no Slack (the listener does those)."""
    words = text.split()
    if not words:
        return CommandRequest("help")
    verb, rest = words[0].lower(), words[1:]
    implied = war_room_key(channel_name)
    missing_id = f"name the incident: `{COMMAND} {verb} <ID> ...`, or run it in the incident's channel"
    if verb in ("help", "?"):
        return CommandRequest("help")
    if verb == "declare":
        if len(rest) < 2:
            return CommandRequest(
                verb, problem=f"say the severity and a title: `{COMMAND} declare P1 <title>`"
            )
        try:
            severity = Severity.parse(rest[0]).value
        except ValueError as exc:
            return CommandRequest(verb, problem=str(exc))
        return CommandRequest(verb, severity=severity, title=" ".join(rest[1:]))
    if verb in ("claim", "status"):
        incident, extra = _split_incident(rest, implied)
        if incident is None:
            return CommandRequest(verb, problem=missing_id)
        if extra:
            return CommandRequest(verb, problem=f"`{COMMAND} {verb}` takes only the incident's ID")
        return CommandRequest(verb, incident=incident)
    if verb == "update":
        incident, extra = _split_incident(rest, implied, lambda w: w.lower() in UPDATE_STATUSES)
        if incident is None:
            return CommandRequest(verb, problem=missing_id)
        if len(extra) < 2:
            return CommandRequest(
                verb, problem=f"say the status and what changed: `{COMMAND} update [ID] fixing <message>`"
            )
        # The status is not checked here: the workflow judges it, and its reason is what the person hears.
        return CommandRequest(verb, incident=incident, status=extra[0], message=" ".join(extra[1:]))
    if verb == "resolve":
        incident, extra = _split_incident(rest, implied)
        if incident is None:
            return CommandRequest(verb, problem=missing_id)
        if not extra:
            return CommandRequest(
                verb, problem=f"say how it was resolved: `{COMMAND} resolve [ID] <resolution>`"
            )
        return CommandRequest(verb, incident=incident, message=" ".join(extra))
    return CommandRequest("help", problem=f"there is no `{COMMAND} {verb}`")


def help_text(problem: str = "") -> str:
    return f":warning: {problem}\n\n{HELP}" if problem else HELP


# ------------------------------------------------------------------ Temporal


def _who(user: str | None) -> str:
    if not user:
        return "awaiting claim"
    return f"<@{user}>" if _SLACK_USER_ID.match(user) else user


def _hhmm(moment: datetime | None) -> str:
    return f"{moment.astimezone(UTC):%H:%M} UTC" if moment else "—"


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_state(state: IncidentState) -> str:
    """The `status` answer: what a responder needs at a glance."""
    lines = [
        f"*{state.severity.value} · {state.title}* (`{state.key}`)",
        f"*Phase:* {state.phase.value} · *Incident Commander:* {_who(state.commander)}",
    ]
    if state.last_update:
        lines.append(
            f"*Last update* ({_hhmm(state.last_update_at)}): [{state.status}] {_shorten(state.last_update, 300)}"
        )
    if state.next_reminder_at:
        lines.append(f"*Next update due:* {_hhmm(state.next_reminder_at)}")
    if state.next_escalation_at:
        lines.append(f"*Escalates at:* {_hhmm(state.next_escalation_at)} unless claimed")
    if state.resolution:
        lines.append(f"*Resolution:* {_shorten(state.resolution, 300)}")
    if state.ticket:
        lines.append(f"*Ticket:* {state.ticket}")
    if state.slack_channel:
        lines.append(f"*Thread:* in <#{state.slack_channel}>")
    return "\n".join(lines)


def _trouble(exc: BaseException) -> str:
    """An expected failure as one line for the person who asked."""
    if isinstance(exc, IncidentError):
        return f":warning: {exc}"
    if isinstance(exc, TemporalUnreachable):
        return ":warning: cannot reach Temporal right now; nothing was changed, try again in a moment"
    if isinstance(exc, RPCError):
        status = exc.status.name if exc.status else "error"
        return f":warning: Temporal refused ({status}): {_shorten(exc.message, 200)}"
    if isinstance(exc, ValidationError):
        parts = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        return ":warning: invalid input: " + "; ".join(parts)
    log.exception("unexpected failure", exc_info=exc)
    return f":warning: something went wrong ({type(exc).__name__}); nothing may have changed"


class IncidentActions:
    """What a person in Slack can do to incidents, done in Temporal and answered as one message.

    Holds only the Temporal connection (made on first use, made again after a
    failure): everything about an incident is asked of its workflow.
    """

    def __init__(self, settings: Settings, client_factory: ClientFactory | None = None) -> None:
        self._settings = settings
        self._factory = client_factory or (lambda: connect(settings))
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    async def client(self) -> Client:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    self._client = await self._factory()
        return self._client

    async def signal(self, ident: str, name: str, signal: Signal) -> str:
        """Send one signal and report the workflow's verdict on it."""
        workflow_id = workflow_id_for(ident)
        key = incident_key(workflow_id)
        try:
            client = await self.client()
            request_id = await _send(client, workflow_id, name, signal)
            entry = await wait_for_outcome(client.get_workflow_handle(workflow_id), request_id, OUTCOME_WAIT)
        except Exception as exc:  # noqa: BLE001 - every failure is answered, never raised at Slack
            return _trouble(exc)
        if entry is None:
            return (
                f":hourglass_flowing_sand: Sent to incident `{key}`, but no worker answered within "
                f"{OUTCOME_WAIT:g} s; it is applied when one runs."
            )
        if entry.kind == "rejected":
            reason = entry.text.removeprefix(f"{name}: ")
            return f":no_entry: Incident `{key}` refused the {_WHAT.get(name, name)}: {reason}"
        return f":white_check_mark: Incident `{key}` {_DONE.get(name, name)}: {_shorten(entry.text, 300)}"

    async def declare(self, user: str, severity: str, title: str) -> str:
        try:
            declaration = IncidentDeclaration(
                key=new_incident_key(), severity=severity, title=title, reporter=user
            )
            client = await self.client()
            await declare_incident(client, declaration, self._settings.temporal_task_queue)
        except Exception as exc:  # noqa: BLE001
            return _trouble(exc)
        key = declaration.key
        return (
            f":rotating_light: Declared {declaration.severity.value} incident `{key}`: {title}\n"
            f"The declaration is posted to the {declaration.severity.value} channel; claim it with "
            f":{CLAIM_REACTION}: there, or `{COMMAND} claim {key}`."
        )

    async def status(self, ident: str) -> str:
        try:
            client = await self.client()
            handle, desc = await describe_incident(client, ident)
            try:
                state = await query_state(handle, wait=OUTCOME_WAIT)
            except RPCError:
                state = None
        except Exception as exc:  # noqa: BLE001
            return _trouble(exc)
        key = incident_key(handle.id)
        closed = desc.status != WorkflowExecutionStatus.RUNNING
        if state is None:
            return f":hourglass_flowing_sand: Incident `{key}` exists, but no worker answered within {OUTCOME_WAIT:g} s."
        return describe_state(state) + ("\n_The incident is closed._" if closed else "")

    async def where(self, ident: str) -> tuple[str | None, str | None]:
        """The incident's Slack channel and thread, if the declaration was posted."""
        try:
            client = await self.client()
            state = await query_state(client.get_workflow_handle(workflow_id_for(ident)), wait=OUTCOME_WAIT)
        except Exception:  # noqa: BLE001 - then the person hears back in a DM
            return None, None
        return state.slack_channel, state.slack_thread_ts

    async def run(self, request: CommandRequest, user: str) -> str:
        """A parsed `/incident` command, done."""
        if request.verb == "declare":
            return await self.declare(user, request.severity, request.title)
        assert request.incident is not None
        if request.verb == "status":
            return await self.status(request.incident)
        if request.verb == "claim":
            return await self.signal(request.incident, "claim", ClaimSignal(user=user))
        if request.verb == "update":
            return await self.signal(
                request.incident,
                "update",
                UpdateSignal(user=user, status=request.status, message=request.message),
            )
        if request.verb == "resolve":
            return await self.signal(
                request.incident, "resolve", ResolveSignal(user=user, resolution=request.message)
            )
        return help_text()


async def _send(client: Client, workflow_id: str, name: str, signal: Signal) -> str:
    if name in SIGNALS:
        return await send_signal(client, workflow_id, name, signal)
    # starter.declare.send_signal knows only the core signals; the same checks for the others.
    signal.request_id = signal.request_id or uuid.uuid4().hex
    handle, desc = await describe_incident(client, workflow_id)
    if desc.status != WorkflowExecutionStatus.RUNNING:
        raise IncidentClosed(f"incident {incident_key(handle.id)} is closed")
    await handle.signal(name, signal)
    return signal.request_id


# --------------------------------------------------------------------- Slack


@dataclass
class IncidentMessage:
    """A Slack message that belongs to an incident: its declaration or one in its thread."""

    workflow_id: str
    channel: str
    message: dict[str, Any]
    thread_ts: str  # the declaration's ts (the thread's parent)

    @property
    def is_declaration(self) -> bool:
        return self.message.get("ts") == self.thread_ts


def _incident_of(message: dict[str, Any] | None) -> str | None:
    meta = (message or {}).get("metadata") or {}
    if meta.get("event_type") != METADATA_EVENT:
        return None
    incident = (meta.get("event_payload") or {}).get("incident")
    return str(incident) if incident else None


async def find_incident_message(client: AsyncWebClient, channel: str, ts: str) -> IncidentMessage | None:
    """Read the message at `ts` (and its thread's parent) and find the incident in the bot's metadata.

    None when the message is not an incident's: a reaction anywhere else is none of our business.
    """
    history = await client.conversations_history(
        channel=channel, latest=ts, inclusive=True, limit=1, include_all_metadata=True
    )
    listed: list[dict[str, Any]] = history.get("messages", [])
    message = next((m for m in listed if m.get("ts") == ts), None)
    parent: dict[str, Any] | None = None
    if message is not None and message.get("thread_ts") in (None, ts):
        parent = message
    else:
        # A reply: history lists top-level messages only; replies come with their parent first.
        replies = await client.conversations_replies(
            channel=channel, ts=ts, oldest=ts, latest=ts, inclusive=True, limit=10, include_all_metadata=True
        )
        messages: list[dict[str, Any]] = replies.get("messages", [])
        message = message or next((m for m in messages if m.get("ts") == ts), None)
        if message is None:
            return None
        thread_ts = message.get("thread_ts") or ts
        parent = next((m for m in messages if m.get("ts") == thread_ts), None)
        if parent is None:  # not every page of replies starts with the parent
            above = await client.conversations_history(
                channel=channel, latest=thread_ts, inclusive=True, limit=1, include_all_metadata=True
            )
            found: list[dict[str, Any]] = above.get("messages", [])
            parent = next((m for m in found if m.get("ts") == thread_ts), None)
    if message is None or parent is None:
        return None
    workflow_id = _incident_of(message) or _incident_of(parent)
    if workflow_id is None:
        return None
    return IncidentMessage(workflow_id=workflow_id, channel=channel, message=message, thread_ts=parent["ts"])


def timeline_note(found: IncidentMessage, user: str) -> TimelineNote:
    message = found.message
    author = (
        message.get("user") or (message.get("bot_profile") or {}).get("name") or message.get("bot_id", "")
    )
    text = message.get("text") or "(a message without text)"
    if len(text) > MAX_NOTE:
        text = text[: MAX_NOTE - 1] + "…"
    return TimelineNote(
        user=user, text=text, author=author, channel=found.channel, message_ts=str(message.get("ts", ""))
    )


async def tell(
    client: AsyncWebClient, *, user: str, text: str, channel: str | None, thread_ts: str | None = None
) -> None:
    """A message only `user` sees, where they are; a DM when that cannot be."""
    if channel:
        try:
            await client.chat_postEphemeral(channel=channel, user=user, text=text, thread_ts=thread_ts)
            return
        except SlackApiError as exc:
            log.info(
                "ephemeral message to %s in %s failed (%s); sending a DM",
                user,
                channel,
                exc.response.get("error"),
            )
    try:
        await client.chat_postMessage(channel=user, text=text)
    except SlackApiError as exc:
        log.warning("could not tell %s: %s (%s)", user, text, exc.response.get("error"))


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text}


def _about(workflow_id: str) -> dict[str, Any]:
    return {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": f"Incident `{incident_key(workflow_id)}`"}],
    }


def update_modal(workflow_id: str) -> dict[str, Any]:
    """The Post update form; private_metadata is the workflow id."""
    return {
        "type": "modal",
        "callback_id": UPDATE_VIEW,
        "private_metadata": workflow_id,
        "title": _plain("Post update"),
        "submit": _plain("Post"),
        "close": _plain("Cancel"),
        "blocks": [
            _about(workflow_id),
            {
                "type": "input",
                "block_id": "status",
                "label": _plain("Status"),
                "element": {
                    "type": "static_select",
                    "action_id": "status",
                    "placeholder": _plain("Where it stands"),
                    "options": [{"text": _plain(s.capitalize()), "value": s} for s in UPDATE_STATUSES],
                },
            },
            {
                "type": "input",
                "block_id": "message",
                "label": _plain("What changed"),
                "element": {"type": "plain_text_input", "action_id": "message", "multiline": True},
            },
            {
                "type": "input",
                "block_id": "eta",
                "optional": True,
                "label": _plain("ETA"),
                "element": {
                    "type": "plain_text_input",
                    "action_id": "eta",
                    "placeholder": _plain("e.g. 30 min"),
                },
            },
        ],
    }


def resolve_modal(workflow_id: str) -> dict[str, Any]:
    """The Resolve form; private_metadata is the workflow id."""
    return {
        "type": "modal",
        "callback_id": RESOLVE_VIEW,
        "private_metadata": workflow_id,
        "title": _plain("Resolve incident"),
        "submit": _plain("Resolve"),
        "close": _plain("Cancel"),
        "blocks": [
            _about(workflow_id),
            {
                "type": "input",
                "block_id": "resolution",
                "label": _plain("Resolution"),
                "element": {"type": "plain_text_input", "action_id": "resolution", "multiline": True},
            },
            {
                "type": "input",
                "block_id": "root_cause",
                "optional": True,
                "label": _plain("Root cause"),
                "element": {"type": "plain_text_input", "action_id": "root_cause", "multiline": True},
            },
        ],
    }


def submitted(view: dict[str, Any], block_id: str) -> str:
    """One field of a submitted modal: typed text or the chosen option's value ("" when empty)."""
    for value in ((view.get("state") or {}).get("values") or {}).get(block_id, {}).values():
        chosen = value.get("selected_option") or {}
        return str(chosen.get("value") or value.get("value") or "").strip()
    return ""


def build_bolt_app(settings: Settings, client_factory: ClientFactory | None = None) -> AsyncApp:
    """The bolt app with every listener; serve it over HTTP (create_app) or Socket Mode."""
    api_url = settings.slack_api_url if settings.slack_api_url.endswith("/") else settings.slack_api_url + "/"
    app = AsyncApp(
        signing_secret=settings.slack_signing_secret,
        client=AsyncWebClient(token=settings.slack_bot_token, base_url=api_url),
    )
    actions = IncidentActions(settings, client_factory)

    @app.middleware
    async def skip_retries_after_timeouts(req: Any, resp: Any, next: Callable[[], Awaitable[Any]]) -> Any:
        # Slack resends an event it thinks timed out; the first delivery is being handled already.
        reason = (req.headers.get("x-slack-retry-reason") or [""])[0]
        if reason == "http_timeout":
            return BoltResponse(status=200, body="")
        return await next()

    # -- reactions and pins (events are acknowledged by bolt itself before the listener runs)

    @app.event("reaction_added")
    async def on_reaction(event: dict[str, Any], client: AsyncWebClient) -> None:
        name = str(event.get("reaction", "")).split("::")[0]  # raised_hand::skin-tone-3
        item = event.get("item") or {}
        if name not in (CLAIM_REACTION, TIMELINE_REACTION) or item.get("type") != "message":
            return
        user = event["user"]
        try:
            found = await find_incident_message(client, item["channel"], item["ts"])
        except SlackApiError as exc:
            log.warning("cannot read the message %s/%s: %s", item.get("channel"), item.get("ts"), exc)
            return
        if found is None:
            return
        if name == CLAIM_REACTION:
            if not found.is_declaration:
                return  # a raised hand in the thread is just a reaction
            text = await actions.signal(found.workflow_id, "claim", ClaimSignal(user=user))
        else:
            text = await actions.signal(found.workflow_id, "add_to_timeline", timeline_note(found, user))
        await tell(client, user=user, text=text, channel=found.channel, thread_ts=found.thread_ts)

    @app.event("pin_added")
    async def on_pin(event: dict[str, Any], client: AsyncWebClient) -> None:
        item = event.get("item") or {}
        channel = event.get("channel_id") or item.get("channel")
        ts = (item.get("message") or {}).get("ts")
        if item.get("type") != "message" or not channel or not ts:
            return
        user = event["user"]
        try:
            found = await find_incident_message(client, channel, ts)
        except SlackApiError as exc:
            log.warning("cannot read the pinned message %s/%s: %s", channel, ts, exc)
            return
        if found is None:
            return
        text = await actions.signal(found.workflow_id, "add_to_timeline", timeline_note(found, user))
        await tell(client, user=user, text=text, channel=found.channel, thread_ts=found.thread_ts)

    # -- the declaration's buttons

    @app.action(CLAIM_ACTION)
    async def on_claim_button(ack: Any, body: dict[str, Any], respond: Any) -> None:
        await ack()
        workflow_id = body["actions"][0]["value"]
        text = await actions.signal(workflow_id, "claim", ClaimSignal(user=body["user"]["id"]))
        await respond(text=text, response_type="ephemeral", replace_original=False)

    async def open_form(
        body: dict[str, Any], client: AsyncWebClient, respond: Any, view: dict[str, Any]
    ) -> None:
        try:
            await client.views_open(trigger_id=body["trigger_id"], view=view)
        except SlackApiError as exc:
            error = exc.response.get("error")
            await respond(
                text=f":warning: could not open the form ({error}); use `{COMMAND} help` instead",
                response_type="ephemeral",
                replace_original=False,
            )

    @app.action(UPDATE_ACTION)
    async def on_update_button(ack: Any, body: dict[str, Any], client: AsyncWebClient, respond: Any) -> None:
        await ack()
        await open_form(body, client, respond, update_modal(body["actions"][0]["value"]))

    @app.action(RESOLVE_ACTION)
    async def on_resolve_button(ack: Any, body: dict[str, Any], client: AsyncWebClient, respond: Any) -> None:
        await ack()
        await open_form(body, client, respond, resolve_modal(body["actions"][0]["value"]))

    # -- the forms

    async def answer_form(client: AsyncWebClient, workflow_id: str, user: str, text: str) -> None:
        channel, thread_ts = await actions.where(workflow_id)
        await tell(client, user=user, text=text, channel=channel, thread_ts=thread_ts)

    @app.view(UPDATE_VIEW)
    async def on_update_form(
        ack: Any, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient
    ) -> None:
        status, message, eta = submitted(view, "status"), submitted(view, "message"), submitted(view, "eta")
        if not status or not message:
            errors = {"status": "Choose a status."} if not status else {"message": "Say what changed."}
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        user, workflow_id = body["user"]["id"], view["private_metadata"]
        signal = UpdateSignal(user=user, status=status, message=message, eta=eta or None)
        await answer_form(client, workflow_id, user, await actions.signal(workflow_id, "update", signal))

    @app.view(RESOLVE_VIEW)
    async def on_resolve_form(
        ack: Any, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient
    ) -> None:
        resolution, root_cause = submitted(view, "resolution"), submitted(view, "root_cause")
        if not resolution:
            await ack(response_action="errors", errors={"resolution": "Say how it was resolved."})
            return
        await ack()
        user, workflow_id = body["user"]["id"], view["private_metadata"]
        signal = ResolveSignal(user=user, resolution=resolution, root_cause=root_cause)
        await answer_form(client, workflow_id, user, await actions.signal(workflow_id, "resolve", signal))

    # -- the slash command

    @app.command(COMMAND)
    async def on_command(ack: Any, command: dict[str, Any], respond: Any) -> None:
        request = parse_command(command.get("text", ""), command.get("channel_name", ""))
        if request.verb == "help" or request.problem:
            await ack(help_text(request.problem))  # answered at once: nothing to ask Temporal
            return
        await ack()
        text = await actions.run(request, user=command["user_id"])
        await respond(text=text, response_type="ephemeral")

    return app


def create_app(settings: Settings | None = None, client_factory: ClientFactory | None = None) -> Starlette:
    """The handler over HTTP: POST /slack/events (signature-checked by bolt), GET /healthz.

    `client_factory` makes the Temporal client (default: `starter.connect.connect(settings)`).
    """
    from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler

    settings = settings or Settings()
    bolt = build_bolt_app(settings, client_factory)
    handler = AsyncSlackRequestHandler(bolt)

    async def slack_events(request: Request) -> Response:
        return await handler.handle(request)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    app = Starlette(
        routes=[
            Route("/slack/events", slack_events, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
    app.state.bolt = bolt
    return app


async def run_socket_mode(
    settings: Settings, app_token: str, client_factory: ClientFactory | None = None
) -> None:
    """The same listeners over Socket Mode (SLACK_APP_TOKEN=xapp-...): Slack needs no URL of ours."""
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

    await AsyncSocketModeHandler(build_bolt_app(settings, client_factory), app_token).start_async()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m starter.slack_app", description="The incident Slack handler"
    )
    parser.add_argument("--host", default=os.environ.get("SLACK_APP_HOST") or "127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("SLACK_APP_PORT") or DEFAULT_PORT))
    opts = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s slack-app %(levelname)s %(message)s"
    )
    settings = Settings()
    app_token = os.environ.get("SLACK_APP_TOKEN")
    if app_token:
        print("Slack handler: Socket Mode (SLACK_APP_TOKEN is set)", flush=True)
        asyncio.run(run_socket_mode(settings, app_token))
        return
    import uvicorn

    print(f"Slack handler: http://{opts.host}:{opts.port}/slack/events", flush=True)
    uvicorn.run(create_app(settings), host=opts.host, port=opts.port, log_level="warning")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
