"""The sandbox's state: SlackSandbox, and the state file it is kept in.

One SlackSandbox holds everything a workspace has (channels, messages and
threads, reactions and pins, ephemeral messages, modals, files, bookmarks,
Do Not Disturb), writes it to the state file (atomically, at most every
WRITE_INTERVAL) and reads it back on start. It also keeps what the Web API
needs besides: the accepted tokens and the app's scopes (``authenticate``),
the injected faults and the per-channel rate limit (``take_fault``,
``rate_check``), the call log, and the delivery of signed requests to the
app's Request URL (``deliver``).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import math
import os
import secrets
import tempfile
import time
from collections import Counter, deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
from slack_sdk.signature import SignatureVerifier

from .auth import Grant, bot_is_member, parse_scopes, scopes_from_env, tokens_from_env
from .blocks import _validate_blocks, _validate_metadata, _validate_view
from .common import (
    _EMOJI_NAME_RE,
    _USER_ID_RE,
    APP_ID,
    BOT_ID,
    BOT_NAME,
    BOT_USER_ID,
    DEFAULT_CHANNELS,
    MAX_TEXT,
    RATE_LIMITED_METHODS,
    TEAM_ID,
    SlackError,
    _bool,
    _json_arg,
    _stable_id,
    _str,
    _ts_from_micros,
    _ts_micros,
    channel_id_for,
    dm_channel_id_for,
)

log = logging.getLogger("sandbox.slack")

STATE_VERSION = 1
WRITE_INTERVAL = 0.2  # seconds: the state file is written at most this often
CALL_LOG_SIZE = 10_000
DELIVERY_TIMEOUT = 3.0  # seconds: Slack gives up on an app after 3 s
TRIGGER_TTL = 3.0  # seconds: a trigger_id opens a modal only this soon after the click, once
DELIVERY_LOG_SIZE = 200


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
