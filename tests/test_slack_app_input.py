"""The Slack handler on a bad day: whatever reaches POST /slack/events gets an answer, never a 5xx.

Requests are sent straight to the real handler (over HTTP, with the Slack sandbox
behind it and a worker on the dev server, the stack of test_slack_app): timestamps
that are not whole seconds, bodies over the limit, and signed bodies of every shape
Slack never sends, made by mutating one field at a time of each kind of request the
handler takes. Each must be 401 / 413 / 400 with a short reason / 200 with nothing
done, and leave no traceback (nor any error) in the log.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import json
import logging
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from slack_sdk.signature import SignatureVerifier

from activities.settings import Settings
from sandbox.slack import APP_ID, TEAM_ID
from starter.connect import TemporalUnreachable
from starter.slack_app import create_app
from workflows.limits import MAX_BODY_BYTES

from .stack import eventually
from .test_slack_app import SECRET, Stack, stack  # noqa: F401 - stack: the module's own handler and sandbox

FUZZ_USER = "U0FUZZ"
NO_INCIDENT = "incident-fuzz-no-such-incident"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
ANSWERS = {200, 400}  # to a signed request of a size we take


def signed(
    body: bytes, content_type: str = JSON, timestamp: str | None = None, **more: str
) -> dict[str, str]:
    """Headers as Slack signs (v0: HMAC-SHA256 of `v0:<timestamp>:<body>`), over any bytes."""
    stamp = str(int(time.time())) if timestamp is None else timestamp
    base = b"v0:" + stamp.encode() + b":" + body
    signature = "v0=" + hmac.new(SECRET.encode(), base, hashlib.sha256).hexdigest()
    if body.isascii() and stamp.isascii():  # the same as slack_sdk's, where slack_sdk can sign at all
        assert signature == SignatureVerifier(SECRET).generate_signature(timestamp=stamp, body=body)
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": signature,
        **more,
    }


@pytest.fixture
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811
    async with httpx.AsyncClient(base_url=stack.handler_url, timeout=30) as client:
        yield client


@pytest.fixture
def problems(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """The log records so far that a test must not leave: errors, and anything with a traceback.

    The worker's own loggers (temporalio) are left out: this is about the handler.
    """
    caplog.set_level(logging.WARNING)

    def found() -> list[str]:
        return [
            f"{r.name} {r.levelname}: {r.getMessage()[:300]}"
            for r in caplog.records
            if (r.levelno >= logging.ERROR or r.exc_info) and not r.name.startswith("temporalio")
        ]

    return found


async def listeners_done() -> None:
    """Wait until bolt's listeners (run after the ack) have all finished."""

    async def idle() -> bool:
        return not any(
            getattr(task.get_coro(), "__name__", "") == "run_ack_function_asynchronously"
            for task in asyncio.all_tasks()
            if not task.done()
        )

    await eventually(idle, timeout=60, what="the handler's listeners to finish")


# ------------------------------------------------------------------ signatures


@pytest.mark.parametrize(
    "timestamp",
    ["abc", "", "1796099567.5", "+1796099567", "-1", "1e9", "0x6B0E8A2F", "9" * 5000, "１７９６０９９５６７"],
    ids=["letters", "empty", "fraction", "plus", "negative", "exponent", "hex", "5000-digits", "fullwidth"],
)
async def test_a_timestamp_that_is_not_whole_seconds_is_401(
    http: httpx.AsyncClient, problems: Callable[[], list[str]], timestamp: str
) -> None:
    body = json.dumps({"type": "event_callback", "event": {"type": "app_mention"}}).encode()
    headers = signed(body, timestamp=timestamp)  # signed with that very timestamp
    raw = [(k.encode(), v.encode("utf-8")) for k, v in headers.items()]  # fullwidth digits as UTF-8 bytes
    response = await http.post("/slack/events", content=body, headers=raw)
    assert response.status_code == 401, response.text
    await listeners_done()
    assert not problems(), problems()


async def test_missing_repeated_or_odd_signature_headers_are_401(
    http: httpx.AsyncClient, problems: Callable[[], list[str]]
) -> None:
    body = json.dumps({"type": "event_callback", "event": {"type": "app_mention"}}).encode()
    good = signed(body)
    cases: list[list[tuple[bytes, bytes]]] = [
        [(b"Content-Type", b"application/json")],
        [(b"X-Slack-Request-Timestamp", good["X-Slack-Request-Timestamp"].encode())],
        [(b"X-Slack-Signature", good["X-Slack-Signature"].encode())],
        [
            (b"X-Slack-Request-Timestamp", good["X-Slack-Request-Timestamp"].encode()),
            (b"X-Slack-Signature", "v0=ÿ".encode("latin-1")),  # not ASCII: hmac would raise
        ],
        [
            (b"X-Slack-Request-Timestamp", good["X-Slack-Request-Timestamp"].encode()),
            (b"X-Slack-Request-Timestamp", b"12"),
            (b"X-Slack-Signature", good["X-Slack-Signature"].encode()),
        ],
        [
            (b"X-Slack-Request-Timestamp", str(int(time.time()) - 301).encode()),
            (b"X-Slack-Signature", good["X-Slack-Signature"].encode()),
        ],
    ]
    statuses = [(await http.post("/slack/events", content=body, headers=case)).status_code for case in cases]
    assert statuses == [401] * len(cases)
    assert (await http.post("/slack/events", content=body, headers=good)).status_code == 200
    await listeners_done()
    assert not problems(), problems()


# ---------------------------------------------------------------------- sizes


async def test_a_body_over_the_limit_is_413_however_it_comes(
    stack: Stack,  # noqa: F811
    http: httpx.AsyncClient,
    problems: Callable[[], list[str]],
) -> None:
    def padded(size: int) -> bytes:
        head = b'{"type": "event_callback", "event": {"type": "app_mention"}, "pad": "'
        return head + b"x" * (size - len(head) - 2) + b'"}'

    over = padded(MAX_BODY_BYTES + 1)
    assert len(over) == MAX_BODY_BYTES + 1
    # Signed or not, with its Content-Length ...
    assert (await http.post("/slack/events", content=over, headers=signed(over))).status_code == 413
    assert (await http.post("/slack/events", content=over, headers={"Content-Type": JSON})).status_code == 413

    # ... or chunked, without one: counted as it is read.
    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(over), 64 * 1024):
            yield over[start : start + 64 * 1024]

    chunked = await http.post("/slack/events", content=chunks(), headers=signed(over))
    assert chunked.status_code == 413
    # A Content-Length that claims too much is refused before the body is read (none is sent).
    host, port = stack.handler_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = f"POST /slack/events HTTP/1.1\r\nHost: {host}\r\nContent-Type: {JSON}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in signed(b"{}").items() if k != "Content-Type")
    writer.write(f"{head}Content-Length: {MAX_BODY_BYTES + 1}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), timeout=10)
    writer.close()
    assert status_line.split()[1] == b"413", status_line
    # At the limit: taken (an event nothing here handles: 200).
    at = padded(MAX_BODY_BYTES)
    assert (await http.post("/slack/events", content=at, headers=signed(at))).status_code == 200
    await listeners_done()
    assert not problems(), problems()


# ----------------------------------------------------------- malformed bodies


def _event(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "token": "verification-token",
        "team_id": TEAM_ID,
        "api_app_id": APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": "Ev0FUZZ",
        "event_time": 1796099567,
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": TEAM_ID,
                "user_id": "U0INCIDENTBOT",
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": "fuzz",
    }


def _reaction(channel: str) -> dict[str, Any]:
    return _event(
        {
            "type": "reaction_added",
            "user": FUZZ_USER,
            "reaction": "raised_hand",
            "item_user": "U0INCIDENTBOT",
            "item": {"type": "message", "channel": channel, "ts": "1796099567.000100"},
            "event_ts": "1796099567.000200",
        }
    )


def _pin(channel: str) -> dict[str, Any]:
    return _event(
        {
            "type": "pin_added",
            "user": FUZZ_USER,
            "channel_id": channel,
            "item": {
                "type": "message",
                "created": 1796099567,
                "created_by": FUZZ_USER,
                "channel": channel,
                "message": {"type": "message", "user": FUZZ_USER, "text": "hi", "ts": "1796099567.000100"},
            },
            "event_ts": "1796099567.000200",
        }
    )


def _user() -> dict[str, Any]:
    return {"id": FUZZ_USER, "username": "fuzz", "name": "fuzz", "team_id": TEAM_ID}


def _button(action_id: str, channel: str, response_url: str) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "user": _user(),
        "api_app_id": APP_ID,
        "token": "verification-token",
        "container": {"type": "message", "message_ts": "1796099567.000100", "channel_id": channel},
        "trigger_id": "fuzz.trigger",
        "team": {"id": TEAM_ID, "domain": "sandbox"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": "netclaw-general"},
        "message": {
            "type": "message",
            "user": "U0INCIDENTBOT",
            "text": "declared",
            "ts": "1796099567.000100",
        },
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "actions",
                "text": {"type": "plain_text", "text": "Claim"},
                "value": NO_INCIDENT,
                "action_ts": "1796099567.000300",
            }
        ],
    }


def _submission(callback_id: str, values: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "view_submission",
        "team": {"id": TEAM_ID, "domain": "sandbox"},
        "user": _user(),
        "api_app_id": APP_ID,
        "token": "verification-token",
        "trigger_id": "fuzz.trigger",
        "view": {
            "id": "V0FUZZ",
            "type": "modal",
            "callback_id": callback_id,
            "private_metadata": NO_INCIDENT,
            "state": {"values": values},
            "team_id": TEAM_ID,
            "app_id": APP_ID,
        },
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


def _update_form() -> dict[str, Any]:
    return _submission(
        "incident_update_modal",
        {
            "status": {"status": {"type": "static_select", "selected_option": {"value": "fixing"}}},
            "message": {"message": {"type": "plain_text_input", "value": "reseating the optic"}},
            "eta": {"eta": {"type": "plain_text_input", "value": None}},
        },
    )


def _resolve_form() -> dict[str, Any]:
    return _submission(
        "incident_resolve_modal",
        {
            "resolution": {"resolution": {"type": "plain_text_input", "value": "optic replaced"}},
            "root_cause": {"root_cause": {"type": "plain_text_input", "value": "failed SFP"}},
        },
    )


def _command(channel: str, response_url: str) -> dict[str, str]:
    return {
        "token": "verification-token",
        "team_id": TEAM_ID,
        "team_domain": "sandbox",
        "channel_id": channel,
        "channel_name": "netclaw-general",
        "user_id": FUZZ_USER,
        "user_name": "fuzz",
        "command": "/incident",
        "text": "status fuzz-no-such-incident",
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": "fuzz.trigger",
    }


_DELETE = object()
# What a field becomes: gone, null, each wrong type, empty, and far too long.
MUTATIONS: dict[str, Any] = {
    "missing": _DELETE,
    "null": None,
    "int": 1,
    "float": 1796099567.5,
    "true": True,
    "empty": "",
    "list": [],
    "object": {},
    "list-of-int": [1],
    "long": "x" * 5000,
}
# Form fields are strings: they can only go missing, be empty, or hold something odd.
FORM_MUTATIONS: dict[str, Any] = {
    "missing": _DELETE,
    "empty": "",
    "long": "x" * 5000,
    "not-a-user": "<!channel>",
    "json": '{"a": 1}',
    "nul": "\x00",
}


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield path + (key,)
            yield from _paths(inner, path + (key,))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield path + (index,)
            yield from _paths(inner, path + (index,))


def _mutated(template: Any, path: tuple[Any, ...], value: Any) -> Any:
    copied = copy.deepcopy(template)
    parent = copied
    for step in path[:-1]:
        parent = parent[step]
    if value is _DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = copy.deepcopy(value)
    return copied


def _as_payload(payload: Any) -> tuple[bytes, str]:
    return urlencode({"payload": json.dumps(payload)}).encode(), FORM


def malformed_bodies(channel: str, response_url: str) -> Iterator[tuple[str, bytes, str]]:
    """(name, body, content type): each request kind the handler takes, one field at a time made wrong,
    then whole bodies that are not what Slack sends. Names are unique; bodies are distinct."""
    kinds: dict[str, tuple[Any, bool]] = {
        "reaction": (_reaction(channel), False),
        "pin": (_pin(channel), False),
        "claim-button": (_button("incident_claim", channel, response_url), True),
        "update-button": (_button("incident_update", channel, response_url), True),
        "resolve-button": (_button("incident_resolve", channel, response_url), True),
        "update-form": (_update_form(), True),
        "resolve-form": (_resolve_form(), True),
    }
    seen: set[bytes] = set()

    def once(name: str, body: bytes, content_type: str) -> Iterator[tuple[str, bytes, str]]:
        if body not in seen:
            seen.add(body)
            yield name, body, content_type

    for kind, (template, as_form) in kinds.items():
        for path in _paths(template):
            for label, value in MUTATIONS.items():
                changed = _mutated(template, path, value)
                body, content_type = _as_payload(changed) if as_form else (json.dumps(changed).encode(), JSON)
                yield from once(f"{kind}:{'.'.join(map(str, path))}={label}", body, content_type)
    command = _command(channel, response_url)
    for field in command:
        for label, value in FORM_MUTATIONS.items():
            changed = _mutated(command, (field,), value)
            yield from once(f"command:{field}={label}", urlencode(changed).encode(), FORM)
    whole: dict[str, tuple[bytes, str]] = {
        "empty-json": (b"", JSON),
        "empty-form": (b"", FORM),
        "json-null": (b"null", JSON),
        "json-list": (b"[]", JSON),
        "json-number": (b"1", JSON),
        "json-string": (b'"event_callback"', JSON),
        "json-truncated": (b'{"type": "event_callback", "event": {', JSON),
        "json-not-utf8": (b'{"type": "\xff\xfe"}', JSON),
        "json-deep": (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", JSON),
        "json-nested-events": (b'{"type": "event_callback", ' + b'"event": {' * 50 + b"}" * 50 + b"}", JSON),
        "json-huge-int": (b'{"type": "event_callback", "event_time": ' + b"9" * 5000 + b"}", JSON),
        "json-nan": (b'{"type": NaN}', JSON),
        "json-no-type": (b'{"event": {"type": "reaction_added"}}', JSON),
        "json-type-int": (b'{"type": 1}', JSON),
        "event-not-object": (b'{"type": "event_callback", "event": "reaction_added"}', JSON),
        "event-no-type": (b'{"type": "event_callback", "event": {}}', JSON),
        "event-type-list": (b'{"type": "event_callback", "event": {"type": ["reaction_added"]}}', JSON),
        "url-verification-no-challenge": (b'{"type": "url_verification"}', JSON),
        "url-verification-challenge-int": (b'{"type": "url_verification", "challenge": 1}', JSON),
        "payload-null": (b"payload=null", FORM),
        "payload-empty": (b"payload=", FORM),
        "payload-not-json": (b"payload=%7Bnot+json", FORM),
        "payload-list": (b"payload=%5B%5D", FORM),
        "payload-number": (b"payload=1", FORM),
        "payload-string": (b"payload=%22block_actions%22", FORM),
        "payload-not-utf8": (b"payload=%FF%FE", FORM),
        "payload-twice": (b"payload=null&payload=%7B%7D", FORM),
        "form-not-utf8": (b"command=%2Fincident&text=\xff", FORM),
        "form-nothing": (b"token=x&team_id=T1", FORM),
        "form-garbage": (b"&&==&%%%", FORM),
        "form-as-text": (b"command=/incident", "text/plain"),
        "json-as-form": (b'{"type": "event_callback", "event": {"type": "app_mention"}}', FORM),
        "multipart": (
            b"--x\r\nContent-Disposition: form-data; name=payload\r\n\r\nnull\r\n--x--",
            "multipart/form-data",
        ),
        "block-actions-actions-empty": _as_payload({"type": "block_actions", "user": _user(), "actions": []}),
        "block-actions-actions-object": _as_payload(
            {"type": "block_actions", "user": _user(), "actions": {}}
        ),
        "block-actions-action-string": _as_payload(
            {"type": "block_actions", "user": _user(), "actions": ["x"]}
        ),
        "block-actions-nothing": _as_payload({"type": "block_actions"}),
        "view-submission-nothing": _as_payload({"type": "view_submission"}),
        "view-submission-view-list": _as_payload({"type": "view_submission", "user": _user(), "view": []}),
        "shortcut-odd": _as_payload({"type": "shortcut", "callback_id": 1, "user": 1}),
        "message-action-odd": _as_payload({"type": "message_action", "callback_id": None}),
        "interactive-message-odd": _as_payload({"type": "interactive_message", "actions": []}),
        "block-suggestion-odd": _as_payload({"type": "block_suggestion", "action_id": 1}),
    }
    for name, (body, content_type) in whole.items():
        yield from once(name, body, content_type)


async def test_malformed_signed_bodies_are_answered_400_or_200_never_5xx(
    stack: Stack,  # noqa: F811
    http: httpx.AsyncClient,
    problems: Callable[[], list[str]],
) -> None:
    channel = (await stack.sandbox.web.conversations_list())["channels"][0]["id"]
    response_url = stack.sandbox.url + "/_sandbox/respond/no-such-response-url"
    bodies = list(malformed_bodies(channel, response_url))
    assert len({name for name, _, _ in bodies}) == len(bodies)
    assert len(bodies) >= 1500, len(bodies)

    async def send(name: str, body: bytes, content_type: str) -> tuple[str, int, str]:
        response = await http.post("/slack/events", content=body, headers=signed(body, content_type))
        return name, response.status_code, response.text

    answers: list[tuple[str, int, str]] = []
    for start in range(0, len(bodies), 16):
        answers += await asyncio.gather(*(send(*b) for b in bodies[start : start + 16]))
    await listeners_done()

    statuses = Counter(status for _, status, _ in answers)
    print(f"\n{len(answers)} malformed signed bodies: {dict(sorted(statuses.items()))}")
    unexpected = [(name, status, text[:200]) for name, status, text in answers if status not in ANSWERS]
    assert not unexpected, unexpected[:20]
    # A 400 says why, briefly; nothing leaves a traceback or an error in the log.
    unexplained = [
        (name, text) for name, status, text in answers if status == 400 and not 0 < len(text) <= 200
    ]
    assert not unexplained, unexplained[:20]
    assert statuses[400] > len(answers) // 3
    assert not problems(), problems()[:20]


# The cases named in the issue, each with the answer it must get and the words of its reason.
NAMED_CASES = [
    ("reaction item.channel 1", "reaction", ("event", "item", "channel"), 1, 400, "event.item.channel"),
    ("reaction item null", "reaction", ("event", "item"), None, 400, "event.item must be an object"),
    ("reaction user int", "reaction", ("event", "user"), 7, 400, "event.user"),
    ("reaction without user", "reaction", ("event", "user"), _DELETE, 400, "event.user"),
    ("pin message ts list", "pin", ("event", "item", "message", "ts"), [], 400, "event.item.message.ts"),
    ("actions: []", "claim-button", ("actions",), [], 400, "actions must be a non-empty list"),
    ("action without value", "claim-button", ("actions", 0, "value"), _DELETE, 400, "actions[0].value"),
    ("action value object", "claim-button", ("actions", 0, "value"), {}, 400, "actions[0].value"),
    ("user id int", "claim-button", ("user", "id"), 1, 400, "user.id"),
    ("update button without trigger", "update-button", ("trigger_id",), _DELETE, 400, "trigger_id"),
    ("unknown action", "claim-button", ("actions", 0, "action_id"), "something_else", 200, ""),
    (
        "form without private_metadata",
        "update-form",
        ("view", "private_metadata"),
        _DELETE,
        400,
        "private_metadata",
    ),
    ("form state values list", "resolve-form", ("view", "state", "values"), [], 400, "view.state.values"),
    (
        "form value int",
        "resolve-form",
        ("view", "state", "values", "resolution", "resolution", "value"),
        3,
        400,
        "value",
    ),
    ("unknown form", "update-form", ("view", "callback_id"), "another_modal", 200, ""),
    ("event we ignore", "reaction", ("event", "type"), "message", 200, ""),
    ("authorizations string", "reaction", ("authorizations",), "x", 400, "authorizations"),
    ("team list", "claim-button", ("team",), [], 400, "team"),
]


@pytest.mark.parametrize(
    ("kind", "path", "value", "status", "reason"),
    [c[1:] for c in NAMED_CASES],
    ids=[c[0] for c in NAMED_CASES],
)
async def test_named_malformed_requests(
    stack: Stack,  # noqa: F811
    http: httpx.AsyncClient,
    problems: Callable[[], list[str]],
    kind: str,
    path: tuple[Any, ...],
    value: Any,
    status: int,
    reason: str,
) -> None:
    channel = "C0FUZZ"
    response_url = stack.sandbox.url + "/_sandbox/respond/no-such-response-url"
    templates = {
        "reaction": (_reaction(channel), False),
        "pin": (_pin(channel), False),
        "claim-button": (_button("incident_claim", channel, response_url), True),
        "update-button": (_button("incident_update", channel, response_url), True),
        "update-form": (_update_form(), True),
        "resolve-form": (_resolve_form(), True),
    }
    template, as_form = templates[kind]
    changed = _mutated(template, path, value)
    body, content_type = _as_payload(changed) if as_form else (json.dumps(changed).encode(), JSON)
    response = await http.post("/slack/events", content=body, headers=signed(body, content_type))
    assert (response.status_code, reason in response.text) == (status, True), response.text
    await listeners_done()
    assert not problems(), problems()


async def test_a_command_without_its_user_or_payload_null_is_400(
    stack: Stack,  # noqa: F811
    http: httpx.AsyncClient,
    problems: Callable[[], list[str]],
) -> None:
    command = _command("C0FUZZ", stack.sandbox.url + "/_sandbox/respond/no-such-response-url")
    del command["user_id"]
    body = urlencode(command).encode()
    response = await http.post("/slack/events", content=body, headers=signed(body, FORM))
    assert response.status_code == 400 and "user_id" in response.text
    for body in (b"payload=null", b"payload=%7Bnot+json"):
        response = await http.post("/slack/events", content=body, headers=signed(body, FORM))
        assert response.status_code == 400 and "payload is not" in response.text
    await listeners_done()
    assert not problems(), problems()


# ------------------------------------------------------------- Slack's API down


async def test_with_slacks_api_down_nothing_is_a_5xx_and_the_help_still_answers(
    problems: Callable[[], list[str]],
) -> None:
    """bolt's own authorization raised (a 500) when its auth.test could not reach Slack."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{closed.getsockname()[1]}/api/"  # bound, never listening: refused
        settings = Settings(slack_api_url=down, slack_bot_token="xoxb-test", slack_signing_secret=SECRET)

        async def no_temporal() -> Any:
            raise TemporalUnreachable("not in this test")

        app = create_app(settings, no_temporal)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://handler") as handler:
            command = urlencode({**_command("C0FUZZ", down + "respond"), "text": "help"}).encode()
            helped = await handler.post("/slack/events", content=command, headers=signed(command, FORM))
            reaction = json.dumps(_reaction("C0FUZZ")).encode()
            reacted = await handler.post("/slack/events", content=reaction, headers=signed(reaction))
            claim = _as_payload(_button("incident_claim", "C0FUZZ", down + "respond"))[0]
            clicked = await handler.post("/slack/events", content=claim, headers=signed(claim, FORM))
            await listeners_done()
    assert (helped.status_code, "/incident declare P1" in helped.text) == (200, True), helped.text
    assert reacted.status_code == 200 and clicked.status_code == 200
    assert not problems(), problems()
