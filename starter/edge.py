"""What the HTTP edges (the alert receivers, the paging webhooks, the Slack handler) share.

A body read within its limit: a request answered here never reaches Temporal or
bolt, `Refused` carries its status and a reason a sender can act on. And the
receivers' answers: the error body, the JSON parse, and which Temporal errors are
worth a 503 and a retry.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from temporalio.service import RPCError, RPCStatusCode

from starter.connect import TemporalUnreachable
from workflows.limits import MAX_BODY_BYTES

# Temporal errors that a later retry can fix: the sender hears 503 and retries.
_TRANSIENT = frozenset(
    {
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.RESOURCE_EXHAUSTED,
        RPCStatusCode.ABORTED,
        RPCStatusCode.CANCELLED,
        RPCStatusCode.INTERNAL,
        RPCStatusCode.UNKNOWN,
    }
)
RETRY_AFTER_SECONDS = 5


class Refused(Exception):
    """A request answered at the edge: its status (400, 401, 413) and a short reason.

    `size`: for a 413, the body's declared length or as much of it as was read.
    """

    def __init__(self, status: int, reason: str, size: int = 0) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.size = size


async def read_bounded(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request's body; Refused 413 as soon as it is over `limit` bytes (declared or sent)."""
    length = request.headers.get("content-length")
    if length is not None and not (length.isascii() and length.isdigit()):
        raise Refused(400, "Content-Length is not a number")
    if length is not None and int(length) > limit:
        raise Refused(413, f"the body is over {limit:,} bytes", size=int(length))
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Refused(413, f"the body is over {limit:,} bytes", size=size)
            chunks.append(chunk)
    except ClientDisconnect:
        raise Refused(400, "the client went away before the body was read") from None
    return b"".join(chunks)


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same request later can succeed (Temporal down or overloaded)."""
    if isinstance(exc, TemporalUnreachable):
        return True
    if isinstance(exc, RPCError):
        # gRPC says RESOURCE_EXHAUSTED for a message over its size limit too: that one is permanent.
        return exc.status in _TRANSIENT and "larger than max" not in str(exc)
    return not isinstance(exc, ValueError | TypeError)


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """`{"ok": false, "error": <one line>}` with the status."""
    return JSONResponse({"ok": False, "error": message, **extra}, status_code=status, headers=headers)


def validation_message(exc: ValidationError, within: str = "") -> str:
    """`field.path: what is wrong; ...` for the first five problems; paths start at `within`."""
    parts = []
    for item in exc.errors()[:5]:
        where = ".".join([within] * bool(within) + [str(p) for p in item["loc"]]) or "body"
        parts.append(f"{where}: {str(item['msg']).removeprefix('Value error, ')}")
    return "; ".join(parts)


def parse_json(raw: bytes) -> Any:
    """The body as JSON; ValueError with a one-line reason for anything the parser refuses."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except ValueError as exc:  # JSONDecodeError, and integers of over 4,300 digits
        raise ValueError(one_line(exc)) from None


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]
