"""Acting as Slack toward the app (``/_sandbox/act/...``, ``/_sandbox/respond/...``).

A person reacts, pins, clicks a button, submits or closes a modal, or runs
a slash command: the state changes as that would change it, and the app gets
what Slack would send it, signed (``SlackSandbox.deliver``): an Events API
``event_callback`` (only with the event's scope, from a channel the bot is
in), ``block_actions`` or ``view_submission`` as ``payload=<json>``, or a
slash command form (only with ``commands``). The app's answer, and posts to
a ``response_url``, are shown as Slack shows them.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .auth import COMMAND_SCOPE, EVENT_SCOPES, bot_is_member
from .blocks import _validate_blocks, view_state_values
from .common import (
    _USER_ID_RE,
    APP_ID,
    BOT_USER_ID,
    DEFAULT_CHANNELS,
    TEAM_ID,
    TEAM_NAME,
    SlackError,
    _bad_request,
    _bool,
    _json_arg,
    _json_body,
    _str,
)
from .state import SlackSandbox
from .web_api import _base_url, public_view, user_object

# Acting as Slack toward the app (the /_sandbox/act/... endpoints).
RESPONSE_URL_TTL = 30 * 60  # seconds: a response_url works for 30 minutes ...
RESPONSE_URL_USES = 5  # ... and at most 5 times
DEFAULT_COMMAND = "/incident"
DEFAULT_ACTING_USER = "U0SANDBOXUSER"
VERIFICATION_TOKEN = "sandbox-verification-token"  # the deprecated `token` field Slack still sends


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
