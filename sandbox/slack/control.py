"""The control API (``/_sandbox/...``): plain JSON, not Slack-shaped.

Do Not Disturb, the state (dump and reset), the call log, posting as a
person, health, the tokens and scopes, channels and the bot's membership,
and where the app listens (its Request URL and signing secret). Faults and
the rate limit are in ``faults``; acting as a person toward the app in
``events``.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .auth import _mask, parse_scopes
from .common import (
    _CHANNEL_NAME_RE,
    _USER_ID_RE,
    BOT_USER_ID,
    SlackError,
    _bad_request,
    _bool,
    _json_body,
    _str,
)
from .events import _ActError, _acting_user
from .state import SlackSandbox


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
    """The last 10,000 Web API calls, oldest first: [{method, status, error, at, scopes}], with the
    `channel` id a rate-limited call (chat.postMessage, ...) named; ?method= filters."""
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
