"""Two workers on one task queue, the one posting SIGKILLed in the middle of a storm into one rate-limited channel.

As docker-compose's replicas run: two `python -m worker` processes polling the same queue (the
production policy: 10 s a Slack call), the alert receivers in process, the real dev server, and the
Slack sandbox over HTTP limiting the channel to chat.postMessage's tier (60 a minute, as test_storm
sets it). New-key alerts declare COUNT P3 incidents into #netclaw-alerts; once a quarter of the
declarations are in Slack, the worker that posted most of them is killed with SIGKILL. Every
incident must still be declared, each message posted once, the roll-ups as the storm design says,
and what Slack heard within its limit.

The suite runs 24 incidents (about 40 s); the issue's 100 (about 2.5 min):

    TWO_WORKERS_INCIDENTS=100 .venv/bin/pytest -s tests/test_two_workers.py

`-s` prints the figures: declarations, duplicates, 429s, attempts and posts in the busiest second.
`TWO_WORKERS_KILL=0` keeps both workers to the end, to see how two share the channel's budget.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import time
import uuid
from collections import Counter
from datetime import UTC, timedelta
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from activities.settings import Settings
from sandbox.slack import serve_in_background
from starter.alerts import create_app
from workflows.announcer import ChannelAnnouncer
from workflows.announcer_models import AnnouncerState, StormPolicy, announcer_id
from workflows.incident import IncidentWorkflow

from .conftest import ROOT
from .processes import WorkerProcess
from .stack import end_announcers, eventually, idempotency_keys, terminate_all

# Its roll-up bound is a timing bound: beside another test process on 2 cores it was overtaken by
# 18 of 24; scripts/test runs it alone, after the rest.
pytestmark = pytest.mark.alone

COUNT = int(os.environ.get("TWO_WORKERS_INCIDENTS", "24"))
KILL_AFTER = max(5, COUNT // 4)  # declarations in Slack when a worker is killed
KILL = os.environ.get("TWO_WORKERS_KILL", "1") != "0"  # 0: both run to the end (how they share)
CHANNEL = "netclaw-alerts"  # where the policy sends P3 (warning) alerts
PER_MINUTE = 60  # Slack's chat.postMessage tier: about one a second per channel
_INCIDENT_ID = re.compile(r"incident-[A-Za-z0-9._:@+=-]+")


class SlackReader:
    """The test's own reads of the channel, counted apart from the workers' look-ups."""

    def __init__(self, sandbox, channel_id: str, since: float) -> None:
        self.sandbox, self.channel_id, self.since = sandbox, channel_id, since
        self.calls = 0

    async def top_level(self) -> list[dict[str, Any]]:
        """Every top-level message in the channel since the storm began, with its metadata, oldest first."""
        messages: list[dict[str, Any]] = []
        cursor = None
        while True:
            self.calls += 1
            response = await self.sandbox.web.conversations_history(
                channel=self.channel_id,
                oldest=f"{self.since:.6f}",
                include_all_metadata=True,
                limit=200,
                cursor=cursor,
            )
            messages += response["messages"]
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return sorted(messages, key=lambda m: float(m["ts"]))

    async def declarations(self, incidents: list[str]) -> dict[str, list[dict[str, Any]]]:
        """Each incident's declarations in the channel (by the metadata the activity sets)."""
        found: dict[str, list[dict[str, Any]]] = {i: [] for i in incidents}
        for message in await self.top_level():
            if payload(message).get("key", "").endswith("/declaration"):
                found.get(str(payload(message).get("incident")), []).append(message)
        return found

    async def replies(self, ts: str) -> list[dict[str, Any]]:
        self.calls += 1
        return (await self.sandbox.thread(self.channel_id, ts))[1:]


def payload(message: dict[str, Any]) -> dict[str, Any]:
    return (message.get("metadata") or {}).get("event_payload") or {}


async def slack_posts_by(client: Client, incidents: list[str]) -> Counter[str]:
    """Which worker (its identity, `pid@host`) completed each incident's Slack posts so far."""
    by: Counter[str] = Counter()
    for incident in incidents:
        scheduled: dict[int, str] = {}
        async for event in client.get_workflow_handle(incident).fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                scheduled[event.event_id] = event.activity_task_scheduled_event_attributes.activity_type.name
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                done = event.activity_task_completed_event_attributes
                if scheduled.get(done.scheduled_event_id) == "post_slack_message":
                    by[done.identity] += 1
    return by


async def first_post(client: Client, workflow_id: str) -> tuple[float, int, str]:
    """The workflow's first Slack post (the announcer's: its first roll-up): when it was asked for,
    the attempt that posted it, and why the attempt before failed."""
    asked, scheduled_id = 0.0, 0
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED and not scheduled_id:
            if event.activity_task_scheduled_event_attributes.activity_type.name == "post_slack_message":
                asked, scheduled_id = event.event_time.ToDatetime(tzinfo=UTC).timestamp(), event.event_id
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            if scheduled_id and started.scheduled_event_id == scheduled_id:
                return asked, started.attempt, started.last_failure.message
    raise AssertionError(f"{workflow_id} posted nothing")


def busiest_second(times: list[float]) -> int:
    """The most of `times` within any one second."""
    times = sorted(times)
    return max((sum(at <= t < at + 1 for t in times) for at in times), default=0)


async def test_two_workers_one_killed_mid_storm_declare_every_incident_once_within_slacks_limit(
    local_env, sandbox, policy, tmp_path
):
    client: Client = local_env.client
    address = client.service_client.config.target_host
    queue = f"two-workers-{uuid.uuid4().hex[:8]}"
    run = uuid.uuid4().hex[:8]
    policy_file = ROOT / "config" / "policy.yaml"  # production's Slack timeouts: 10 s a call
    workers = [
        WorkerProcess(address, queue, sandbox.api_url, policy_file, tmp_path / f"worker-{n}.log")
        for n in (1, 2)
    ]
    # As test_storm: a 3 s gather (1 s in production) so a slow machine's burst is one storm.
    storm = StormPolicy(threshold=3, window=timedelta(seconds=30), gather=timedelta(seconds=3))
    app = create_app(Settings(temporal_task_queue=queue), policy, client=client, token="", storm=storm)
    incidents: list[str] = []
    for worker in workers:
        worker.start()
    await sandbox.control.post("/_sandbox/rate-limit", json={"per_minute": PER_MINUTE})
    try:
        # Both poll before the storm, so the work is shared from the first alert. (Not asked of
        # DescribeTaskQueue: it lists the pollers of one partition of the queue, seen missing one.)
        async def both_polling() -> bool:
            return all("worker polling task queue" in w.log.read_text() for w in workers)

        await eventually(both_polling, timeout=60, what="both workers polling the queue")
        listed_channels = (await sandbox.web.conversations_list(limit=1000))["channels"]
        started = time.time()
        slack = SlackReader(sandbox, next(c["id"] for c in listed_channels if c["name"] == CHANNEL), started)
        async with serve_in_background(app) as url, httpx.AsyncClient(base_url=url, timeout=60) as http:

            async def alert(n: int) -> str:
                response = await http.post(
                    "/alerts",
                    json={
                        "title": f"Storm {run} link {n} down",
                        "severity": "warning",
                        "dedup_key": f"{run}-{n}",
                    },
                )
                assert response.status_code == 202, response.text
                return response.json()["incidents"][0]["incident_id"]

            incidents = list(await asyncio.gather(*(alert(n) for n in range(COUNT))))
            assert len(set(incidents)) == COUNT

            async def declared(at_least: int) -> dict[str, list[dict[str, Any]]] | None:
                await asyncio.sleep(0.4)  # read twice a second, not ten times
                found = await slack.declarations(incidents)
                return found if sum(bool(m) for m in found.values()) >= at_least else None

            found = await eventually(
                lambda: declared(KILL_AFTER), timeout=120, what=f"{KILL_AFTER} declarations"
            )
            # Kill the worker that is posting (with the pacing, the other mostly yields the channel).
            declared_at_kill = sum(bool(m) for m in found.values())
            before_kill = await slack_posts_by(client, [i for i, m in found.items() if m])
            by_pid = {w.process.pid: w for w in workers if w.process}

            def posts_of(pid: int, by: Counter[str]) -> int:
                return sum(n for who, n in by.items() if who.startswith(f"{pid}@"))

            killed = max(by_pid, key=lambda pid: posts_of(pid, before_kill))
            killed_at = time.time()
            if KILL:
                by_pid[killed].kill()

            found = await eventually(
                lambda: declared(COUNT), timeout=2 * COUNT + 60, what=f"all {COUNT} declarations"
            )
            all_declared_at = time.time()

            # A post in flight in the killed worker is retried when its 10 s attempt times out:
            # wait until Slack has heard nothing for a while, so a late twin would be counted.
            async def quiet() -> bool:
                await asyncio.sleep(0.4)
                calls = (await sandbox.control.get("/_sandbox/calls")).json()
                chat = [c["at"] for c in calls if c["at"] >= started and c["method"].startswith("chat.")]
                return time.time() - max(chat, default=0) > 5

            await eventually(quiet, timeout=120, what="Slack quiet for 5 s")
            found = await slack.declarations(incidents)
            messages = await slack.top_level()
            announcer = client.get_workflow_handle(announcer_id(CHANNEL), result_type=AnnouncerState)
            announced = await announcer.query(ChannelAnnouncer.state)
            rollup_asked, rollup_attempts, rollup_last_failure = await first_post(client, announcer.id)
            states = {i: await client.get_workflow_handle(i).query(IncidentWorkflow.state) for i in incidents}
            replies = [await slack.replies(s.slack_thread_ts) for s in states.values() if s.slack_thread_ts]
            posted_by = await slack_posts_by(client, incidents)
    finally:
        await sandbox.control.post("/_sandbox/rate-limit", json={"per_minute": None})
        await terminate_all([client.get_workflow_handle(i) for i in incidents])
        await end_announcers(client, policy, queue)
        for worker in workers:
            worker.stop()
    heard = [c for c in (await sandbox.control.get("/_sandbox/calls")).json() if c["at"] >= started]
    # What the storm's channel heard. Each P3 also pages its primary on call by DM, a channel of
    # its own with its own limit: those posts are not paced (every incident pages the same person
    # at once), counted apart in the figures.
    calls = [c for c in heard if c["method"] == "chat.postMessage" and c.get("channel") == slack.channel_id]
    page_dms = [
        c for c in heard if c["method"] == "chat.postMessage" and c.get("channel", "").startswith("D")
    ]

    # Every incident declared: its declaration in Slack exactly once, and the one its workflow knows.
    assert {i for i, m in found.items() if len(m) == 1} == set(incidents), {
        i: len(m) for i, m in found.items() if len(m) != 1
    }
    assert all(states[i].slack_thread_ts == found[i][0]["ts"] for i in incidents)
    # The killed worker had posted before it died; the other posted the rest.
    survivor = next(pid for pid in by_pid if pid != killed)
    assert posts_of(killed, before_kill) > 0 and (posts_of(survivor, posted_by) > 0 or not KILL), posted_by

    # No message of any incident, nor a roll-up, posted twice: in the channel or in any thread.
    keys = idempotency_keys(messages) + [k for thread in replies for k in idempotency_keys(thread)]
    twice = {k: n for k, n in Counter(keys).items() if n > 1}
    assert not twice, twice

    # Roll-ups as the storm design says: every incident listed in exactly one, at most 50 to a
    # message, the roll-ups the announcer made each in Slack once, and ahead of the storm's threads.
    rollups = [m for m in messages if payload(m).get("key", "").endswith("/rollup")]
    listed = Counter(i for m in rollups for i in set(_INCIDENT_ID.findall(m["text"])) if i in states)
    assert set(listed) == set(incidents) and set(listed.values()) == {1}, listed
    assert all(len(set(_INCIDENT_ID.findall(m["text"]))) <= storm.max_listed for m in rollups)
    assert len(rollups) >= math.ceil(COUNT / storm.max_listed)
    assert sorted(r.ts for r in announced.rollups if r.ts) == sorted(m["ts"] for m in rollups)
    assert not announced.errors, announced.errors
    first_rollup = min(float(m["ts"]) for m in rollups)
    before_rollup = sum(float(m[0]["ts"]) < first_rollup for m in found.values())
    # Declarations that went while the first roll-up waited: it goes first, not at the back of the line.
    overtaken = sum(rollup_asked < float(m[0]["ts"]) < first_rollup for m in found.values())

    # What Slack heard.
    limited = [c for c in calls if c["status"] == 429]
    posted = sorted(c["at"] for c in calls if c["status"] == 200)
    # Attempts after the storm's first burst (every worker's first try hits the limit at once):
    # paced, not a herd. One worker's pace is at most 2 a second (test_storm); a second worker's
    # probe of the channel it yields adds at most one. A herd: 9 attempts within 0.3 s (test_storm).
    assert limited, "the rate limit was in force"
    first_burst_over = min(c["at"] for c in limited) + 2
    attempts = [c["at"] for c in calls if c["at"] > first_burst_over]
    later_limited = [c for c in limited if c["at"] > first_burst_over]
    figures = {
        "incidents": COUNT,
        "killed": KILL,
        "declared_at_kill": declared_at_kill,
        "posts_before_kill_by_killed_other": (posts_of(killed, before_kill), posts_of(survivor, before_kill)),
        "posts_by_killed_survivor": (posts_of(killed, posted_by), posts_of(survivor, posted_by)),
        "killed_after_s": round(killed_at - started, 1),
        "all_declared_after_s": round(all_declared_at - started, 1),
        "declarations": sum(len(m) for m in found.values()),
        "declarations_before_first_rollup": before_rollup,
        "rollup_waited_s": round(first_rollup - rollup_asked, 1),
        "declarations_while_rollup_waited": overtaken,
        "rollup_attempts": rollup_attempts,
        "rollup_last_failure": rollup_last_failure,
        "rollups": len(rollups),
        "duplicates": len(twice),
        "posts_200": len(posted),
        "429s": len(limited),
        "429s_after_first_burst": len(later_limited),
        "busiest_second_attempts": busiest_second(attempts),
        "busiest_second_posted": busiest_second(posted),
        "page_dms_200_429": (
            sum(c["status"] == 200 for c in page_dms),
            sum(c["status"] == 429 for c in page_dms),
        ),
        "worker_lookups": sum(
            c["method"] in ("conversations.history", "conversations.replies") for c in heard
        )
        - slack.calls,
    }
    print("\ntwo workers:", figures)
    assert busiest_second(attempts) <= 3, [round(at - started, 2) for at in attempts]
    # Refused attempts after the first burst: at most one for every two posts (each incident posts
    # its declaration and, paging its primary on call, a "Paged ..." reply). (Measured, 100
    # incidents, declarations only: one worker alone 20-26, mostly a post that reached the
    # sandbox's strict limiter a few ms under a second after the last; two workers before they
    # yielded to each other 71.)
    assert len(later_limited) <= len(posted) // 2, (len(later_limited), len(posted))
    # The roll-up goes ahead of the storm's line, not behind it. (Measured, 14 runs: 0-2 declarations
    # posted while it waited in 11, 6, 8 and 9 in three: when it lands on the worker yielding the channel,
    # each return to Temporal costs a second, and which worker picks it up next is a coin toss; 10 in
    # a 16-incident run.) Behind the line would be all of them.
    assert overtaken <= min(10, COUNT // 2), (overtaken, first_rollup - rollup_asked)
