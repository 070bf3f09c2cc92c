"""The Slack Web API methods and the HTTP endpoint that answers them.

Each method is ``(sandbox, args, request) -> response dict`` registered in
METHODS by ``@method("chat.postMessage")``, raising SlackError for Slack's
``{"ok": false}``. ``api_endpoint`` (``/api/{method}``) reads the arguments
(query, form or JSON), authenticates the token, checks the method's scope,
applies an injected fault or the rate limit, and answers in Slack's shape
with its ``x-oauth-scopes`` headers; ``upload_endpoint`` and ``file_download``
take and serve the files of ``files.getUploadURLExternal``.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import math
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from ..people import person
from .auth import _CONVERSATION_SCOPES, _LIST_TYPES, ACCEPTED_SCOPES, Grant, bot_is_member, conversation_kind
from .blocks import _validate_blocks, _validate_metadata
from .common import (
    _CHANNEL_NAME_RE,
    _EMOJI_NAME_RE,
    _USER_ID_RE,
    APP_ID,
    BOT_ID,
    BOT_NAME,
    BOT_USER_ID,
    MAX_TEXT,
    RATE_LIMITED_METHODS,
    TEAM_ID,
    TEAM_NAME,
    SlackError,
    _bool,
    _decode_cursor,
    _encode_cursor,
    _int,
    _json_arg,
    _str,
    _ts_micros,
)
from .faults import _FAULT_ERRORS
from .state import SlackSandbox

MAX_UPLOAD = 5 * 1024 * 1024


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
    if channel.get("is_archived"):
        raise SlackError("is_archived")
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


def user_object(user_id: str, with_email: bool = True) -> dict[str, Any]:
    """A user as Slack shows one: the people of sandbox/people.py by name, anyone else made up.

    `profile.email` only for a caller with `users:read.email`, as in Slack.
    """
    is_bot = user_id == BOT_USER_ID
    known = person(user_id)
    name = BOT_NAME if is_bot else known.user_name if known else user_id.lower()
    real_name = "Incident Bot" if is_bot else known.name if known else f"User {user_id}"
    email = known.email if known else f"{name}@sandbox.example"
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
            **({"email": email} if with_email and not is_bot else {}),
            "team": TEAM_ID,
        },
    }


@method("users.info")
def users_info(sb: SlackSandbox, args: dict[str, Any], request: Request) -> dict[str, Any]:
    user = _str(args.get("user")).strip()
    if not _USER_ID_RE.match(user):
        raise SlackError("user_not_found")
    return {"ok": True, "user": user_object(user, with_email="users:read.email" in _grant(request).scopes)}


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


@method("conversations.members")
def conversations_members(sb: SlackSandbox, args: dict[str, Any], request: Request) -> dict[str, Any]:
    channel = sb.visible_channel(args.get("channel"))
    _conversation_scope(request, channel, "read")
    return {"ok": True, "members": list(channel.get("members", [])), "response_metadata": {"next_cursor": ""}}


@method("pins.add")
def pins_add(sb: SlackSandbox, args: dict[str, Any], request: Request) -> dict[str, Any]:
    channel = sb.visible_channel(args.get("channel"))
    if not bot_is_member(channel):
        raise SlackError("not_in_channel")
    if not args.get("timestamp"):
        raise SlackError("no_item_specified")
    sb.pin(channel["id"], args.get("timestamp"))  # message_not_found, already_pinned
    return {"ok": True}


@method("pins.list")
def pins_list(sb: SlackSandbox, args: dict[str, Any], request: Request) -> dict[str, Any]:
    channel = sb.visible_channel(args.get("channel"))
    items = [
        {
            "type": "message",
            "created": int(time.time()),
            "created_by": BOT_USER_ID,
            "channel": channel["id"],
            "message": sb.public_message(m, include_metadata=False),
        }
        for m in sb.messages[channel["id"]].values()
        if channel["id"] in m.get("pinned_to", [])
    ]
    return {"ok": True, "items": items}


@method("conversations.archive")
def conversations_archive(sb: SlackSandbox, args: dict[str, Any], request: Request) -> dict[str, Any]:
    channel = sb.visible_channel(args.get("channel"))
    _conversation_scope(request, channel, "archive")
    if channel.get("is_general"):
        raise SlackError("cant_archive_general")
    if channel.get("is_archived"):
        raise SlackError("already_archived")
    if not bot_is_member(channel):
        raise SlackError("not_in_channel")
    channel["is_archived"] = True
    sb.changed()
    return {"ok": True}


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
    cid: str | None = None  # the channel a rate-limited call names, as its id (kept in the call log)
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
    if cid is not None:
        extra_log["channel"] = cid
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
