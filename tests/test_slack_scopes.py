"""The bot scopes the README tells operators to grant are exactly what the project needs.

One module-wide run drives every Slack code path of the project against a
sandbox that grants the app only that scope list, as Slack would check it
(sandbox/slack/: tokens, scopes, channel membership):

- the worker's real activities through real incidents on the dev server: a
  declaration in a public channel and one in a private channel (the bot
  invited to both, as the README says), each posted once while its answer is
  lost, so the retry looks for it first (conversations.list, .history);
  claim, update, resolve, review (chat.update, reactions.add, replies);
- the same activities called directly for what an incident here does not
  reach: a device output attached to the thread (files.*), a retried reply
  and a retried upload (conversations.replies);
- the Slack handler, through what Slack sends it (`/_sandbox/act/...`): a
  :raised_hand: and a :stopwatch: (reaction_added), a pin (pin_added), the
  buttons and their forms (views.open), `/incident` (commands), each answered
  with a message only the person sees (chat.postEphemeral).

Then: no call was refused, every scope in the list was what some call was
checked for, and with any one scope taken away some call fails with
`missing_scope` naming it.
"""

from __future__ import annotations

import dataclasses
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities.chat import ChatActivities
from activities.chat.slack import SlackChat
from activities.chat.slack.pager import SlackPager
from activities.people import SlackEmails
from activities.settings import Settings
from sandbox.slack import DEFAULT_SCOPES, serve_in_background
from sandbox.slack import create_app as create_sandbox
from starter.slack_app import create_app
from workflows.incident import IncidentWorkflow
from workflows.models import (
    IncidentState,
    Phase,
    SlackFileUpload,
    SlackHeaderUpdate,
    SlackPost,
    SlackReaction,
)
from workflows.paging_models import Page, PagedPerson, PagingService
from workflows.war_room_models import OpenWarRoom, WarRoomArchive

from .stack import (
    TOKEN,
    SlackSandbox,
    eventually,
    fast_retry_policy,
    idempotency_keys,
    incident_worker,
    posted_state,
)

ROOT = Path(__file__).resolve().parent.parent
SECRET = "scopes-test-secret"
ALICE, BOB = "U0ALICE", "U0BOB"
PRIVATE_CHANNEL = "netclaw-alerts"  # P2's channel in the default policy, made private here
GRANTED = list(DEFAULT_SCOPES)  # the list the README gives operators (the sandbox's default grant)

# Every Web API method the project calls (activities/chat/slack/, starter/slack_app.py, and
# slack_bolt's auth.test): a new call shows up here first, with the scope it needs.
PROJECT_METHODS = {
    "auth.test",
    "chat.postMessage",
    "chat.update",
    "chat.postEphemeral",
    "reactions.add",
    "conversations.list",
    "conversations.history",
    "conversations.replies",
    "conversations.open",
    "dnd.info",
    "users.info",  # activities/people.py: the claimer's email, for their ticket account
    "files.getUploadURLExternal",
    "files.completeUploadExternal",
    "views.open",
    # a P1's war room (activities/chat/slack/war_room.py)
    "conversations.create",
    "conversations.setPurpose",
    "conversations.invite",
    "bookmarks.list",
    "bookmarks.add",
    "pins.add",
}
# What Slack sends the handler; each needs the app to have a scope, or nothing arrives.
PROJECT_DELIVERIES = {"reaction_added", "pin_added", "block_actions", "view_submission", "slash_command"}
INJECTED = "internal_error"  # the 500 answered to a declaration that was posted all the same


def readme_scopes() -> list[str]:
    """The bot scopes in README.md, "Running against real Slack": `a`, `b`, ... up to the first ';'."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Running against real Slack", 1)[1].split("\n## ", 1)[0]
    listed = re.search(r"bot scopes(.*?);", section, re.S)
    assert listed, "README.md: no 'bot scopes `...`;' under 'Running against real Slack'"
    return re.findall(r"`([a-z]+:[a-z.:]+|commands)`", listed.group(1))


@dataclasses.dataclass
class Stack:
    sandbox: SlackSandbox
    client: Client
    declare: Any

    async def act(self, kind: str, **spec: Any) -> dict[str, Any]:
        return await self.sandbox.act(kind, **spec)

    async def state(self) -> dict[str, Any]:
        return await self.sandbox.state()

    async def told(self, user: str, count: int) -> None:
        """Wait until `user` has been told `count` things privately (ephemeral or response_url)."""

        async def probe() -> bool:
            return len((await self.state())["ephemeral"].get(user, [])) >= count

        await eventually(probe, what=f"{user} to be told {count} things")

    async def incident(self, workflow_id: str) -> IncidentState:
        return await self.client.get_workflow_handle(workflow_id).query(IncidentWorkflow.state)

    async def person_says(self, channel: str, user: str, text: str, thread_ts: str | None = None) -> str:
        spec = {"channel": channel, "user": user, "text": text, "thread_ts": thread_ts}
        response = await self.sandbox.control.post("/_sandbox/messages", json=spec)
        response.raise_for_status()
        return str(response.json()["ts"])

    async def calls_since(self, since: float) -> list[dict[str, Any]]:
        calls = (await self.sandbox.control.get("/_sandbox/calls")).json()
        return [c for c in calls if c["at"] >= since]

    async def deliveries_since(self, since: float) -> list[dict[str, Any]]:
        return [d for d in (await self.state())["deliveries"] if d["at"] >= since]


@dataclasses.dataclass
class Run:
    sandbox: SlackSandbox
    calls: list[dict[str, Any]]
    deliveries: list[dict[str, Any]]
    p1: IncidentState
    p2: IncidentState


def a_page(state: IncidentState, tag: str) -> Page:
    return Page(
        service=PagingService.slack,
        incident_workflow_id=state.workflow_id,
        incident_key=state.key,
        severity=state.severity,
        title=state.title,
        level=1,
        person=PagedPerson(user_id=ALICE),
        reason="level 1, on call for network-primary",
        idempotency_key=f"{state.workflow_id}/page/{tag}/1/{ALICE}/slack",
    )


def activity_env(attempt: int = 1) -> ActivityEnvironment:
    """What the worker gives an activity: here attempt `attempt`, scheduled now."""
    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info,
        attempt=attempt,
        scheduled_time=datetime.now(UTC),
        current_attempt_scheduled_time=datetime.now(UTC),
        start_to_close_timeout=timedelta(seconds=10),
    )
    return env


@pytest.fixture(scope="module")
async def stack(local_env, policy):
    sandbox_app = create_sandbox(signing_secret=SECRET, scopes=GRANTED)  # TOKEN: one of DEFAULT_TOKENS
    async with serve_in_background(sandbox_app) as sandbox_url:
        sandbox = SlackSandbox(sandbox_url)
        made = await sandbox.control.post(
            "/_sandbox/channels", json={"name": PRIVATE_CHANNEL, "private": True}
        )
        assert made.json()["channel"]["is_private"] and made.json()["channel"]["is_member"]
        async with incident_worker(local_env.client, sandbox.api_url, fast_retry_policy(policy)) as declare:
            settings = Settings(
                slack_api_url=sandbox.api_url,
                slack_bot_token=TOKEN,
                slack_signing_secret=SECRET,
                temporal_task_queue=declare.task_queue,
            )

            async def temporal() -> Client:
                return local_env.client

            async with serve_in_background(create_app(settings, temporal)) as handler_url:
                await sandbox.control.post(
                    "/_sandbox/config", json={"request_url": handler_url + "/slack/events"}
                )
                yield Stack(sandbox, local_env.client, declare)
        await sandbox.control.aclose()


async def declared_with_a_lost_answer(stack: Stack, severity: str) -> IncidentState:
    """Declare; Slack posts the declaration but answers 500, so the retry must look for it first."""
    await stack.sandbox.fault(method="chat.postMessage", status=500, perform=True, count=1)
    return await posted_state(await stack.declare(severity))


@pytest.fixture(scope="module")
async def baseline(stack: Stack) -> Run:
    since = time.time()
    p1 = await declared_with_a_lost_answer(stack, "P1")  # #incidents, public
    p2 = await declared_with_a_lost_answer(stack, "P2")  # #netclaw-alerts, private
    where1 = {"channel": p1.slack_channel, "ts": p1.slack_thread_ts}

    # The handler: claim by :raised_hand:, a reply to the timeline by :stopwatch: and by a pin.
    await stack.act("reaction", user=ALICE, name="raised_hand", **where1)
    await stack.told(ALICE, 1)
    reply = await stack.person_says(p1.slack_channel, BOB, "R1 Gi1 optic at -40 dBm", p1.slack_thread_ts)
    await stack.act("reaction", user=ALICE, name="stopwatch", channel=p1.slack_channel, ts=reply)
    await stack.told(ALICE, 2)
    await stack.act("pin", user=BOB, channel=p1.slack_channel, ts=reply)
    await stack.told(BOB, 1)
    # The buttons and their forms, then the slash command.
    await stack.act("button", user=ALICE, action_id="incident_update", **where1)
    await stack.act("submit", user=ALICE, values={"status": "fixing", "message": "Reseating the optic"})
    await stack.told(ALICE, 3)
    await stack.act("command", user=BOB, channel="incidents", text=f"status {p1.key}")
    await stack.told(BOB, 2)
    await stack.act("button", user=ALICE, action_id="incident_resolve", **where1)
    await stack.act("submit", user=ALICE, values={"resolution": "Optic replaced", "root_cause": "failed SFP"})
    await stack.told(ALICE, 4)
    # In the private channel: a claim reads its history (groups:history).
    await stack.act("reaction", user=BOB, name="raised_hand", channel=p2.slack_channel, ts=p2.slack_thread_ts)
    await stack.told(BOB, 3)

    async def settled() -> IncidentState | None:
        state = await stack.incident(p1.workflow_id)
        return (
            state
            if state.phase == Phase.review and (await stack.incident(p2.workflow_id)).commander
            else None
        )

    p1 = await eventually(settled, what="P1 in review and P2 claimed")

    async def reacted() -> bool:  # the outbox sends the resolution's reaction after what went before
        reactions = await stack.sandbox.reactions(p1.slack_channel, p1.slack_thread_ts)
        return {"rotating_light", "raised_hand", "white_check_mark"} <= set(reactions)

    await eventually(reacted, what="the declaration's reactions")

    # What these incidents did not reach: a device output attached, a retried reply, a retried upload.
    slack = ChatActivities(SlackChat.from_settings(stack.sandbox.api_url, TOKEN))
    upload = SlackFileUpload(
        channel=p1.slack_channel,
        thread_ts=p1.slack_thread_ts,
        filename="R2-show-ip-route.txt",
        title="R2 show ip route (step 2/5)",
        content="10.0.0.0/8 via 192.0.2.1\n" * 200,
    )
    first = await activity_env().run(slack.upload_slack_file, upload)
    again = await activity_env(attempt=2).run(slack.upload_slack_file, upload)
    assert again.duplicate and again.file_id == first.file_id
    reply_post = SlackPost(
        channel=p1.slack_channel,
        thread_ts=p1.slack_thread_ts,
        idempotency_key=f"{p1.workflow_id}/scopes/team_formed",
        template="team_formed",
        incident=p1,
    )
    posted = await activity_env(attempt=2).run(slack.post_slack_message, reply_post)
    assert not posted.duplicate
    # Paging: a DM, the same page retried (found in the DM, not sent twice), Do Not Disturb.
    pager = SlackPager(SlackChat.from_settings(stack.sandbox.api_url, TOKEN))
    page = a_page(p1, "baseline")
    sent = await activity_env().run(pager.page, page)
    again_page = await activity_env(attempt=2).run(pager.page, page)
    assert again_page.duplicate and again_page.reference == sent.reference
    assert not (await activity_env().run(pager.do_not_disturb, ALICE)).snoozed
    # People: whoever claims, by email, for their ServiceNow or Jira account.
    assert await SlackEmails.from_settings(stack.sandbox.api_url, TOKEN).email_of(ALICE)
    return Run(stack.sandbox, await stack.calls_since(since), await stack.deliveries_since(since), p1, p2)


def _needed_by(entries: list[dict[str, Any]], granted: set[str]) -> dict[str, set[str]]:
    """scope -> what could not have done without it: each requirement met by that one granted scope."""
    needed: dict[str, set[str]] = {}
    for entry in entries:
        for alternatives in entry.get("scopes", []):
            held = set(alternatives) & granted
            if len(held) == 1:
                needed.setdefault(held.pop(), set()).add(entry.get("method") or entry["kind"])
    return needed


# -----------------------------------------------------------------------------------------------


async def test_every_slack_call_of_the_project_succeeds_with_the_scope_list(baseline: Run) -> None:
    # name_taken: a war room's retried creation finding its own channel (not a refusal).
    refused = [c for c in baseline.calls if c["error"] not in (None, INJECTED, "name_taken")]
    assert refused == [], "calls Slack would refuse with the README's scopes"
    assert [c["method"] for c in baseline.calls if c["error"] == INJECTED] == ["chat.postMessage"] * 2
    assert {c["method"] for c in baseline.calls} == PROJECT_METHODS
    undelivered = [d for d in baseline.deliveries if d["status"] != 200]
    assert undelivered == [], "what Slack would not send the handler"
    assert {d["kind"] for d in baseline.deliveries} == PROJECT_DELIVERIES
    # The retried declarations were found, in the public and in the private channel, not posted twice.
    for state in (baseline.p1, baseline.p2):
        keys = idempotency_keys(await baseline.sandbox.history(state.slack_channel))
        mine = [k for k in keys if k.startswith(f"{state.workflow_id}/") and k.endswith("/declaration")]
        assert len(mine) == 1, keys


async def test_every_scope_in_the_list_is_needed_by_some_call(baseline: Run) -> None:
    needed = _needed_by(baseline.calls + baseline.deliveries, set(GRANTED))
    # users:read.email refuses no call: without it users.info answers with no profile.email. Its
    # need is shown by its loss (test_without_any_one_scope_of_the_list_something_fails).
    needed.setdefault("users:read.email", {"users.info (profile.email)"})
    unused = [s for s in GRANTED if s not in needed]
    assert unused == [], f"scopes no call of the project needs: {unused}"
    assert set(needed) == set(GRANTED)
    # The ones that are easy to get wrong, and why.
    assert {"conversations.list"} <= needed["groups:read"]  # private_channel is asked for
    assert {"conversations.history", "conversations.replies"} & needed["groups:history"]
    assert needed["reactions:read"] == {"reaction_added"}
    assert needed["pins:read"] == {"pin_added"}
    assert needed["commands"] == {"slash_command"}


async def exercise(stack: Stack, run: Run, tag: str) -> str | None:
    """Every scope-checked step of the project once, each allowed to fail (quick: no waiting);
    the email Slack gave for ALICE (None: none, or refused)."""
    slack = ChatActivities(SlackChat.from_settings(stack.sandbox.api_url, TOKEN))
    p1, p2 = run.p1, run.p2

    def post(state: IncidentState, channel: str, thread_ts: str | None, template: str) -> SlackPost:
        key = f"{state.workflow_id}/{tag}-{uuid.uuid4().hex[:6]}/{template}"
        return SlackPost(
            channel=channel, thread_ts=thread_ts, idempotency_key=key, template=template, incident=state
        )

    steps = [
        # retried declarations, by channel name: conversations.list, .history, then chat.postMessage
        activity_env(2).run(slack.post_slack_message, post(p1, "#incidents", None, "declaration")),
        activity_env(2).run(slack.post_slack_message, post(p2, f"#{PRIVATE_CHANNEL}", None, "declaration")),
        # a retried reply: conversations.replies, then chat.postMessage
        activity_env(2).run(
            slack.post_slack_message, post(p1, p1.slack_channel, p1.slack_thread_ts, "team_formed")
        ),
        activity_env().run(
            slack.update_slack_header,
            SlackHeaderUpdate(channel=p1.slack_channel, ts=p1.slack_thread_ts, incident=p1),
        ),
        activity_env().run(
            slack.add_slack_reaction,
            SlackReaction(channel=p1.slack_channel, ts=p1.slack_thread_ts, name="eyes"),
        ),
        activity_env().run(
            slack.upload_slack_file,
            SlackFileUpload(
                channel=p1.slack_channel,
                thread_ts=p1.slack_thread_ts,
                filename="out.txt",
                title=f"R1 show log ({tag})",
                content="log line\n",
            ),
        ),
    ]
    chat = SlackChat.from_settings(stack.sandbox.api_url, TOKEN)
    chat.ui_url = Settings().incident_ui_url

    async def war_room() -> None:  # opened (create, purpose, invite, bookmarks, pin), then archived
        incident = p1.model_copy(update={"workflow_id": f"{p1.workflow_id}-{tag}"})
        room = await chat.open_war_room(
            OpenWarRoom(
                name=f"incident-scopes-{tag}-{uuid.uuid4().hex[:4]}", members=[ALICE], incident=incident
            )
        )
        await chat.archive_war_room(
            WarRoomArchive(channel=room.channel, incident_workflow_id=incident.workflow_id)
        )

    steps.append(war_room())
    pager = SlackPager(SlackChat.from_settings(stack.sandbox.api_url, TOKEN))
    steps += [
        activity_env(2).run(pager.page, a_page(p1, tag)),
        activity_env().run(pager.do_not_disturb, ALICE),
    ]
    for step in steps:
        try:
            await step
        except Exception:  # noqa: BLE001 - a refused call is what this looks for; the log has it
            pass
    try:
        email = await SlackEmails.from_settings(stack.sandbox.api_url, TOKEN).email_of(ALICE)
    except Exception:  # noqa: BLE001 - users.info refused: the log has it
        email = None
    # What Slack sends the handler (an :eyes: reaction and a help command need no answer from it).
    ts = await stack.person_says("incidents", BOB, f"a note ({tag})")
    await stack.act("reaction", user=ALICE, name="eyes", channel=p1.slack_channel, ts=ts)
    await stack.act("pin", user=ALICE, channel=p1.slack_channel, ts=ts)
    await stack.act("command", user=ALICE, channel="incidents", text="help")
    return email


async def test_without_any_one_scope_of_the_list_something_fails(stack: Stack, baseline: Run) -> None:
    witnessed: dict[str, list[str]] = {}
    try:
        for scope in GRANTED:
            fewer = [s for s in GRANTED if s != scope]
            (await stack.sandbox.control.post("/_sandbox/tokens", json={"scopes": fewer})).raise_for_status()
            since = time.time()
            email = await exercise(stack, baseline, tag=scope.replace(":", "-"))
            refused = await stack.calls_since(since) + await stack.deliveries_since(since)
            witnessed[scope] = sorted(
                {
                    r.get("method") or r["kind"]
                    for r in refused
                    if r["error"] == "missing_scope" and r["needed"] == scope
                }
            )
            if scope == "users:read.email" and email is None:  # Slack answers, without the email
                witnessed[scope].append("users.info (profile.email left out)")
    finally:
        await stack.sandbox.control.post("/_sandbox/tokens", json={"scopes": GRANTED})
    assert {s: w for s, w in witnessed.items() if not w} == {}, "scopes whose loss nothing noticed"
    assert witnessed["groups:read"] == ["conversations.list"]
    assert witnessed["commands"] == ["slash_command"]


def test_the_readme_lists_exactly_these_scopes() -> None:
    listed = readme_scopes()
    assert len(listed) == len(set(listed))
    assert set(listed) == set(GRANTED), (
        f"missing from the README: {sorted(set(GRANTED) - set(listed))}; "
        f"listed but unused: {sorted(set(listed) - set(GRANTED))}"
    )
