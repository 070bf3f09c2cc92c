"""What the HTTP edges (the alert receivers, the Slack handler) share: a body read within its limit.

A request answered here never reaches Temporal or bolt: `Refused` carries its
status and a reason a sender can act on.
"""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request

from workflows.limits import MAX_BODY_BYTES


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
