"""What every part of the Slack sandbox shares.

The workspace the sandbox plays (its team, the bot and the app), the default
channels and port, the message limits and which methods are rate limited;
SlackError, the Slack-shaped failure every method raises; stable IDs,
message timestamps and pagination cursors; the parsing of method arguments
(which arrive as JSON or as a form); and the two JSON helpers of the
``/_sandbox/...`` endpoints.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

DEFAULT_CHANNELS: tuple[str, ...] = ("incidents", "netclaw-alerts", "netclaw-general", "stakeholders")
DEFAULT_PORT = 8901

TEAM_ID = "T0SANDBOX"
TEAM_NAME = "Sandbox"
BOT_USER_ID = "U0INCIDENTBOT"
BOT_ID = "B0INCIDENTBOT"
APP_ID = "A0INCIDENTBOT"
BOT_NAME = "incident-bot"

MAX_TEXT = 40_000
RATE_LIMITED_METHODS = frozenset({"chat.postMessage", "chat.update"})

_CHANNEL_NAME_RE = re.compile(r"^[a-z0-9_-]+$")
_USER_ID_RE = re.compile(r"^[UW][A-Z0-9]{2,}$")
_EMOJI_NAME_RE = re.compile(r"^[a-z0-9_+'-]+(::skin-tone-[2-6])?$")


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


# ---------------------------------------------------------------------------
# the /_sandbox endpoints' JSON bodies and errors


async def _json_body(request: Request) -> Any:
    body = await request.body()
    if not body.strip():
        return {}
    return json.loads(body)


def _bad_request(message: str) -> Response:
    return JSONResponse({"ok": False, "error": message}, status_code=400)
