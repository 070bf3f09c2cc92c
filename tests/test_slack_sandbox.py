"""The Slack sandbox (sandbox/slack/) over real HTTP, driven by the real slack_sdk AsyncWebClient."""

from __future__ import annotations

import asyncio
import html
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from sandbox.slack import (
    ACCEPTED_SCOPES,
    ADMIN_TOKEN,
    BOT_ID,
    BOT_USER_ID,
    DEFAULT_CHANNELS,
    DEFAULT_SCOPES,
    DEFAULT_TOKENS,
    EVERY_SCOPE,
    METHODS,
    channel_id_for,
    create_app,
    render_mrkdwn,
    run_sandbox,
    serve_in_background,
)

METADATA = {"event_type": "incident_declared", "event_payload": {"incident_id": "INC-7", "severity": "P1"}}
TOKEN = "xoxb-test-token"  # one of DEFAULT_TOKENS: the app's scopes (DEFAULT_SCOPES)
FULL = (
    ADMIN_TOKEN  # every scope: for the methods the project does not call (channels:manage, users:read, ...)
)
TOKENS: dict[str, object] = {**dict.fromkeys(DEFAULT_TOKENS), FULL: EVERY_SCOPE}


@pytest.fixture(scope="module")
async def server_url() -> AsyncIterator[str]:
    async with run_sandbox(tokens=TOKENS) as url:
        yield url


@pytest.fixture
async def url(server_url: str) -> AsyncIterator[str]:
    async with httpx.AsyncClient(base_url=server_url) as http:
        (await http.post("/_sandbox/reset")).raise_for_status()
    yield server_url


@pytest.fixture
async def http(url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=url) as client:
        yield client


@pytest.fixture
def slack(url: str) -> AsyncWebClient:
    return AsyncWebClient(token=TOKEN, base_url=url + "/api/")


@pytest.fixture
def full(url: str) -> AsyncWebClient:
    return AsyncWebClient(token=FULL, base_url=url + "/api/")


INCIDENTS = channel_id_for("incidents")


async def test_channel_ids_look_like_slack_and_are_stable(slack: AsyncWebClient) -> None:
    assert INCIDENTS == channel_id_for("incidents")
    assert INCIDENTS.startswith("C") and len(INCIDENTS) == 11 and INCIDENTS.isupper() and INCIDENTS.isalnum()
    listed = await slack.conversations_list()
    assert [c["name"] for c in listed["channels"]] == list(DEFAULT_CHANNELS)
    assert listed["response_metadata"]["next_cursor"] == ""
    assert {c["id"] for c in listed["channels"]} == {channel_id_for(n) for n in DEFAULT_CHANNELS}


async def test_auth_test(slack: AsyncWebClient) -> None:
    res = await slack.auth_test()
    assert res["ok"] and res["team_id"] == "T0SANDBOX"
    assert res["user_id"] == BOT_USER_ID and res["bot_id"] == BOT_ID


async def test_post_history_replies_round_trip_with_metadata(slack: AsyncWebClient) -> None:
    parent = await slack.chat_postMessage(
        channel="#incidents",
        text="*P1* core down",
        metadata=METADATA,
        blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "*P1* core down"}}],
    )
    assert parent["channel"] == INCIDENTS
    assert parent["message"]["user"] == BOT_USER_ID and parent["message"]["bot_id"] == BOT_ID
    assert parent["message"]["metadata"] == METADATA
    reply1 = await slack.chat_postMessage(
        channel=INCIDENTS, text="diagnostics started", thread_ts=parent["ts"]
    )
    reply2 = await slack.chat_postMessage(channel="incidents", text="ticket INC001", thread_ts=parent["ts"])
    assert reply1["message"]["thread_ts"] == parent["ts"]
    other = await slack.chat_postMessage(channel=INCIDENTS, text="second top-level message")
    assert parent["ts"] < reply1["ts"] < reply2["ts"] < other["ts"]

    history = await slack.conversations_history(channel=INCIDENTS, include_all_metadata=True)
    assert [m["ts"] for m in history["messages"]] == [other["ts"], parent["ts"]]  # newest first, no replies
    assert history["has_more"] is False
    top = history["messages"][1]
    assert top["metadata"] == METADATA
    assert top["reply_count"] == 2 and top["latest_reply"] == reply2["ts"]
    assert top["reply_users"] == [BOT_USER_ID] and top["thread_ts"] == parent["ts"]
    assert top["blocks"][0]["type"] == "section"

    without = await slack.conversations_history(channel=INCIDENTS)
    assert all("metadata" not in m for m in without["messages"])

    replies = await slack.conversations_replies(channel=INCIDENTS, ts=parent["ts"], include_all_metadata=True)
    assert [m["text"] for m in replies["messages"]] == [
        "*P1* core down",
        "diagnostics started",
        "ticket INC001",
    ]
    assert replies["messages"][0]["metadata"] == METADATA
    assert replies["messages"][1]["parent_user_id"] == BOT_USER_ID

    with pytest.raises(SlackApiError) as err:
        await slack.conversations_replies(channel=INCIDENTS, ts="1.000001")
    assert err.value.response["error"] == "thread_not_found"
    with pytest.raises(SlackApiError) as err:
        await slack.chat_postMessage(channel=INCIDENTS, text="x", thread_ts="1.000001")
    assert err.value.response["error"] == "thread_not_found"
    with pytest.raises(SlackApiError) as err, pytest.warns(UserWarning):  # slack_sdk warns too
        await slack.chat_postMessage(channel=INCIDENTS)
    assert err.value.response["error"] == "no_text"


async def test_history_window_and_cursor_pagination(slack: AsyncWebClient) -> None:
    posted = [(await slack.chat_postMessage(channel=INCIDENTS, text=f"m{i}"))["ts"] for i in range(7)]
    assert posted == sorted(posted) and len(set(posted)) == 7

    seen, cursor, pages = [], None, 0
    while True:
        page = await slack.conversations_history(channel=INCIDENTS, limit=3, cursor=cursor)
        pages += 1
        seen += [m["text"] for m in page["messages"]]
        cursor = page["response_metadata"]["next_cursor"]
        assert page["has_more"] is bool(cursor)
        if not cursor:
            break
    assert pages == 3 and seen == [f"m{i}" for i in reversed(range(7))]

    window = await slack.conversations_history(channel=INCIDENTS, oldest=posted[1], latest=posted[4])
    assert [m["text"] for m in window["messages"]] == ["m3", "m2"]
    window = await slack.conversations_history(
        channel=INCIDENTS, oldest=posted[1], latest=posted[4], inclusive=True
    )
    assert [m["text"] for m in window["messages"]] == ["m4", "m3", "m2", "m1"]

    parent = posted[0]
    for i in range(4):
        await slack.chat_postMessage(channel=INCIDENTS, text=f"r{i}", thread_ts=parent)
    first = await slack.conversations_replies(channel=INCIDENTS, ts=parent, limit=3)
    assert [m["text"] for m in first["messages"]] == ["m0", "r0", "r1"] and first["has_more"]
    rest = await slack.conversations_replies(
        channel=INCIDENTS, ts=parent, limit=3, cursor=first["response_metadata"]["next_cursor"]
    )
    assert [m["text"] for m in rest["messages"]] == ["r2", "r3"] and not rest["has_more"]


async def test_reactions_and_already_reacted(slack: AsyncWebClient) -> None:
    msg = await slack.chat_postMessage(channel=INCIDENTS, text="who takes it?")
    await slack.reactions_add(channel=INCIDENTS, timestamp=msg["ts"], name="raised_hand")
    with pytest.raises(SlackApiError) as err:
        await slack.reactions_add(channel=INCIDENTS, timestamp=msg["ts"], name="raised_hand")
    assert err.value.response["error"] == "already_reacted"
    with pytest.raises(SlackApiError) as err:
        await slack.reactions_add(channel=INCIDENTS, timestamp="1.000001", name="eyes")
    assert err.value.response["error"] == "message_not_found"
    with pytest.raises(SlackApiError) as err:
        await slack.reactions_add(channel=INCIDENTS, timestamp=msg["ts"], name="")
    assert err.value.response["error"] == "invalid_name"
    history = await slack.conversations_history(channel=INCIDENTS)
    assert history["messages"][0]["reactions"] == [
        {"name": "raised_hand", "users": [BOT_USER_ID], "count": 1}
    ]


async def test_chat_update(slack: AsyncWebClient) -> None:
    msg = await slack.chat_postMessage(channel=INCIDENTS, text="status: investigating", metadata=METADATA)
    res = await slack.chat_update(channel=INCIDENTS, ts=msg["ts"], text="status: mitigated")
    assert res["channel"] == INCIDENTS and res["ts"] == msg["ts"] and res["text"] == "status: mitigated"
    history = await slack.conversations_history(channel=INCIDENTS, include_all_metadata=True)
    updated = history["messages"][0]
    assert updated["text"] == "status: mitigated" and updated["edited"]["user"] == BOT_USER_ID
    assert updated["metadata"] == METADATA  # kept when not given
    with pytest.raises(SlackApiError) as err:
        await slack.chat_update(channel=INCIDENTS, ts="1.000001", text="nope")
    assert err.value.response["error"] == "message_not_found"


async def test_errors_channel_not_found_auth_and_unknown_method(url: str, slack: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as err:
        await slack.chat_postMessage(channel="#no-such-channel", text="hello")
    assert err.value.response["error"] == "channel_not_found"
    with pytest.raises(SlackApiError) as err:  # conversations.* want IDs, as in Slack
        await slack.conversations_history(channel="incidents")
    assert err.value.response["error"] == "channel_not_found"

    bad = AsyncWebClient(token="not-a-slack-token", base_url=url + "/api/")
    with pytest.raises(SlackApiError) as err:
        await bad.chat_postMessage(channel=INCIDENTS, text="hello")
    assert err.value.response.status_code == 200 and err.value.response["error"] == "invalid_auth"
    anonymous = AsyncWebClient(base_url=url + "/api/")
    with pytest.raises(SlackApiError) as err:
        await anonymous.auth_test()
    assert err.value.response["error"] == "not_authed"

    with pytest.raises(SlackApiError) as err:
        await slack.api_call("chat.frobnicate")
    assert err.value.response.status_code == 404 and err.value.response["error"] == "unknown_method"


async def test_args_from_query_form_and_json_are_merged(http: httpx.AsyncClient) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    res = await http.post(
        "/api/chat.postMessage",
        params={"channel": INCIDENTS},
        data={"text": "from a form", "metadata": json.dumps(METADATA)},
        headers=auth,
    )
    body = res.json()
    assert res.status_code == 200 and body["ok"] and body["message"]["metadata"] == METADATA
    res = await http.get(
        "/api/conversations.history",
        params={"channel": INCIDENTS, "include_all_metadata": "true"},
        headers=auth,
    )
    assert res.json()["messages"][0]["text"] == "from a form"
    res = await http.post("/api/auth.test", data={"token": TOKEN})  # token in the form body
    assert res.json()["ok"] is True
    res = await http.post("/api/auth.test", data={"token": "xoxb-form-token"})  # one Slack never issued
    assert res.json() == {"ok": False, "error": "invalid_auth"}


async def test_429_fault_carries_retry_after(http: httpx.AsyncClient, slack: AsyncWebClient) -> None:
    await http.post("/_sandbox/faults", json={"method": "chat.postMessage", "status": 429, "retry_after": 7})
    with pytest.raises(SlackApiError) as err:
        await slack.chat_postMessage(channel=INCIDENTS, text="first try")
    assert err.value.response.status_code == 429
    assert err.value.response.headers["Retry-After"] == "7"
    assert err.value.response["error"] == "ratelimited"
    ok = await slack.chat_postMessage(channel=INCIDENTS, text="second try")  # the fault is used up
    assert ok["ok"]
    history = await slack.conversations_history(channel=INCIDENTS)
    assert [m["text"] for m in history["messages"]] == ["second try"]


async def test_faults_queue_in_order_and_match_methods(
    http: httpx.AsyncClient, slack: AsyncWebClient
) -> None:
    await http.post(
        "/_sandbox/faults",
        json=[
            {"method": "chat.postMessage", "status": 503},
            {"method": "*", "error": "invalid_auth", "count": 2},
        ],
    )
    with pytest.raises(SlackApiError) as err:
        await slack.chat_postMessage(channel=INCIDENTS, text="a")
    assert err.value.response.status_code == 503
    for _ in range(2):
        with pytest.raises(SlackApiError) as err:
            await slack.auth_test()
        assert err.value.response.status_code == 200 and err.value.response["error"] == "invalid_auth"
    assert (await slack.auth_test())["ok"]

    # a 500 after the post was made: a retry must cope with the post having happened
    await http.post("/_sandbox/faults", json={"method": "chat.postMessage", "status": 500, "perform": True})
    with pytest.raises(SlackApiError) as err:
        await slack.chat_postMessage(channel=INCIDENTS, text="posted anyway")
    assert err.value.response.status_code == 500
    history = await slack.conversations_history(channel=INCIDENTS)
    assert [m["text"] for m in history["messages"]] == ["posted anyway"]

    await http.post("/_sandbox/faults", json={"status": 500, "count": -1})
    await http.delete("/_sandbox/faults")
    assert (await slack.auth_test())["ok"]

    calls = (await http.get("/_sandbox/calls", params={"method": "chat.postMessage"})).json()
    assert [(c["status"], c["error"]) for c in calls] == [
        (503, "service_unavailable"),
        (500, "internal_error"),
    ]


async def test_delay_fault_performs_the_call_then_answers_late(
    http: httpx.AsyncClient, slack: AsyncWebClient
) -> None:
    await http.post("/_sandbox/faults", json={"method": "chat.postMessage", "delay": 0.3})
    timed_out = AsyncWebClient(token=TOKEN, base_url=slack.base_url, timeout=0.1)  # type: ignore[arg-type]
    timed_out.retry_handlers.clear()
    with pytest.raises(asyncio.TimeoutError):
        await timed_out.chat_postMessage(channel=INCIDENTS, text="answer lost")
    history = await slack.conversations_history(channel=INCIDENTS)
    assert [m["text"] for m in history["messages"]] == ["answer lost"]


async def test_rate_limit_per_channel(http: httpx.AsyncClient, slack: AsyncWebClient) -> None:
    await http.post("/_sandbox/rate-limit", json={"per_minute": 60})
    try:
        await slack.chat_postMessage(channel=INCIDENTS, text="one")
        with pytest.raises(SlackApiError) as err:
            await slack.chat_postMessage(channel=INCIDENTS, text="two")
        assert err.value.response.status_code == 429
        assert int(err.value.response.headers["Retry-After"]) >= 1
        other = await slack.chat_postMessage(channel="netclaw-alerts", text="another channel is fine")
        assert other["ok"]
    finally:
        await http.post("/_sandbox/rate-limit", json={"per_minute": None})
    assert (await slack.chat_postMessage(channel=INCIDENTS, text="limit off"))["ok"]


async def test_slack_sdk_rate_limit_retry_handler_waits_retry_after(
    http: httpx.AsyncClient, slack: AsyncWebClient
) -> None:
    slack.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=1))
    await http.post("/_sandbox/faults", json={"method": "chat.postMessage", "status": 429, "retry_after": 1})
    start = time.monotonic()
    res = await slack.chat_postMessage(channel=INCIDENTS, text="after a retry")
    assert res["ok"] and time.monotonic() - start >= 1.0
    history = await slack.conversations_history(channel=INCIDENTS)
    assert [m["text"] for m in history["messages"]] == ["after a retry"]


async def test_conversations_create_join_and_names(full: AsyncWebClient) -> None:
    slack = full  # conversations.create needs channels:manage, join channels:join
    created = await slack.conversations_create(name="inc-2024-0042-core-down")
    channel = created["channel"]
    assert channel["id"] == channel_id_for("inc-2024-0042-core-down") and channel["created"] > 0
    with pytest.raises(SlackApiError) as err:
        await slack.conversations_create(name="inc-2024-0042-core-down")
    assert err.value.response["error"] == "name_taken"
    with pytest.raises(SlackApiError) as err:
        await slack.conversations_create(name="Bad Name!")
    assert err.value.response["error"] == "invalid_name_specials"
    joined = await slack.conversations_join(channel=channel["id"])
    assert joined["channel"]["name"] == "inc-2024-0042-core-down"
    names = [c["name"] for c in (await slack.conversations_list())["channels"]]
    assert "inc-2024-0042-core-down" in names
    assert (await slack.chat_postMessage(channel="#inc-2024-0042-core-down", text="hi"))[
        "channel"
    ] == channel["id"]


async def test_users_info_and_dnd(http: httpx.AsyncClient, full: AsyncWebClient) -> None:
    slack = full  # users:read, dnd:read
    user = (await slack.users_info(user="U123ONCALL"))["user"]
    assert user["id"] == "U123ONCALL" and user["profile"]["display_name"] and user["tz"]
    with pytest.raises(SlackApiError) as err:
        await slack.users_info(user="nobody")
    assert err.value.response["error"] == "user_not_found"

    dnd = await slack.dnd_info(user="U123ONCALL")
    assert dnd["dnd_enabled"] is False and dnd["snooze_enabled"] is False
    assert dnd["next_dnd_start_ts"] > time.time()
    await http.post("/_sandbox/dnd", json={"user": "U123ONCALL", "enabled": True})
    dnd = await slack.dnd_info(user="U123ONCALL")
    assert dnd["dnd_enabled"] is True and dnd["next_dnd_start_ts"] <= time.time() < dnd["next_dnd_end_ts"]
    await http.post("/_sandbox/dnd", json={"user": "U123ONCALL", "enabled": False})
    assert (await slack.dnd_info(user="U123ONCALL"))["dnd_enabled"] is False


async def test_file_upload_v2(http: httpx.AsyncClient, slack: AsyncWebClient) -> None:
    res = await slack.files_upload_v2(
        channel=INCIDENTS, content="# Review\nroot cause: BGP", filename="review.md", initial_comment="draft"
    )
    assert res["file"]["name"] == "review.md"
    history = await slack.conversations_history(channel=INCIDENTS)
    assert (
        history["messages"][0]["text"] == "draft"
        and history["messages"][0]["files"][0]["id"] == res["file"]["id"]
    )
    content = await http.get(f"/_sandbox/files/{res['file']['id']}")
    assert content.text == "# Review\nroot cause: BGP"


async def test_state_endpoint_and_reset(http: httpx.AsyncClient, slack: AsyncWebClient) -> None:
    parent = await slack.chat_postMessage(channel=INCIDENTS, text="parent")
    await slack.chat_postMessage(channel=INCIDENTS, text="child", thread_ts=parent["ts"])
    await slack.reactions_add(channel=INCIDENTS, timestamp=parent["ts"], name="eyes")
    state = (await http.get("/_sandbox/state")).json()
    incidents = next(c for c in state["channels"] if c["name"] == "incidents")
    assert [m["text"] for m in incidents["messages"]] == ["parent"]
    assert [r["text"] for r in incidents["messages"][0]["replies"]] == ["child"]
    assert incidents["messages"][0]["reactions"][0]["name"] == "eyes"
    assert state["calls"]["chat.postMessage"] == 2
    await http.post("/_sandbox/reset")
    state = (await http.get("/_sandbox/state")).json()
    assert [c["name"] for c in state["channels"]] == list(DEFAULT_CHANNELS)
    assert all(not c["messages"] for c in state["channels"])


async def test_state_survives_a_restart(tmp_path: Path) -> None:
    state_file = tmp_path / "slack-sandbox.json"
    async with run_sandbox(state_file=state_file, tokens=TOKENS) as url:
        slack = AsyncWebClient(token=FULL, base_url=url + "/api/")
        created = await slack.conversations_create(name="inc-restart")
        parent = await slack.chat_postMessage(channel="#incidents", text="before restart", metadata=METADATA)
        await slack.chat_postMessage(channel=INCIDENTS, text="a reply", thread_ts=parent["ts"])
        await slack.reactions_add(channel=INCIDENTS, timestamp=parent["ts"], name="wrench")
    assert state_file.exists()

    async with run_sandbox(state_file=state_file, tokens=TOKENS) as url:
        slack = AsyncWebClient(token=FULL, base_url=url + "/api/")
        history = await slack.conversations_history(channel=INCIDENTS, include_all_metadata=True)
        (msg,) = history["messages"]
        assert msg["text"] == "before restart" and msg["metadata"] == METADATA and msg["reply_count"] == 1
        assert msg["reactions"][0]["name"] == "wrench"
        replies = await slack.conversations_replies(channel=INCIDENTS, ts=parent["ts"])
        assert [m["text"] for m in replies["messages"]] == ["before restart", "a reply"]
        names = [c["name"] for c in (await slack.conversations_list())["channels"]]
        assert "inc-restart" in names and created["channel"]["id"] == channel_id_for("inc-restart")
        later = await slack.chat_postMessage(channel=INCIDENTS, text="after restart")
        assert later["ts"] > parent["ts"]


async def test_html_page_shows_messages_escaped(http: httpx.AsyncClient, slack: AsyncWebClient) -> None:
    parent = await slack.chat_postMessage(
        channel=INCIDENTS, text=":rotating_light: *P1* <script>alert(1)</script> & `show bgp`"
    )
    await slack.chat_postMessage(channel=INCIDENTS, text="_looking_ :mag:", thread_ts=parent["ts"])
    await slack.reactions_add(channel=INCIDENTS, timestamp=parent["ts"], name="raised_hand")
    page = await http.get("/", params={"channel": "incidents"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    text = page.text
    assert "<script>alert(1)</script>" not in text
    assert html.escape("<script>alert(1)</script>") in text
    assert "<b>P1</b>" in text and "<code>show bgp</code>" in text and "&amp;" in text
    assert "\U0001f6a8" in text and "\u270b 1" in text
    assert '<div class="thread">' in text and "<i>looking</i>" in text
    assert 'http-equiv="refresh"' in text
    assert (await http.get("/", params={"channel": "nope"})).status_code == 404


def test_render_mrkdwn() -> None:
    out = str(
        render_mrkdwn("*bold* _it_ ~gone~ `x<y` <https://e.x/?a=1&amp;b=2|link> <@U1ABC> 14:32:05 :mag:")
    )
    assert "<b>bold</b>" in out and "<i>it</i>" in out and "<s>gone</s>" in out
    assert "<code>x&lt;y</code>" in out
    assert '<a href="https://e.x/?a=1&amp;b=2"' in out and ">link</a>" in out
    assert "@u1abc" in out and "14:32:05" in out and "\U0001f50d" in out
    assert str(render_mrkdwn("snake_case_name a*b*c")) == "snake_case_name a*b*c"
    assert str(render_mrkdwn("<javascript:alert(1)|x>")) == "&lt;javascript:alert(1)|x&gt;"


async def test_serve_in_background_with_a_custom_app() -> None:
    app = create_app(channels=["only-one"])
    async with serve_in_background(app) as url:
        assert url.startswith("http://127.0.0.1:")
        slack = AsyncWebClient(token=TOKEN, base_url=url + "/api/")
        names = [c["name"] for c in (await slack.conversations_list())["channels"]]
        assert names == ["only-one"]


# -- acting as Slack toward an app (/_sandbox/act/..., views.open, response_url) ---------------

SECRET = "sandbox-test-secret"


class RecordingApp:
    """A stand-in for the app at the request URL: records each request, answers as told."""

    def __init__(self) -> None:
        self.requests: list[dict[str, object]] = []
        self.answer: tuple[int, bytes, str] = (200, b"", "text/plain")

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.requests.append({"path": scope["path"], "headers": headers, "body": body})
        status, content, content_type = self.answer
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", content_type.encode())],
            }
        )
        await send({"type": "http.response.body", "body": content})

    def last_payload(self) -> dict[str, object]:
        from urllib.parse import parse_qs

        request = self.requests[-1]
        form = parse_qs(request["body"].decode())  # type: ignore[union-attr]
        return json.loads(form["payload"][0])


@pytest.fixture
async def acting() -> AsyncIterator[tuple[httpx.AsyncClient, AsyncWebClient, RecordingApp]]:
    recorder = RecordingApp()
    async with serve_in_background(recorder) as app_url:
        sandbox_app = create_app(request_url=app_url + "/slack/events", signing_secret=SECRET)
        async with serve_in_background(sandbox_app) as url, httpx.AsyncClient(base_url=url) as http:
            yield http, AsyncWebClient(token=TOKEN, base_url=url + "/api/"), recorder


async def _declaration(slack: AsyncWebClient) -> dict[str, object]:
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "*P1* core down"}},
        {
            "type": "actions",
            "block_id": "incident_actions",
            "elements": [
                {
                    "type": "button",
                    "action_id": "incident_claim",
                    "text": {"type": "plain_text", "text": "Claim"},
                    "value": "incident-k1",
                    "style": "primary",
                }
            ],
        },
    ]
    return await slack.chat_postMessage(
        channel="#incidents", text="*P1* core down", blocks=blocks, metadata=METADATA
    )


def _signed_like_slack(request: dict[str, object]) -> bool:
    from slack_sdk.signature import SignatureVerifier

    headers = request["headers"]
    return SignatureVerifier(SECRET).is_valid(
        body=request["body"].decode(),  # type: ignore[union-attr]
        timestamp=headers["x-slack-request-timestamp"],  # type: ignore[index]
        signature=headers["x-slack-signature"],  # type: ignore[index]
    )


async def test_a_reaction_is_kept_and_delivered_as_a_signed_event_callback(acting) -> None:
    http, slack, recorder = acting
    parent = await _declaration(slack)
    answer = (
        await http.post(
            "/_sandbox/act/reaction",
            json={"user": "U0ALICE", "channel": "incidents", "ts": parent["ts"], "name": "raised_hand"},
        )
    ).json()
    assert answer["ok"] and answer["status"] == 200 and answer["body"] == ""
    (request,) = recorder.requests
    assert request["headers"]["content-type"] == "application/json" and _signed_like_slack(request)
    envelope = json.loads(request["body"])
    assert envelope["type"] == "event_callback" and envelope["event_id"] == answer["event_id"]
    assert envelope["event"]["type"] == "reaction_added" and envelope["event"]["user"] == "U0ALICE"
    assert envelope["event"]["item"] == {"type": "message", "channel": INCIDENTS, "ts": parent["ts"]}
    history = await slack.reactions_get(channel=INCIDENTS, timestamp=parent["ts"])
    assert history["message"]["reactions"] == [{"name": "raised_hand", "users": ["U0ALICE"], "count": 1}]
    again = await http.post(
        "/_sandbox/act/reaction",
        json={"user": "U0ALICE", "channel": "incidents", "ts": parent["ts"], "name": "raised_hand"},
    )
    assert (
        again.status_code == 400
        and again.json()["error"] == "already_reacted"
        and len(recorder.requests) == 1
    )

    pinned = (
        await http.post("/_sandbox/act/pin", json={"user": "U0BOB", "channel": INCIDENTS, "ts": parent["ts"]})
    ).json()
    assert pinned["status"] == 200
    event = json.loads(recorder.requests[-1]["body"])["event"]
    assert event["type"] == "pin_added" and event["channel_id"] == INCIDENTS
    assert event["item"]["message"]["ts"] == parent["ts"]


async def test_forged_and_stale_deliveries_on_request(acting) -> None:
    http, slack, recorder = acting
    parent = await _declaration(slack)
    spec = {"user": "U0ALICE", "channel": INCIDENTS, "ts": parent["ts"], "name": "eyes"}
    await http.post("/_sandbox/act/reaction", json={**spec, "signing_secret": "wrong"})
    await http.post("/_sandbox/act/reaction", json={**spec, "name": "fire", "request_timestamp": 1000})
    forged, stale = recorder.requests
    assert not _signed_like_slack(forged)
    assert stale["headers"]["x-slack-request-timestamp"] == "1000"


async def test_button_then_modal_then_submission(acting) -> None:
    http, slack, recorder = acting
    parent = await _declaration(slack)
    clicked = (
        await http.post(
            "/_sandbox/act/button",
            json={"user": "U0ALICE", "channel": INCIDENTS, "ts": parent["ts"], "action_id": "incident_claim"},
        )
    ).json()
    assert clicked["status"] == 200
    request = recorder.requests[-1]
    assert request["headers"]["content-type"] == "application/x-www-form-urlencoded" and _signed_like_slack(
        request
    )
    payload = recorder.last_payload()
    assert payload["type"] == "block_actions" and payload["user"]["id"] == "U0ALICE"
    assert (
        payload["actions"][0]["value"] == "incident-k1"
        and payload["actions"][0]["action_id"] == "incident_claim"
    )
    assert (
        payload["trigger_id"] == clicked["trigger_id"] and payload["response_url"] == clicked["response_url"]
    )
    assert payload["container"]["message_ts"] == parent["ts"]
    missing = await http.post(
        "/_sandbox/act/button",
        json={"user": "U0ALICE", "channel": INCIDENTS, "ts": parent["ts"], "action_id": "nope"},
    )
    assert missing.status_code == 400 and "no button" in missing.json()["error"]

    view = {
        "type": "modal",
        "callback_id": "update",
        "private_metadata": "incident-k1",
        "title": {"type": "plain_text", "text": "Post update"},
        "submit": {"type": "plain_text", "text": "Post"},
        "blocks": [
            {
                "type": "input",
                "block_id": "status",
                "label": {"type": "plain_text", "text": "Status"},
                "element": {
                    "type": "static_select",
                    "action_id": "status",
                    "options": [{"text": {"type": "plain_text", "text": "Fixing"}, "value": "fixing"}],
                },
            },
            {
                "type": "input",
                "block_id": "message",
                "label": {"type": "plain_text", "text": "What changed"},
                "element": {"type": "plain_text_input", "action_id": "message", "multiline": True},
            },
            {
                "type": "input",
                "block_id": "eta",
                "optional": True,
                "label": {"type": "plain_text", "text": "ETA"},
                "element": {"type": "plain_text_input", "action_id": "eta"},
            },
        ],
    }
    opened = await slack.views_open(trigger_id=clicked["trigger_id"], view=view)
    view_id = opened["view"]["id"]
    assert view_id.startswith("V") and opened["view"]["private_metadata"] == "incident-k1"
    with pytest.raises(SlackApiError) as used:
        await slack.views_open(trigger_id=clicked["trigger_id"], view=view)
    assert used.value.response["error"] == "invalid_trigger_id"

    page = (await http.get("/", params={"channel": "incidents"})).text
    assert 'data-action-id="incident_claim"' in page and f'data-view="{view_id}"' in page

    bad = await http.post("/_sandbox/act/submit", json={"user": "U0ALICE", "values": {"status": "bogus"}})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_submission"
    assert any("not one of the options" in e for e in bad.json()["errors"])
    assert any("message: this field is required" in e for e in bad.json()["errors"])

    recorder.answer = (
        200,
        b'{"response_action": "errors", "errors": {"message": "Too short"}}',
        "application/json",
    )
    kept = (
        await http.post(
            "/_sandbox/act/submit", json={"user": "U0ALICE", "values": {"status": "fixing", "message": "x"}}
        )
    ).json()
    assert kept["view_status"] == "open" and kept["view_errors"] == {"message": "Too short"}
    assert "Too short" in (await http.get("/")).text

    recorder.answer = (200, b"", "text/plain")
    done = (
        await http.post(
            "/_sandbox/act/submit",
            json={"view_id": view_id, "values": {"status": "fixing", "message": "Reseating the optic"}},
        )
    ).json()
    assert done["status"] == 200 and done["view_status"] == "closed"
    submission = recorder.last_payload()
    assert submission["type"] == "view_submission" and submission["user"]["id"] == "U0ALICE"
    values = submission["view"]["state"]["values"]
    assert values["status"]["status"]["selected_option"]["value"] == "fixing"
    assert values["message"]["message"]["value"] == "Reseating the optic"
    assert values["eta"]["eta"]["value"] is None
    assert submission["view"]["private_metadata"] == "incident-k1"


async def test_a_trigger_expires(acting, monkeypatch) -> None:
    import sandbox.slack.state as sandbox_module  # SlackSandbox.open_view reads TRIGGER_TTL there

    http, slack, recorder = acting
    parent = await _declaration(slack)
    clicked = (
        await http.post(
            "/_sandbox/act/button",
            json={"user": "U0ALICE", "channel": INCIDENTS, "ts": parent["ts"], "action_id": "incident_claim"},
        )
    ).json()
    monkeypatch.setattr(sandbox_module, "TRIGGER_TTL", -1.0)
    with pytest.raises(SlackApiError) as expired:
        await slack.views_open(
            trigger_id=clicked["trigger_id"],
            view={"type": "modal", "title": {"type": "plain_text", "text": "x"}, "blocks": []},
        )
    assert expired.value.response["error"] == "expired_trigger_id"


async def test_slash_command_answers_and_response_urls(acting) -> None:
    http, slack, recorder = acting
    parent = await _declaration(slack)
    recorder.answer = (200, b"Usage: /incident help", "text/plain")
    ran = (
        await http.post(
            "/_sandbox/act/command", json={"user": "U0BOB", "channel": "incidents", "text": "help me"}
        )
    ).json()
    assert ran["status"] == 200 and ran["body"] == "Usage: /incident help"
    from urllib.parse import parse_qs

    form = {k: v[0] for k, v in parse_qs(recorder.requests[-1]["body"].decode()).items()}
    assert form["command"] == "/incident" and form["text"] == "help me" and form["user_id"] == "U0BOB"
    assert form["channel_id"] == INCIDENTS and form["channel_name"] == "incidents"
    assert form["response_url"] == ran["response_url"] and _signed_like_slack(recorder.requests[-1])

    async with httpx.AsyncClient() as plain:
        for n in range(5):
            ok = await plain.post(ran["response_url"], json={"text": f"answer {n}"})
            assert ok.status_code == 200
        spent = await plain.post(ran["response_url"], json={"text": "one too many"})
        assert spent.status_code == 404 and spent.json()["error"] == "used_url"
        unknown = await plain.post(ran["response_url"] + "x", json={"text": "?"})
        assert unknown.status_code == 404

    await slack.chat_postEphemeral(channel=INCIDENTS, user="U0BOB", text="psst", thread_ts=parent["ts"])
    state = (await http.get("/_sandbox/state")).json()
    told = state["ephemeral"]["U0BOB"]
    assert [m["text"] for m in told] == ["Usage: /incident help", *[f"answer {n}" for n in range(5)], "psst"]
    assert [m["source"] for m in told][:2] == ["command", "response_url"] and told[-1]["thread_ts"] == parent[
        "ts"
    ]
    history = await slack.conversations_history(channel=INCIDENTS)
    assert [m["text"] for m in history["messages"]] == ["*P1* core down"]  # ephemeral is not history
    page = (await http.get("/", params={"channel": "incidents"})).text
    assert "only visible to @bob" in page and "psst" in page

    # A response_url can also speak to the channel, or replace the message the button was on.
    clicked = (
        await http.post(
            "/_sandbox/act/button",
            json={"user": "U0ALICE", "channel": INCIDENTS, "ts": parent["ts"], "action_id": "incident_claim"},
        )
    ).json()
    async with httpx.AsyncClient() as plain:
        await plain.post(
            clicked["response_url"], json={"text": "for everyone", "response_type": "in_channel"}
        )
        await plain.post(clicked["response_url"], json={"text": "claimed", "replace_original": True})
    history = await slack.conversations_history(channel=INCIDENTS)
    assert [m["text"] for m in history["messages"]] == ["for everyone", "claimed"]


async def test_config_and_acting_without_an_app(http: httpx.AsyncClient, slack: AsyncWebClient) -> None:
    config = (await http.get("/_sandbox/config")).json()
    assert config == {"ok": True, "request_url": None, "signing_secret_set": False}
    parent = await slack.chat_postMessage(channel=INCIDENTS, text="hello")
    answer = (
        await http.post(
            "/_sandbox/act/reaction",
            json={"user": "U0ALICE", "channel": INCIDENTS, "ts": parent["ts"], "name": "eyes"},
        )
    ).json()
    assert answer["ok"] and answer["status"] is None and answer["error"] == "no_request_url"
    assert (await http.post("/_sandbox/config", json={"request_url": "ftp://x"})).status_code == 400
    set_ = (
        await http.post("/_sandbox/config", json={"request_url": "http://127.0.0.1:9/slack/events"})
    ).json()
    assert set_["request_url"] == "http://127.0.0.1:9/slack/events"
    unreachable = (
        await http.post(
            "/_sandbox/act/reaction",
            json={"user": "U0BOB", "channel": INCIDENTS, "ts": parent["ts"], "name": "eyes"},
        )
    ).json()
    assert unreachable["status"] is None and unreachable["error"].startswith("connection_failed")
    await http.post("/_sandbox/config", json={"request_url": None})
    bad_user = await http.post(
        "/_sandbox/act/reaction", json={"user": "alice", "channel": INCIDENTS, "ts": parent["ts"]}
    )
    assert bad_user.status_code == 400


# -- who may call: tokens, scopes, channel membership (as Slack decides) ------------------------


async def _slack_error(call) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """The Slack-shaped answer of a call that must fail, with its headers."""
    with pytest.raises(SlackApiError) as err:
        await call
    response = err.value.response
    return {**response.data, "_status": response.status_code, "_headers": response.headers}


async def test_only_tokens_slack_issued_get_in(url: str, http: httpx.AsyncClient) -> None:
    unknown = AsyncWebClient(token="xoxb-never-issued", base_url=url + "/api/")
    assert (await _slack_error(unknown.auth_test()))["error"] == "invalid_auth"
    assert (await _slack_error(unknown.chat_postMessage(channel=INCIDENTS, text="x")))[
        "error"
    ] == "invalid_auth"
    anonymous = AsyncWebClient(base_url=url + "/api/")
    assert (await _slack_error(anonymous.chat_postMessage(channel=INCIDENTS, text="x")))[
        "error"
    ] == "not_authed"
    app_level = AsyncWebClient(token="xapp-1-A0-socket-mode", base_url=url + "/api/")
    assert (await _slack_error(app_level.auth_test()))["error"] == "not_allowed_token_type"
    for token in DEFAULT_TOKENS:  # the project's, the tests' and the benchmarks' all work
        assert (await AsyncWebClient(token=token, base_url=url + "/api/").auth_test())["ok"]

    # Revoked (the app uninstalled, the token rotated): token_revoked; a new token: accepted.
    (await http.post("/_sandbox/tokens", json={"token": TOKEN, "revoked": True})).raise_for_status()
    revoked = AsyncWebClient(token=TOKEN, base_url=url + "/api/")
    assert (await _slack_error(revoked.auth_test()))["error"] == "token_revoked"
    (await http.post("/_sandbox/tokens", json={"token": "xoxb-rotated"})).raise_for_status()
    assert (await AsyncWebClient(token="xoxb-rotated", base_url=url + "/api/").auth_test())["ok"]
    listed = (await http.get("/_sandbox/tokens")).json()
    assert listed["scopes"] == list(DEFAULT_SCOPES)
    assert {"token": TOKEN, "scopes": None, "revoked": True} in listed["tokens"]
    assert {"token": FULL, "scopes": list(EVERY_SCOPE), "revoked": False} in listed["tokens"]
    calls = (await http.get("/_sandbox/calls", params={"method": "auth.test"})).json()
    assert [c["error"] for c in calls[:3]] == ["invalid_auth", "not_allowed_token_type", None]

    (await http.post("/_sandbox/reset")).raise_for_status()  # back to the tokens it started with
    assert (await revoked.auth_test())["ok"]
    assert (await _slack_error(AsyncWebClient(token="xoxb-rotated", base_url=url + "/api/").auth_test()))[
        "error"
    ] == "invalid_auth"


async def test_tokens_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_SANDBOX_TOKENS", "xoxb-ops-one, xoxb-ops-two")
    monkeypatch.setenv("SLACK_SANDBOX_SCOPES", "chat:write,channels:read")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-from-the-worker-env")
    async with serve_in_background(create_app()) as url:
        for token in ("xoxb-ops-one", "xoxb-ops-two", "xoxb-from-the-worker-env"):
            slack = AsyncWebClient(token=token, base_url=url + "/api/")
            assert (await slack.chat_postMessage(channel="#incidents", text="hi"))["ok"]
        denied = await _slack_error(slack.reactions_add(channel=INCIDENTS, timestamp="1.0", name="eyes"))
        assert denied["needed"] == "reactions:write" and denied["provided"] == "chat:write,channels:read"
        default = AsyncWebClient(token="xoxb-sandbox-token", base_url=url + "/api/")
        assert (await _slack_error(default.auth_test()))["error"] == "invalid_auth"  # the list replaced it


async def test_a_method_without_its_scope_is_missing_scope(url: str, http: httpx.AsyncClient) -> None:
    await http.post("/_sandbox/tokens", json={"token": "xoxb-post-only", "scopes": ["chat:write"]})
    narrow = AsyncWebClient(token="xoxb-post-only", base_url=url + "/api/")
    posted = await narrow.chat_postMessage(channel="#incidents", text="the bot may post")
    assert posted.headers["x-oauth-scopes"] == "chat:write"
    assert posted.headers["x-accepted-oauth-scopes"] == "chat:write"

    denied = await _slack_error(narrow.reactions_add(channel=INCIDENTS, timestamp=posted["ts"], name="eyes"))
    assert {k: v for k, v in denied.items() if not k.startswith("_")} == {
        "ok": False,
        "error": "missing_scope",
        "needed": "reactions:write",
        "provided": "chat:write",
    }
    assert denied["_status"] == 200 and denied["_headers"]["x-accepted-oauth-scopes"] == "reactions:write"
    denied = await _slack_error(narrow.conversations_history(channel=INCIDENTS))
    assert denied["needed"] == "channels:history"
    headers = denied["_headers"]
    assert headers["x-accepted-oauth-scopes"] == "channels:history,groups:history,im:history,mpim:history"  # type: ignore[index]

    # Listing private channels needs groups:read: without it the whole call fails, public ones too.
    await http.post(
        "/_sandbox/tokens", json={"token": "xoxb-post-only", "scopes": "chat:write channels:read"}
    )
    assert (await narrow.conversations_list(types="public_channel"))["ok"]
    denied = await _slack_error(narrow.conversations_list(types="public_channel,private_channel"))
    assert (denied["needed"], denied["provided"]) == ("groups:read", "chat:write,channels:read")

    # A private channel the bot is in: reading it needs groups:history, not channels:history.
    await http.post("/_sandbox/channels", json={"name": "sec-incidents", "private": True})
    private = channel_id_for("sec-incidents")
    await http.post(
        "/_sandbox/tokens", json={"token": "xoxb-post-only", "scopes": "chat:write,channels:history"}
    )
    assert (await narrow.conversations_history(channel=INCIDENTS))["ok"]
    denied = await _slack_error(narrow.conversations_history(channel=private))
    assert denied["needed"] == "groups:history"

    calls = (await http.get("/_sandbox/calls")).json()
    assert [(c["method"], c["needed"]) for c in calls if c["error"] == "missing_scope"] == [
        ("reactions.add", "reactions:write"),
        ("conversations.history", "channels:history"),
        ("conversations.list", "groups:read"),
        ("conversations.history", "groups:history"),
    ]
    ok = [c for c in calls if c["error"] is None]
    assert ok[0]["method"] == "chat.postMessage" and ok[0]["scopes"] == [["chat:write"]]
    assert ["channels:read"] in next(c for c in ok if c["method"] == "conversations.list")["scopes"]


async def test_the_app_scopes_can_change_at_run_time(url: str, http: httpx.AsyncClient) -> None:
    slack = AsyncWebClient(token=TOKEN, base_url=url + "/api/")  # no scopes of its own: the app's
    (await http.post("/_sandbox/tokens", json={"scopes": "chat:write"})).raise_for_status()
    assert (await _slack_error(slack.conversations_list()))["provided"] == "chat:write"
    assert (await http.get("/_sandbox/state")).json()["scopes"] == ["chat:write"]
    assert (await http.post("/_sandbox/tokens", json={"nothing": 1})).status_code == 400
    (await http.post("/_sandbox/reset")).raise_for_status()
    assert (await slack.conversations_list())["ok"]


async def test_a_public_channel_the_bot_was_not_invited_to(url: str, http: httpx.AsyncClient) -> None:
    made = (await http.post("/_sandbox/channels", json={"name": "noc-floor", "member": False})).json()
    channel = made["channel"]
    assert channel["is_member"] is False and BOT_USER_ID not in channel["members"]
    slack = AsyncWebClient(token=TOKEN, base_url=url + "/api/")  # DEFAULT_SCOPES: no chat:write.public
    listed = {c["name"]: c for c in (await slack.conversations_list())["channels"]}
    assert listed["noc-floor"]["is_member"] is False and listed["incidents"]["is_member"] is True

    assert (await _slack_error(slack.chat_postMessage(channel="#noc-floor", text="x")))[
        "error"
    ] == "not_in_channel"
    person = await http.post(
        "/_sandbox/messages", json={"channel": "noc-floor", "user": "U0ALICE", "text": "hi"}
    )
    ts = person.json()["ts"]
    for call in (
        slack.conversations_history(channel=channel["id"]),
        slack.conversations_replies(channel=channel["id"], ts=ts),
        slack.reactions_add(channel=channel["id"], timestamp=ts, name="eyes"),
        slack.chat_postEphemeral(channel=channel["id"], user="U0ALICE", text="psst"),
        slack.files_upload_v2(channel=channel["id"], content="x", filename="x.txt"),
    ):
        assert (await _slack_error(call))["error"] == "not_in_channel"

    # chat:write.public lets the bot post there, and only post.
    public = AsyncWebClient(token=FULL, base_url=url + "/api/")
    posted = await public.chat_postMessage(channel="#noc-floor", text="posted without an invitation")
    assert posted["channel"] == channel["id"]
    assert (await _slack_error(public.conversations_history(channel=channel["id"])))[
        "error"
    ] == "not_in_channel"
    assert (await _slack_error(public.chat_postEphemeral(channel=channel["id"], user="U0ALICE", text="x")))[
        "error"
    ] == "not_in_channel"
    used = (await http.get("/_sandbox/calls", params={"method": "chat.postMessage"})).json()[-1]
    assert used["error"] is None and ["chat:write.public"] in used["scopes"]

    # Invited (or joined with channels:join), the bot reads and reacts as anywhere else.
    await public.conversations_join(channel=channel["id"])
    assert len((await slack.conversations_history(channel=channel["id"]))["messages"]) == 2
    await slack.reactions_add(channel=channel["id"], timestamp=ts, name="eyes")
    removed = (await http.post("/_sandbox/channels", json={"id": channel["id"], "member": False})).json()
    assert removed["channel"]["is_member"] is False
    assert (await _slack_error(slack.conversations_history(channel=channel["id"])))[
        "error"
    ] == "not_in_channel"
    invited = (await http.post("/_sandbox/channels", json={"name": "noc-floor"})).json()  # member: true
    assert invited["channel"]["is_member"] is True
    assert (await slack.conversations_history(channel=channel["id"]))["ok"]


async def test_a_private_channel_the_bot_is_not_in_does_not_exist_for_it(
    url: str, http: httpx.AsyncClient
) -> None:
    await http.post("/_sandbox/channels", json={"name": "exec-bridge", "private": True, "member": False})
    cid = channel_id_for("exec-bridge")
    slack = AsyncWebClient(token=FULL, base_url=url + "/api/")  # every scope, chat:write.public too
    for call in (
        slack.chat_postMessage(channel="#exec-bridge", text="x"),
        slack.chat_postMessage(channel=cid, text="x"),
        slack.conversations_history(channel=cid),
        slack.conversations_info(channel=cid),
        slack.conversations_join(channel=cid),
        slack.reactions_add(channel=cid, timestamp="1.0", name="eyes"),
    ):
        assert (await _slack_error(call))["error"] == "channel_not_found"
    names = [
        c["name"]
        for c in (await slack.conversations_list(types="public_channel,private_channel"))["channels"]
    ]
    assert "exec-bridge" not in names

    await http.post("/_sandbox/channels", json={"name": "exec-bridge", "member": True})  # /invite @bot
    posted = await slack.chat_postMessage(channel="#exec-bridge", text="now it can")
    assert (await slack.conversations_history(channel=cid))["messages"][0]["ts"] == posted["ts"]
    listed = (await slack.conversations_list(types="public_channel,private_channel"))["channels"]
    assert {"name": "exec-bridge", "is_private": True, "is_member": True}.items() <= next(
        c for c in listed if c["name"] == "exec-bridge"
    ).items()
    assert (await slack.conversations_list(types="public_channel"))["ok"]
    assert (await _slack_error(slack.conversations_list(types="shared_channel")))["error"] == "invalid_types"

    channels = (await http.get("/_sandbox/channels")).json()["channels"]
    assert next(c for c in channels if c["name"] == "exec-bridge")["members"][-1] == BOT_USER_ID
    assert (await http.post("/_sandbox/channels", json={"name": "Bad Name"})).status_code == 400
    assert (await http.post("/_sandbox/channels", json={"id": "C0NOSUCHONE1"})).status_code == 400
    page = (await http.get("/")).text
    assert "#exec-bridge (private)" in page


async def test_a_channel_the_bot_creates_has_it_as_a_member(full: AsyncWebClient) -> None:
    created = (await full.conversations_create(name="inc-war-room", is_private=True))["channel"]
    assert created["is_member"] is True and created["is_private"] is True
    assert (await full.chat_postMessage(channel=created["id"], text="war room open"))["ok"]
    # The app's token: channels:manage, no groups:write.
    narrow = AsyncWebClient(token=TOKEN, base_url=full.base_url)
    denied = await _slack_error(narrow.conversations_create(name="inc-other", is_private=True))
    assert denied["needed"] == "groups:write"
    public = (await narrow.conversations_create(name="inc-other"))["channel"]  # a war room is public
    assert public["is_member"] is True and public["is_private"] is False


def test_every_method_has_its_slack_scopes() -> None:
    assert set(METHODS) == set(ACCEPTED_SCOPES)
    assert ACCEPTED_SCOPES["chat.postMessage"] == ("chat:write",)
    assert ACCEPTED_SCOPES["views.open"] == () and ACCEPTED_SCOPES["auth.test"] == ()


async def test_events_and_commands_reach_the_app_only_with_their_scope_and_membership(acting) -> None:
    http, slack, recorder = acting
    parent = await _declaration(slack)
    spec = {"user": "U0ALICE", "channel": INCIDENTS, "ts": parent["ts"]}

    await http.post("/_sandbox/tokens", json={"scopes": [s for s in DEFAULT_SCOPES if s != "reactions:read"]})
    answer = (await http.post("/_sandbox/act/reaction", json={**spec, "name": "eyes"})).json()
    assert answer["ok"] and answer["status"] is None
    assert (answer["error"], answer["needed"]) == ("missing_scope", "reactions:read")
    await http.post("/_sandbox/tokens", json={"scopes": [s for s in DEFAULT_SCOPES if s != "pins:read"]})
    answer = (await http.post("/_sandbox/act/pin", json=spec)).json()
    assert (answer["error"], answer["needed"]) == ("missing_scope", "pins:read")
    await http.post("/_sandbox/tokens", json={"scopes": [s for s in DEFAULT_SCOPES if s != "commands"]})
    answer = (await http.post("/_sandbox/act/command", json={"user": "U0ALICE", "text": "help"})).json()
    assert (answer["error"], answer["needed"]) == ("missing_scope", "commands")
    assert recorder.requests == []  # the app heard of none of it

    await http.post("/_sandbox/tokens", json={"scopes": list(DEFAULT_SCOPES)})
    delivered = (await http.post("/_sandbox/act/reaction", json={**spec, "name": "wrench"})).json()
    assert delivered["status"] == 200 and delivered["scopes"] == [["reactions:read"]]
    await http.post("/_sandbox/channels", json={"id": INCIDENTS, "member": False})  # the bot removed
    answer = (await http.post("/_sandbox/act/reaction", json={**spec, "name": "mag"})).json()
    assert answer["status"] is None and answer["error"] == "not_in_channel"
    assert len(recorder.requests) == 1
    kinds = [(d["kind"], d["error"]) for d in (await http.get("/_sandbox/state")).json()["deliveries"]]
    assert kinds == [
        ("reaction_added", "missing_scope"),
        ("pin_added", "missing_scope"),
        ("slash_command", "missing_scope"),
        ("reaction_added", None),
        ("reaction_added", "not_in_channel"),
    ]
