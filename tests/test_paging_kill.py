"""The worker SIGKILLed during a level's wait and started 10 minutes later (issue 12).

The real dev server, `python -m worker` as a process (SIGKILLed, then started again), the Slack
and PagerDuty sandboxes over HTTP. A P1 whose chain is the seed's (primary, 5 min -> secondary,
10 min -> engineering manager, 15 min -> executive) on a clock where a minute is SCALE seconds:
the worker is killed a minute into level 1's wait and started again 10 minutes later, at
minute 11. Level 2, due at minute 5, goes out at once; level 3 at its own minute 15; each page
once, at PagerDuty, in the person's DMs and in the thread.

Time skipping cannot show this: the test server stops skipping while a workflow task waits
with no worker. The same test in real minutes (about 17 minutes):

    PAGING_KILL_SECONDS_PER_MINUTE=60 .venv/bin/pytest -s tests/test_paging_kill.py -o timeout=1800
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from temporalio.client import Client

from activities.paging.schedule import load_oncall_file, on_call
from sandbox import pagerduty as pd_sandbox
from sandbox.slack import serve_in_background
from starter.declare import declare_incident
from workflows.incident import IncidentWorkflow
from workflows.models import IncidentDeclaration, IncidentState

from .conftest import ROOT
from .processes import WorkerProcess
from .stack import eventually, terminate_all

SCALE = float(os.environ.get("PAGING_KILL_SECONDS_PER_MINUTE", "3"))  # seconds in a chain minute
SCHEDULES = {1: "network-primary", 2: "network-secondary", 3: "engineering-manager", 4: "executive"}
DUE = {1: 0, 2: 5, 3: 15, 4: 30}  # each level's minute (the seed chain's offsets)
KILL_AT, RESTART_AT = 1, 11  # minutes
TOLERANCE = max(2.0, SCALE / 2)  # seconds either side of a minute


def write_policy(directory: Path) -> Path:
    """The default policy with P1's chain on the scaled clock (Slack and PagerDuty) and fast Slack retries."""
    policy = yaml.safe_load((ROOT / "config" / "policy.yaml").read_text())
    p1 = policy["severities"]["P1"]
    p1.pop("escalate_after", None)
    p1.pop("escalation_tiers", None)

    def after(minutes: int) -> str:
        return f"{minutes * SCALE:g}s"

    p1["paging"] = {
        "via": ["slack", "pagerduty"],
        "levels": [
            {"targets": [{"schedule": SCHEDULES[1]}], "escalate_after": after(5)},
            {"targets": [{"schedule": SCHEDULES[2]}], "escalate_after": after(10)},
            {"targets": [{"schedule": SCHEDULES[3]}], "escalate_after": after(15)},
            {"targets": [{"schedule": SCHEDULES[4]}]},
        ],
    }
    policy["chat"].update(call_timeout="2s", max_retry_interval="1s")
    path = directory / "policy.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


def minute(at: float, declared: datetime) -> float:
    return (at - declared.timestamp()) / SCALE


async def test_worker_killed_during_a_levels_wait_pages_the_overdue_level_at_once_and_the_next_on_its_minute(
    local_env, sandbox, tmp_path
):
    client: Client = local_env.client
    queue = f"paging-kill-{uuid.uuid4().hex[:8]}"
    key = f"kill-{uuid.uuid4().hex[:8]}"
    pd_app = pd_sandbox.create_app(tmp_path / "pagerduty")
    worker_log = tmp_path / "worker.log"
    async with serve_in_background(pd_app) as pd_url, httpx.AsyncClient(base_url=pd_url, timeout=10) as pd:
        worker = WorkerProcess(
            client.service_client.config.target_host,
            queue,
            sandbox.api_url,
            write_policy(tmp_path),
            worker_log,
        )
        worker.env.update(PAGERDUTY_EVENTS_URL=pd_url, PAGING_BACKENDS="slack,pagerduty")
        worker.env.update(INCIDENT_ONCALL_OVERRIDES=str(tmp_path / "no-overrides.yaml"))
        worker.start()
        handle = None
        try:
            await eventually(
                lambda: asyncio.sleep(0.1, "worker polling task queue" in worker_log.read_text()),
                timeout=60,
                what="the worker polling",
            )
            handle = await declare_incident(
                client, IncidentDeclaration(severity="P1", title="R1 unreachable", key=key), queue
            )
            state: IncidentState = await handle.query(IncidentWorkflow.state)
            declared = state.declared_at
            oncall = load_oncall_file(ROOT / "config" / "oncall.yaml")

            async def triggers(level: int | None = None) -> list[dict[str, Any]]:
                events = (await pd.get("/_sandbox/events")).json()
                return [
                    e
                    for e in events
                    if e["dedup_key"] == key
                    and e["event_action"] == "trigger"
                    and (level is None or e["event"]["payload"]["custom_details"]["level"] == level)
                ]

            # Level 1 at minute 0; its thread line posted too: nothing of level 1 left in flight.
            await eventually(lambda: triggers(1), timeout=30, what="level 1's page at PagerDuty")

            async def level_1_in_thread() -> bool:
                s = await handle.query(IncidentWorkflow.state)
                return bool(s.slack_thread_ts) and any(
                    "level 1" in (m.get("text") or "")
                    for m in await sandbox.thread(s.slack_channel, s.slack_thread_ts)
                )

            await eventually(level_1_in_thread, timeout=30, what="level 1's line in the thread")

            # Killed a minute into level 1's wait; started again at minute 11.
            await asyncio.sleep(max(0.0, declared.timestamp() + KILL_AT * SCALE - time.time()))
            worker.kill()
            killed_at = time.time()
            await asyncio.sleep(max(0.0, declared.timestamp() + RESTART_AT * SCALE - time.time()))
            assert not await triggers(2), "level 2 paged with no worker running"
            restarted_at = time.time()
            worker.start()

            await eventually(lambda: triggers(3), timeout=DUE[3] * SCALE + 60, what="level 3's page")
            await asyncio.sleep(2 * TOLERANCE)  # a late twin of any page would show by now
            state = await handle.query(IncidentWorkflow.state)
            events = await triggers()
            thread = await sandbox.thread(state.slack_channel, state.slack_thread_ts)
            dms: dict[int, list[dict[str, Any]]] = {}
            for level in (1, 2, 3):
                (person,) = [p.user for p in on_call(oncall.schedule(SCHEDULES[level]), declared)]
                channel = (await sandbox.web.conversations_open(users=person))["channel"]["id"]
                history = (await sandbox.web.conversations_history(channel=channel))["messages"]
                dms[level] = [m for m in history if key in str(m)]
        finally:
            worker.stop()
            if handle is not None:  # kept for a look (PAGING_KILL_KEEP=dir: copied there too)
                (tmp_path / "history.json").write_text((await handle.fetch_history()).to_json())
                print(f"history: {tmp_path / 'history.json'}; worker log: {worker_log}")
                if keep := os.environ.get("PAGING_KILL_KEEP"):
                    Path(keep).mkdir(parents=True, exist_ok=True)
                    shutil.copy(tmp_path / "history.json", Path(keep) / "history.json")
                    shutil.copy(worker_log, Path(keep) / "worker.log")
            if handle is not None:
                await terminate_all([handle])

    at = {
        level: [
            minute(e["at"], declared)
            for e in events
            if e["event"]["payload"]["custom_details"]["level"] == level
        ]
        for level in (1, 2, 3)
    }
    print(
        f"chain minutes ({SCALE:g} s each): killed {minute(killed_at, declared):.2f}, "
        f"restarted {minute(restarted_at, declared):.2f}; PagerDuty pages at "
        + ", ".join(f"level {lv} {t[0]:.2f}" for lv, t in at.items() if t)
    )
    # Each level once at PagerDuty, nothing of level 4 (minute 30) yet.
    assert {level: len(times) for level, times in at.items()} == {1: 1, 2: 1, 3: 1}, at
    assert len(events) == 3, events
    # Level 1 at minute 0; level 2 not while the worker was dead, but as soon as it was back.
    assert at[1][0] * SCALE <= TOLERANCE, at
    restarted = minute(restarted_at, declared)
    assert restarted <= at[2][0] and (at[2][0] - restarted) * SCALE <= 10, (at, restarted)
    assert minute(killed_at, declared) < DUE[2] < restarted
    # Level 3 at its own minute, not moved by the outage.
    assert abs(at[3][0] - DUE[3]) * SCALE <= TOLERANCE, at
    # Each person's DM once (the page, with its Acknowledge button), each level's thread line once.
    assert {level: len(m) for level, m in dms.items()} == {1: 1, 2: 1, 3: 1}, dms
    for level in (1, 2, 3):
        lines = [m for m in thread if f"(level {level}" in (m.get("text") or "")]
        assert len(lines) == 1, [m.get("text") for m in thread]
    # The incident's own record: one page per level and service, each sent, each on its due minute.
    sent = sorted((p.level, p.service.value) for p in state.paging.pages if p.outcome == "sent")
    assert sent == [
        (1, "pagerduty"),
        (1, "slack"),
        (2, "pagerduty"),
        (2, "slack"),
        (3, "pagerduty"),
        (3, "slack"),
    ]
    for page in state.paging.pages:
        assert round((page.due - declared).total_seconds() / SCALE) == DUE[page.level], page
