"""Property: no request to the alert receivers or the Slack handler gets a 5xx, whatever its body and headers.

hypothesis throws generated bodies (arbitrary JSON, valid payloads with a field
replaced by anything, raw bytes, the shapes that once gave 500s) and headers at
every receiver endpoint and at the Slack handler (signed and not), against a
real Temporal dev server and the Slack sandbox. Afterwards a valid alert is
still accepted and a valid slash command still answered.

    FUZZ_EXAMPLES=5000 scripts/test tests/test_fuzz_edges.py -s    # a longer run; prints the figures

The suite runs a bounded number of examples (FUZZ_EXAMPLES, default 120 per
property) so it takes seconds. hypothesis runs synchronous tests, so the apps
and their Temporal client live on an event loop of their own, in a thread.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_sdk.signature import SignatureVerifier

from activities.settings import Settings
from starter.alerts import create_app as create_receivers
from starter.connect import connect
from starter.slack_app import create_app as create_slack_handler
from workflows import limits

from .stack import TOKEN

T = TypeVar("T")
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES") or 120)
SECRET = "fuzz-signing-secret"
FIGURES: dict[str, Counter[int]] = {"receivers": Counter(), "slack": Counter()}

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
    database=None,
)


class LoopThread:
    """An event loop in a thread: the apps under test run there, hypothesis drives them from here."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


# ---------------------------------------------------------------- strategies

leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(
        ["", "P1", "SEV2", "critical", "firing", "resolved", "trigger", "<!channel>", "x" * 3001]
    )
)
json_values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path into a JSON value (dict keys and list indexes), the value itself first."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _replace(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    copied = copy.deepcopy(value)
    target = copied
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = new
    return copied


@st.composite
def mutated(draw: st.DrawFn, template: dict) -> Any:
    """A valid payload with up to three values (anywhere in it) replaced by anything, or removed."""
    value = copy.deepcopy(template)
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(_paths(value)))
        if path and draw(st.booleans()) and isinstance(value, dict):
            parent = value
            for step in path[:-1]:
                parent = parent[step]
            if isinstance(parent, dict):
                parent.pop(path[-1], None)
                continue
        value = _replace(value, path, draw(json_values))
    return value


def _dedup() -> str:
    return f"fuzz-{uuid.uuid4().hex[:6]}"


GENERIC = {
    "title": "Core switch CPU 95%",
    "severity": "SEV2",
    "dedup_key": "fuzz-generic",
    "service": "core",
    "devices": ["SW1"],
    "upstream": {"SW1": "R2"},
    "symptoms": ["CPU 95%"],
    "impact": ["slow DHCP"],
}
ALERTMANAGER = {
    "version": "4", "status": "firing", "receiver": "incident", "groupKey": '{}:{alertname="FuzzDown"}',
    "groupLabels": {"alertname": "FuzzDown"}, "commonLabels": {"alertname": "FuzzDown", "severity": "warning"},
    "commonAnnotations": {"summary": "fuzzed"}, "externalURL": "http://alertmanager:9093",
    "alerts": [{"status": "firing", "labels": {"alertname": "FuzzDown", "device": "R1"},
                "annotations": {"summary": "R1 lost"}, "startsAt": "2026-11-22T14:32:00Z", "fingerprint": "f1"}],
}  # fmt: skip
GRAFANA = {**ALERTMANAGER, "title": "[FIRING:1] FuzzDown", "state": "alerting", "orgId": 1}
PAGERDUTY = {
    "routing_key": "R0123", "event_action": "trigger", "dedup_key": "fuzz-pd",
    "payload": {"summary": "Disk 91% on R7", "source": "R7", "severity": "warning", "component": "storage",
                "custom_details": {"upstream_device": "R2"}},
}  # fmt: skip
ENDPOINTS = {
    "/alerts": GENERIC,
    "/alerts/alertmanager": ALERTMANAGER,
    "/alerts/grafana": GRAFANA,
    "/alerts/pagerduty": PAGERDUTY,
}
# The shapes that gave 500s or 503s before: deep nesting, huge integers, bodies and fields over limits.
KNOWN_BAD = [
    b"[" * 1000 + b"]" * 1000,
    b'{"a": ' * 1000 + b"1" + b"}" * 1000,
    b'{"title": "t", "severity": "P1", "dedup_key": "k", "n": ' + b"9" * 5000 + b"}",
    json.dumps({**GENERIC, "symptoms": ["x" * 41_000]}).encode(),
    json.dumps({**GENERIC, "service": "s" * 2100}).encode(),
    json.dumps({**GENERIC, "title": "t" * (limits.MIB + 1)}).encode(),
    b"\xff\xfe\x00{",
    b"",
    b"null",
]


def _dump(value: Any) -> bytes:
    return json.dumps(value).encode()


alert_requests = st.sampled_from(sorted(ENDPOINTS)).flatmap(
    lambda path: st.tuples(
        st.just(path),
        st.one_of(
            mutated(ENDPOINTS[path]).map(_dump),
            json_values.map(_dump),
            st.binary(max_size=300),
            st.sampled_from(KNOWN_BAD),
        ),
        st.sampled_from(["application/json", "text/plain", "", "application/x-www-form-urlencoded"]),
    )
)


# ------------------------------------------------------------------- receivers


@pytest.fixture(scope="module")
def temporal_address(local_env) -> str:
    return local_env.client.service_client.config.target_host


def test_no_body_or_header_gets_a_5xx_from_the_alert_receivers(temporal_address, policy):
    runner = LoopThread()
    queue = f"fuzz-{uuid.uuid4().hex[:8]}"  # no worker: the incidents wait in Temporal, untouched
    settings_ = Settings(temporal_address=temporal_address, temporal_task_queue=queue)

    async def open_client() -> httpx.AsyncClient:
        app = create_receivers(settings_, policy, token="", rollup=False)
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://receivers", timeout=60
        )

    http = runner.run(open_client())

    @FUZZ
    @given(request=alert_requests)
    def no_5xx(request: tuple[str, bytes, str]) -> None:
        path, body, content_type = request
        headers = {"content-type": content_type} if content_type else {}
        response = runner.run(http.post(path, content=body, headers=headers))
        FIGURES["receivers"][response.status_code] += 1
        assert response.status_code < 500, (path, body[:300], response.status_code, response.text[:500])
        assert response.status_code in (202, 400, 413, 422), response.text[:300]
        if response.status_code != 202:
            assert response.json()["error"]  # every refusal says why

    try:
        no_5xx()
        # Afterwards a valid alert is still accepted.
        valid = {**GENERIC, "dedup_key": _dedup()}
        response = runner.run(http.post("/alerts", json=valid))
        assert response.status_code == 202, response.text
        _report("receivers")
    finally:
        runner.run(http.aclose())
        runner.close()


# -------------------------------------------------------------- Slack handler

REACTION_EVENT = {
    "token": "verification", "team_id": "T0SANDBOX", "api_app_id": "A0INCIDENTBOT", "type": "event_callback",
    "event_id": "Ev0FUZZ", "event_time": 1796099567,
    "event": {"type": "reaction_added", "user": "U0FUZZ", "reaction": "raised_hand",
              "item": {"type": "message", "channel": "C0FUZZ", "ts": "1796099567.000100"},
              "event_ts": "1796099567.000200"},
}  # fmt: skip
PIN_EVENT = {
    **REACTION_EVENT,
    "event": {"type": "pin_added", "user": "U0FUZZ", "channel_id": "C0FUZZ",
              "item": {"type": "message", "message": {"ts": "1796099567.000100"}}, "event_ts": "1796099567.2"},
}  # fmt: skip
BLOCK_ACTIONS = {
    "type": "block_actions", "user": {"id": "U0FUZZ"}, "team": {"id": "T0SANDBOX"}, "api_app_id": "A0INCIDENTBOT",
    "trigger_id": "13345224609.8534564800.6f8ab1f53e13d0cd15f96106292d5536", "token": "verification",
    "actions": [{"action_id": "incident_claim", "block_id": "incident_actions", "value": "incident-fuzz-none",
                 "type": "button"}],
}  # fmt: skip
VIEW_SUBMISSION = {
    "type": "view_submission", "user": {"id": "U0FUZZ"}, "team": {"id": "T0SANDBOX"}, "token": "verification",
    "view": {"id": "V0FUZZ", "callback_id": "incident_update_modal", "private_metadata": "incident-fuzz-none",
             "state": {"values": {"status": {"status": {"selected_option": {"value": "fixing"}}},
                                  "message": {"message": {"value": "replacing the PSU"}}}}},
}  # fmt: skip
COMMAND = {
    "token": "verification", "team_id": "T0SANDBOX", "channel_id": "C0FUZZ", "channel_name": "incidents",
    "user_id": "U0FUZZ", "command": "/incident", "text": "status fuzz-none", "trigger_id": "1.2.3",
}  # fmt: skip


def _form(fields: Any) -> bytes:
    if not isinstance(fields, dict):
        return urllib.parse.urlencode({"payload": json.dumps(fields)}).encode()
    return urllib.parse.urlencode(
        {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
    ).encode()


slack_bodies = st.one_of(
    mutated(REACTION_EVENT).map(_dump),
    mutated(PIN_EVENT).map(_dump),
    mutated(BLOCK_ACTIONS).map(lambda p: urllib.parse.urlencode({"payload": json.dumps(p)}).encode()),
    mutated(VIEW_SUBMISSION).map(lambda p: urllib.parse.urlencode({"payload": json.dumps(p)}).encode()),
    mutated(COMMAND).map(_form),
    json_values.map(_dump),
    json_values.map(lambda v: urllib.parse.urlencode({"payload": json.dumps(v)}).encode()),
    st.sampled_from([b"payload=null", b"payload=%7B", b"payload=", b"", b"{", b"command=&text="]),
    st.binary(max_size=300),
)
timestamps = st.one_of(
    st.just("now"),
    st.just("now"),
    st.sampled_from(["abc", "", "1796099567.5", "-1", "9" * 40, "0", " 12 "]),
    st.text(max_size=12),
)
signatures = st.sampled_from(["valid", "valid", "valid", "wrong", "missing", "v0=", "garbage"])


def test_no_body_or_header_gets_a_5xx_from_the_slack_handler(temporal_address, sandbox):
    runner = LoopThread()
    settings_ = Settings(
        temporal_address=temporal_address,
        temporal_task_queue=f"fuzz-{uuid.uuid4().hex[:8]}",
        slack_api_url=sandbox.api_url,
        slack_bot_token=TOKEN,
        slack_signing_secret=SECRET,
    )
    verifier = SignatureVerifier(SECRET)

    async def open_client() -> httpx.AsyncClient:
        app = create_slack_handler(settings_, client_factory=lambda: connect(settings_))
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://handler", timeout=60
        )

    http = runner.run(open_client())

    def headers_for(body: bytes, timestamp: str, signature: str, content_type: str) -> dict[str, str]:
        stamp = str(int(time.time())) if timestamp == "now" else timestamp
        headers = {"content-type": content_type, "x-slack-request-timestamp": stamp}
        if signature == "valid" and stamp.isdigit():
            headers["x-slack-signature"] = verifier.generate_signature(timestamp=stamp, body=body)
        elif signature != "missing":
            headers["x-slack-signature"] = {"wrong": "v0=" + "0" * 64}.get(signature, signature)
        return {k: v for k, v in headers.items() if "\n" not in v and "\r" not in v}

    @FUZZ
    @given(
        body=slack_bodies,
        timestamp=timestamps,
        signature=signatures,
        content_type=st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain"]),
    )
    def no_5xx(body: bytes, timestamp: str, signature: str, content_type: str) -> None:
        try:
            headers = headers_for(body, timestamp, signature, content_type)
            request = http.build_request("POST", "/slack/events", content=body, headers=headers)
        except (UnicodeEncodeError, httpx.InvalidURL, ValueError):
            return  # a header value no HTTP client can send
        response = runner.run(http.send(request))
        FIGURES["slack"][response.status_code] += 1
        assert response.status_code < 500, (body[:300], headers, response.status_code, response.text[:500])

    try:
        no_5xx()
        # Afterwards a valid, signed slash command is still answered.
        body = _form({**COMMAND, "text": "help"})
        stamp = str(int(time.time()))
        headers = {
            "content-type": "application/x-www-form-urlencoded",
            "x-slack-request-timestamp": stamp,
            "x-slack-signature": verifier.generate_signature(timestamp=stamp, body=body),
        }
        response = runner.run(http.post("/slack/events", content=body, headers=headers))
        assert response.status_code == 200 and "/incident" in response.text, response.text
        _report("slack")
    finally:
        runner.run(http.aclose())
        runner.close()


def _report(which: str) -> None:
    seen = FIGURES[which]
    total = sum(seen.values())
    codes = ", ".join(f"{code}: {count}" for code, count in sorted(seen.items()))
    fives = sum(count for code, count in seen.items() if code >= 500)
    print(f"\nfuzz {which}: {total} requests; status codes {codes}; 5xx: {fives}")
