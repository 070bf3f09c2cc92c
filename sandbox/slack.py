"""A local stand-in for the Slack Web API.

A Starlette app that answers the Slack Web API methods this project uses, in
Slack's own shapes, so that the real ``slack_sdk`` ``AsyncWebClient`` works
against it unchanged::

    client = AsyncWebClient(token="xoxb-sandbox-token", base_url="http://127.0.0.1:8901/api/")

Run it with ``python -m sandbox.slack --port 8901 --state .data/slack-sandbox.json``.
``GET /`` shows the conversation as a person would read it in Slack; the
``/_sandbox/...`` endpoints (plain JSON, not Slack-shaped) inject faults,
change the rate limit, set Do Not Disturb, dump and reset the state.

Who may call, as in Slack: the sandbox knows the bot tokens it accepts
(DEFAULT_TOKENS, or ``SLACK_SANDBOX_TOKENS``; ``SLACK_BOT_TOKEN`` too): no token
is ``not_authed``, another ``invalid_auth``, a revoked one ``token_revoked``.
The app is installed with bot scopes (DEFAULT_SCOPES, the README's list, or
``SLACK_SANDBOX_SCOPES``; a token may have its own): a method called without
its scope answers ``missing_scope`` with ``needed`` and ``provided``, and every
answer carries ``x-oauth-scopes`` / ``x-accepted-oauth-scopes``. The bot is in
the default channels (as if invited) and in those it creates; a channel made
without it (``POST /_sandbox/channels {"name", "member": false}``) gives
``not_in_channel`` to history, replies, reactions, ephemeral messages and file
shares, and to posts unless the app has ``chat:write.public``; a private
channel the bot is not in is ``channel_not_found``. Events reach the app only
with their scope (``reaction_added``: reactions:read, ``pin_added``:
pins:read) from channels the bot is in, and slash commands only with
``commands``. ``/_sandbox/calls`` lists, for each call, the scopes it was
checked for; ``/_sandbox/tokens`` and ``/_sandbox/channels`` change the grants
and the membership.

Channel arguments: ``chat.postMessage`` (and ``chat.postEphemeral``) accept a
channel ID, a name with or without ``#``, or a user ID (a DM); every other
method wants the channel ID, as Slack does.

Acting as Slack toward an app: with a request URL (``--request-url`` /
``SLACK_REQUEST_URL``, or ``POST /_sandbox/config``) and the app's signing
secret (``--signing-secret`` / ``SLACK_SIGNING_SECRET``), the
``/_sandbox/act/...`` endpoints play a person: they change the state as the
person's click would (a reaction, a pin) and deliver what Slack would send
the app - an Events API ``event_callback`` as JSON, ``block_actions`` and
``view_submission`` as a form with ``payload=<json>``, a slash command as a
form - signed with ``X-Slack-Signature`` v0 and ``X-Slack-Request-Timestamp``.
Each answers with what the app answered (``status``, ``body``). Ephemeral
messages and ``response_url`` posts are kept per user (``/_sandbox/state``
and the page), and ``views.open`` stores the modal for ``act/submit``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import copy
import hashlib
import html
import json
import logging
import math
import os
import re
import secrets
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import uvicorn
from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup
from slack_sdk.signature import SignatureVerifier
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

log = logging.getLogger("sandbox.slack")

DEFAULT_CHANNELS: tuple[str, ...] = ("incidents", "netclaw-alerts", "netclaw-general")
DEFAULT_PORT = 8901

TEAM_ID = "T0SANDBOX"
TEAM_NAME = "Sandbox"
BOT_USER_ID = "U0INCIDENTBOT"
BOT_ID = "B0INCIDENTBOT"
APP_ID = "A0INCIDENTBOT"
BOT_NAME = "incident-bot"

STATE_VERSION = 1
WRITE_INTERVAL = 0.2  # seconds: the state file is written at most this often
CALL_LOG_SIZE = 10_000
MAX_TEXT = 40_000
MAX_UPLOAD = 5 * 1024 * 1024
RATE_LIMITED_METHODS = frozenset({"chat.postMessage", "chat.update"})

# -- who may call: tokens and the app's scopes ------------------------------------------
#
# The bot tokens the sandbox accepts (an unknown `xox...` token gets `invalid_auth`): the
# project's default (activities/settings.py), the tests' and the benchmarks'. Override with
# create_app(tokens=...) or SLACK_SANDBOX_TOKENS; SLACK_BOT_TOKEN, when set, is accepted too.
DEFAULT_TOKENS: tuple[str, ...] = ("xoxb-sandbox-token", "xoxb-test-token", "xoxb-quickstart", "xoxb-bench")
# The bot scopes the app is installed with: exactly what the project calls needs (the
# README's list, "Running against real Slack"; tests/test_slack_scopes.py proves each one is
# needed and none is missing). Override with create_app(scopes=...) or SLACK_SANDBOX_SCOPES.
DEFAULT_SCOPES: tuple[str, ...] = (
    "chat:write",  # chat.postMessage, chat.update, chat.postEphemeral
    "reactions:write",  # reactions.add
    "reactions:read",  # the reaction_added event (claim by :raised_hand:, :stopwatch:)
    "pins:read",  # the pin_added event
    "channels:read",  # conversations.list (public channels): a channel's ID from its name
    "groups:read",  # conversations.list asks for private_channel too: without it Slack refuses the call
    "channels:history",  # conversations.history/replies in public channels
    "groups:history",  # ... in private channels
    "files:write",  # files.getUploadURLExternal, files.completeUploadExternal (long device output)
    "commands",  # the /incident slash command
)
# A token with every scope the sandbox knows, for tests and people looking around (creating a
# channel, users.info): what the project itself may do is decided by DEFAULT_SCOPES, never by this.
ADMIN_TOKEN = "xoxb-sandbox-admin"
# Slack's bot-token scopes for each method (docs.slack.dev, "Scopes"), sent back in the
# `x-accepted-oauth-scopes` header. A method with one scope needs it; where there are several,
# the conversation's type picks the one needed (`_CONVERSATION_SCOPES`).
ACCEPTED_SCOPES: dict[str, tuple[str, ...]] = {
    "api.test": (),
    "auth.test": (),
    "chat.getPermalink": (),
    "views.open": (),
    "chat.postMessage": ("chat:write",),  # + chat:write.public in a public channel the bot is not in
    "chat.postEphemeral": ("chat:write",),
    "chat.update": ("chat:write",),
    "reactions.add": ("reactions:write",),
    "reactions.remove": ("reactions:write",),
    "reactions.get": ("reactions:read",),
    "conversations.create": ("channels:manage", "groups:write", "im:write", "mpim:write"),
    "conversations.join": ("channels:join",),
    "conversations.invite": (
        "channels:manage",
        "channels:write.invites",
        "groups:write",
        "groups:write.invites",
        "im:write",
        "mpim:write",
    ),
    "conversations.open": ("channels:manage", "groups:write", "im:write", "mpim:write"),
    "conversations.info": ("channels:read", "groups:read", "im:read", "mpim:read"),
    "conversations.list": ("channels:read", "groups:read", "im:read", "mpim:read"),
    "conversations.setTopic": (
        "channels:manage",
        "channels:write.topic",
        "groups:write",
        "groups:write.topic",
        "im:write",
        "im:write.topic",
        "mpim:write",
        "mpim:write.topic",
    ),
    "conversations.history": ("channels:history", "groups:history", "im:history", "mpim:history"),
    "conversations.replies": ("channels:history", "groups:history", "im:history", "mpim:history"),
    "users.info": ("users:read",),
    "dnd.info": ("dnd:read",),
    "bookmarks.add": ("bookmarks:write",),
    "bookmarks.list": ("bookmarks:read",),
    "files.getUploadURLExternal": ("files:write",),
    "files.completeUploadExternal": ("files:write",),
}
ACCEPTED_SCOPES["conversations.setPurpose"] = ACCEPTED_SCOPES["conversations.setTopic"]
# What a method needs for one kind of conversation (public `channels`, private `groups`, `im`,
# `mpim`): any one of the scopes listed; Slack's `needed` names the first.
_CONVERSATION_SCOPES: dict[str, dict[str, tuple[str, ...]]] = {
    "read": {k: (f"{k}:read",) for k in ("channels", "groups", "im", "mpim")},
    "history": {k: (f"{k}:history",) for k in ("channels", "groups", "im", "mpim")},
    "create": {"channels": ("channels:manage",), "groups": ("groups:write",)},
    "open": {
        "channels": ("channels:manage",),
        "groups": ("groups:write",),
        "im": ("im:write",),
        "mpim": ("mpim:write",),
    },
    "invite": {
        "channels": ("channels:manage", "channels:write.invites"),
        "groups": ("groups:write", "groups:write.invites"),
        "im": ("im:write",),
        "mpim": ("mpim:write",),
    },
    "topic": {
        "channels": ("channels:manage", "channels:write.topic"),
        "groups": ("groups:write", "groups:write.topic"),
        "im": ("im:write", "im:write.topic"),
        "mpim": ("mpim:write", "mpim:write.topic"),
    },
}
EVERY_SCOPE: tuple[str, ...] = tuple(
    sorted({s for scopes in ACCEPTED_SCOPES.values() for s in scopes} | {"chat:write.public", "commands"})
)
_LIST_TYPES = {"public_channel": "channels", "private_channel": "groups", "mpim": "mpim", "im": "im"}
# What the app must be granted for Slack to send it an event or a slash command at all.
EVENT_SCOPES: dict[str, str] = {"reaction_added": "reactions:read", "pin_added": "pins:read"}
COMMAND_SCOPE = "commands"

# Acting as Slack toward the app (the /_sandbox/act/... endpoints).
DELIVERY_TIMEOUT = 3.0  # seconds: Slack gives up on an app after 3 s
TRIGGER_TTL = 3.0  # seconds: a trigger_id opens a modal only this soon after the click, once
RESPONSE_URL_TTL = 30 * 60  # seconds: a response_url works for 30 minutes ...
RESPONSE_URL_USES = 5  # ... and at most 5 times
DEFAULT_COMMAND = "/incident"
DEFAULT_ACTING_USER = "U0SANDBOXUSER"
VERIFICATION_TOKEN = "sandbox-verification-token"  # the deprecated `token` field Slack still sends
DELIVERY_LOG_SIZE = 200

_CHANNEL_NAME_RE = re.compile(r"^[a-z0-9_-]+$")
_USER_ID_RE = re.compile(r"^[UW][A-Z0-9]{2,}$")
_EMOJI_NAME_RE = re.compile(r"^[a-z0-9_+'-]+(::skin-tone-[2-6])?$")

_FAULT_ERRORS = {
    429: "ratelimited",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "request_timeout",
}


class SlackError(Exception):
    """A Slack-shaped failure: ``{"ok": false, "error": ...}``."""

    def __init__(self, error: str, status: int = 200, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.extra = extra


# ---------------------------------------------------------------------------
# identifiers and timestamps


def _stable_id(prefix: str, key: str) -> str:
    digest = hashlib.sha256(key.encode()).digest()
    return prefix + base64.b32encode(digest).decode()[:10]


def channel_id_for(name: str) -> str:
    """Slack-looking channel ID ("C" + 10 uppercase alphanumerics), stable for a name."""
    return _stable_id("C", "channel:" + name)


def dm_channel_id_for(user: str) -> str:
    return _stable_id("D", "im:" + user)


def _ts_micros(ts: str) -> int:
    """'1732312345.000100' (or '1732312345', '1732312345.5') -> microseconds."""
    try:
        value = Decimal(str(ts).strip())
    except InvalidOperation:
        raise ValueError(ts) from None
    if not value.is_finite() or value < 0:
        raise ValueError(ts)
    return int(value * 1_000_000)


def _ts_from_micros(us: int) -> str:
    return f"{us // 1_000_000}.{us % 1_000_000:06d}"


def _encode_cursor(kind: str, value: str) -> str:
    return base64.b64encode(f"{kind}:{value}".encode()).decode()


def _decode_cursor(cursor: str, kind: str) -> str:
    try:
        raw = base64.b64decode(cursor.encode(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        raise SlackError("invalid_cursor") from None
    prefix, _, value = raw.partition(":")
    if prefix != kind or not value:
        raise SlackError("invalid_cursor")
    return value


# ---------------------------------------------------------------------------
# argument parsing helpers


def _bool(value: Any, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _int(value: Any, default: int, lo: int, hi: int) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        return default
    if n <= 0:
        return default
    return max(lo, min(hi, n))


def _json_arg(value: Any, error: str) -> Any:
    """Blocks/metadata/files arrive as objects in a JSON body and as JSON strings in forms."""
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise SlackError(error) from None
    return value


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def _validate_blocks(blocks: Any) -> list[dict[str, Any]]:
    """The checks Slack makes that our templates could trip over (sizes, shapes)."""
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        raise SlackError("invalid_blocks", errors=["blocks must be an array of objects"])
    if len(blocks) > 50:
        raise SlackError("invalid_blocks", errors=["no more than 50 items allowed [json-pointer:/blocks]"])
    errors: list[str] = []
    known = {
        "section",
        "header",
        "divider",
        "context",
        "actions",
        "image",
        "rich_text",
        "input",
        "file",
        "video",
        "markdown",
        "context_actions",
    }

    def text_len(obj: Any) -> int:
        return len(obj.get("text", "")) if isinstance(obj, dict) else 0

    for i, block in enumerate(blocks):
        kind = block.get("type")
        where = f"[json-pointer:/blocks/{i}]"
        if kind not in known:
            errors.append(f"unsupported type: {kind!r} {where}")
            continue
        if kind == "section":
            if "text" not in block and "fields" not in block:
                errors.append(f"must provide either text or fields {where}")
            if text_len(block.get("text")) > 3000:
                errors.append(f"must be less than 3001 characters [json-pointer:/blocks/{i}/text/text]")
            fields = block.get("fields") or []
            if len(fields) > 10:
                errors.append(f"must be less than 11 items [json-pointer:/blocks/{i}/fields]")
            for j, field in enumerate(fields):
                if text_len(field) > 2000:
                    errors.append(
                        f"must be less than 2001 characters [json-pointer:/blocks/{i}/fields/{j}/text]"
                    )
        elif kind == "header":
            text = block.get("text")
            if not isinstance(text, dict) or text.get("type") != "plain_text":
                errors.append(f"must be a plain_text object [json-pointer:/blocks/{i}/text]")
            elif text_len(text) > 150:
                errors.append(f"must be less than 151 characters [json-pointer:/blocks/{i}/text/text]")
        elif kind == "context":
            if len(block.get("elements") or []) > 10:
                errors.append(f"must be less than 11 items [json-pointer:/blocks/{i}/elements]")
        elif kind == "actions":
            if len(block.get("elements") or []) > 25:
                errors.append(f"must be less than 26 items [json-pointer:/blocks/{i}/elements]")
    if errors:
        raise SlackError("invalid_blocks", errors=errors)
    return blocks


def _validate_metadata(metadata: Any) -> dict[str, Any] | None:
    if metadata is None:
        return None
    if (
        not isinstance(metadata, dict)
        or not isinstance(metadata.get("event_type"), str)
        or not metadata["event_type"]
        or not isinstance(metadata.get("event_payload", {}), dict)
    ):
        raise SlackError("invalid_metadata_format")
    return {"event_type": metadata["event_type"], "event_payload": metadata.get("event_payload", {})}


def _plain_text(obj: Any, limit: int) -> bool:
    return (
        isinstance(obj, dict) and obj.get("type") == "plain_text" and 0 < len(_str(obj.get("text"))) <= limit
    )


def _validate_view(view: Any) -> dict[str, Any]:
    """The checks Slack makes on a modal, and its defaults: every block and element gets an id."""
    view = _json_arg(view, "invalid_arguments")
    errors: list[str] = []
    if not isinstance(view, dict):
        raise SlackError("invalid_arguments", response_metadata={"messages": ["[ERROR] view is required"]})
    if view.get("type") != "modal":
        errors.append("[ERROR] must be 'modal' [json-pointer:/view/type]")
    if not _plain_text(view.get("title"), 24):
        errors.append(
            "[ERROR] must be a plain_text object of at most 24 characters [json-pointer:/view/title]"
        )
    blocks = view.get("blocks")
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        errors.append("[ERROR] must be an array of blocks [json-pointer:/view/blocks]")
        blocks = []
    elif len(blocks) > 100:
        errors.append("[ERROR] no more than 100 items allowed [json-pointer:/view/blocks]")
    has_input = any(b.get("type") == "input" for b in blocks)
    if has_input and not _plain_text(view.get("submit"), 24):
        errors.append("[ERROR] submit is required when an input block is within the blocks array")
    if len(_str(view.get("private_metadata"))) > 3000:
        errors.append("[ERROR] must be at most 3000 characters [json-pointer:/view/private_metadata]")
    if len(_str(view.get("callback_id"))) > 255:
        errors.append("[ERROR] must be at most 255 characters [json-pointer:/view/callback_id]")
    for i, block in enumerate(blocks):
        if block.get("type") == "input":
            if not _plain_text(block.get("label"), 2000):
                errors.append(f"[ERROR] a label is required [json-pointer:/view/blocks/{i}/label]")
            if not isinstance(block.get("element"), dict):
                errors.append(f"[ERROR] an element is required [json-pointer:/view/blocks/{i}/element]")
    if errors:
        raise SlackError("invalid_arguments", response_metadata={"messages": errors})
    view = copy.deepcopy(view)
    for block in view["blocks"]:
        block.setdefault("block_id", secrets.token_urlsafe(4))
        element = block.get("element")
        if isinstance(element, dict):
            element.setdefault("action_id", secrets.token_urlsafe(4))
    return view


def _find_option(element: dict[str, Any], value: Any) -> dict[str, Any] | None:
    options = list(element.get("options") or [])
    for group in element.get("option_groups") or []:
        options.extend(group.get("options") or [])
    for option in options:
        if option.get("value") == value:
            return option
    return None


def view_state_values(view: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """What a person typed or chose, as Slack reports it in `view.state.values`.

    `values` is keyed by block_id or by the element's action_id; a select takes
    an option's value. SlackError("invalid_submission") names what Slack's own
    form would not have let through (a required field left empty, a choice
    that is not an option, a field the modal does not have).
    """
    out: dict[str, Any] = {}
    problems: list[str] = []
    used: set[str] = set()
    for block in view.get("blocks", []):
        element = block.get("element")
        if block.get("type") != "input" or not isinstance(element, dict):
            continue
        block_id, action_id, kind = block["block_id"], element["action_id"], element.get("type")
        key = block_id if block_id in values else action_id
        given = values.get(key)
        used.add(key)
        if isinstance(given, str):
            given = given.strip() or None
        if given in (None, [], "") and not block.get("optional"):
            problems.append(f"{block_id}: this field is required")
            continue
        entry: dict[str, Any] = {"type": kind}
        if kind in ("static_select", "radio_buttons"):
            option = _find_option(element, given) if given is not None else None
            if given is not None and option is None:
                problems.append(f"{block_id}: {given!r} is not one of the options")
            entry["selected_option"] = option
        elif kind in ("multi_static_select", "checkboxes"):
            chosen = given if isinstance(given, list) else ([given] if given is not None else [])
            options = [_find_option(element, v) for v in chosen]
            if any(o is None for o in options):
                problems.append(f"{block_id}: {chosen!r} are not all options")
            entry["selected_options"] = [o for o in options if o is not None]
        elif kind == "datepicker":
            entry["selected_date"] = given
        elif kind == "users_select":
            entry["selected_user"] = given
        elif kind == "conversations_select" or kind == "channels_select":
            entry["selected_conversation" if kind == "conversations_select" else "selected_channel"] = given
        else:
            entry["value"] = None if given is None else _str(given)
        out[block_id] = {action_id: entry}
    unknown = sorted(set(values) - used)
    if unknown:
        problems.append(f"the modal has no field {', '.join(unknown)}")
    if problems:
        raise SlackError("invalid_submission", errors=problems)
    return out


# ---------------------------------------------------------------------------
# tokens and scopes


def parse_scopes(value: Any) -> tuple[str, ...]:
    """'chat:write,reactions:write' (commas or spaces) or a list -> ('chat:write', 'reactions:write')."""
    if value is None:
        return ()
    items = re.split(r"[\s,]+", value) if isinstance(value, str) else [str(v) for v in value]
    out: list[str] = []
    for item in (i.strip() for i in items):
        if item and item not in out:
            out.append(item)
    return tuple(out)


def tokens_from_env() -> dict[str, tuple[str, ...] | None]:
    """The accepted tokens: SLACK_SANDBOX_TOKENS (comma-separated) or DEFAULT_TOKENS, and SLACK_BOT_TOKEN.

    Each gets the app's scopes (None). SLACK_BOT_TOKEN is accepted so that `incident dev`
    with a token of your own, but no SLACK_API_URL, still has a worker the sandbox lets in.
    ADMIN_TOKEN is accepted too, with EVERY_SCOPE.
    """
    listed = parse_scopes(os.environ.get("SLACK_SANDBOX_TOKENS") or "") or DEFAULT_TOKENS
    tokens: dict[str, tuple[str, ...] | None] = dict.fromkeys(listed)
    tokens.setdefault(ADMIN_TOKEN, EVERY_SCOPE)
    bot_token = (os.environ.get("SLACK_BOT_TOKEN") or "").strip()
    if bot_token:
        tokens.setdefault(bot_token, None)
    return tokens


def scopes_from_env() -> tuple[str, ...]:
    """The app's scopes: SLACK_SANDBOX_SCOPES (comma-separated) or DEFAULT_SCOPES."""
    return parse_scopes(os.environ.get("SLACK_SANDBOX_SCOPES") or "") or DEFAULT_SCOPES


def _mask(token: str) -> str:
    """A token as the control API shows it: enough to tell which, never the whole of a real one."""
    return token if len(token) <= 18 else token[:10] + "…" + token[-4:]


class Grant:
    """Who is calling: the token's scopes, and each scope requirement checked for this call."""

    def __init__(self, token: str, scopes: Iterable[str]) -> None:
        self.token = token
        self.scopes = tuple(scopes)
        self.checked: list[list[str]] = []  # each: the scopes any one of which satisfied a requirement

    def require(self, *alternatives: str) -> None:
        """Slack's `missing_scope` unless the token has one of `alternatives` (the first is `needed`)."""
        if not any(scope in self.scopes for scope in alternatives):
            raise SlackError("missing_scope", needed=alternatives[0], provided=",".join(self.scopes))
        self.checked.append(list(alternatives))


def conversation_kind(channel: dict[str, Any]) -> str:
    """`channels` (public), `groups` (private), `im` or `mpim`: the prefix of the scopes it needs."""
    if channel.get("is_im"):
        return "im"
    if channel.get("is_mpim"):
        return "mpim"
    return "groups" if channel.get("is_private") else "channels"


def bot_is_member(channel: dict[str, Any]) -> bool:
    return BOT_USER_ID in channel.get("members", [])


# ---------------------------------------------------------------------------
# the sandbox: state, persistence, faults, rate limits and the methods


class SlackSandbox:
    """All state of one sandbox. Only touched from the event loop, so no locking."""

    def __init__(
        self,
        state_file: str | Path | None = None,
        rate_limit_per_minute: int | None = None,
        channels: Iterable[str] = DEFAULT_CHANNELS,
        request_url: str | None = None,
        signing_secret: str | None = None,
        tokens: Iterable[str] | dict[str, Iterable[str] | str | None] | None = None,
        scopes: Iterable[str] | str | None = None,
    ) -> None:
        self.state_file = Path(state_file) if state_file else None
        # The app's bot scopes, and the tokens accepted: token -> its own scopes, or None for the app's.
        self.scopes: tuple[str, ...] = parse_scopes(scopes) if scopes is not None else scopes_from_env()
        self.tokens: dict[str, tuple[str, ...] | None] = {}
        if tokens is None:
            self.tokens = tokens_from_env()
        elif isinstance(tokens, dict):
            self.tokens = {t: (None if v is None else parse_scopes(v)) for t, v in tokens.items()}
        else:
            self.tokens = dict.fromkeys(tokens)
        self.revoked: set[str] = set()
        self._configured = (self.scopes, dict(self.tokens))  # what reset() goes back to
        self.default_channels = tuple(c.lstrip("#") for c in channels)
        self.rate_limit_per_minute = rate_limit_per_minute
        # Where the app listens (its Request URL) and the secret Slack signs requests with.
        self.request_url = request_url or None
        self.signing_secret = signing_secret or None
        self.deliveries: deque[dict[str, Any]] = deque(maxlen=DELIVERY_LOG_SIZE)
        self.faults: list[dict[str, Any]] = []
        self.calls: deque[dict[str, Any]] = deque(maxlen=CALL_LOG_SIZE)
        self.call_counts: Counter[str] = Counter()
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}
        self._last_write = 0.0
        self._flush_handle: asyncio.TimerHandle | None = None
        self._dirty = False
        self._clear()
        if self.state_file and self.state_file.exists():
            self._load()
        self._ensure_default_channels()

    # -- state ---------------------------------------------------------------

    def _clear(self) -> None:
        self.channels: dict[str, dict[str, Any]] = {}  # id -> channel object
        self.by_name: dict[str, str] = {}  # name -> id
        self.messages: dict[str, dict[str, dict[str, Any]]] = {}  # channel id -> ts -> message
        self.replies: dict[tuple[str, str], list[str]] = {}  # (channel, parent ts) -> reply ts
        self.dnd: dict[str, dict[str, Any]] = {}
        self.files: dict[str, dict[str, Any]] = {}
        self.bookmarks: dict[str, list[dict[str, Any]]] = {}
        self.ephemeral: list[dict[str, Any]] = []  # seen by one user only; not in history
        self.views: dict[str, dict[str, Any]] = {}  # view id -> modal (views.open)
        self.triggers: dict[str, dict[str, Any]] = {}  # trigger_id -> {user, at, used}
        self.response_urls: dict[str, dict[str, Any]] = {}  # id -> {user, channel, message_ts, at, uses}
        self.last_ts_us = 0
        self._seq = 0

    def _ensure_default_channels(self) -> None:
        for name in self.default_channels:
            if name not in self.by_name:
                self._add_channel(name, is_private=False, created=int(time.time()))

    def reset(self) -> None:
        """Everything back to how the sandbox started: no messages, the configured tokens and scopes."""
        self._clear()
        self.scopes, tokens = self._configured
        self.tokens = dict(tokens)
        self.revoked.clear()
        self.faults.clear()
        self.calls.clear()
        self.call_counts.clear()
        self.deliveries.clear()
        self._buckets.clear()
        self._ensure_default_channels()
        self.changed()

    def _next_ts(self) -> str:
        now_us = time.time_ns() // 1000
        self.last_ts_us = max(now_us, self.last_ts_us + 1)
        return _ts_from_micros(self.last_ts_us)

    def _next_id(self, prefix: str) -> str:
        self._seq += 1
        return _stable_id(prefix, f"{time.time_ns()}:{self._seq}")

    def _add_channel(
        self, name: str, *, is_private: bool, created: int, creator: str = BOT_USER_ID
    ) -> dict[str, Any]:
        """A channel; its creator is in it (the bot, unless a person created it without the bot)."""
        cid = channel_id_for(name)
        channel = {
            "id": cid,
            "name": name,
            "is_channel": True,
            "is_group": False,
            "is_im": False,
            "is_mpim": False,
            "is_private": is_private,
            "created": created,
            "creator": creator,
            "is_archived": False,
            "is_general": False,
            "unlinked": 0,
            "name_normalized": name,
            "is_shared": False,
            "is_org_shared": False,
            "is_member": creator == BOT_USER_ID,
            "members": [creator],
            "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
            "previous_names": [],
        }
        self.channels[cid] = channel
        self.by_name[name] = cid
        self.messages.setdefault(cid, {})
        return channel

    def _dm_channel(self, user: str) -> dict[str, Any]:
        cid = dm_channel_id_for(user)
        if cid not in self.channels:
            self.channels[cid] = {
                "id": cid,
                "name": f"dm-{user.lower()}",
                "is_channel": False,
                "is_group": False,
                "is_im": True,
                "is_mpim": False,
                "is_private": True,
                "user": user,
                "created": int(time.time()),
                "is_open": True,
                "is_member": True,
                "members": [BOT_USER_ID, user],
            }
            self.messages.setdefault(cid, {})
            self.changed()
        return self.channels[cid]

    def channel_view(self, channel: dict[str, Any]) -> dict[str, Any]:
        view = {k: v for k, v in channel.items() if k != "members"}
        view["is_member"] = bot_is_member(channel)
        if not channel.get("is_im"):
            view["num_members"] = len(channel.get("members", []))
        return view

    def find_channel(self, ref: Any, *, by_name: bool = False) -> dict[str, Any]:
        """Channel by ID; with ``by_name`` also '#name', 'name' or a user ID (DM)."""
        ref = _str(ref).strip()
        if not ref:
            raise SlackError("channel_not_found")
        if ref in self.channels:
            return self.channels[ref]
        if by_name:
            name = ref.lstrip("#")
            if name in self.by_name:
                return self.channels[self.by_name[name]]
            if _USER_ID_RE.match(ref):
                return self._dm_channel(ref)
        raise SlackError("channel_not_found")

    def find_message(self, cid: str, ts: Any) -> dict[str, Any]:
        msg = self.messages.get(cid, {}).get(_str(ts).strip())
        if msg is None:
            raise SlackError("message_not_found")
        return msg

    @staticmethod
    def is_top_level(msg: dict[str, Any]) -> bool:
        thread_ts = msg.get("thread_ts")
        return thread_ts is None or thread_ts == msg["ts"] or msg.get("subtype") == "thread_broadcast"

    # -- persistence ------------------------------------------------------------

    def snapshot(self, *, include_file_content: bool = False) -> dict[str, Any]:
        channels = []
        for cid, channel in self.channels.items():
            msgs = self.messages.get(cid, {})
            top = []
            for ts, msg in msgs.items():
                if msg.get("thread_ts") not in (None, ts):
                    continue  # replies are nested under their parent
                entry = copy.deepcopy(msg)
                entry["replies"] = [copy.deepcopy(msgs[r]) for r in self.replies.get((cid, ts), [])]
                top.append(entry)
            channels.append(
                {**copy.deepcopy(channel), "messages": top, "bookmarks": self.bookmarks.get(cid, [])}
            )
        files = {
            fid: {k: v for k, v in f.items() if include_file_content or k != "content_b64"}
            for fid, f in self.files.items()
        }
        return {
            "version": STATE_VERSION,
            "last_ts": _ts_from_micros(self.last_ts_us),
            "channels": channels,
            "dnd": copy.deepcopy(self.dnd),
            "files": files,
            "ephemeral": self.ephemeral_by_user(),
            "views": [copy.deepcopy(v) for v in self.views.values()],
        }

    def _load(self) -> None:
        assert self.state_file is not None
        try:
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
            self._restore(data)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            aside = self.state_file.with_name(f"{self.state_file.name}.corrupt-{int(time.time())}")
            log.warning("slack sandbox: cannot load %s (%s); moved aside to %s", self.state_file, exc, aside)
            with contextlib.suppress(OSError):
                os.replace(self.state_file, aside)
            self._clear()

    def _restore(self, data: dict[str, Any]) -> None:
        self._clear()
        for channel in data.get("channels", []):
            channel = dict(channel)
            top = channel.pop("messages", [])
            bookmarks = channel.pop("bookmarks", [])
            cid = channel["id"]
            self.channels[cid] = channel
            if not channel.get("is_im"):
                self.by_name[channel["name"]] = cid
            store = self.messages.setdefault(cid, {})
            flat: list[dict[str, Any]] = []
            for msg in top:
                msg = dict(msg)
                replies = msg.pop("replies", [])
                flat.append(msg)
                flat.extend(replies)
            for msg in sorted(flat, key=lambda m: _ts_micros(m["ts"])):
                store[msg["ts"]] = msg
                if msg.get("thread_ts") not in (None, msg["ts"]):
                    self.replies.setdefault((cid, msg["thread_ts"]), []).append(msg["ts"])
                self.last_ts_us = max(self.last_ts_us, _ts_micros(msg["ts"]))
            if bookmarks:
                self.bookmarks[cid] = bookmarks
        self.dnd = dict(data.get("dnd", {}))
        self.files = dict(data.get("files", {}))
        self.ephemeral = sorted(
            (m for msgs in data.get("ephemeral", {}).values() for m in msgs),
            key=lambda m: _ts_micros(m["ts"]),
        )
        self.views = {v["id"]: v for v in data.get("views", [])}
        self.last_ts_us = max(self.last_ts_us, _ts_micros(data.get("last_ts", "0")))

    def changed(self) -> None:
        """Record a change: write the state file now, or within WRITE_INTERVAL."""
        if self.state_file is None:
            return
        self._dirty = True
        if self._flush_handle is not None:
            return
        wait = self._last_write + WRITE_INTERVAL - time.monotonic()
        if wait <= 0:
            self.flush()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._flush_handle = loop.call_later(wait, self.flush)

    def flush(self) -> None:
        """Write the state file if anything changed (atomically: temp file, then os.replace)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self.state_file is None or not self._dirty:
            return
        self._dirty = False
        self._last_write = time.monotonic()
        path = self.state_file
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(self.snapshot(include_file_content=True), fh, separators=(",", ":"))
                os.chmod(tmp, 0o644)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError:
            log.exception("slack sandbox: cannot write %s", path)
            self._dirty = True

    # -- faults, rate limits, call log -----------------------------------------

    def add_fault(self, spec: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(spec, dict):
            raise ValueError("a fault is a JSON object")
        status = spec.get("status")
        error = spec.get("error")
        delay = spec.get("delay")
        if status is None and error is None and delay is None:
            raise ValueError("a fault needs 'status', 'error' or 'delay'")
        fault = {
            "method": str(spec.get("method") or "*"),
            "status": int(status) if status is not None else None,
            "error": str(error) if error is not None else None,
            "count": int(spec.get("count", 1)),
            "retry_after": max(1, int(spec.get("retry_after", 1))),
            "delay": float(delay) if delay is not None else 0.0,
            # perform the call anyway, then answer with the fault (lost-response cases)
            "perform": _bool(spec.get("perform"), default=status is None and error is None),
        }
        if fault["count"] == 0:
            raise ValueError("'count' must be >= 1 (or -1: until cleared)")
        self.faults.append(fault)
        return fault

    def take_fault(self, method: str) -> dict[str, Any] | None:
        for i, fault in enumerate(self.faults):
            if fault["method"] in ("*", method):
                if fault["count"] > 0:
                    fault["count"] -= 1
                    if fault["count"] == 0:
                        del self.faults[i]
                return dict(fault)
        return None

    def rate_check(self, method: str, cid: str) -> int | None:
        """Token bucket per (method, channel): None if allowed, else Retry-After seconds."""
        per_minute = self.rate_limit_per_minute
        if not per_minute or method not in RATE_LIMITED_METHODS:
            return None
        rate = per_minute / 60.0  # tokens per second
        capacity = max(1.0, rate)  # bursts of at most one second's worth
        now = time.monotonic()
        tokens, last = self._buckets.get((method, cid), (capacity, now))
        tokens = min(capacity, tokens + (now - last) * rate)
        if tokens >= 1.0:
            self._buckets[(method, cid)] = (tokens - 1.0, now)
            return None
        self._buckets[(method, cid)] = (tokens, now)
        return max(1, math.ceil((1.0 - tokens) / rate))

    def set_rate_limit(self, per_minute: int | None) -> None:
        self.rate_limit_per_minute = per_minute or None
        self._buckets.clear()

    def log_call(
        self,
        method: str,
        status: int,
        error: str | None,
        *,
        scopes: list[list[str]] | None = None,
        **extra: Any,
    ) -> None:
        """One Web API call: its method, status and error, and the scopes it was checked for.

        `scopes` lists each requirement the call passed (the scopes any one of which would
        do); a `missing_scope` answer adds `needed`.
        """
        entry = {
            "method": method,
            "status": status,
            "error": error,
            "at": time.time(),
            "scopes": scopes or [],
        }
        entry.update(extra)
        self.calls.append(entry)
        self.call_counts[method] += 1

    # -- tokens, scopes and membership -----------------------------------------------------

    def authenticate(self, token: str) -> Grant:
        """The grant of a token: `not_authed` without one, `invalid_auth` for one Slack never issued."""
        token = token.strip()
        if not token:
            raise SlackError("not_authed")
        if token in self.revoked:
            raise SlackError("token_revoked")
        if token.startswith("xapp-") and token not in self.tokens:
            raise SlackError("not_allowed_token_type")  # an app-level token calls no Web API method
        if token not in self.tokens:
            raise SlackError("invalid_auth")
        own = self.tokens[token]
        return Grant(token, self.scopes if own is None else own)

    def set_token(
        self,
        token: str,
        *,
        scopes: Any = ...,
        revoked: bool | None = None,
        remove: bool = False,
    ) -> None:
        """Accept a token (with its own scopes, or None: the app's), revoke it or forget it."""
        token = token.strip()
        if not token:
            raise ValueError("token must not be empty")
        if remove:
            self.tokens.pop(token, None)
            self.revoked.discard(token)
            return
        if scopes is not ... or token not in self.tokens:
            self.tokens[token] = None if scopes is ... or scopes is None else parse_scopes(scopes)
        if revoked is not None:
            (self.revoked.add if revoked else self.revoked.discard)(token)

    def visible_channel(self, ref: Any, *, by_name: bool = False) -> dict[str, Any]:
        """A channel as the bot sees it: a private channel it is not in does not exist for it."""
        channel = self.find_channel(ref, by_name=by_name)
        if channel.get("is_private") and not bot_is_member(channel):
            raise SlackError("channel_not_found")
        return channel

    def set_membership(self, channel: dict[str, Any], member: bool) -> None:
        """Invite the bot to a channel, or remove it (as a person would in Slack)."""
        members = channel.setdefault("members", [])
        if member and BOT_USER_ID not in members:
            members.append(BOT_USER_ID)
        elif not member and BOT_USER_ID in members:
            members.remove(BOT_USER_ID)
        channel["is_member"] = member
        self.changed()

    # -- messages -----------------------------------------------------------------

    def post(self, args: dict[str, Any], *, user: str = BOT_USER_ID) -> dict[str, Any]:
        channel = self.find_channel(args.get("channel"), by_name=True)
        cid = channel["id"]
        text = _str(args.get("text"))
        blocks = _json_arg(args.get("blocks"), "invalid_blocks")
        attachments = _json_arg(args.get("attachments"), "invalid_attachments")
        if not text and not blocks and not attachments and not args.get("_files"):
            raise SlackError("no_text")
        if len(text) > MAX_TEXT:
            raise SlackError("msg_too_long")
        if blocks:
            blocks = _validate_blocks(blocks)
        metadata = _validate_metadata(_json_arg(args.get("metadata"), "invalid_metadata_format"))
        thread_ts = _str(args.get("thread_ts")).strip() or None
        parent = None
        if thread_ts is not None:
            parent = self.messages[cid].get(thread_ts)
            if parent is None:
                raise SlackError("thread_not_found")
            if parent.get("thread_ts") not in (None, parent["ts"]):  # a reply: use its thread
                parent = self.messages[cid][parent["thread_ts"]]
            thread_ts = parent["ts"]

        ts = self._next_ts()
        msg: dict[str, Any] = {"type": "message", "user": user, "text": text, "ts": ts, "team": TEAM_ID}
        if user == BOT_USER_ID:
            msg["bot_id"] = BOT_ID
            msg["app_id"] = APP_ID
            msg["bot_profile"] = {"id": BOT_ID, "app_id": APP_ID, "name": BOT_NAME, "team_id": TEAM_ID}
        if blocks:
            msg["blocks"] = blocks
        if attachments:
            msg["attachments"] = attachments
        if metadata is not None:
            msg["metadata"] = metadata
        for key in ("username", "icon_emoji", "icon_url"):
            if args.get(key):
                msg[key] = _str(args[key])
        if args.get("_files"):
            msg["files"] = args["_files"]
            msg["upload"] = True
        if parent is not None:
            msg["thread_ts"] = thread_ts
            msg["parent_user_id"] = parent["user"]
            if _bool(args.get("reply_broadcast")):
                msg["subtype"] = "thread_broadcast"
            self.replies.setdefault((cid, parent["ts"]), []).append(ts)
            reply_users = parent.setdefault("reply_users", [])
            if user not in reply_users:
                reply_users.append(user)
            parent["thread_ts"] = parent["ts"]
            parent["reply_count"] = len(self.replies[(cid, parent["ts"])])
            parent["reply_users_count"] = len(reply_users)
            parent["latest_reply"] = ts
            parent.setdefault("is_locked", False)
            parent.setdefault("subscribed", False)
        self.messages[cid][ts] = msg
        self.changed()
        return {"ok": True, "channel": cid, "ts": ts, "message": copy.deepcopy(msg)}

    def public_message(self, msg: dict[str, Any], include_metadata: bool) -> dict[str, Any]:
        out = copy.deepcopy(msg)
        if not include_metadata:
            out.pop("metadata", None)
        return out

    # -- what one person sees or does ---------------------------------------------------

    def store_ephemeral(
        self,
        *,
        user: str,
        channel: str,
        text: str,
        blocks: Any = None,
        thread_ts: str | None = None,
        source: str,
    ) -> dict[str, Any]:
        """A message only `user` sees (chat.postEphemeral, a response_url, a slash command's answer)."""
        msg: dict[str, Any] = {
            "type": "message",
            "subtype": "ephemeral",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "for_user": user,
            "channel": channel,
            "text": text,
            "ts": self._next_ts(),
            "source": source,
        }
        if blocks:
            msg["blocks"] = blocks
        if thread_ts:
            msg["thread_ts"] = thread_ts
        self.ephemeral.append(msg)
        self.changed()
        return msg

    def ephemeral_by_user(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for msg in self.ephemeral:
            out.setdefault(msg["for_user"], []).append(copy.deepcopy(msg))
        return out

    def add_user_reaction(self, cid: str, ts: str, user: str, name: str) -> dict[str, Any]:
        msg = self.find_message(cid, ts)
        if not name or not _EMOJI_NAME_RE.match(name):
            raise SlackError("invalid_name")
        reactions = msg.setdefault("reactions", [])
        for reaction in reactions:
            if reaction["name"] == name:
                if user in reaction["users"]:
                    raise SlackError("already_reacted")
                reaction["users"].append(user)
                reaction["count"] = len(reaction["users"])
                break
        else:
            reactions.append({"name": name, "users": [user], "count": 1})
        self.changed()
        return msg

    def pin(self, cid: str, ts: str) -> dict[str, Any]:
        msg = self.find_message(cid, ts)
        pinned = msg.setdefault("pinned_to", [])
        if cid in pinned:
            raise SlackError("already_pinned")
        pinned.append(cid)
        self.changed()
        return msg

    def new_trigger(self, user: str) -> str:
        trigger_id = f"{int(time.time())}.{secrets.randbelow(10**10):010d}.{secrets.token_hex(16)}"
        self.triggers[trigger_id] = {"user": user, "at": time.monotonic(), "used": False}
        return trigger_id

    def new_response_url(self, base_url: str, *, user: str, channel: str, message_ts: str | None) -> str:
        rid = secrets.token_urlsafe(12)
        self.response_urls[rid] = {
            "user": user,
            "channel": channel,
            "message_ts": message_ts,
            "at": time.monotonic(),
            "uses": 0,
        }
        return f"{base_url.rstrip('/')}/_sandbox/respond/{rid}"

    def open_view(self, trigger_id: str, view: Any) -> dict[str, Any]:
        """views.open: a trigger from a click less than TRIGGER_TTL ago, used once."""
        trigger = self.triggers.get(trigger_id)
        if trigger is None or trigger["used"]:
            raise SlackError("invalid_trigger_id")
        if time.monotonic() - trigger["at"] > TRIGGER_TTL:
            raise SlackError("expired_trigger_id")
        view = _validate_view(view)
        trigger["used"] = True
        vid = self._next_id("V")
        stored = {
            "id": vid,
            "team_id": TEAM_ID,
            "type": "modal",
            "title": view["title"],
            "submit": view.get("submit"),
            "close": view.get("close"),
            "blocks": view["blocks"],
            "private_metadata": _str(view.get("private_metadata")),
            "callback_id": _str(view.get("callback_id")),
            "external_id": _str(view.get("external_id")),
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
            "clear_on_close": _bool(view.get("clear_on_close")),
            "notify_on_close": _bool(view.get("notify_on_close")),
            "root_view_id": vid,
            "previous_view_id": None,
            "app_id": APP_ID,
            "app_installed_team_id": TEAM_ID,
            "bot_id": BOT_ID,
            # sandbox bookkeeping, not Slack's
            "user": trigger["user"],
            "status": "open",
            "opened_ts": self._next_ts(),
            "errors": {},
        }
        self.views[vid] = stored
        self.changed()
        return stored

    def find_view(self, view_id: str | None, user: str | None) -> dict[str, Any]:
        """A view by id, else the latest open one (of `user`, when given)."""
        if view_id:
            view = self.views.get(view_id)
            if view is None:
                raise SlackError("view_not_found")
            return view
        for view in reversed(self.views.values()):
            if view["status"] == "open" and (user is None or view["user"] == user):
                return view
        raise SlackError("view_not_found")

    async def deliver(
        self,
        kind: str,
        body: bytes,
        content_type: str,
        *,
        timestamp: int | str | None = None,
        signing_secret: str | None = None,
        scopes: list[list[str]] | None = None,
    ) -> dict[str, Any]:
        """POST one request to the app as Slack does; what the app answered.

        `timestamp` and `signing_secret` override the real ones, for testing
        how the app treats stale or forged requests. `scopes`: the app scopes that
        let Slack send it (kept in the delivery log, like the Web API call log's).
        """
        result: dict[str, Any] = {
            "kind": kind,
            "at": time.time(),
            "status": None,
            "body": "",
            "error": None,
            "scopes": scopes or [],
        }
        if not self.request_url:
            result["error"] = "no_request_url"
            self.deliveries.append(result)
            return result
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": stamp,
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        }
        secret = signing_secret if signing_secret is not None else self.signing_secret
        if secret:
            signature = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=body)
            if signature:
                headers["X-Slack-Signature"] = signature
        try:
            async with httpx.AsyncClient(timeout=DELIVERY_TIMEOUT) as http:
                response = await http.post(self.request_url, content=body, headers=headers)
        except httpx.TimeoutException:
            result["error"] = "http_timeout"
        except httpx.HTTPError as exc:
            result["error"] = f"connection_failed: {exc}"
        else:
            result["status"] = response.status_code
            result["body"] = response.text
            result["content_type"] = response.headers.get("content-type", "")
            try:
                result["json"] = response.json() if response.content else None
            except ValueError:
                result["json"] = None
        self.deliveries.append({k: v for k, v in result.items() if k != "json"})
        return result


# ---------------------------------------------------------------------------
# Web API methods: (sandbox, args, request) -> response dict; raise SlackError

Handler = Callable[[SlackSandbox, dict[str, Any], Request], dict[str, Any]]
METHODS: dict[str, Handler] = {}


def method(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        METHODS[name] = fn
        return fn

    return register


def _base_url(request: Request) -> str:
    return str(request.base_url)


def _grant(request: Request) -> Grant:
    """The caller's grant (api_endpoint authenticated it); every scope a method checks goes through it."""
    return request.state.grant


def _conversation_scope(request: Request, channel: dict[str, Any], action: str) -> None:
    """The scope `action` needs on this kind of conversation (e.g. history: channels:history / groups:history)."""
    alternatives = _CONVERSATION_SCOPES[action].get(conversation_kind(channel))
    if alternatives is None:
        raise SlackError("method_not_supported_for_channel_type")
    _grant(request).require(*alternatives)


def _member_channel(sb: SlackSandbox, request: Request, ref: Any, *, by_name: bool = False) -> dict[str, Any]:
    """A channel the bot must be in: private and not in it is `channel_not_found`, public `not_in_channel`."""
    channel = sb.visible_channel(ref, by_name=by_name)
    if not bot_is_member(channel):
        raise SlackError("not_in_channel")
    return channel


@method("api.test")
def api_test(sb: SlackSandbox, args: dict[str, Any], request: Request) -> dict[str, Any]:
    return {"ok": True, "args": {k: v for k, v in args.items() if k != "token"}}


@method("auth.test")
def auth_test(sb: SlackSandbox, args: dict[str, Any], request: Request) -> dict[str, Any]:
    return {
        "ok": True,
        "url": _base_url(request),
        "team": TEAM_NAME,
        "user": BOT_NAME,
        "team_id": TEAM_ID,
        "user_id": BOT_USER_ID,
        "bot_id": BOT_ID,
        "app_id": APP_ID,
        "is_enterprise_install": False,
    }


@method("chat.postMessage")
def chat_post_message(sb: SlackSandbox, args: dict[str, Any], request: Request) -> dict[str, Any]:
    channel = sb.visible_channel(args.get("channel"), by_name=True)
    if not bot_is_member(channel):
        # A bot posts only where it was invited; with chat:write.public also in public channels.
        if "chat:write.public" not in _grant(request).scopes:
            raise SlackError("not_in_channel")
        _grant(request).require("chat:write.public")
    return sb.post({**args, "channel": channel["id"]})


@method("chat.postEphemeral")
def chat_post_ephemeral(sb: SlackSandbox, args: dict[str, Any], request: Request) -> dict[str, Any]:
    # Ephemeral messages are seen by one user only and are not part of history:
    # the sandbox keeps them per user (/_sandbox/state "ephemeral", and the page).
    # The bot must be in the channel, chat:write.public or not.
    channel = _member_channel(sb, request, args.get("channel"), by_name=True)
    user = _str(args.get("user")).strip()
    if not _USER_ID_RE.match(user):
        raise SlackError("user_not_found")
    blocks = _json_arg(args.get("blocks"), "invalid_blocks")
    if not args.get("text") and not blocks and not args.get("attachments"):
        raise SlackError("no_text")
    if blocks:
        blocks = _validate_blocks(blocks)
    thread_ts = _str(args.get("thread_ts")).strip() or None
    if thread_ts is not None and thread_ts not in sb.messages.get(channel["id"], {}):
        raise SlackError("thread_not_found")
    msg = sb.store_ephemeral(
        user=user,
        channel=channel["id"],
        text=_str(args.get("text")),
        blocks=blocks,
        thread_ts=thread_ts,
        source="chat.postEphemeral",
    )
    return {"ok": True, "message_ts": msg["ts"]}


@method("views.open")
def views_open(sb: SlackSandbox, args: dict[str, Any], request: Request) -> dict[str, Any]:
    view = sb.open_view(_str(args.get("trigger_id")).strip(), args.get("view"))
    return {"ok": True, "view": public_view(view)}


def public_view(view: dict[str, Any]) -> dict[str, Any]:
    """A stored view as Slack shows it (without the sandbox's bookkeeping)."""
    return {
        k: copy.deepcopy(v) for k, v in view.items() if k not in ("user", "status", "opened_ts", "errors")
    }


@method("chat.update")
def chat_update(sb: SlackSandbox, args: dict[str, Any], request: Request) -> dict[str, Any]:
    channel = sb.visible_channel(args.get("channel"))
    msg = sb.find_message(channel["id"], args.get("ts"))
    text = args.get("text")
    blocks = _json_arg(args.get("blocks"), "invalid_blocks")
    attachments = _json_arg(args.get("attachments"), "invalid_attachments")
    metadata = _validate_metadata(_json_arg(args.get("metadata"), "invalid_metadata_format"))
    if text is None and blocks is None and attachments is None and metadata is None:
        raise SlackError("no_text")
    if text is not None:
        if len(_str(text)) > MAX_TEXT:
            raise SlackError("msg_too_long")
        msg["text"] = _str(text)
    if blocks is not None:  # an empty list removes the blocks, as in Slack
        if blocks:
            msg["blocks"] = _validate_blocks(blocks)
        else:
            msg.pop("blocks", None)
    if attachments is not None:
        msg["attachments"] = attachments
    if metadata is not None:
        msg["metadata"] = metadata
    msg["edited"] = {"user": BOT_USER_ID, "ts": sb._next_ts()}
    sb.changed()
    return {
        "ok": True,
        "channel": channel["id"],
        "ts": msg["ts"],
        "text": msg["text"],
        "message": sb.public_message(msg, include_metadata=True),
    }


@method("chat.getPermalink")
def chat_get_permalink(sb: SlackSandbox, args: dict[str, Any], request: Request) -> dict[str, Any]:
    channel = sb.visible_channel(args.get("channel"))
    msg = sb.find_message(channel["id"], args.get("message_ts"))
    link = f"{_base_url(request)}archives/{channel['id']}/p{msg['ts'].replace('.', '')}"
    if msg.get("thread_ts") not in (None, msg["ts"]):
        link += f"?thread_ts={msg['thread_ts']}&cid={channel['id']}"
    return {"ok": True, "channel": channel["id"], "permalink": link}


def _reaction_target(
    sb: SlackSandbox, args: dict[str, Any], request: Request
) -> tuple[dict[str, Any], dict[str, Any], str]:
    channel = _member_channel(sb, request, args.get("channel"))  # a bot reacts where it is a member
    msg = sb.find_message(channel["id"], args.get("timestamp"))
    name = _str(args.get("name")).strip()
    if not name or not _EMOJI_NAME_RE.match(name):
        raise SlackError("invalid_name")
    return channel, msg, name


@method("reactions.add")
def reactions_add(sb: SlackSandbox, args: dict[str, Any], request: Request) -> dict[str, Any]:
    _, msg, name = _reaction_target(sb, args, request)
    reactions = msg.setdefault("reactions", [])
    for reaction in reactions:
        if reaction["name"] == name:
            if BOT_USER_ID in reaction["users"]:
                raise SlackError("already_reacted")
            reaction["users"].append(BOT_USER_ID)
            reaction["count"] = len(reaction["users"])
            break
    else:
        reactions.append({"name": name, "users": [BOT_USER_ID], "count": 1})
    sb.changed()
    return {"ok": True}


@method("reactions.remove")
def reactions_remove(sb: SlackSandbox, args: dict[str, Any], request: Request) -> dict[str, Any]:
    _, msg, name = _reaction_target(sb, args, request)
    reactions = msg.get("reactions", [])
    for reaction in reactions:
        if reaction["name"] == name and BOT_USER_ID in reaction["users"]:
            reaction["users"].remove(BOT_USER_ID)
            reaction["count"] = len(reaction["users"])
            if not reaction["users"]:
                reactions.remove(reaction)
            if not reactions:
                msg.pop("reactions", None)
            sb.changed()
            return {"ok": True}
    raise SlackError("no_reaction")


@method("reactions.get")
def reactions_get(sb: SlackSandbox, args: dict[str, Any], request: Request) -> dict[str, Any]:
    channel = sb.visible_channel(args.get("channel"))
    msg = sb.find_message(channel["id"], args.get("timestamp"))
    return {
        "ok": True,
        "type": "message",
        "channel": channel["id"],
        "message": sb.public_message(msg, include_metadata=False),
    }


@method("conversations.create")
def conversations_create(sb: SlackSandbox, args: dict[str, Any], request: Request) -> dict[str, Any]:
    is_private = _bool(args.get("is_private"))
    _grant(request).require(*_CONVERSATION_SCOPES["create"]["groups" if is_private else "channels"])
    name = _str(args.get("name")).strip()
    if not name:
        raise SlackError("invalid_name_required")
    if len(name) > 80:
        raise SlackError("invalid_name_maxlength")
    if not _CHANNEL_NAME_RE.match(name):
        raise SlackError("invalid_name_specials")
    if name in sb.by_name:
        raise SlackError("name_taken")
    channel = sb._add_channel(name, is_private=is_private, created=int(time.time()))  # the bot is in it
    sb.changed()
    return {"ok": True, "channel": sb.channel_view(channel)}


@method("conversations.join")
def conversations_join(sb: SlackSandbox, args: dict[str, Any], request: Request) -> dict[str, Any]:
    channel = sb.visible_channel(args.get("channel"))
    if conversation_kind(channel) != "channels":
        raise SlackError("method_not_supported_for_channel_type")  # only public channels can be joined
    out: dict[str, Any] = {"ok": True}
    if BOT_USER_ID in channel.setdefault("members", []):
        out["warning"] = "already_in_channel"
        out["response_metadata"] = {"warnings": ["already_in_channel"]}
    else:
        channel["members"].append(BOT_USER_ID)
        channel["is_member"] = True
        sb.changed()
    out["channel"] = sb.channel_view(channel)
    return out


@method("conversations.invite")
def conversations_invite(sb: SlackSandbox, args: dict[str, Any], request: Request) -> dict[str, Any]:
    channel = sb.visible_channel(args.get("channel"))
    _conversation_scope(request, channel, "invite")
    if not bot_is_member(channel):
        raise SlackError("not_in_channel")
    users = [u.strip() for u in _str(args.get("users")).split(",") if u.strip()]
    if not users:
        raise SlackError("no_user")
    for user in users:
        if user == BOT_USER_ID:
            raise SlackError("cant_invite_self")
        if not _USER_ID_RE.match(user):
            raise SlackError("user_not_found")
    members = channel.setdefault("members", [])
    new = [u for u in users if u not in members]
    if not new:
        raise SlackError("already_in_channel")
    members.extend(new)
    sb.changed()
    return {"ok": True, "channel": sb.channel_view(channel)}


@method("conversations.open")
def conversations_open(sb: SlackSandbox, args: dict[str, Any], request: Request) -> dict[str, Any]:
    if args.get("channel"):
        channel = sb.visible_channel(args.get("channel"))
        _conversation_scope(request, channel, "open")
    else:
        _grant(request).require(*_CONVERSATION_SCOPES["open"]["im"])
        users = [u.strip() for u in _str(args.get("users")).split(",") if u.strip()]
        if not users:
            raise SlackError("users_list_not_supplied")
        if len(users) > 1:
            raise SlackError("not_supported_in_sandbox")  # group DMs (mpim)
        if not _USER_ID_RE.match(users[0]):
            raise SlackError("user_not_found")
        channel = sb._dm_channel(users[0])
    full = _bool(args.get("return_im"))
    return {"ok": True, "channel": sb.channel_view(channel) if full else {"id": channel["id"]}}


@method("conversations.info")
def conversations_info(sb: SlackSandbox, args: dict[str, Any], request: Request) -> dict[str, Any]:
    channel = sb.visible_channel(args.get("channel"))
    _conversation_scope(request, channel, "read")
    return {"ok": True, "channel": sb.channel_view(channel)}


def _set_channel_text(field: str) -> Handler:
    def handler(sb: SlackSandbox, args: dict[str, Any], request: Request) -> dict[str, Any]:
        channel = sb.visible_channel(args.get("channel"))
        _conversation_scope(request, channel, "topic")
        if not bot_is_member(channel):
            raise SlackError("not_in_channel")
        value = _str(args.get(field))
        if len(value) > 250:
            raise SlackError("too_long")
        channel[field] = {"value": value, "creator": BOT_USER_ID, "last_set": int(time.time())}
        sb.changed()
        return {"ok": True, "channel": sb.channel_view(channel)}

    return handler


METHODS["conversations.setTopic"] = _set_channel_text("topic")
METHODS["conversations.setPurpose"] = _set_channel_text("purpose")


@method("conversations.list")
def conversations_list(sb: SlackSandbox, args: dict[str, Any], request: Request) -> dict[str, Any]:
    types = [t.strip() for t in _str(args.get("types") or "public_channel").split(",") if t.strip()]
    if not types or any(t not in _LIST_TYPES for t in types):
        raise SlackError("invalid_types")
    # Each type asked for needs its scope: without groups:read, asking for private_channel
    # fails the whole call, public channels included (as Slack does).
    for kind in _LIST_TYPES:
        if kind in types:
            _grant(request).require(*_CONVERSATION_SCOPES["read"][_LIST_TYPES[kind]])
    wanted = {_LIST_TYPES[t] for t in types}
    exclude_archived = _bool(args.get("exclude_archived"))
    selected = []
    for channel in sb.channels.values():
        kind = conversation_kind(channel)
        if kind not in wanted or (exclude_archived and channel.get("is_archived")):
            continue
        if kind != "channels" and not bot_is_member(channel):
            continue  # private channels (and DMs) the bot is not in are not listed to it
        selected.append(channel)
    limit = _int(args.get("limit"), 100, 1, 1000)
    start = int(_decode_cursor(args["cursor"], "offset")) if args.get("cursor") else 0
    page = selected[start : start + limit]
    more = start + limit < len(selected)
    return {
        "ok": True,
        "channels": [sb.channel_view(c) for c in page],
        "response_metadata": {"next_cursor": _encode_cursor("offset", str(start + limit)) if more else ""},
    }


def _window(args: dict[str, Any]) -> tuple[int, int, bool]:
    inclusive = _bool(args.get("inclusive"))
    try:
        oldest = _ts_micros(args["oldest"]) if _str(args.get("oldest")).strip() else -1
    except ValueError:
        raise SlackError("invalid_ts_oldest") from None
    try:
        latest = _ts_micros(args["latest"]) if _str(args.get("latest")).strip() else sys.maxsize
    except ValueError:
        raise SlackError("invalid_ts_latest") from None
    return oldest, latest, inclusive


def _in_window(key: int, oldest: int, latest: int, inclusive: bool) -> bool:
    if inclusive:
        return oldest <= key <= latest
    return oldest < key < latest


@method("conversations.history")
def conversations_history(sb: SlackSandbox, args: dict[str, Any], request: Request) -> dict[str, Any]:
    channel = sb.visible_channel(args.get("channel"))
    _conversation_scope(request, channel, "history")
    if not bot_is_member(channel):
        raise SlackError("not_in_channel")  # a bot token reads only where the bot was invited
    oldest, latest, inclusive = _window(args)
    limit = _int(args.get("limit"), 100, 1, 999)
    include_metadata = _bool(args.get("include_all_metadata"))
    below = sys.maxsize
    if args.get("cursor"):
        try:
            below = _ts_micros(_decode_cursor(_str(args["cursor"]), "next_ts"))
        except ValueError:
            raise SlackError("invalid_cursor") from None
    selected = []
    for msg in reversed(sb.messages[channel["id"]].values()):  # newest first
        key = _ts_micros(msg["ts"])
        if key > below or not sb.is_top_level(msg) or not _in_window(key, oldest, latest, inclusive):
            continue
        selected.append(msg)
        if len(selected) > limit:
            break
    has_more = len(selected) > limit
    return {
        "ok": True,
        "messages": [sb.public_message(m, include_metadata) for m in selected[:limit]],
        "has_more": has_more,
        "pin_count": 0,
        "channel_actions_ts": None,
        "channel_actions_count": 0,
        "response_metadata": {
            "next_cursor": _encode_cursor("next_ts", selected[limit]["ts"]) if has_more else ""
        },
    }


@method("conversations.replies")
def conversations_replies(sb: SlackSandbox, args: dict[str, Any], request: Request) -> dict[str, Any]:
    channel = sb.visible_channel(args.get("channel"))
    _conversation_scope(request, channel, "history")
    if not bot_is_member(channel):
        raise SlackError("not_in_channel")
    cid = channel["id"]
    msg = sb.messages[cid].get(_str(args.get("ts")).strip())
    if msg is None:
        raise SlackError("thread_not_found")
    parent = msg if msg.get("thread_ts") in (None, msg["ts"]) else sb.messages[cid][msg["thread_ts"]]
    oldest, latest, inclusive = _window(args)
    limit = _int(args.get("limit"), 1000, 1, 1000)
    include_metadata = _bool(args.get("include_all_metadata"))
    thread = [
        sb.messages[cid][ts]
        for ts in sb.replies.get((cid, parent["ts"]), [])
        if _in_window(_ts_micros(ts), oldest, latest, inclusive)
    ]
    if args.get("cursor"):  # continuation pages carry no parent, as in Slack
        try:
            start = _ts_micros(_decode_cursor(_str(args["cursor"]), "next_ts"))
        except ValueError:
            raise SlackError("invalid_cursor") from None
        selected = [m for m in thread if _ts_micros(m["ts"]) >= start]
    else:
        selected = [parent, *thread]
    has_more = len(selected) > limit
    return {
        "ok": True,
        "messages": [sb.public_message(m, include_metadata) for m in selected[:limit]],
        "has_more": has_more,
        "response_metadata": {
            "next_cursor": _encode_cursor("next_ts", selected[limit]["ts"]) if has_more else ""
        },
    }


def user_object(user_id: str) -> dict[str, Any]:
    is_bot = user_id == BOT_USER_ID
    name = BOT_NAME if is_bot else user_id.lower()
    real_name = "Incident Bot" if is_bot else f"User {user_id}"
    return {
        "id": user_id,
        "team_id": TEAM_ID,
        "name": name,
        "deleted": False,
        "real_name": real_name,
        "tz": "UTC",
        "tz_label": "Coordinated Universal Time",
        "tz_offset": 0,
        "is_bot": is_bot,
        "is_admin": False,
        "is_app_user": False,
        "profile": {
            "display_name": name,
            "display_name_normalized": name,
            "real_name": real_name,
            "real_name_normalized": real_name,
            "email": f"{name}@sandbox.example",
            "team": TEAM_ID,
        },
    }


@method("users.info")
def users_info(sb: SlackSandbox, args: dict[str, Any], request: Request) -> dict[str, Any]:
    user = _str(args.get("user")).strip()
    if not _USER_ID_RE.match(user):
        raise SlackError("user_not_found")
    return {"ok": True, "user": user_object(user)}


@method("dnd.info")
def dnd_info(sb: SlackSandbox, args: dict[str, Any], request: Request) -> dict[str, Any]:
    user = _str(args.get("user")).strip() or BOT_USER_ID
    if not _USER_ID_RE.match(user):
        raise SlackError("user_not_found")
    now = int(time.time())
    setting = sb.dnd.get(user)
    if setting and setting.get("enabled") and setting.get("until", math.inf) > now:
        until = int(setting.get("until", now + 8 * 3600))
        return {
            "ok": True,
            "dnd_enabled": True,
            "next_dnd_start_ts": int(setting.get("since", now)),
            "next_dnd_end_ts": until,
            "snooze_enabled": True,
            "snooze_endtime": until,
            "snooze_remaining": until - now,
            "snooze_is_indefinite": False,
        }
    # Not in Do Not Disturb: next window tonight 22:00-08:00 UTC (in the future).
    start = now - now % 86400 + 22 * 3600
    if start <= now:
        start += 86400
    return {
        "ok": True,
        "dnd_enabled": False,
        "next_dnd_start_ts": start,
        "next_dnd_end_ts": start + 10 * 3600,
        "snooze_enabled": False,
    }


@method("bookmarks.add")
def bookmarks_add(sb: SlackSandbox, args: dict[str, Any], request: Request) -> dict[str, Any]:
    channel = sb.visible_channel(args.get("channel_id"))
    title = _str(args.get("title")).strip()
    kind = _str(args.get("type") or "link")
    if not title:
        raise SlackError("invalid_title")
    if kind != "link" or not _str(args.get("link")).startswith(("http://", "https://")):
        raise SlackError("invalid_link")
    bookmark = {
        "id": sb._next_id("Bk"),
        "channel_id": channel["id"],
        "title": title,
        "link": _str(args.get("link")),
        "emoji": _str(args.get("emoji")) or None,
        "icon_url": None,
        "type": kind,
        "entity_id": args.get("entity_id"),
        "date_created": int(time.time()),
        "date_updated": 0,
        "rank": "U",
        "last_updated_by_user_id": BOT_USER_ID,
        "last_updated_by_team_id": TEAM_ID,
        "shortcut_id": None,
        "app_id": APP_ID,
    }
    sb.bookmarks.setdefault(channel["id"], []).append(bookmark)
    sb.changed()
    return {"ok": True, "bookmark": bookmark}


@method("bookmarks.list")
def bookmarks_list(sb: SlackSandbox, args: dict[str, Any], request: Request) -> dict[str, Any]:
    channel = sb.visible_channel(args.get("channel_id"))
    return {"ok": True, "bookmarks": copy.deepcopy(sb.bookmarks.get(channel["id"], []))}


@method("files.getUploadURLExternal")
def files_get_upload_url(sb: SlackSandbox, args: dict[str, Any], request: Request) -> dict[str, Any]:
    filename = _str(args.get("filename")).strip()
    if not filename:
        raise SlackError("invalid_arguments")
    try:
        length = int(args.get("length"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SlackError("invalid_arguments") from None
    if length <= 0 or length > MAX_UPLOAD:
        raise SlackError("invalid_length")
    fid = sb._next_id("F")
    sb.files[fid] = {
        "id": fid,
        "name": filename,
        "title": filename,
        "length": length,
        "created": int(time.time()),
        "uploaded": False,
        "alt_txt": args.get("alt_txt"),
    }
    return {"ok": True, "upload_url": f"{_base_url(request)}_upload/{fid}", "file_id": fid}


@method("files.completeUploadExternal")
def files_complete_upload(sb: SlackSandbox, args: dict[str, Any], request: Request) -> dict[str, Any]:
    items = _json_arg(args.get("files"), "invalid_arguments")
    if not isinstance(items, list) or not items:
        raise SlackError("invalid_arguments")
    channel_ref = args.get("channel_id") or _str(args.get("channels")).split(",")[0].strip()
    # Sharing a file needs the bot in the channel (checked before anything changes).
    channel = _member_channel(sb, request, channel_ref) if channel_ref else None
    done = []
    for item in items:
        f = sb.files.get(_str(item.get("id")) if isinstance(item, dict) else "")
        if f is None or not f.get("uploaded"):
            raise SlackError("file_not_found")
        done.append((f, item))
    for f, item in done:
        if item.get("title"):
            f["title"] = _str(item["title"])
        f["completed"] = True
    views = [_file_view(request, f) for f, _ in done]
    if channel is not None:
        post = {
            "channel": channel["id"],
            "text": _str(args.get("initial_comment")),
            "thread_ts": args.get("thread_ts"),
            "_files": views,
        }
        result = sb.post(post)
        for f, _ in done:
            f.setdefault("shares", []).append({"channel": channel["id"], "ts": result["ts"]})
    sb.changed()
    return {"ok": True, "files": views}


def _file_view(request: Request, f: dict[str, Any]) -> dict[str, Any]:
    url = f"{_base_url(request)}_sandbox/files/{f['id']}"
    return {
        "id": f["id"],
        "name": f["name"],
        "title": f.get("title", f["name"]),
        "size": f.get("size", f.get("length", 0)),
        "mimetype": f.get("mimetype", "application/octet-stream"),
        "created": f.get("created"),
        "user": BOT_USER_ID,
        "url_private": url,
        "url_private_download": url,
        "permalink": url,
    }


# ---------------------------------------------------------------------------
# HTTP layer


async def _read_args(request: Request) -> dict[str, Any]:
    """Query string, then form body, then JSON body; later sources win."""
    args: dict[str, Any] = dict(request.query_params)
    body = await request.body()
    if not body:
        return args
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json" or (not content_type and body.lstrip()[:1] == b"{"):
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise SlackError("invalid_json") from None
        if not isinstance(data, dict):
            raise SlackError("invalid_json")
        args.update(data)
    elif content_type in ("application/x-www-form-urlencoded", ""):
        try:
            args.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            raise SlackError("invalid_form_data") from None
    else:
        raise SlackError("invalid_form_data")  # multipart needs python-multipart: not used by us
    return args


def _token_of(request: Request, args: dict[str, Any]) -> str:
    """The bearer token, or the `token` argument Slack still accepts in a form body ('' if none)."""
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            raise SlackError("invalid_auth")
        return token.strip()
    return _str(args.get("token")).strip()


def _slack_json(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(body, status_code=status, headers=headers)


async def api_endpoint(request: Request) -> Response:
    sb: SlackSandbox = request.app.state.sandbox
    name = request.path_params["method"]
    handler = METHODS.get(name)
    if handler is None:
        sb.log_call(name, 404, "unknown_method")
        return _slack_json({"ok": False, "error": "unknown_method"}, 404)

    fault: dict[str, Any] | None = None
    grant: Grant | None = None
    status, headers = 200, {}
    try:
        args = await _read_args(request)
        grant = request.state.grant = sb.authenticate(_token_of(request, args))
        args.pop("token", None)
        accepted = ACCEPTED_SCOPES.get(name, ())
        if len(accepted) == 1:  # one scope for every conversation; the others are checked per conversation
            grant.require(accepted[0])
        fault = sb.take_fault(name)
        if fault is None or fault["perform"]:
            if name in RATE_LIMITED_METHODS and args.get("channel"):
                try:
                    cid = sb.find_channel(args["channel"], by_name=(name == "chat.postMessage"))["id"]
                except SlackError:
                    cid = None
                retry_after = sb.rate_check(name, cid) if cid else None
                if retry_after is not None:
                    raise SlackError("ratelimited", 429, _retry_after=retry_after)
            body = handler(sb, args, request)
        else:
            body = {"ok": True}
    except SlackError as exc:
        status = exc.status
        extra = dict(exc.extra)
        retry_after = extra.pop("_retry_after", None)
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        body = {"ok": False, "error": exc.error, **extra}

    if fault is not None and (fault["status"] is not None or fault["error"] is not None):
        status = fault["status"] or 200
        error = fault["error"] or _FAULT_ERRORS.get(status, f"http_{status}")
        body = {"ok": False, "error": error}
        headers = {}
        if status == 429:
            headers["Retry-After"] = str(fault["retry_after"])
    if grant is not None:  # as Slack does for a token it knows: what it has, what the method takes
        headers["x-oauth-scopes"] = ",".join(grant.scopes)
        headers["x-accepted-oauth-scopes"] = ",".join(ACCEPTED_SCOPES.get(name, ()))
    extra_log = {"needed": body["needed"]} if body.get("error") == "missing_scope" else {}
    sb.log_call(
        name,
        status,
        None if body.get("ok") else body.get("error"),
        scopes=grant.checked if grant is not None else None,
        **extra_log,
    )
    if fault is not None and fault["delay"] > 0:
        await asyncio.sleep(fault["delay"])
    return _slack_json(body, status, headers)


async def upload_endpoint(request: Request) -> Response:
    sb: SlackSandbox = request.app.state.sandbox
    f = sb.files.get(request.path_params["file_id"])
    if f is None:
        return PlainTextResponse("file not found", status_code=404)
    data = await request.body()
    if len(data) > MAX_UPLOAD:
        return PlainTextResponse("too large", status_code=413)
    f["content_b64"] = base64.b64encode(data).decode()
    f["size"] = len(data)
    f["uploaded"] = True
    f["mimetype"] = "text/plain" if _looks_textual(data) else "application/octet-stream"
    sb.changed()
    return PlainTextResponse(f"OK - {len(data)}")


def _looks_textual(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


async def file_download(request: Request) -> Response:
    sb: SlackSandbox = request.app.state.sandbox
    f = sb.files.get(request.path_params["file_id"])
    if f is None or "content_b64" not in f:
        return JSONResponse({"error": "file_not_found"}, status_code=404)
    return Response(base64.b64decode(f["content_b64"]), media_type=f.get("mimetype"))


# -- control API (/_sandbox) ----------------------------------------------------


async def _json_body(request: Request) -> Any:
    body = await request.body()
    if not body.strip():
        return {}
    return json.loads(body)


def _bad_request(message: str) -> Response:
    return JSONResponse({"ok": False, "error": message}, status_code=400)


async def control_faults(request: Request) -> Response:
    sb: SlackSandbox = request.app.state.sandbox
    if request.method == "DELETE":
        sb.faults.clear()
        return JSONResponse({"ok": True, "faults": []})
    if request.method == "GET":
        return JSONResponse({"ok": True, "faults": sb.faults})
    try:
        spec = await _json_body(request)
        for item in spec if isinstance(spec, list) else [spec]:
            sb.add_fault(item)
    except (ValueError, TypeError) as exc:
        return _bad_request(str(exc))
    return JSONResponse({"ok": True, "faults": sb.faults})


async def control_rate_limit(request: Request) -> Response:
    sb: SlackSandbox = request.app.state.sandbox
    if request.method == "POST":
        try:
            spec = await _json_body(request)
            value = spec.get("per_minute") if isinstance(spec, dict) else None
            per_minute = int(value) if value is not None else None
        except (ValueError, TypeError) as exc:
            return _bad_request(str(exc))
        if per_minute is not None and per_minute < 0:
            return _bad_request("per_minute must be >= 0 or null")
        sb.set_rate_limit(per_minute)
    return JSONResponse({"ok": True, "per_minute": sb.rate_limit_per_minute})


async def control_dnd(request: Request) -> Response:
    sb: SlackSandbox = request.app.state.sandbox
    if request.method == "GET":
        return JSONResponse({"ok": True, "dnd": sb.dnd})
    try:
        spec = await _json_body(request)
        user = str(spec["user"])
        enabled = _bool(spec.get("enabled", True))
        minutes = float(spec.get("minutes", 8 * 60))
    except (ValueError, TypeError, KeyError) as exc:
        return _bad_request(f"expected {{'user': 'U…', 'enabled': bool, 'minutes'?: n}}: {exc}")
    if not _USER_ID_RE.match(user):
        return _bad_request("user must be a user ID (U…)")
    now = int(time.time())
    if enabled:
        sb.dnd[user] = {"enabled": True, "since": now, "until": now + int(minutes * 60)}
    else:
        sb.dnd.pop(user, None)
    sb.changed()
    return JSONResponse({"ok": True, "user": user, "dnd": sb.dnd.get(user, {"enabled": False})})


async def control_state(request: Request) -> Response:
    sb: SlackSandbox = request.app.state.sandbox
    state = sb.snapshot()
    state["calls"] = dict(sb.call_counts)
    state["faults"] = sb.faults
    state["rate_limit_per_minute"] = sb.rate_limit_per_minute
    state["scopes"] = list(sb.scopes)
    state["request_url"] = sb.request_url
    state["deliveries"] = list(sb.deliveries)
    return JSONResponse(state)


async def control_reset(request: Request) -> Response:
    sb: SlackSandbox = request.app.state.sandbox
    sb.reset()
    return JSONResponse({"ok": True})


async def control_calls(request: Request) -> Response:
    """The last 10,000 Web API calls, oldest first: [{method, status, error, at}]; ?method= filters."""
    sb: SlackSandbox = request.app.state.sandbox
    if request.method == "DELETE":
        sb.calls.clear()
        sb.call_counts.clear()
        return JSONResponse([])
    wanted = request.query_params.get("method")
    return JSONResponse([c for c in sb.calls if wanted is None or c["method"] == wanted])


async def control_messages(request: Request) -> Response:
    """Post as a person: {"channel", "user": "U…", "text", "thread_ts"?}."""
    sb: SlackSandbox = request.app.state.sandbox
    try:
        spec = await _json_body(request)
        if not isinstance(spec, dict):
            raise ValueError("expected a JSON object")
        user = str(spec.get("user") or "U0SANDBOXUSER")
        if not _USER_ID_RE.match(user):
            raise ValueError("user must be a user ID (U…)")
        result = sb.post(spec, user=user)
    except (ValueError, TypeError) as exc:
        return _bad_request(str(exc))
    except SlackError as exc:
        return _bad_request(exc.error)
    return JSONResponse(result)


async def control_health(request: Request) -> Response:
    return JSONResponse({"ok": True})


def _tokens_view(sb: SlackSandbox) -> dict[str, Any]:
    return {
        "ok": True,
        "scopes": list(sb.scopes),
        "tokens": [
            {
                "token": _mask(token),
                "scopes": None if own is None else list(own),
                "revoked": token in sb.revoked,
            }
            for token, own in sb.tokens.items()
        ],
    }


async def control_tokens(request: Request) -> Response:
    """The app's bot scopes and the tokens the Web API accepts (shown masked).

    POST {"scopes": [...] | "a,b"}: the app's scopes (every token without scopes of its own).
    POST {"token", "scopes"?: [...] | null, "revoked"?: bool, "remove"?: bool}: accept a token
    (with its own scopes, or null: the app's), revoke it (`token_revoked`) or forget it
    (`invalid_auth`). A list of such objects does several at once.
    """
    sb: SlackSandbox = request.app.state.sandbox
    if request.method == "POST":
        try:
            spec = await _json_body(request)
            for item in spec if isinstance(spec, list) else [spec]:
                if not isinstance(item, dict):
                    raise ValueError("expected a JSON object")
                if "token" not in item:
                    if "scopes" not in item:
                        raise ValueError("expected 'token' and/or 'scopes'")
                    sb.scopes = parse_scopes(item["scopes"])
                    continue
                sb.set_token(
                    str(item["token"]),
                    scopes=item["scopes"] if "scopes" in item else ...,
                    revoked=_bool(item["revoked"]) if item.get("revoked") is not None else None,
                    remove=_bool(item.get("remove")),
                )
        except (ValueError, TypeError) as exc:
            return _bad_request(str(exc))
    return JSONResponse(_tokens_view(sb))


def _channel_control_view(sb: SlackSandbox, channel: dict[str, Any]) -> dict[str, Any]:
    return {**sb.channel_view(channel), "members": list(channel.get("members", []))}


async def control_channels(request: Request) -> Response:
    """Channels as an admin sees them, and the bot's membership in each.

    GET: every channel (DMs too) with `is_member` (the bot) and `members`.
    POST {"name", "private"?: bool, "member"?: bool (default true)}: create the channel (by a
    person, with or without the bot) or, if it exists, invite the bot to it or remove it
    (`member`) and make it private or public (`private`). A channel can also be named by `id`.
    """
    sb: SlackSandbox = request.app.state.sandbox
    if request.method == "GET":
        return JSONResponse(
            {"ok": True, "channels": [_channel_control_view(sb, c) for c in sb.channels.values()]}
        )
    try:
        spec = await _json_body(request)
        if not isinstance(spec, dict):
            raise ValueError("expected a JSON object")
        ref = _str(spec.get("id") or spec.get("name")).strip().lstrip("#")
        if not ref:
            raise ValueError("expected 'name' (or 'id')")
        member = _bool(spec.get("member"), default=True)
        existing = sb.channels.get(ref) or sb.channels.get(sb.by_name.get(ref, ""))
        if existing is not None and existing.get("is_im"):
            raise ValueError("a DM's members cannot change")
        if existing is None:
            if spec.get("id") and not spec.get("name"):
                raise ValueError(f"no channel {ref}")
            if not _CHANNEL_NAME_RE.match(ref) or len(ref) > 80:
                raise ValueError("a channel name is lowercase letters, digits, - and _ (80 at most)")
            creator = BOT_USER_ID if member else _acting_user({"user": spec.get("creator")})
            existing = sb._add_channel(
                ref, is_private=_bool(spec.get("private")), created=int(time.time()), creator=creator
            )
        elif "private" in spec:
            existing["is_private"] = _bool(spec.get("private"))
        sb.set_membership(existing, member)
    except (ValueError, TypeError) as exc:
        return _bad_request(str(exc))
    except _ActError as exc:
        return _bad_request(str(exc))
    return JSONResponse({"ok": True, "channel": _channel_control_view(sb, existing)})


async def control_config(request: Request) -> Response:
    """Where the app listens and the secret to sign with: {"request_url"?, "signing_secret"?}.

    Lets a test or `incident dev` start the sandbox before the app whose URL it needs.
    """
    sb: SlackSandbox = request.app.state.sandbox
    if request.method == "POST":
        try:
            spec = await _json_body(request)
            if not isinstance(spec, dict):
                raise ValueError("expected a JSON object")
        except ValueError as exc:
            return _bad_request(str(exc))
        if "request_url" in spec:
            url = spec["request_url"]
            if url is not None and not str(url).startswith(("http://", "https://")):
                return _bad_request("request_url must be an http(s) URL or null")
            sb.request_url = str(url) if url else None
        if "signing_secret" in spec:
            sb.signing_secret = str(spec["signing_secret"]) if spec["signing_secret"] else None
    return JSONResponse(
        {"ok": True, "request_url": sb.request_url, "signing_secret_set": bool(sb.signing_secret)}
    )


# -- acting as a person: what Slack sends the app (/_sandbox/act/...) -----------------------


class _ActError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _user_ref(user: str) -> dict[str, Any]:
    name = user_object(user)["name"]
    return {"id": user, "username": name, "name": name, "team_id": TEAM_ID}


def _team_ref() -> dict[str, Any]:
    return {"id": TEAM_ID, "domain": TEAM_NAME.lower()}


def _acting_user(spec: dict[str, Any]) -> str:
    user = str(spec.get("user") or DEFAULT_ACTING_USER)
    if not _USER_ID_RE.match(user):
        raise _ActError("user must be a user ID (U…)")
    return user


def _delivery_overrides(spec: dict[str, Any]) -> dict[str, Any]:
    """Test hooks: sign with another secret, or with another (stale) request timestamp."""
    out: dict[str, Any] = {}
    if spec.get("signing_secret") is not None:
        out["signing_secret"] = str(spec["signing_secret"])
    if spec.get("request_timestamp") is not None:
        out["timestamp"] = int(spec["request_timestamp"])
    return out


async def _act_spec(request: Request) -> dict[str, Any]:
    try:
        spec = await _json_body(request)
    except ValueError as exc:
        raise _ActError(f"body is not JSON: {exc}") from None
    if not isinstance(spec, dict):
        raise _ActError("expected a JSON object")
    return spec


def _act_endpoint(fn: Callable[[SlackSandbox, dict[str, Any], Request], Any]) -> Callable[..., Any]:
    """JSON in, JSON out; the app's answer is in `status`/`body` (and `json` when it sent JSON)."""

    async def endpoint(request: Request) -> Response:
        sb: SlackSandbox = request.app.state.sandbox
        try:
            spec = await _act_spec(request)
            result = await fn(sb, spec, request)
        except _ActError as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=exc.status)
        except SlackError as exc:
            return JSONResponse({"ok": False, "error": exc.error, **exc.extra}, status_code=400)
        except (TypeError, ValueError, KeyError) as exc:
            return _bad_request(f"bad request: {exc}")
        return JSONResponse({"ok": True, **result})

    return endpoint


def _not_delivered(sb: SlackSandbox, kind: str, error: str, **extra: Any) -> dict[str, Any]:
    """What Slack does when the app may not hear of something: nothing reaches the app."""
    result = {"kind": kind, "at": time.time(), "status": None, "body": "", "error": error, **extra}
    sb.deliveries.append(result)
    return dict(result)


async def _deliver_event(
    sb: SlackSandbox, event: dict[str, Any], spec: dict[str, Any], channel: dict[str, Any]
) -> dict[str, Any]:
    """An Events API callback, if Slack would send it: the app has the event's scope, the bot is in the channel."""
    needed = EVENT_SCOPES.get(event["type"])
    if needed and needed not in sb.scopes:
        return _not_delivered(sb, event["type"], "missing_scope", needed=needed)
    if not bot_is_member(channel):
        return _not_delivered(sb, event["type"], "not_in_channel")  # bots hear only their channels
    now = time.time()
    envelope = {
        "token": VERIFICATION_TOKEN,
        "team_id": TEAM_ID,
        "api_app_id": APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": sb._next_id("Ev"),
        "event_time": int(now),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": TEAM_ID,
                "user_id": BOT_USER_ID,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": secrets.token_urlsafe(16),
    }
    body = json.dumps(envelope).encode()
    result = await sb.deliver(
        event["type"],
        body,
        "application/json",
        scopes=[[needed]] if needed else [],
        **_delivery_overrides(spec),
    )
    result["event_id"] = envelope["event_id"]
    return result


async def _deliver_interaction(
    sb: SlackSandbox, payload: dict[str, Any], spec: dict[str, Any]
) -> dict[str, Any]:
    body = urlencode({"payload": json.dumps(payload)}).encode()
    return await sb.deliver(
        payload["type"], body, "application/x-www-form-urlencoded", **_delivery_overrides(spec)
    )


def _message_target(sb: SlackSandbox, spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    channel = sb.find_channel(spec.get("channel"), by_name=True)
    return channel, sb.find_message(channel["id"], spec.get("ts"))


async def act_reaction(sb: SlackSandbox, spec: dict[str, Any], request: Request) -> dict[str, Any]:
    """{"user", "channel", "ts", "name"}: the person reacts; the app gets `reaction_added`."""
    user = _acting_user(spec)
    channel, msg = _message_target(sb, spec)
    name = _str(spec.get("name")).strip().strip(":")
    sb.add_user_reaction(channel["id"], msg["ts"], user, name)
    event = {
        "type": "reaction_added",
        "user": user,
        "reaction": name,
        "item_user": msg.get("user", ""),
        "item": {"type": "message", "channel": channel["id"], "ts": msg["ts"]},
        "event_ts": sb._next_ts(),
    }
    return await _deliver_event(sb, event, spec, channel)


async def act_pin(sb: SlackSandbox, spec: dict[str, Any], request: Request) -> dict[str, Any]:
    """{"user", "channel", "ts"}: the person pins the message; the app gets `pin_added`."""
    user = _acting_user(spec)
    channel, msg = _message_target(sb, spec)
    sb.pin(channel["id"], msg["ts"])
    now = int(time.time())
    pinned = sum(1 for m in sb.messages[channel["id"]].values() if channel["id"] in m.get("pinned_to", []))
    event = {
        "type": "pin_added",
        "user": user,
        "channel_id": channel["id"],
        "item": {
            "type": "message",
            "created": now,
            "created_by": user,
            "channel": channel["id"],
            "message": {**sb.public_message(msg, include_metadata=False), "pinned_to": [channel["id"]]},
        },
        "item_user": msg.get("user", ""),
        "pin_count": pinned,
        "pinned_info": {"channel": channel["id"], "pinned_by": user, "pinned_ts": now},
        "event_ts": sb._next_ts(),
    }
    return await _deliver_event(sb, event, spec, channel)


def _find_button(msg: dict[str, Any], action_id: str) -> tuple[dict[str, Any], str]:
    for block in msg.get("blocks") or []:
        elements = list(block.get("elements") or []) if block.get("type") == "actions" else []
        if block.get("type") == "section" and isinstance(block.get("accessory"), dict):
            elements.append(block["accessory"])
        for element in elements:
            if element.get("type") == "button" and element.get("action_id") == action_id:
                return element, _str(block.get("block_id"))
    raise _ActError(f"the message has no button with action_id {action_id!r}")


async def act_button(sb: SlackSandbox, spec: dict[str, Any], request: Request) -> dict[str, Any]:
    """{"user", "channel", "ts", "action_id"}: the person clicks a button; the app gets `block_actions`."""
    user = _acting_user(spec)
    channel, msg = _message_target(sb, spec)
    button, block_id = _find_button(msg, _str(spec.get("action_id")))
    trigger_id = sb.new_trigger(user)
    response_url = sb.new_response_url(
        _base_url(request), user=user, channel=channel["id"], message_ts=msg["ts"]
    )
    action = {
        "type": "button",
        "action_id": button["action_id"],
        "block_id": block_id,
        "text": button.get("text"),
        "value": button.get("value"),
        "action_ts": sb._next_ts(),
    }
    if button.get("style"):
        action["style"] = button["style"]
    container: dict[str, Any] = {
        "type": "message",
        "message_ts": msg["ts"],
        "channel_id": channel["id"],
        "is_ephemeral": False,
    }
    if msg.get("thread_ts") not in (None, msg["ts"]):
        container["thread_ts"] = msg["thread_ts"]
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": _user_ref(user),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "container": container,
        "trigger_id": trigger_id,
        "team": _team_ref(),
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel["id"], "name": channel["name"]},
        "message": sb.public_message(msg, include_metadata=False),
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [action],
    }
    result = await _deliver_interaction(sb, payload, spec)
    return {**result, "trigger_id": trigger_id, "response_url": response_url}


async def act_submit(sb: SlackSandbox, spec: dict[str, Any], request: Request) -> dict[str, Any]:
    """{"user"?, "view_id"?, "values": {block_id or action_id: value}}: the person submits a modal.

    Without `view_id`: the latest open modal (of `user`, when given). The app
    gets `view_submission`; an empty 200 closes the modal, `response_action`
    "errors" keeps it open with the errors, "update" replaces it, "clear" closes it.
    """
    view = sb.find_view(spec.get("view_id"), spec.get("user"))
    if view["status"] != "open":
        raise _ActError(f"view {view['id']} is {view['status']}, not open")
    user = _acting_user({"user": spec.get("user") or view["user"]})
    values = spec.get("values") or {}
    if not isinstance(values, dict):
        raise _ActError("values must be an object: {block_id or action_id: value}")
    view["state"] = {"values": view_state_values(view, values)}
    payload = {
        "type": "view_submission",
        "team": _team_ref(),
        "user": _user_ref(user),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": sb.new_trigger(user),
        "view": public_view(view),
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }
    result = await _deliver_interaction(sb, payload, spec)
    answer: dict[str, Any] = result["json"] if isinstance(result.get("json"), dict) else {}
    action = answer.get("response_action") if result.get("status") == 200 else None
    if result.get("status") == 200 and action is None:
        view["status"] = "closed"
        view["errors"] = {}
    elif action == "errors":
        view["errors"] = dict(answer.get("errors") or {})
    elif action in ("update", "push") and isinstance(answer.get("view"), dict):
        view["status"] = "replaced"
        replacement = sb.open_view(sb.new_trigger(user), answer["view"])
        result["replaced_by"] = replacement["id"]
    elif action == "clear":
        view["status"] = "closed"
    sb.changed()
    return {**result, "view_id": view["id"], "view_status": view["status"], "view_errors": view["errors"]}


async def act_close(sb: SlackSandbox, spec: dict[str, Any], request: Request) -> dict[str, Any]:
    """{"view_id"? , "user"?}: the person cancels the modal (no view_closed is sent)."""
    view = sb.find_view(spec.get("view_id"), spec.get("user"))
    view["status"] = "closed"
    sb.changed()
    return {"view_id": view["id"], "view_status": "closed"}


async def act_command(sb: SlackSandbox, spec: dict[str, Any], request: Request) -> dict[str, Any]:
    """{"user", "channel", "text", "command"?}: the person runs a slash command (default /incident).

    The app's immediate answer is shown as Slack shows it: text only the person
    sees, or an `in_channel` message everyone sees.
    """
    user = _acting_user(spec)
    channel = sb.find_channel(spec.get("channel") or DEFAULT_CHANNELS[0], by_name=True)
    command = _str(spec.get("command") or DEFAULT_COMMAND)
    if not command.startswith("/"):
        raise _ActError("command must start with /")
    if COMMAND_SCOPE not in sb.scopes:  # an app without `commands` has no slash command to run
        return _not_delivered(sb, "slash_command", "missing_scope", needed=COMMAND_SCOPE)
    response_url = sb.new_response_url(_base_url(request), user=user, channel=channel["id"], message_ts=None)
    trigger_id = sb.new_trigger(user)
    form = {
        "token": VERIFICATION_TOKEN,
        "team_id": TEAM_ID,
        "team_domain": TEAM_NAME.lower(),
        "channel_id": channel["id"],
        "channel_name": "directmessage" if channel.get("is_im") else channel["name"],
        "user_id": user,
        "user_name": user_object(user)["name"],
        "command": command,
        "text": _str(spec.get("text")),
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id,
    }
    result = await sb.deliver(
        "slash_command",
        urlencode(form).encode(),
        "application/x-www-form-urlencoded",
        scopes=[[COMMAND_SCOPE]],
        **_delivery_overrides(spec),
    )
    if result.get("status") == 200 and result.get("body", "").strip():
        answer: dict[str, Any] = (
            result["json"] if isinstance(result.get("json"), dict) else {"text": result["body"]}
        )
        _show_answer(sb, answer, user=user, channel=channel["id"], message_ts=None, source="command")
    return {**result, "response_url": response_url, "trigger_id": trigger_id}


def _show_answer(
    sb: SlackSandbox,
    answer: dict[str, Any],
    *,
    user: str,
    channel: str,
    message_ts: str | None,
    source: str,
) -> None:
    """A response_url post or a command's answer, as Slack shows it."""
    text = _str(answer.get("text"))
    blocks = _json_arg(answer.get("blocks"), "invalid_blocks")
    original = sb.messages.get(channel, {}).get(message_ts) if message_ts else None
    if _bool(answer.get("delete_original")) and original is not None:
        sb.messages[channel].pop(original["ts"], None)
        if original.get("thread_ts") not in (None, original["ts"]):
            siblings = sb.replies.get((channel, original["thread_ts"]), [])
            if original["ts"] in siblings:
                siblings.remove(original["ts"])
        sb.changed()
        return
    if _bool(answer.get("replace_original")) and original is not None:
        if text:
            original["text"] = text
        if blocks is not None:
            original["blocks"] = _validate_blocks(blocks) if blocks else []
        original["edited"] = {"user": BOT_USER_ID, "ts": sb._next_ts()}
        sb.changed()
        return
    if not text and not blocks:
        raise SlackError("no_text")
    thread_ts = _str(answer.get("thread_ts")).strip() or None
    if answer.get("response_type") == "in_channel":
        sb.post({"channel": channel, "text": text, "blocks": blocks, "thread_ts": thread_ts})
        return
    sb.store_ephemeral(
        user=user, channel=channel, text=text, blocks=blocks, thread_ts=thread_ts, source=source
    )


async def respond_endpoint(request: Request) -> Response:
    """A response_url: 5 uses within 30 minutes, as in Slack."""
    sb: SlackSandbox = request.app.state.sandbox
    target = sb.response_urls.get(request.path_params["response_id"])
    if target is None or time.monotonic() - target["at"] > RESPONSE_URL_TTL:
        return JSONResponse({"ok": False, "error": "expired_url"}, status_code=404)
    if target["uses"] >= RESPONSE_URL_USES:
        return JSONResponse({"ok": False, "error": "used_url"}, status_code=404)
    try:
        answer = await _json_body(request)
        if not isinstance(answer, dict):
            raise ValueError("expected a JSON object")
    except ValueError:
        return JSONResponse({"ok": False, "error": "invalid_payload"}, status_code=400)
    try:
        _show_answer(
            sb,
            answer,
            user=target["user"],
            channel=target["channel"],
            message_ts=target["message_ts"],
            source="response_url",
        )
    except SlackError as exc:
        return JSONResponse({"ok": False, "error": exc.error}, status_code=400)
    target["uses"] += 1
    return JSONResponse({"ok": True})


# -- the human view (GET /) -----------------------------------------------------------

EMOJI = {
    "rotating_light": "\U0001f6a8",
    "raised_hand": "\u270b",
    "mag": "\U0001f50d",
    "wrench": "\U0001f527",
    "hourglass": "\u231b",
    "hourglass_flowing_sand": "\u23f3",
    "white_check_mark": "\u2705",
    "heavy_check_mark": "\u2714\ufe0f",
    "bookmark": "\U0001f516",
    "busts_in_silhouette": "\U0001f465",
    "arrow_up": "\u2b06\ufe0f",
    "arrow_down": "\u2b07\ufe0f",
    "alarm_clock": "\u23f0",
    "eyes": "\U0001f440",
    "fire": "\U0001f525",
    "warning": "\u26a0\ufe0f",
    "x": "\u274c",
    "red_circle": "\U0001f534",
    "large_orange_circle": "\U0001f7e0",
    "large_yellow_circle": "\U0001f7e1",
    "large_green_circle": "\U0001f7e2",
    "large_blue_circle": "\U0001f535",
    "memo": "\U0001f4dd",
    "pager": "\U0001f4df",
    "ticket": "\U0001f3ab",
    "+1": "\U0001f44d",
    "thumbsup": "\U0001f44d",
    "tada": "\U0001f389",
    "clipboard": "\U0001f4cb",
    "bell": "\U0001f514",
    "sos": "\U0001f198",
    "stopwatch": "\u23f1\ufe0f",
    "hammer_and_wrench": "\U0001f6e0\ufe0f",
    "speech_balloon": "\U0001f4ac",
    "link": "\U0001f517",
    "information_source": "\u2139\ufe0f",
    "rocket": "\U0001f680",
    "construction": "\U0001f6a7",
    "chart_with_upwards_trend": "\U0001f4c8",
    "point_right": "\U0001f449",
}
_EMOJI_RE = re.compile(":(" + "|".join(re.escape(k) for k in sorted(EMOJI, key=len, reverse=True)) + "):")
_CODE_BLOCK_RE = re.compile(r"```\n?(.*?)```", re.S)
_INLINE_CODE_RE = re.compile(r"`([^`\n]+)`")
_CONTROL_RE = re.compile(r"<([^<>\n]+)>")
_BOLD_RE = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]*?\S)\*(?![\w*])")
_ITALIC_RE = re.compile(r"(?<![\w_])_(?=\S)([^_\n]*?\S)_(?![\w_])")
_STRIKE_RE = re.compile(r"(?<![\w~])~(?=\S)([^~\n]*?\S)~(?![\w~])")


def emojize(name: str) -> str:
    return EMOJI.get(name, f":{name}:")


def _slack_unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def render_mrkdwn(text: str, channels: dict[str, dict[str, Any]] | None = None) -> Markup:
    """Slack mrkdwn -> safe HTML: *bold*, _italic_, ~strike~, `code`, ```blocks```,
    <links|label>, <@U…> and <#C…> mentions, > quotes, :emoji: and newlines."""
    channels = channels or {}
    stash: list[str] = []

    def keep(fragment: str) -> str:
        stash.append(fragment)
        return f"\x00{len(stash) - 1}\x00"

    def esc(raw: str) -> str:
        return html.escape(_slack_unescape(raw), quote=True)

    def control(m: re.Match[str]) -> str:
        inner = m.group(1)
        target, _, label = inner.partition("|")
        if target.startswith("@"):
            user = target[1:]
            return keep(f'<span class="mention">@{esc(label or user_object(user)["name"])}</span>')
        if target.startswith("#"):
            ch = channels.get(target[1:])
            return keep(f'<span class="mention">#{esc(label or (ch or {}).get("name", target[1:]))}</span>')
        if target.startswith("!"):
            word = target[1:].split("^")[0]
            return keep(f'<span class="mention">{esc(label or "@" + word)}</span>')
        url = _slack_unescape(target)
        if re.match(r"^(https?://|mailto:)", url):
            href = html.escape(url, quote=True)
            return keep(f'<a href="{href}" target="_blank" rel="noopener">{esc(label or target)}</a>')
        return m.group(0)  # not a control sequence: leave for escaping

    text = text.replace("\x00", "")
    text = _CODE_BLOCK_RE.sub(lambda m: keep(f"<pre>{esc(m.group(1))}</pre>"), text)
    text = _INLINE_CODE_RE.sub(lambda m: keep(f"<code>{esc(m.group(1))}</code>"), text)
    text = _CONTROL_RE.sub(control, text)
    lines = []
    for line in text.split("\n"):
        quote = False
        if line.startswith("&gt;") or line.startswith(">"):
            quote = True
            line = re.sub(r"^(&gt;|>) ?", "", line)
        line = esc(line)
        line = _BOLD_RE.sub(r"<b>\1</b>", line)
        line = _ITALIC_RE.sub(r"<i>\1</i>", line)
        line = _STRIKE_RE.sub(r"<s>\1</s>", line)
        line = _EMOJI_RE.sub(lambda m: EMOJI[m.group(1)], line)
        lines.append(f'<span class="quote">{line}</span>' if quote else line)
    out = "<br>".join(lines)
    out = re.sub("\x00(\\d+)\x00", lambda m: stash[int(m.group(1))], out)
    return Markup(out)


def _text_obj(obj: Any, channels: dict[str, dict[str, Any]]) -> Markup:
    if not isinstance(obj, dict):
        return Markup("")
    text = _str(obj.get("text"))
    if obj.get("type") == "mrkdwn":
        return render_mrkdwn(text, channels)
    rendered = html.escape(text).replace("\n", "<br>")
    if obj.get("emoji", True):
        rendered = _EMOJI_RE.sub(lambda m: EMOJI[m.group(1)], rendered)
    return Markup(rendered)


def _element_html(el: Any, channels: dict[str, dict[str, Any]]) -> str:
    if not isinstance(el, dict):
        return ""
    kind = el.get("type")
    if kind == "button":
        # Clickable: the page's script sends it to /_sandbox/act/button as the person in "Acting as".
        style = html.escape(_str(el.get("style")))
        action_id = html.escape(_str(el.get("action_id")), quote=True)
        return (
            f'<button type="button" class="btn {style}" data-act="button" data-action-id="{action_id}">'
            f"{_text_obj(el.get('text'), channels)}</button>"
        )
    if kind == "image":
        return f'<span class="muted">[{html.escape(_str(el.get("alt_text")))}]</span>'
    if kind in ("mrkdwn", "plain_text"):
        return str(_text_obj(el, channels))
    if kind and kind.endswith("select"):
        placeholder = _text_obj(el.get("placeholder"), channels) or html.escape(kind)
        return f'<span class="btn">{placeholder} &#9662;</span>'
    return f'<span class="muted">[{html.escape(_str(kind))}]</span>'


def render_blocks(blocks: list[dict[str, Any]], fallback: str, channels: dict[str, dict[str, Any]]) -> Markup:
    parts: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            parts.append(f'<div class="b-header">{_text_obj(block.get("text"), channels)}</div>')
        elif kind == "section":
            inner = f"<div>{_text_obj(block.get('text'), channels)}</div>" if block.get("text") else ""
            if block.get("fields"):
                cells = "".join(f"<div>{_text_obj(f, channels)}</div>" for f in block["fields"])
                inner += f'<div class="b-fields">{cells}</div>'
            if block.get("accessory"):
                inner += f'<div class="b-accessory">{_element_html(block["accessory"], channels)}</div>'
            parts.append(f'<div class="b-section">{inner}</div>')
        elif kind == "divider":
            parts.append("<hr>")
        elif kind == "context":
            items = " ".join(_element_html(e, channels) for e in block.get("elements", []))
            parts.append(f'<div class="b-context">{items}</div>')
        elif kind == "actions":
            items = " ".join(_element_html(e, channels) for e in block.get("elements", []))
            parts.append(f'<div class="b-actions">{items}</div>')
        elif kind == "image":
            parts.append(f'<div class="muted">[image: {html.escape(_str(block.get("alt_text")))}]</div>')
        elif kind == "markdown":
            parts.append(f"<div>{render_mrkdwn(_str(block.get('text')), channels)}</div>")
        elif kind == "rich_text":
            parts.append(f"<div>{render_mrkdwn(fallback, channels)}</div>")
        else:
            parts.append(f'<div class="muted">[{html.escape(_str(kind))} block]</div>')
    return Markup("".join(parts))


def _hms(ts: str) -> str:
    return datetime.fromtimestamp(_ts_micros(ts) / 1e6, tz=UTC).strftime("%H:%M:%S")


def _message_view(sb: SlackSandbox, cid: str, msg: dict[str, Any]) -> dict[str, Any]:
    user = msg.get("user", "")
    author = msg.get("username") or (user_object(user)["name"] if user else "?")
    body = (
        render_blocks(msg["blocks"], msg.get("text", ""), sb.channels)
        if msg.get("blocks")
        else render_mrkdwn(msg.get("text", ""), sb.channels)
    )
    replies = [
        _message_view(sb, cid, sb.messages[cid][ts])
        for ts in sb.replies.get((cid, msg["ts"]), [])
        if msg.get("thread_ts") in (None, msg["ts"])
    ]
    return {
        "ts": msg["ts"],
        "channel": cid,
        "anchor": "m" + msg["ts"].replace(".", ""),
        "author": author,
        "is_bot": "bot_id" in msg,
        "pinned": cid in msg.get("pinned_to", []),
        "ephemeral_for": None,
        "time": _hms(msg["ts"]),
        "edited": "edited" in msg,
        "broadcast": msg.get("subtype") == "thread_broadcast",
        "event_type": (msg.get("metadata") or {}).get("event_type"),
        "body": body,
        "files": msg.get("files", []),
        "reactions": [
            {"emoji": emojize(r["name"]), "name": r["name"], "count": r["count"]}
            for r in msg.get("reactions", [])
        ],
        "replies": replies,
    }


def _ephemeral_view(sb: SlackSandbox, msg: dict[str, Any]) -> dict[str, Any]:
    body = (
        render_blocks(msg["blocks"], msg.get("text", ""), sb.channels)
        if msg.get("blocks")
        else render_mrkdwn(msg.get("text", ""), sb.channels)
    )
    return {
        "ts": msg["ts"],
        "channel": msg["channel"],
        "anchor": "e" + msg["ts"].replace(".", ""),
        "author": BOT_NAME,
        "is_bot": True,
        "pinned": False,
        "ephemeral_for": user_object(msg["for_user"])["name"],
        "time": _hms(msg["ts"]),
        "edited": False,
        "broadcast": False,
        "event_type": None,
        "body": body,
        "files": [],
        "reactions": [],
        "replies": [],
    }


def _channel_view_for_page(sb: SlackSandbox, channel: dict[str, Any]) -> dict[str, Any]:
    cid = channel["id"]
    msgs = [m for m in sb.messages.get(cid, {}).values() if m.get("thread_ts") in (None, m["ts"])]
    title = f"@{channel['user']}" if channel.get("is_im") else _channel_title(channel)
    views = [_message_view(sb, cid, m) for m in msgs]
    # Ephemeral messages and response_url answers, where the person saw them ("only visible to you").
    by_ts = {v["ts"]: v for v in views}
    for msg in sb.ephemeral:
        if msg["channel"] != cid:
            continue
        parent = by_ts.get(msg.get("thread_ts") or "")
        if parent is not None:
            parent["replies"].append(_ephemeral_view(sb, msg))
            parent["replies"].sort(key=lambda r: _ts_micros(r["ts"]))
        else:
            views.append(_ephemeral_view(sb, msg))
    views.sort(key=lambda v: _ts_micros(v["ts"]))
    return {
        "id": cid,
        "name": channel["name"],
        "title": title,
        "topic": (channel.get("topic") or {}).get("value", ""),
        "bookmarks": sb.bookmarks.get(cid, []),
        "messages": views,
        "count": len(msgs),
    }


def _channel_title(channel: dict[str, Any]) -> str:
    """#name, and what the bot's access to it is when that is not the usual (public, invited)."""
    notes = (["private"] if channel.get("is_private") else []) + (
        [] if bot_is_member(channel) else ["bot not in channel"]
    )
    return f"#{channel['name']}" + (f" ({', '.join(notes)})" if notes else "")


def _modal_for_page(view: dict[str, Any], channels: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """An open modal as a plain HTML form: one field per input block."""
    fields = []
    texts = []
    for block in view.get("blocks", []):
        element = block.get("element") or {}
        if block.get("type") != "input":
            if block.get("type") in ("section", "context", "header"):
                texts.append(render_blocks([block], "", channels))
            continue
        kind = element.get("type")
        options = [
            {"value": o.get("value"), "label": _str((o.get("text") or {}).get("text"))}
            for o in (element.get("options") or [])
        ]
        initial = element.get("initial_value") or (element.get("initial_option") or {}).get("value") or ""
        fields.append(
            {
                "name": block["block_id"],
                "label": _str((block.get("label") or {}).get("text")),
                "optional": bool(block.get("optional")),
                "kind": "select" if options else ("textarea" if element.get("multiline") else "text"),
                "input_type": kind,
                "options": options,
                "initial": initial,
                "placeholder": _str((element.get("placeholder") or {}).get("text")),
                "error": view.get("errors", {}).get(block["block_id"], ""),
            }
        )
    return {
        "id": view["id"],
        "user": view["user"],
        "user_name": user_object(view["user"])["name"],
        "title": _str((view.get("title") or {}).get("text")),
        "submit": _str((view.get("submit") or {}).get("text")) or "Submit",
        "close": _str((view.get("close") or {}).get("text")) or "Cancel",
        "texts": texts,
        "fields": fields,
    }


_templates = Environment(
    loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


async def index_page(request: Request) -> Response:
    sb: SlackSandbox = request.app.state.sandbox
    wanted = request.query_params.get("channel")
    all_channels = list(sb.channels.values())
    if wanted:
        key = wanted.lstrip("#")
        shown = [c for c in all_channels if key in (c["id"], c["name"])][:1]
        if not shown:
            return HTMLResponse(f"<h1>No channel {html.escape(wanted)}</h1>", status_code=404)
    else:
        shown = all_channels
    page = _templates.get_template("slack.html").render(
        nav=[
            {"name": c["name"], "title": _channel_title(c) if not c.get("is_im") else c["name"]}
            for c in all_channels
        ],
        channels=[_channel_view_for_page(sb, c) for c in shown],
        selected=wanted,
        refresh=request.query_params.get("refresh", "3"),
        modals=[_modal_for_page(v, sb.channels) for v in sb.views.values() if v["status"] == "open"],
        request_url=sb.request_url,
        default_user=DEFAULT_ACTING_USER,
        command=DEFAULT_COMMAND,
    )
    return HTMLResponse(page)


async def permalink_page(request: Request) -> Response:
    sb: SlackSandbox = request.app.state.sandbox
    channel = sb.channels.get(request.path_params["channel"])
    if channel is None:
        return HTMLResponse("<h1>No such channel</h1>", status_code=404)
    return RedirectResponse(f"/?channel={channel['name']}#m{request.path_params['digits']}")


# -- the app ------------------------------------------------------------------------


def create_app(
    state_file: str | Path | None = None,
    rate_limit_per_minute: int | None = None,
    channels: Iterable[str] = DEFAULT_CHANNELS,
    request_url: str | None = None,
    signing_secret: str | None = None,
    tokens: Iterable[str] | dict[str, Iterable[str] | str | None] | None = None,
    scopes: Iterable[str] | str | None = None,
) -> Starlette:
    """The sandbox as an ASGI app; ``app.state.sandbox`` is its SlackSandbox.

    With ``request_url`` (the app's Events API / interactivity / slash command
    URL) and ``signing_secret``, the ``/_sandbox/act/...`` endpoints deliver
    signed requests to the app as Slack does.

    ``tokens``: the bot tokens the Web API accepts (a list, or token -> its own
    scopes, None for the app's); default SLACK_SANDBOX_TOKENS or DEFAULT_TOKENS,
    plus SLACK_BOT_TOKEN. ``scopes``: the app's bot scopes; default
    SLACK_SANDBOX_SCOPES or DEFAULT_SCOPES.
    """
    sandbox = SlackSandbox(
        state_file=state_file,
        rate_limit_per_minute=rate_limit_per_minute,
        channels=channels,
        request_url=request_url,
        signing_secret=signing_secret,
        tokens=tokens,
        scopes=scopes,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            sandbox.flush()

    routes = [
        Route("/", index_page, methods=["GET"]),
        Route("/api/{method:str}", api_endpoint, methods=["GET", "POST"]),
        Route("/_upload/{file_id:str}", upload_endpoint, methods=["POST", "PUT"]),
        Route("/archives/{channel:str}/p{digits:str}", permalink_page, methods=["GET"]),
        Route("/_sandbox/health", control_health, methods=["GET"]),
        Route("/_sandbox/faults", control_faults, methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/rate-limit", control_rate_limit, methods=["GET", "POST"]),
        Route("/_sandbox/dnd", control_dnd, methods=["GET", "POST"]),
        Route("/_sandbox/state", control_state, methods=["GET"]),
        Route("/_sandbox/reset", control_reset, methods=["POST"]),
        Route("/_sandbox/calls", control_calls, methods=["GET", "DELETE"]),
        Route("/_sandbox/messages", control_messages, methods=["POST"]),
        Route("/_sandbox/files/{file_id:str}", file_download, methods=["GET"]),
        Route("/_sandbox/config", control_config, methods=["GET", "POST"]),
        Route("/_sandbox/tokens", control_tokens, methods=["GET", "POST"]),
        Route("/_sandbox/channels", control_channels, methods=["GET", "POST"]),
        Route("/_sandbox/act/reaction", _act_endpoint(act_reaction), methods=["POST"]),
        Route("/_sandbox/act/pin", _act_endpoint(act_pin), methods=["POST"]),
        Route("/_sandbox/act/button", _act_endpoint(act_button), methods=["POST"]),
        Route("/_sandbox/act/submit", _act_endpoint(act_submit), methods=["POST"]),
        Route("/_sandbox/act/close", _act_endpoint(act_close), methods=["POST"]),
        Route("/_sandbox/act/command", _act_endpoint(act_command), methods=["POST"]),
        Route("/_sandbox/respond/{response_id:str}", respond_endpoint, methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.sandbox = sandbox
    return app


class _BackgroundServer(uvicorn.Server):
    """A uvicorn server that leaves the process's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
        yield


@contextlib.asynccontextmanager
async def serve_in_background(app: Any, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on this event loop; yields 'http://host:port'.

    ``port=0`` picks a free port. Leaving the block shuts the server down
    cleanly (lifespan shutdown included, so the sandbox flushes its state file).
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="on",
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    server = _BackgroundServer(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                exc = task.exception() if not task.cancelled() else None
                raise RuntimeError(f"uvicorn did not start on {host}:{port}") from exc
            await asyncio.sleep(0.005)
        bound = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(task), timeout=5)
        if not task.done():
            task.cancel()


@contextlib.asynccontextmanager
async def run_sandbox(
    state_file: str | Path | None = None,
    rate_limit_per_minute: int | None = None,
    channels: Iterable[str] = DEFAULT_CHANNELS,
    host: str = "127.0.0.1",
    port: int = 0,
    tokens: Iterable[str] | dict[str, Iterable[str] | str | None] | None = None,
    scopes: Iterable[str] | str | None = None,
) -> AsyncIterator[str]:
    """A Slack sandbox on a free port for the length of the block; yields its base URL.

    Point slack_sdk at ``url + "/api/"`` with one of its tokens (DEFAULT_TOKENS unless given).
    """
    app = create_app(
        state_file=state_file,
        rate_limit_per_minute=rate_limit_per_minute,
        channels=channels,
        tokens=tokens,
        scopes=scopes,
    )
    async with serve_in_background(app, host=host, port=port) as url:
        yield url


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.slack", description="Local Slack Web API sandbox"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("SLACK_SANDBOX_PORT") or DEFAULT_PORT))
    parser.add_argument("--state", default=None, help="state file (JSON); no persistence if omitted")
    parser.add_argument("--rate-limit-per-minute", type=int, default=None, help="per channel; default off")
    parser.add_argument(
        "--request-url",
        default=os.environ.get("SLACK_REQUEST_URL") or None,
        help="the app's Request URL (events, interactivity, slash commands); env SLACK_REQUEST_URL",
    )
    parser.add_argument(
        "--signing-secret",
        default=os.environ.get("SLACK_SIGNING_SECRET") or None,
        help="the app's signing secret, to sign what is delivered; env SLACK_SIGNING_SECRET",
    )
    parser.add_argument(
        "--channel",
        dest="channels",
        action="extend",
        nargs="+",
        default=None,
        metavar="NAME",
        help=f"pre-created channels (replace the defaults: {', '.join(DEFAULT_CHANNELS)})",
    )
    opts = parser.parse_args(argv)
    app = create_app(
        state_file=opts.state,
        rate_limit_per_minute=opts.rate_limit_per_minute,
        channels=opts.channels or DEFAULT_CHANNELS,
        request_url=opts.request_url,
        signing_secret=opts.signing_secret,
    )
    print(
        f"Slack sandbox: http://{opts.host}:{opts.port}/  (API: http://{opts.host}:{opts.port}/api/)"
        + (f"; delivering to {opts.request_url}" if opts.request_url else ""),
        flush=True,
    )
    uvicorn.run(app, host=opts.host, port=opts.port, log_level="warning")


if __name__ == "__main__":
    main()
