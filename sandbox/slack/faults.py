"""Fault injection and rate limits, as the control API sets them.

``/_sandbox/faults`` queues faults (an HTTP status, a Slack error, a delay;
with ``perform`` the call is made and its answer lost) and
``/_sandbox/rate-limit`` sets the per-channel limit of RATE_LIMITED_METHODS.
SlackSandbox keeps both (``add_fault``, ``take_fault``, ``rate_check``) and the
Web API endpoint applies them; ``_FAULT_ERRORS`` names the Slack error a
fault's status answers with.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .common import _bad_request, _json_body
from .state import SlackSandbox

_FAULT_ERRORS = {
    429: "ratelimited",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "request_timeout",
}


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
