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
- `/incident declare|claim|ack|snooze|update|resolve|status|help` (see HELP).

Every listener acknowledges at once (Slack wants an answer within 3 s), then
signals the workflow and tells the person, in a message only they see, the
workflow's own verdict: done, or refused and why, read back from the
incident's timeline by request id. The handler keeps nothing of its own: it
finds the incident in the message's metadata (reactions, pins), the button's
value, the modal's private_metadata or the war-room channel's name
(`inc-<key>`), so it can restart at any time.

What arrives at POST /slack/events is checked before bolt sees it, and no
request gets a 5xx for what it carries: a body over
`workflows.limits.MAX_BODY_BYTES` is 413; an unsigned, badly signed or stale
request 401 (a timestamp header that is not whole seconds included); a signed
body that is not what Slack sends (not JSON, `payload=null`, `actions: []`, an
ID that is not a string, ...) 400 with the reason; a kind of request or event
this app does not handle 200, nothing done. Slack's API not answering is no
5xx either (see KnownBot): what needs it is logged, the rest goes on. Text
from people and alerts in the answers is escaped for mrkdwn: a title
`<!channel>` notifies nobody.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import logging
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from pydantic import ValidationError
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncAuthorize
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.error import BoltUnhandledRequestError
from slack_bolt.request.async_internals import build_async_context
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

import activities.settings as ports
from activities.chat.slack import CLAIM_ACTION, METADATA_EVENT, RESOLVE_ACTION, ROLE_ACTION, UPDATE_ACTION
from activities.chat.slack.pager import ACKNOWLEDGE_ACTION
from activities.rendering import mrkdwn_escape
from activities.settings import Settings
from starter.actions import ACTION_COMMANDS, send_action_command
from starter.connect import SLACK_CLIENT, TemporalUnreachable, connect
from starter.declare import (
    CommandPending,
    CommandRefused,
    IncidentError,
    declare_incident,
    describe_incident,
    incident_key,
    new_incident_key,
    query_state,
    send_command,
)
from starter.edge import Refused, read_bounded
from workflows.action_models import MAX_ACTION_TEXT, ActionItemDoneSignal, ActionItemSignal, due_date
from workflows.action_state import action_priority
from workflows.commands import snooze_problem
from workflows.limits import MAX_KEY, MAX_LINK, MAX_TEXT, MAX_TITLE, MAX_USER, shorten
from workflows.models import (
    ROLES,
    SLACK_USER_ID,
    UPDATE_STATUSES,
    WORKFLOW_ID_PREFIX,
    AcknowledgeSignal,
    ClaimSignal,
    IncidentDeclaration,
    IncidentState,
    ResolveSignal,
    RoleSignal,
    Severity,
    Signal,
    SnoozeSignal,
    TimelineNote,
    UpdateSignal,
    WarRoomSignal,
    role_name,
    workflow_id_for,
)

log = logging.getLogger("incident.slack_app")

DEFAULT_PORT = ports.SLACK_APP_PORT
COMMAND = "/incident"
CLAIM_REACTION = "raised_hand"
TIMELINE_REACTION = "stopwatch"
UPDATE_VIEW = "incident_update_modal"
RESOLVE_VIEW = "incident_resolve_modal"
ROLE_VIEW = "incident_role_modal"
WAR_ROOM_PREFIX = "inc-"  # an incident's own channel is #inc-<key>
# How long a person waits for the workflow's verdict before hearing "sent, not answered yet".
OUTCOME_WAIT = 5.0
MAX_NOTE = MAX_TEXT  # characters of a message copied into the timeline
MAX_ID = len(WORKFLOW_ID_PREFIX) + MAX_KEY  # an incident's ID as a person types it: key or workflow id
MAX_ETA = MAX_TITLE  # the update form's ETA: one line

ClientFactory = Callable[[], Awaitable[Client]]

# mrkdwn: the placeholders' angle brackets are escaped (`&lt;title&gt;`), as Slack asks.
HELP = f"""*{COMMAND}*: declare and run incidents from Slack
• `{COMMAND} declare P1 &lt;title&gt;`: declare an incident (P1 to P4); you are its reporter
• `{COMMAND} claim [ID]`: become its Incident Commander
• `{COMMAND} ack [ID]`: acknowledge the page: paging stops (you are not made IC unless the policy says so)
• `{COMMAND} snooze [ID] 30m`: hold reminders, escalation and paging that long (a new alert ends it)
• `{COMMAND} warroom [ID]`: open the incident's own channel (a P1 gets one when declared)
• `{COMMAND} role [ID] comms|tech|scribe|sme @person [remove]`: give a role besides the IC (or take it back)
• `{COMMAND} update [ID] &lt;status&gt; &lt;message&gt;`: post a status update; status is one of {", ".join(UPDATE_STATUSES)}
• `{COMMAND} resolve [ID] &lt;resolution&gt;`: resolve it
• `{COMMAND} action [ID] &lt;text&gt; @owner [P1-P4] [due]`: add an action item (due 2026-12-10 or 7d; also after the incident); `{COMMAND} action [ID] done &lt;N&gt;` closes it
• `{COMMAND} status [ID]`: where it stands
ID is the incident's key (`261122-1432-a3f9`) or workflow id (`incident-261122-1432-a3f9`); leave it out in the incident's own channel (#{WAR_ROOM_PREFIX}&lt;key&gt;).
A title is at most {MAX_TITLE} characters, a message or resolution {MAX_TEXT:,}.
On a declaration: the Claim / Post update / Resolve buttons, or react :{CLAIM_REACTION}: to claim it. React :{TIMELINE_REACTION}: to (or pin) a message in its thread to add it to the timeline."""

_DONE = {
    "claim": "claimed",
    "acknowledge": "acknowledged: paging stopped",
    "snooze": "snoozed",
    "update": "update posted",
    "resolve": "resolved",
    "add_to_timeline": "added to the timeline",
    "assign_role": "role assigned",
    "open_war_room": "war room asked for",
    "add_action_item": "took the action item",
    "complete_action_item": "closed the action item",
}
_WHAT = {
    "claim": "claim",
    "acknowledge": "acknowledgement",
    "snooze": "snooze",
    "update": "update",
    "resolve": "resolution",
    "add_to_timeline": "timeline note",
    "assign_role": "role",
    "open_war_room": "war room",
    "add_action_item": "action item",
    "complete_action_item": "action item's completion",
}


def _too_long(what: str, text: str, limit: int) -> str:
    """'' when `text` fits, else the problem, naming the field and the limit."""
    if len(text) <= limit:
        return ""
    return f"{what} is {len(text):,} characters; at most {limit:,} are accepted"


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
    remove: bool = False
    # `/incident action`: the owner, the priority and the due date as typed, the item's number.
    owner: str = ""
    due: str = ""
    number: int = 0


WAR_ROOMS_PREFIX = "incident-"  # the war rooms the incidents open: #incident-2026-12-01-<title>
_ROOM_PURPOSE = re.compile(r"^Incident (incident-\S+):")


async def war_room_incident(client: AsyncWebClient, channel_id: str) -> str | None:
    """The incident whose war room this channel is (its purpose names it), or None."""
    if not channel_id:
        return None
    try:
        # Slack wants the command acknowledged within 3 s: this look-up gets at most 2.
        info = await asyncio.wait_for(client.conversations_info(channel=channel_id), 2.0)
    except Exception:  # noqa: BLE001 - not ours to know: the person names the incident then
        return None
    purpose = ((info.get("channel") or {}).get("purpose") or {}).get("value") or ""
    match = _ROOM_PURPOSE.match(purpose)
    return match.group(1) if match else None


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


def parse_command(text: str, channel_name: str = "", room_of: str | None = None) -> CommandRequest:
    """`/incident` text -> what to do; no Temporal, no Slack (the listener does those).

    `room_of`: the incident whose war room the command was run in (found by the listener).
    """
    words = text.split()
    if not words:
        return CommandRequest("help")
    verb, rest = words[0].lower(), words[1:]
    implied = room_of or war_room_key(channel_name)
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
        title = " ".join(rest[1:])
        if problem := _too_long("the title", title, MAX_TITLE):
            return CommandRequest(verb, problem=problem)
        return CommandRequest(verb, severity=severity, title=title)
    if verb in ("ack", "acknowledge"):
        verb = "acknowledge"
    if verb in ("warroom", "war-room"):
        verb = "warroom"
    if verb in ("claim", "acknowledge", "status", "warroom"):
        incident, extra = _split_incident(rest, implied)
        if incident is None:
            return CommandRequest(verb, problem=missing_id)
        if problem := _too_long("the incident ID", incident, MAX_ID):
            return CommandRequest(verb, problem=problem)
        if extra:
            return CommandRequest(verb, problem=f"`{COMMAND} {verb}` takes only the incident's ID")
        return CommandRequest(verb, incident=incident)
    if verb == "snooze":
        incident, extra = _split_incident(rest, implied, lambda w: snooze_problem(w) is None)
        if incident is None:
            return CommandRequest(verb, problem=missing_id)
        if len(extra) != 1:
            return CommandRequest(verb, problem=f"say for how long: `{COMMAND} snooze [ID] 30m`")
        if problem := snooze_problem(extra[0]):
            return CommandRequest(verb, problem=problem)
        return CommandRequest(verb, incident=incident, message=extra[0])
    if verb == "update":
        incident, extra = _split_incident(rest, implied, lambda w: w.lower() in UPDATE_STATUSES)
        if incident is None:
            return CommandRequest(verb, problem=missing_id)
        if len(extra) < 2:
            return CommandRequest(
                verb, problem=f"say the status and what changed: `{COMMAND} update [ID] fixing <message>`"
            )
        message = " ".join(extra[1:])
        if problem := _too_long("the incident ID", incident, MAX_ID) or _too_long(
            "the update message", message, MAX_TEXT
        ):
            return CommandRequest(verb, problem=problem)
        # The status is not checked here: the workflow judges it, and its reason is what the person hears.
        return CommandRequest(verb, incident=incident, status=extra[0], message=message)
    if verb == "role":
        incident, extra = _split_incident(rest, implied, lambda w: role_name(w) is not None)
        usage = f"say the role and the person: `{COMMAND} role [ID] comms @bob` (comms, tech, scribe, sme)"
        if incident is None:
            return CommandRequest(verb, problem=missing_id)
        remove = bool(extra) and extra[-1].lower() in ("remove", "off", "none")
        if remove:
            extra = extra[:-1]
        if len(extra) != 2:
            return CommandRequest(verb, problem=usage)
        person = slack_user(extra[1])
        if problem := _too_long("the incident ID", incident, MAX_ID) or _too_long("the person", person, 100):
            return CommandRequest(verb, problem=problem)
        # The role is not checked here: the workflow judges it, and its reason is what the person hears.
        return CommandRequest(verb, incident=incident, status=extra[0], message=person, remove=remove)
    if verb in ("action", "actions"):
        return parse_action(rest, implied, missing_id)
    if verb == "resolve":
        incident, extra = _split_incident(rest, implied)
        if incident is None:
            return CommandRequest(verb, problem=missing_id)
        if not extra:
            return CommandRequest(
                verb, problem=f"say how it was resolved: `{COMMAND} resolve [ID] <resolution>`"
            )
        message = " ".join(extra)
        if problem := _too_long("the incident ID", incident, MAX_ID) or _too_long(
            "the resolution", message, MAX_TEXT
        ):
            return CommandRequest(verb, problem=problem)
        return CommandRequest(verb, incident=incident, message=message)
    return CommandRequest("help", problem=f"there is no `{COMMAND} {verb}`")


ACTION_USAGE = f"`{COMMAND} action [ID] <text> @owner [P1-P4] [due: 2026-12-10 or 7d]`, or `{COMMAND} action [ID] done <N>`"
_PRIORITY_LIKE = re.compile(r"^(?:P|SEV)\d+$", re.IGNORECASE)


def parse_action(rest: list[str], implied: str | None, missing_id: str) -> CommandRequest:
    """`action [ID] <text> @owner [P1-P4] [due]` or `action [ID] done <N>`: a bad field is named."""
    verb = "action"
    incident, extra = _split_incident(rest, implied, lambda w: w.lower() == "done" or w.startswith("<@"))
    if incident is None:
        return CommandRequest(verb, problem=missing_id)
    if problem := _too_long("the incident ID", incident, MAX_ID):
        return CommandRequest(verb, problem=problem)
    if extra and extra[0].lower() == "done":
        if len(extra) != 2 or not extra[1].isdigit() or int(extra[1]) < 1:
            return CommandRequest(verb, problem=f"number: say which action item is done: {ACTION_USAGE}")
        return CommandRequest("action_done", incident=incident, number=int(extra[1]))
    at = next((n for n in range(len(extra) - 1, -1, -1) if extra[n].startswith(("<@", "@"))), None)
    if at is None:
        return CommandRequest(verb, problem=f"owner: say who does it with an @mention: {ACTION_USAGE}")
    owner = slack_user(extra[at])
    if not SLACK_USER_ID.match(owner):
        return CommandRequest(verb, problem=f"owner: {owner!r} is no Slack user: mention them (@name)")
    text = " ".join(extra[:at])
    if not text:
        return CommandRequest(verb, problem=f"text: say what is to be done: {ACTION_USAGE}")
    if problem := _too_long("the action item's text", text, MAX_ACTION_TEXT):
        return CommandRequest(verb, problem=problem)
    priority = due = ""
    for word in extra[at + 1 :]:
        if _PRIORITY_LIKE.match(word) and not priority:
            try:
                priority = action_priority(word)
            except ValueError as exc:
                return CommandRequest(verb, problem=f"priority: {exc}")
        elif not due:
            try:
                due_date(word, datetime.now(UTC).date(), timedelta(days=1))
            except ValueError as exc:
                return CommandRequest(verb, problem=str(exc))
            due = word
        else:
            return CommandRequest(
                verb, problem=f"after the owner come only a priority and a due date: {ACTION_USAGE}"
            )
    return CommandRequest(verb, incident=incident, message=text, owner=owner, severity=priority, due=due)


_ESCAPED_MENTION = re.compile(r"^<@([UW][A-Z0-9]{2,})(?:\|[^>]*)?>$")


def slack_user(word: str) -> str:
    """`<@U0BOB|bob>` (a mention as Slack escapes it) -> `U0BOB`; `@bob` -> `bob`; else as typed."""
    match = _ESCAPED_MENTION.match(word)
    if match:
        return match.group(1)
    return word.removeprefix("@")


def help_text(problem: str = "") -> str:
    """The help, after the problem (which may echo what the person typed: escaped)."""
    return f":warning: {mrkdwn_escape(problem)}\n\n{HELP}" if problem else HELP


# ------------------------------------------------------------------ Temporal


def _who(user: str | None) -> str:
    if not user:
        return "awaiting claim"
    return f"<@{user}>" if SLACK_USER_ID.match(user) else mrkdwn_escape(user)


def _hhmm(moment: datetime | None) -> str:
    return f"{moment.astimezone(UTC):%H:%M} UTC" if moment else "—"


def _shorten(text: str, limit: int) -> str:
    """One line of at most `limit` characters, escaped for mrkdwn (cut before escaping)."""
    return mrkdwn_escape(shorten(" ".join(text.split()), limit))


def describe_state(state: IncidentState) -> str:
    """The `status` answer: what a responder needs at a glance. Every text from people is escaped."""
    lines = [
        f"*{state.severity.value} · {_shorten(state.title, MAX_TITLE)}* (`{mrkdwn_escape(state.key)}`)",
        f"*Phase:* {state.phase.value} · *Incident Commander:* {_who(state.commander)}",
    ]
    if state.last_update:
        lines.append(
            f"*Last update* ({_hhmm(state.last_update_at)}): [{_shorten(state.status or '', 50)}] "
            f"{_shorten(state.last_update, 300)}"
        )
    if state.next_reminder_at:
        lines.append(f"*Next update due:* {_hhmm(state.next_reminder_at)}")
    if state.next_escalation_at:
        lines.append(f"*Escalates at:* {_hhmm(state.next_escalation_at)} unless claimed")
    if state.resolution:
        lines.append(f"*Resolution:* {_shorten(state.resolution, 300)}")
    if state.ticket:
        lines.append(f"*Ticket:* {_shorten(state.ticket, 100)}")
    if state.slack_channel:
        lines.append(f"*Thread:* in <#{state.slack_channel}>")
    return "\n".join(lines)


def _trouble(exc: BaseException) -> str:
    """An expected failure as one line for the person who asked (it may echo their input: escaped)."""
    if isinstance(exc, IncidentError):
        return f":warning: {_shorten(str(exc), 500)}"
    if isinstance(exc, TemporalUnreachable):
        return ":warning: cannot reach Temporal right now; nothing was changed, try again in a moment"
    if isinstance(exc, RPCError):
        status = exc.status.name if exc.status else "error"
        return f":warning: Temporal refused ({status}): {_shorten(exc.message, 200)}"
    if isinstance(exc, ValidationError):
        parts = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        return ":warning: invalid input: " + _shorten("; ".join(parts), 500)
    log.exception("unexpected failure", exc_info=exc)
    return f":warning: something went wrong ({type(exc).__name__}); nothing may have changed"


class IncidentActions:
    """What a person in Slack can do to incidents, done in Temporal and answered as one message.

    Holds only the Temporal connection (made on first use, made again after a
    failure): everything about an incident is asked of its workflow.
    """

    def __init__(self, settings: Settings, client_factory: ClientFactory | None = None) -> None:
        self._settings = settings
        self._factory = client_factory or (lambda: connect(settings, role=SLACK_CLIENT))
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
        if problem := _too_long("the incident ID", ident, MAX_ID):
            return f":warning: {problem}"
        workflow_id = workflow_id_for(ident)
        key = mrkdwn_escape(incident_key(workflow_id))
        try:
            client = await self.client()
            send = send_action_command if name in ACTION_COMMANDS else send_command
            entry = await send(client, workflow_id, name, signal, wait=OUTCOME_WAIT)
        except CommandPending:
            return (
                f":hourglass_flowing_sand: Sent to incident `{key}`, but no worker answered within "
                f"{OUTCOME_WAIT:g} s; it is applied when one runs."
            )
        except CommandRefused as refused:
            reason = _shorten(refused.reason, 500)
            return f":no_entry: Incident `{key}` refused the {_WHAT.get(name, name)}: {reason}"
        except Exception as exc:  # noqa: BLE001 - every failure is answered, never raised at Slack
            return _trouble(exc)
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
            f":rotating_light: Declared {declaration.severity.value} incident `{key}`: {mrkdwn_escape(title)}\n"
            f"The declaration is posted to the {declaration.severity.value} channel; claim it with "
            f":{CLAIM_REACTION}: there, or `{COMMAND} claim {key}`."
        )

    async def status(self, ident: str) -> str:
        if problem := _too_long("the incident ID", ident, MAX_ID):
            return f":warning: {problem}"
        try:
            client = await self.client()
            handle, desc = await describe_incident(client, ident)
            try:
                state = await query_state(handle, wait=OUTCOME_WAIT)
            except RPCError:
                state = None
        except Exception as exc:  # noqa: BLE001
            return _trouble(exc)
        key = mrkdwn_escape(incident_key(handle.id))
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
        if request.verb == "snooze":
            return await self.signal(
                request.incident, "snooze", SnoozeSignal(user=user, duration=request.message)
            )
        if request.verb == "acknowledge":
            return await self.signal(
                request.incident, "acknowledge", AcknowledgeSignal(user=user, source="slack")
            )
        if request.verb == "update":
            return await self.signal(
                request.incident,
                "update",
                UpdateSignal(user=user, status=request.status, message=request.message),
            )
        if request.verb == "warroom":
            return await self.signal(request.incident, "open_war_room", WarRoomSignal(user=user))
        if request.verb == "role":
            role = RoleSignal(user=user, role=request.status, assignee=request.message, remove=request.remove)
            return await self.signal(request.incident, "assign_role", role)
        if request.verb == "resolve":
            return await self.signal(
                request.incident, "resolve", ResolveSignal(user=user, resolution=request.message)
            )
        if request.verb == "action":
            item = ActionItemSignal(
                user=user,
                text=request.message,
                owner=request.owner,
                priority=request.severity,
                due=request.due,
            )
            return await self.signal(request.incident, "add_action_item", item)
        if request.verb == "action_done":
            done = ActionItemDoneSignal(user=user, number=request.number)
            return await self.signal(request.incident, "complete_action_item", done)
        return help_text()


# --------------------------------------------------------------------- Slack

# Slack's API (or a response_url) not answering: said in one log line, never raised at Slack.
SLACK_UNREACHABLE = (aiohttp.ClientError, asyncio.TimeoutError)


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


def slack_unescape(text: str) -> str:
    """A message's text as Slack's API gives it (`&lt;` for `<`) back to what was written."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def timeline_note(found: IncidentMessage, user: str) -> TimelineNote:
    """The message as a timeline entry: plain text (whoever shows it escapes it for their format)."""
    message = found.message
    author = (
        message.get("user") or (message.get("bot_profile") or {}).get("name") or message.get("bot_id", "")
    )
    text = slack_unescape(_str(message.get("text"))) or "(a message without text)"
    if len(text) > MAX_NOTE:
        text = text[: MAX_NOTE - 1] + "…"
    return TimelineNote(
        user=user, text=text, author=_str(author), channel=found.channel, message_ts=_str(message.get("ts"))
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
        except SLACK_UNREACHABLE as exc:
            log.warning("could not tell %s (%s): %s", user, _brief(exc), _brief(text))
            return
    try:
        await client.chat_postMessage(channel=user, text=text)
    except SlackApiError as exc:
        log.warning("could not tell %s: %s (%s)", user, _brief(text), exc.response.get("error"))
    except SLACK_UNREACHABLE as exc:
        log.warning("could not tell %s (%s): %s", user, _brief(exc), _brief(text))


def _brief(value: object, limit: int = 200) -> str:
    """One line of at most `limit` characters for the log; an exception with its type."""
    text = f"{type(value).__name__}: {value}" if isinstance(value, BaseException) else str(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def answer(respond: Any, text: str) -> None:
    """A message only the person sees, through the request's response_url; best effort."""
    if respond is None:  # a request without a response_url
        log.warning("cannot answer (no response_url): %s", _brief(text))
        return
    try:
        await respond(text=text, response_type="ephemeral", replace_original=False)
    except (*SLACK_UNREACHABLE, ValueError) as exc:  # aiohttp.InvalidURL is a ValueError
        log.warning("could not answer through the response_url (%s): %s", _brief(exc), _brief(text))


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text}


def _about(workflow_id: str) -> dict[str, Any]:
    return {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": f"Incident `{mrkdwn_escape(incident_key(workflow_id))}`"}],
    }


def _text_input(action_id: str, max_length: int, **more: Any) -> dict[str, Any]:
    """A plain_text_input Slack itself keeps within `max_length` (the submission is checked too)."""
    return {"type": "plain_text_input", "action_id": action_id, "max_length": max_length, **more}


def _modal(
    callback_id: str, workflow_id: str, title: str, submit: str, blocks: list[dict[str, Any]]
) -> dict[str, Any]:
    """A form about one incident: private_metadata is its workflow id, the incident's key first."""
    return {
        "type": "modal",
        "callback_id": callback_id,
        "private_metadata": workflow_id,
        "title": _plain(title),
        "submit": _plain(submit),
        "close": _plain("Cancel"),
        "blocks": [_about(workflow_id), *blocks],
    }


def update_modal(workflow_id: str) -> dict[str, Any]:
    """The Post update form; private_metadata is the workflow id."""
    return _modal(
        UPDATE_VIEW,
        workflow_id,
        "Post update",
        "Post",
        [
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
                "element": _text_input("message", MAX_TEXT, multiline=True),
            },
            {
                "type": "input",
                "block_id": "eta",
                "optional": True,
                "label": _plain("ETA"),
                "element": _text_input("eta", MAX_ETA, placeholder=_plain("e.g. 30 min")),
            },
        ],
    )


def resolve_modal(workflow_id: str) -> dict[str, Any]:
    """The Resolve form; private_metadata is the workflow id."""
    return _modal(
        RESOLVE_VIEW,
        workflow_id,
        "Resolve incident",
        "Resolve",
        [
            {
                "type": "input",
                "block_id": "resolution",
                "label": _plain("Resolution"),
                "element": _text_input("resolution", MAX_TEXT, multiline=True),
            },
            {
                "type": "input",
                "block_id": "root_cause",
                "optional": True,
                "label": _plain("Root cause"),
                "element": _text_input("root_cause", MAX_TEXT, multiline=True),
            },
        ],
    )


def role_modal(workflow_id: str) -> dict[str, Any]:
    """The Assign role form (a role besides the IC, and who takes it); private_metadata is the workflow id."""
    return _modal(
        ROLE_VIEW,
        workflow_id,
        "Assign role",
        "Assign",
        [
            {
                "type": "input",
                "block_id": "role",
                "label": _plain("Role"),
                "element": {
                    "type": "static_select",
                    "action_id": "role",
                    "placeholder": _plain("Which role"),
                    "options": [{"text": _plain(name.capitalize()), "value": r} for r, name in ROLES.items()],
                },
            },
            {
                "type": "input",
                "block_id": "assignee",
                "label": _plain("Who"),
                "element": {
                    "type": "users_select",
                    "action_id": "assignee",
                    "placeholder": _plain("A person"),
                },
            },
        ],
    )


def submitted(view: dict[str, Any], block_id: str) -> str:
    """One field of a submitted modal: typed text, the chosen option's value or the chosen person
    ("" when empty or odd)."""
    values = _obj(_obj(view.get("state")).get("values"))
    for value in _obj(values.get(block_id)).values():
        element = _obj(value)
        chosen = _obj(element.get("selected_option"))
        picked = _str(chosen.get("value")) or _str(element.get("selected_user")) or _str(element.get("value"))
        return picked.strip()
    return ""


def form_errors(required: dict[str, tuple[str, str]], limits: dict[str, tuple[str, int]]) -> dict[str, str]:
    """`response_action: errors` for a submitted form: {block_id: what to fix}.

    `required`: block_id -> (value, what to say when it is empty);
    `limits`: block_id -> (value, most characters accepted).
    """
    errors = {block: say for block, (value, say) in required.items() if not value}
    for block, (value, limit) in limits.items():
        if len(value) > limit and block not in errors:
            errors[block] = f"At most {limit:,} characters are accepted; this is {len(value):,}."
    return errors


# ------------------------------------------------------------------ requests

# What the listeners below handle; any other (signed, well-formed) request is answered 200, nothing done.
HANDLED_EVENTS = ("reaction_added", "pin_added")
HANDLED_ACTIONS = (CLAIM_ACTION, ACKNOWLEDGE_ACTION, UPDATE_ACTION, RESOLVE_ACTION, ROLE_ACTION)
HANDLED_VIEWS = (UPDATE_VIEW, RESOLVE_VIEW, ROLE_VIEW)
# X-Slack-Request-Timestamp: whole seconds since the epoch (10 digits until the year 2286),
# at most 5 minutes away from our clock (as Slack and bolt have it).
MAX_TIMESTAMP_DIGITS = 12
SIGNATURE_MAX_AGE = 5 * 60
# The fields of a slash command (a form): only these reach bolt, every one a string.
COMMAND_FIELDS = frozenset(
    {
        "token",
        "team_id",
        "team_domain",
        "enterprise_id",
        "enterprise_name",
        "channel_id",
        "channel_name",
        "user_id",
        "user_name",
        "command",
        "text",
        "api_app_id",
        "is_enterprise_install",
        "response_url",
        "trigger_id",
    }
)
# Fields bolt reads to build its context (slack_bolt.request.internals), wherever they are:
# each a string (or, the first four, an object whose id is a string), the nested ones objects.
_ID_FIELDS = ("user", "team", "channel", "enterprise")
_STRING_FIELDS = (
    "user_id",
    "team_id",
    "enterprise_id",
    "channel_id",
    "thread_ts",
    "response_url",
    "trigger_id",
    "user_team",
    "app_installed_team_id",
    "function_execution_id",
    "bot_access_token",
)
_NESTED_FIELDS = ("event", "item", "message", "previous_message", "assistant_thread", "view", "function_data")
_LIST_FIELDS = ("authorizations", "response_urls")
_MAX_NESTING = 6


def _malformed(reason: str) -> Refused:
    return Refused(400, reason)


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def check_signature(secret: str, headers: Headers, body: bytes, now: float | None = None) -> None:
    """Refused 401 unless signed by Slack with our signing secret within the last 5 minutes.

    Slack's scheme (`v0=` HMAC-SHA256 of `v0:<timestamp>:<body>`), over the body's bytes.
    Not slack_sdk's SignatureVerifier: it raises instead of saying no on a timestamp that
    is not an integer (`abc`, `''`, `1796099567.5`), a body that is not UTF-8 and a
    signature that is not ASCII. The timestamp must be whole seconds in ASCII digits.
    """
    stamps = headers.getlist("x-slack-request-timestamp")
    signatures = headers.getlist("x-slack-signature")
    if not stamps or not signatures:
        raise Refused(401, "not signed: X-Slack-Request-Timestamp and X-Slack-Signature are required")
    if len(stamps) > 1 or len(signatures) > 1:
        raise Refused(401, "more than one X-Slack-Request-Timestamp or X-Slack-Signature")
    stamp, signature = stamps[0], signatures[0]
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= MAX_TIMESTAMP_DIGITS):
        raise Refused(401, "X-Slack-Request-Timestamp is not a time in whole seconds")
    if abs((time.time() if now is None else now) - int(stamp)) > SIGNATURE_MAX_AGE:
        raise Refused(401, "the request is more than 5 minutes old (X-Slack-Request-Timestamp)")
    signed = b"v0:" + stamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    if not signature.isascii() or not hmac.compare_digest(expected, signature):
        raise Refused(401, "the signature is not valid")


def parse_request(raw: bytes, content_type: str) -> tuple[dict[str, Any], bool]:
    """(the body as an object, whether it came as a form without a payload, i.e. a slash command).

    As bolt reads it: JSON when the content type says so or the body starts with `{`;
    else a form, whose `payload` field (interactivity) is JSON. Refused 400 otherwise.
    A form's fields are strings; check_request keeps only a slash command's own.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed("the body is not UTF-8") from None
    media = content_type.split(";")[0].strip().lower()
    if media == "application/json" or text.startswith("{"):
        return _json_object(text, "the body"), False
    fields = dict(parse_qsl(text, keep_blank_values=True))
    if "payload" in fields:
        return _json_object(fields["payload"], "payload"), False
    return fields, True


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise _malformed(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise _malformed(f"{what} is not a JSON object")
    return value


def _need_str(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise _malformed(f"{where}{key} must be a non-empty string")
    return value


def _need_obj(obj: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = obj.get(key)
    if not isinstance(value, dict):
        raise _malformed(f"{where}{key} must be an object")
    return value


def _maybe_url(obj: dict[str, Any], key: str, where: str) -> None:
    """Absent (then the answer is logged, not sent), or an http(s) URL: where the answer goes."""
    if key not in obj:
        return
    url = obj[key]
    if not isinstance(url, str) or not url.startswith(("https://", "http://")) or len(url) > MAX_LINK:
        raise _malformed(f"{where}{key} is not an http(s) URL")


def _need_user(obj: dict[str, Any], key: str, where: str) -> str:
    user = _need_str(obj, key, where)
    if len(user) > MAX_USER or not SLACK_USER_ID.match(user):
        raise _malformed(f"{where}{key} is not a Slack user ID")
    return user


def _need_incident_id(obj: dict[str, Any], key: str, where: str) -> str:
    ident = _need_str(obj, key, where)
    if len(ident) > MAX_ID:
        raise _malformed(f"{where}{key} is over {MAX_ID} characters: not an incident's ID")
    return ident


def _check_context_fields(obj: dict[str, Any], where: str, depth: int = 0) -> None:
    """What bolt reads of any request to build its context, of the types it expects (else Refused 400)."""
    if depth > _MAX_NESTING:
        raise _malformed(f"{where.rstrip('.')} is nested too deeply")
    for key in _ID_FIELDS:
        value = obj.get(key)
        if isinstance(value, dict):
            if value.get("id") is not None and not isinstance(value["id"], str):
                raise _malformed(f"{where}{key}.id must be a string")
        elif value is not None and not isinstance(value, str):
            raise _malformed(f"{where}{key} must be a string or an object")
    for key in _STRING_FIELDS:
        if obj.get(key) is not None and not isinstance(obj[key], str):
            raise _malformed(f"{where}{key} must be a string")
    for key in _LIST_FIELDS:
        if key not in obj:
            continue
        items = obj[key]  # bolt takes len() of it when the key is there, even null
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise _malformed(f"{where}{key} must be a list of objects")
        if items:
            _check_context_fields(items[0], f"{where}{key}[0].", depth + 1)
    for key in _NESTED_FIELDS:
        nested = obj.get(key)
        if nested is None:
            continue
        if not isinstance(nested, dict):
            raise _malformed(f"{where}{key} must be an object")
        _check_context_fields(nested, f"{where}{key}.", depth + 1)


def check_request(body: dict[str, Any], command_form: bool = False) -> str | None:
    """Whether a signed request is one for the listeners.

    None: hand it to bolt. A string: a kind of request or event nothing here handles
    (answered 200, nothing done). Refused (400, naming the field) when it is not what
    Slack sends: the listeners and bolt may then rely on every field they read.
    """
    if command_form:
        if body.get("ssl_check"):
            body.clear()
            body["ssl_check"] = "1"  # bolt answers Slack's SSL check itself
            return None
        command = body.get("command")
        if command is None:
            raise _malformed("neither an interaction payload nor a slash command")
        if command != COMMAND:
            return f"the {command[:50]} command"
        _need_user(body, "user_id", "")
        _maybe_url(body, "response_url", "")
        for extra in set(body) - COMMAND_FIELDS:  # bolt reads `type`, `actions`, ... wherever they are
            del body[extra]
        return None
    kind = body.get("type")
    if not isinstance(kind, str) or not kind:
        raise _malformed("type must be a non-empty string")
    if kind == "url_verification":
        _need_str(body, "challenge", "")
        return None
    if kind == "event_callback":
        event = _need_obj(body, "event", "")
        event_type = _need_str(event, "type", "event.")
        if event_type not in HANDLED_EVENTS:
            return f"a {event_type[:50]} event"
        _need_user(event, "user", "event.")
        item = _need_obj(event, "item", "event.")
        item_type = _need_str(item, "type", "event.item.")
        if event_type == "reaction_added":
            _need_str(event, "reaction", "event.")
            if item_type == "message":
                _need_str(item, "channel", "event.item.")
                _need_str(item, "ts", "event.item.")
        elif item_type == "message":  # pin_added: the channel in the event or its item
            if not (_str(event.get("channel_id")) or _str(item.get("channel"))):
                raise _malformed("event.channel_id or event.item.channel must be a non-empty string")
            _need_str(_need_obj(item, "message", "event.item."), "ts", "event.item.message.")
    elif kind == "block_actions":
        _need_user(_need_obj(body, "user", ""), "id", "user.")
        actions = body.get("actions")
        if not isinstance(actions, list) or not actions or not all(isinstance(a, dict) for a in actions):
            raise _malformed("actions must be a non-empty list of objects")
        action_id = _need_str(actions[0], "action_id", "actions[0].")
        if action_id not in HANDLED_ACTIONS:
            return f"a {action_id[:50]} action"
        _need_incident_id(actions[0], "value", "actions[0].")
        _maybe_url(body, "response_url", "")
        if action_id not in (CLAIM_ACTION, ACKNOWLEDGE_ACTION):
            _need_str(body, "trigger_id", "")  # the form opens with it
    elif kind == "view_submission":
        _need_user(_need_obj(body, "user", ""), "id", "user.")
        view = _need_obj(body, "view", "")
        if view.get("type") != "modal":  # bolt reads a workflow_step view's body["workflow_step"]
            raise _malformed("view.type must be modal")
        callback_id = _need_str(view, "callback_id", "view.")
        if callback_id not in HANDLED_VIEWS:
            return f"a {callback_id[:50]} form"
        _need_incident_id(view, "private_metadata", "view.")
        values = _need_obj(_need_obj(view, "state", "view."), "values", "view.state.")
        for block_id, block in values.items():
            if not isinstance(block, dict) or not all(isinstance(e, dict) for e in block.values()):
                raise _malformed("view.state.values must map each block to its elements' objects")
            for element in block.values():
                if element.get("value") is not None and not isinstance(element["value"], str):
                    raise _malformed(f"view.state.values.{block_id[:50]}: a value must be a string")
                option = element.get("selected_option")
                if option is not None and not isinstance(_obj(option).get("value"), str):
                    raise _malformed(
                        f"view.state.values.{block_id[:50]}: selected_option.value must be a string"
                    )
    else:
        return f"a {kind[:50]} request"
    _check_context_fields(body, "")
    return None


def _kind(body: Any) -> str:
    """What a request is, for a log line: `reaction_added event`, `block_actions incident_claim`, ..."""
    body = _obj(body)
    if "command" in body:
        return f"{_str(body.get('command'))[:50]} command"
    kind = _str(body.get("type"))[:50] or "untyped"
    detail = _str(_obj(body.get("event")).get("type")) or _str(_obj(body.get("view")).get("callback_id"))
    actions = body.get("actions")
    if isinstance(actions, list) and actions:
        detail = _str(_obj(actions[0]).get("action_id"))
    return f"{kind} {detail[:50]}".strip()


# ---------------------------------------------------------------- listeners

AUTH_TEST_TIMEOUT = 2.0  # seconds an auth.test may take at request time (Slack wants an answer in 3 s)
AUTH_TEST_RETRY = 30.0  # seconds after a failed auth.test before the next request tries again
SLACK_TIMEOUT = 10  # seconds for any other Web API call of the handler (slack_sdk's default: 30)


class KnownBot(AsyncAuthorize):
    """Who the bot is (one auth.test, kept once Slack answers), for bolt's authorization.

    bolt's own single-workspace authorization calls auth.test on every request until one
    succeeds, and raises when Slack's API does not answer: a 500 to Slack for a request
    that may not need Slack's API at all. Here a failed auth.test costs at most
    AUTH_TEST_TIMEOUT, is tried again at most every AUTH_TEST_RETRY, and the request goes
    on with the configured token: `/incident help`, a claim button, a form work. Until the
    bot's own user is known the reactions and pins listeners ignore what they get (they
    cannot tell the bot's :raised_hand: from a person's; they need Slack's API anyway).
    """

    def __init__(self, token: str, base_url: str) -> None:
        self._token = token
        self._client = AsyncWebClient(token=token, base_url=base_url, timeout=int(AUTH_TEST_TIMEOUT))
        self._bot: dict[str, Any] | None = None
        self._failed_at = -AUTH_TEST_RETRY

    async def _learn(self) -> None:
        if self._bot is not None or time.monotonic() - self._failed_at < AUTH_TEST_RETRY:
            return
        try:
            result = await asyncio.wait_for(self._client.auth_test(), AUTH_TEST_TIMEOUT)
        except (SlackApiError, *SLACK_UNREACHABLE) as exc:
            self._failed_at = time.monotonic()
            log.warning("Slack's auth.test failed (%s); going on with the configured token", _brief(exc))
            return
        scopes = result.headers.get("x-oauth-scopes")
        self._bot = {
            "enterprise_id": result.get("enterprise_id"),
            "team_id": result.get("team_id"),
            "bot_id": result.get("bot_id"),
            "bot_user_id": result.get("user_id"),
            "bot_scopes": scopes,
        }

    async def __call__(
        self,
        *,
        context: AsyncBoltContext,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None,
        actor_enterprise_id: str | None = None,
        actor_team_id: str | None = None,
        actor_user_id: str | None = None,
    ) -> AuthorizeResult:
        await self._learn()
        bot = self._bot or {"enterprise_id": enterprise_id, "team_id": team_id}
        return AuthorizeResult(**bot, bot_token=self._token, user_id=user_id)


def build_bolt_app(settings: Settings, client_factory: ClientFactory | None = None) -> AsyncApp:
    """The bolt app with every listener; serve it over HTTP (create_app) or Socket Mode.

    The listeners read requests defensively (a field of the wrong type is treated as
    missing): over HTTP create_app has checked them already (check_request), over
    Socket Mode they come from Slack itself.
    """
    api_url = settings.slack_api_url if settings.slack_api_url.endswith("/") else settings.slack_api_url + "/"
    app = AsyncApp(
        signing_secret=settings.slack_signing_secret,
        # No token here: KnownBot gives it to each request's client (bolt would call auth.test itself).
        client=AsyncWebClient(base_url=api_url, timeout=SLACK_TIMEOUT),
        authorize=KnownBot(settings.slack_bot_token, api_url),
        # A request no listener takes goes to on_error (200, nothing done), not a 404 and a long warning.
        raise_error_for_unhandled_request=True,
    )
    actions = IncidentActions(settings, client_factory)

    @app.error
    async def on_error(error: Exception, body: dict[str, Any], response: BoltResponse | None) -> Any:
        # `response` is None when the listener had acknowledged already: then there is nothing to answer.
        kind = _kind(body)
        if isinstance(error, BoltUnhandledRequestError):
            log.debug("nothing handles this %s; answered 200", kind)
            answer_with = BoltResponse(status=200, body="")
        elif isinstance(error, SLACK_UNREACHABLE):  # not raised by bolt itself (KnownBot): kept for safety
            log.warning("cannot reach Slack's API for a %s (%s)", kind, _brief(error))
            answer_with = BoltResponse(status=200, body=":warning: cannot reach Slack right now; try again")
        else:
            log.error("failed to handle a %s", kind, exc_info=error)  # a bug: its traceback
            answer_with = BoltResponse(status=400, body="could not handle this request")
        return answer_with if response is not None else None

    @app.middleware
    async def skip_retries_after_timeouts(req: Any, resp: Any, next: Callable[[], Awaitable[Any]]) -> Any:
        # Slack resends an event it thinks timed out; the first delivery is being handled already.
        reason = (req.headers.get("x-slack-retry-reason") or [""])[0]
        if reason == "http_timeout":
            return BoltResponse(status=200, body="")
        return await next()

    async def find(client: AsyncWebClient, channel: str, ts: str) -> IncidentMessage | None:
        try:
            return await find_incident_message(client, channel, ts)
        except SlackApiError as exc:
            log.warning(
                "cannot read the message %s: %s", _brief(f"{channel}/{ts}"), exc.response.get("error")
            )
        except SLACK_UNREACHABLE as exc:
            log.warning("cannot read the message %s (%s)", _brief(f"{channel}/{ts}"), _brief(exc))
        return None

    # -- reactions and pins (events are acknowledged by bolt itself before the listener runs)

    def bot_known(context: AsyncBoltContext, what: str) -> bool:
        if context.bot_user_id:
            return True
        log.warning("a %s is ignored: who the bot is is not known yet (Slack's auth.test failed)", what)
        return False

    @app.event("reaction_added")
    async def on_reaction(event: dict[str, Any], client: AsyncWebClient, context: AsyncBoltContext) -> None:
        name = _str(event.get("reaction")).split("::")[0]  # raised_hand::skin-tone-3
        item = _obj(event.get("item"))
        user, channel, ts = _str(event.get("user")), _str(item.get("channel")), _str(item.get("ts"))
        if name not in (CLAIM_REACTION, TIMELINE_REACTION) or item.get("type") != "message":
            return
        if not (user and channel and ts):
            log.warning("a :%s: reaction without its user, channel or message; ignored", name)
            return
        if not bot_known(context, f":{name}: reaction"):
            return
        found = await find(client, channel, ts)
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
    async def on_pin(event: dict[str, Any], client: AsyncWebClient, context: AsyncBoltContext) -> None:
        item = _obj(event.get("item"))
        channel = _str(event.get("channel_id")) or _str(item.get("channel"))
        ts = _str(_obj(item.get("message")).get("ts"))
        user = _str(event.get("user"))
        if (
            item.get("type") != "message"
            or not channel
            or not ts
            or not user
            or not bot_known(context, "pin")
        ):
            return
        found = await find(client, channel, ts)
        if found is None:
            return
        text = await actions.signal(found.workflow_id, "add_to_timeline", timeline_note(found, user))
        await tell(client, user=user, text=text, channel=found.channel, thread_ts=found.thread_ts)

    # -- the declaration's buttons

    def clicked(body: dict[str, Any]) -> tuple[str, str]:
        """(the button's value: the incident's workflow id, who clicked); "" for what is missing."""
        buttons = body.get("actions")
        first = _obj(buttons[0]) if isinstance(buttons, list) and buttons else {}
        return _str(first.get("value")), _str(_obj(body.get("user")).get("id"))

    no_incident = f":warning: this button names no incident; use `{COMMAND} help`"

    @app.action(CLAIM_ACTION)
    async def on_claim_button(ack: Any, body: dict[str, Any], respond: Any) -> None:
        await ack()
        workflow_id, user = clicked(body)
        if not workflow_id or not user:
            await answer(respond, no_incident)
            return
        await answer(respond, await actions.signal(workflow_id, "claim", ClaimSignal(user=user)))

    async def open_form(
        body: dict[str, Any], client: AsyncWebClient, respond: Any, make: Callable[[str], dict[str, Any]]
    ) -> None:
        workflow_id, _ = clicked(body)
        trigger_id = _str(body.get("trigger_id"))
        if not workflow_id or not trigger_id:
            await answer(respond, no_incident)
            return
        try:
            await client.views_open(trigger_id=trigger_id, view=make(workflow_id))
        except SlackApiError as exc:
            error = _str(exc.response.get("error"))
            await answer(
                respond,
                f":warning: could not open the form ({mrkdwn_escape(error)}); use `{COMMAND} help` instead",
            )
        except SLACK_UNREACHABLE as exc:
            log.warning("cannot open the form (%s)", _brief(exc))

    @app.action(ACKNOWLEDGE_ACTION)
    async def on_acknowledge_button(ack: Any, body: dict[str, Any], respond: Any) -> None:
        await ack()
        workflow_id, user = clicked(body)
        if not workflow_id or not user:
            await answer(respond, no_incident)
            return
        signal = AcknowledgeSignal(user=user, source="slack")
        await answer(respond, await actions.signal(workflow_id, "acknowledge", signal))

    @app.action(UPDATE_ACTION)
    async def on_update_button(ack: Any, body: dict[str, Any], client: AsyncWebClient, respond: Any) -> None:
        await ack()
        await open_form(body, client, respond, update_modal)

    @app.action(RESOLVE_ACTION)
    async def on_resolve_button(ack: Any, body: dict[str, Any], client: AsyncWebClient, respond: Any) -> None:
        await ack()
        await open_form(body, client, respond, resolve_modal)

    @app.action(ROLE_ACTION)
    async def on_role_button(ack: Any, body: dict[str, Any], client: AsyncWebClient, respond: Any) -> None:
        await ack()
        await open_form(body, client, respond, role_modal)

    # -- the forms

    async def answer_form(client: AsyncWebClient, workflow_id: str, user: str, text: str) -> None:
        channel, thread_ts = await actions.where(workflow_id)
        await tell(client, user=user, text=text, channel=channel, thread_ts=thread_ts)

    def who_and_what(body: dict[str, Any], view: dict[str, Any]) -> tuple[str, str]:
        """(who submitted, the incident's workflow id from private_metadata); "" for what is missing."""
        return _str(_obj(body.get("user")).get("id")), _str(view.get("private_metadata"))

    lost = "This form names no incident; close it and use /incident instead."

    async def submit_form(
        ack: Any,
        body: dict[str, Any],
        view: dict[str, Any],
        client: AsyncWebClient,
        errors: dict[str, str],
        first_block: str,
        name: str,
        make: Callable[[str], Signal],
    ) -> None:
        """Answer the form with what to fix, or close it and signal `name` with `make(user)`."""
        user, workflow_id = who_and_what(body, view)
        if not errors and not (user and workflow_id):
            errors = {first_block: lost}
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        await answer_form(client, workflow_id, user, await actions.signal(workflow_id, name, make(user)))

    @app.view(UPDATE_VIEW)
    async def on_update_form(
        ack: Any, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient
    ) -> None:
        status, message, eta = submitted(view, "status"), submitted(view, "message"), submitted(view, "eta")
        errors = form_errors(
            {"status": (status, "Choose a status."), "message": (message, "Say what changed.")},
            {"message": (message, MAX_TEXT), "eta": (eta, MAX_ETA)},
        )
        await submit_form(
            ack,
            body,
            view,
            client,
            errors,
            "message",
            "update",
            lambda user: UpdateSignal(user=user, status=status, message=message, eta=eta or None),
        )

    @app.view(RESOLVE_VIEW)
    async def on_resolve_form(
        ack: Any, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient
    ) -> None:
        resolution, root_cause = submitted(view, "resolution"), submitted(view, "root_cause")
        errors = form_errors(
            {"resolution": (resolution, "Say how it was resolved.")},
            {"resolution": (resolution, MAX_TEXT), "root_cause": (root_cause, MAX_TEXT)},
        )
        await submit_form(
            ack,
            body,
            view,
            client,
            errors,
            "resolution",
            "resolve",
            lambda user: ResolveSignal(user=user, resolution=resolution, root_cause=root_cause),
        )

    @app.view(ROLE_VIEW)
    async def on_role_form(
        ack: Any, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient
    ) -> None:
        role, assignee = submitted(view, "role"), submitted(view, "assignee")
        errors = form_errors(
            {"role": (role, "Choose a role."), "assignee": (assignee, "Choose who takes it.")},
            {"assignee": (assignee, MAX_USER)},
        )
        await submit_form(
            ack,
            body,
            view,
            client,
            errors,
            "role",
            "assign_role",
            lambda user: RoleSignal(user=user, role=role, assignee=assignee),
        )

    # -- the slash command

    @app.command(COMMAND)
    async def on_command(ack: Any, command: dict[str, Any], respond: Any, client: AsyncWebClient) -> None:
        channel_name = _str(command.get("channel_name"))
        room_of = None
        if channel_name.startswith(WAR_ROOMS_PREFIX):
            room_of = await war_room_incident(client, _str(command.get("channel_id")))
        request = parse_command(_str(command.get("text")), channel_name, room_of)
        user = _str(command.get("user_id"))
        if not user:
            await ack(help_text("the command came without the user who ran it"))
            return
        if request.verb == "help" or request.problem:
            await ack(help_text(request.problem))  # answered at once: nothing to ask Temporal
            return
        await ack()
        await answer(respond, await actions.run(request, user=user))

    return app


async def dispatch(bolt: AsyncApp, request: Request, raw: bytes, body: dict[str, Any]) -> BoltResponse:
    """Hand a checked request to bolt: its body as parse_request read it, bolt's answer never a 500.

    bolt would read the body again, and reads a form with the word "payload" anywhere in it
    (`/incident declare P3 payload too large`) as an interaction whose payload is missing.
    """
    try:
        bolt_request = AsyncBoltRequest(body="", query=request.url.query, headers=dict(request.headers))
        bolt_request.raw_body = raw.decode("utf-8")  # what bolt checks the signature against, again
        bolt_request.body = body
        bolt_request.context = build_async_context(AsyncBoltContext({}), body)
        response = await bolt.async_dispatch(bolt_request)
    except Exception:  # bolt answers its own errors (on_error); this is a bug of ours
        log.exception("failed to hand a %s to bolt", _kind(body))
        return BoltResponse(status=400, body="could not handle this request")
    if response.status >= 500 and response.status != 503:
        log.warning("bolt answered %d to a %s; answering 400", response.status, _kind(body))
        return BoltResponse(status=400, body="could not handle this request")
    return response


def create_app(settings: Settings | None = None, client_factory: ClientFactory | None = None) -> Starlette:
    """The handler over HTTP: POST /slack/events, GET /healthz.

    Each request to /slack/events is bounded (413), its signature checked (401) and its
    body read and checked (400, or 200 for what nothing handles) before bolt sees it;
    nothing it carries makes a 5xx. `client_factory` makes the Temporal client
    (default: `starter.connect.connect(settings, role=SLACK_CLIENT)`).
    """
    from slack_bolt.adapter.starlette.async_handler import to_starlette_response

    settings = settings or Settings()
    bolt = build_bolt_app(settings, client_factory)

    async def slack_events(request: Request) -> Response:
        try:
            raw = await read_bounded(request)
            check_signature(settings.slack_signing_secret, request.headers, raw)
            body, command_form = parse_request(raw, request.headers.get("content-type", ""))
            ignored = check_request(body, command_form)
        except Refused as exc:
            log.warning("/slack/events answered %d: %s", exc.status, exc.reason)
            return PlainTextResponse(exc.reason, status_code=exc.status)
        if ignored is not None:
            log.debug("/slack/events: nothing handles %s; answered 200", ignored)
            return Response(status_code=200)
        return to_starlette_response(await dispatch(bolt, request, raw, body))

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
