"""What the PagerDuty, Opsgenie and Jira sandboxes share: a state file, faults, webhook delivery.

- `JsonStateFile`: the whole state as one JSON file, written atomically after every change
  (a temp file, then os.replace), read back at start; a file that cannot be read is moved
  aside (`<name>.corrupt-<time>`) and the sandbox starts empty, as the ServiceNow sandbox does.
- `FaultQueue`: what ``POST /_sandbox/faults`` queues, as in the Slack and ServiceNow sandboxes:
  ``{"status": 500, "count": 2}`` makes the next two API calls answer 500 (``"method": "POST"``:
  only calls of that HTTP method; ``"path": "/issue"``: only calls whose path holds that);
  ``"retry_after"`` adds a Retry-After header; ``"perform": true`` does the call first and
  then answers with the fault (the answer is lost, the write is not: the exactly-once case);
  ``"count": -1`` until ``DELETE /_sandbox/faults``.
- `deliver_webhook`: one POST to a configured URL, retried a few times on a connection
  error, a timeout, 429 or 5xx (a 4xx will not heal in seconds), each attempt logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

log = logging.getLogger("sandbox.paging")

WEBHOOK_ATTEMPTS = 3
WEBHOOK_BACKOFF = (0.2, 0.5)  # seconds before the second and third attempt
WEBHOOK_TIMEOUT = 5.0
DELIVERY_LOG_SIZE = 1_000


class JsonStateFile:
    """The state of one sandbox as a JSON file; no file: kept in memory only."""

    def __init__(self, path: str | Path | None, name: str) -> None:
        self.path = Path(path) if path else None
        self.name = name  # for log lines: "pagerduty sandbox"

    def load(self) -> dict[str, Any] | None:
        if self.path is None or not self.path.exists():
            return None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            return data
        except (OSError, ValueError) as exc:
            self.move_aside(exc)
            return None

    def move_aside(self, exc: Exception) -> None:
        assert self.path is not None
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        log.warning("%s: cannot load %s (%s); moved aside to %s", self.name, self.path, exc, aside)
        with contextlib.suppress(OSError):
            os.replace(self.path, aside)

    def save(self, data: dict[str, Any]) -> None:
        if self.path is None:
            return
        path = self.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(data, fh, separators=(",", ":"))
                os.chmod(tmp, 0o644)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError:
            log.exception("%s: cannot write %s", self.name, path)


def _bool(value: Any, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


class FaultQueue:
    """Faults for the next API calls, oldest first."""

    def __init__(self) -> None:
        self.faults: list[dict[str, Any]] = []

    def add(self, spec: Any) -> dict[str, Any]:
        if not isinstance(spec, dict):
            raise ValueError("a fault is a JSON object: {'status': 500, 'count'?: n, 'retry_after'?: s}")
        status = spec.get("status")
        delay = spec.get("delay")
        if status is None and delay is None:
            raise ValueError("a fault needs 'status' or 'delay'")
        fault: dict[str, Any] = {
            "method": str(spec.get("method") or "*").upper(),
            "path": str(spec.get("path") or ""),  # a substring of the path; empty: any
            "status": int(status) if status is not None else None,
            "count": int(spec.get("count", 1)),
            "retry_after": int(spec["retry_after"]) if spec.get("retry_after") is not None else None,
            "delay": float(delay) if delay is not None else 0.0,
            "perform": _bool(spec.get("perform"), default=status is None),
        }
        if fault["count"] == 0:
            raise ValueError("'count' must be >= 1 (or -1: until cleared)")
        if fault["status"] is not None and not 400 <= fault["status"] <= 599:
            raise ValueError("'status' must be an HTTP error status (400-599)")
        self.faults.append(fault)
        return fault

    def take(self, method: str = "POST", path: str = "") -> dict[str, Any] | None:
        """The first fault for calls of this HTTP method (or any) and path, used up by one."""
        for i, fault in enumerate(self.faults):
            if fault["method"] in ("*", method) and fault["path"] in path:
                if fault["count"] > 0:
                    fault["count"] -= 1
                    if fault["count"] == 0:
                        del self.faults[i]
                return dict(fault)
        return None

    def clear(self) -> None:
        self.faults.clear()


class WebhookLog:
    """The last DELIVERY_LOG_SIZE webhook deliveries, for ``GET /_sandbox/webhooks``."""

    def __init__(self) -> None:
        self.entries: deque[dict[str, Any]] = deque(maxlen=DELIVERY_LOG_SIZE)

    def clear(self) -> None:
        self.entries.clear()


async def deliver_webhook(
    url: str | None, body: bytes, headers: dict[str, str], deliveries: WebhookLog, kind: str
) -> dict[str, Any]:
    """POST `body` to `url`, retried on what may heal; the delivery as logged (status, attempts, error)."""
    result: dict[str, Any] = {
        "kind": kind,
        "url": url,
        "at": time.time(),
        "status": None,
        "attempts": 0,
        "error": None,
        "body": "",
    }
    if not url:
        result["error"] = "no_webhook_url"
        deliveries.entries.append(result)
        return result
    async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT, trust_env=False) as http:
        for attempt in range(WEBHOOK_ATTEMPTS):
            if attempt:
                await asyncio.sleep(WEBHOOK_BACKOFF[min(attempt - 1, len(WEBHOOK_BACKOFF) - 1)])
            result["attempts"] = attempt + 1
            try:
                response = await http.post(url, content=body, headers=headers)
            except httpx.TimeoutException:
                result["error"], result["status"] = "timeout", None
                continue
            except httpx.HTTPError as exc:
                result["error"], result["status"] = f"connection_failed: {exc}", None
                continue
            result["status"] = response.status_code
            result["body"] = response.text[:2000]
            result["error"] = None if response.is_success else f"http_{response.status_code}"
            if response.is_success or (400 <= response.status_code < 500 and response.status_code != 429):
                break
    deliveries.entries.append(result)
    return result


def parse_keys(text: str | None) -> list[str]:
    """`a, b,,c` -> [a, b, c]."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]


# The page's look, shared: a header bar in the service's colour, a table per alert.
PAGE_STYLE = """
 body { font: 14px/1.4 -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 0; color: #1d1d1d; }
 header { color: #fff; padding: 10px 20px; font-size: 17px; }
 header small { opacity: .75; font-size: 12px; margin-left: 10px; }
 main { padding: 10px 20px 40px; }
 table { border-collapse: collapse; width: 100%; margin-bottom: 18px; }
 th, td { border-bottom: 1px solid #ddd; padding: 5px 8px; text-align: left; vertical-align: top; }
 th { background: #f2f4f4; font-size: 12px; text-transform: uppercase; color: #555; }
 .status { font-weight: 600; } .muted { color: #777; font-size: 12px; }
 .triggered, .open { color: #c83c36; } .acknowledged { color: #c98a00; } .resolved, .closed { color: #2f7d32; }
 pre { white-space: pre-wrap; margin: 0; font: 12px/1.35 ui-monospace, Menlo, monospace; }
 h2 { font-size: 15px; margin: 18px 0 6px; }
"""


def iso(at: float) -> str:
    """An epoch time as ISO 8601 UTC with milliseconds, as both services write times."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}Z"


# -- control endpoints both sandboxes serve the same way ------------------------------------


async def control_json(request: Request) -> Any:
    """A control or API request's JSON body; an empty body is {}."""
    raw = await request.body()
    return json.loads(raw) if raw.strip() else {}


def bad_request(message: str, status: int = 400) -> Response:
    return JSONResponse({"ok": False, "error": message}, status_code=status)


async def control_faults(request: Request) -> Response:
    """POST {"status", "method"?, "count"?, "retry_after"?, "delay"?, "perform"?} (or a list); DELETE clears."""
    sb = request.app.state.sandbox
    if request.method == "DELETE":
        sb.faults.clear()
    elif request.method == "POST":
        try:
            spec = await control_json(request)
            for item in spec if isinstance(spec, list) else [spec]:
                sb.faults.add(item)
        except (ValueError, TypeError) as exc:
            return bad_request(str(exc))
    return JSONResponse({"ok": True, "faults": sb.faults.faults})


async def control_reset(request: Request) -> Response:
    request.app.state.sandbox.reset()
    return JSONResponse({"ok": True})
