"""Odd input on real parts: the alert receivers over HTTP, the dev server, the worker, the Slack sandbox.

Each test here failed on the code before the "trustworthy on a bad day" work: the
header lost its IC line, a storm for one key went over Temporal's 2 MiB and was
answered 503 forever, a valid alert shared a 503 with a bad one, `declared` was
when a worker came back, and a closed incident's key started a second incident
whose ticket had the first one's correlation id.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.client import WorkflowExecutionStatus

from activities.settings import Settings
from sandbox.servicenow import create_app as servicenow_app
from sandbox.slack import serve_in_background
from starter.alerts import create_app
from starter.declare import IncidentAlreadyExists, declare_incident
from worker import build_worker
from workflows import limits
from workflows.incident import IncidentWorkflow
from workflows.models import IncidentDeclaration, IncidentState

from .stack import TOKEN, eventually, incident_worker
from .test_incident_children import AUTH, ticketed_worker, tickets_for


async def incident_state(local_env, incident_id: str) -> IncidentState:
    return await local_env.client.get_workflow_handle(incident_id).query(IncidentWorkflow.state)


async def declaration_message(sandbox, state: IncidentState) -> dict:
    thread = await sandbox.thread(state.slack_channel, state.slack_thread_ts)
    return thread[0]


def am_group(group: str, alerts: list[dict], **labels: str) -> dict:
    return {
        "version": "4",
        "status": "firing",
        "receiver": "incident",
        "groupKey": f'{{}}:{{alertname="{group}"}}',
        "groupLabels": {"alertname": group},
        "commonLabels": {"alertname": group, "severity": "warning", **labels},
        "commonAnnotations": {},
        "alerts": alerts,
    }


async def test_long_text_within_the_limits_keeps_the_header_whole_and_alert_text_escaped(
    local_env, sandbox, policy
):
    async with incident_worker(local_env.client, sandbox.api_url, policy) as declare:
        app = create_app(Settings(temporal_task_queue=declare.task_queue), policy, client=local_env.client)
        alert = {
            "title": "*bold* <!channel> <@U0ATTACKER> & friends",
            "severity": "P2",
            "dedup_key": f"long-{uuid.uuid4().hex[:8]}",
            "service": "wan <!here>",
            # Each within its limit (3,000 characters, 25 items), far over one Slack section together.
            "symptoms": [f"symptom {n}: " + "x" * (limits.MAX_TEXT - 20) for n in range(limits.MAX_ITEMS)],
            "impact": ["<!everyone> " + "y" * (limits.MAX_TEXT - 20), "short impact"],
        }
        async with serve_in_background(app) as url, httpx.AsyncClient(base_url=url, timeout=60) as http:
            response = await http.post("/alerts", json=alert)
            assert response.status_code == 202, response.text
            incident_id = response.json()["incidents"][0]["incident_id"]
            handle = local_env.client.get_workflow_handle(incident_id)

            async def posted():
                state = await incident_state(local_env, incident_id)
                return state if state.slack_thread_ts else None

            state = await eventually(posted, what="the declaration in Slack")
            message = await declaration_message(sandbox, state)
            await handle.terminate("test over")

    sections = [b["text"]["text"] for b in message["blocks"] if b["type"] == "section"]
    assert all(len(text) <= 3000 for text in sections), [len(t) for t in sections]
    header = "\n".join(sections)
    for line in (
        "*Incident Commander:* [awaiting claim — react with :raised_hand: to take IC]",
        "*Phase:* triage",
        "*ServiceNow:*",
        "━━━ *All investigation updates in this thread* ━━━",
    ):
        assert line in header, line
    assert f"in full is in `incident status {state.key}`" in header
    assert "… and 17 more" in header  # 8 of 25 symptoms shown
    # Nothing from the alert is live markup: no channel, here or user mention.
    for text in (header, message["text"]):
        assert "<!channel>" not in text and "<!here>" not in text and "<!everyone>" not in text
        assert "<@U0ATTACKER>" not in text
    assert "&lt;!channel&gt; &lt;@U0ATTACKER&gt; &amp; friends" in header
    # The incident itself keeps the text in full.
    assert state.symptoms[0] == alert["symptoms"][0] and state.impact[0] == alert["impact"][0]


def around(events: list, event) -> list[str]:
    """The event types just before `event` in its run (its own events; the list holds several runs)."""
    at = events.index(event)
    start = max(0, at - 6)
    return [f"{e.event_id} {EventType.Name(e.event_type)}" for e in events[start : at + 1]]


async def test_a_storm_over_one_signal_for_one_key_lands_whole_and_the_state_stays_small(
    local_env, sandbox, policy
):
    """Three groups of 300 alerts with 2,500-character summaries, at once, for one key: 2.4 MB
    gathered in one batch, over Temporal's 2 MiB for one signal. They go as several signals."""
    group = f"Storm-{uuid.uuid4().hex[:6]}"
    summary = "s" * 2500

    def body(part: int) -> dict:
        alerts = [
            {
                "status": "firing",
                "labels": {"alertname": group, "instance": f"i{part}-{n}"},
                "annotations": {"summary": f"{part}-{n} {summary}"},
                "fingerprint": f"{part}-{n}",
            }
            for n in range(300)
        ]
        return am_group(group, alerts)

    async with incident_worker(local_env.client, sandbox.api_url, policy) as declare:
        app = create_app(Settings(temporal_task_queue=declare.task_queue), policy, client=local_env.client)
        async with serve_in_background(app) as url, httpx.AsyncClient(base_url=url, timeout=120) as http:
            responses = await asyncio.gather(
                *(http.post("/alerts/alertmanager", json=body(p)) for p in range(3))
            )
            assert [r.status_code for r in responses] == [202, 202, 202], [r.text[:300] for r in responses]
            incident_id = responses[0].json()["incidents"][0]["incident_id"]
            handle = local_env.client.get_workflow_handle(incident_id)

            async def all_in():
                state = await incident_state(local_env, incident_id)
                return state if state.alerts_received == 900 and state.slack_thread_ts else None

            state = await eventually(all_in, timeout=60, what="900 alerts in the incident")
            # Every run of the incident: it may continue as new under so much history (Temporal
            # suggests it past a few MB), and the signals are in the runs before the last.
            events = []
            run_id = None
            while True:  # from the last run back through each one it continued
                history = await local_env.client.get_workflow_handle(
                    incident_id, run_id=run_id
                ).fetch_history()
                events += history.events
                started = history.events[0].workflow_execution_started_event_attributes
                run_id = started.continued_execution_run_id
                if not run_id:
                    break
            await handle.terminate("test over")

    signals = [e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED]
    assert len(signals) >= 9, len(signals)  # 256 KiB a signal: about 100 of these alerts each
    # No workflow task of ours failed. The server may fail one itself (cause FORCE_CLOSE_COMMAND,
    # identity history-service) to flush the signals it buffered while the task ran, once they
    # pass its buffered-events limit (temporalio/temporal's MaxBufferedEventSuite): 2.4 MB came in
    # while the first task asked who is on call (the default chain pages at once). The next task
    # takes them all, as the counts below show.
    failed = [
        e
        for e in events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
        and not (
            e.workflow_task_failed_event_attributes.cause
            == WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_FORCE_CLOSE_COMMAND
            and e.workflow_task_failed_event_attributes.identity == "history-service"
        )
    ]
    assert failed == [], [(str(e.workflow_task_failed_event_attributes), around(events, e)) for e in failed]
    listed = [e for e in state.timeline if e.kind == "alert"]
    assert len(listed) == limits.TIMELINE_ALERTS
    assert state.alerts_unlisted == 900 - (limits.TIMELINE_ALERTS - 1)
    assert len(state.alerts_firing) == 900
    assert all(len(label) <= limits.KEPT_ALERT_LABEL for label in state.alerts_firing.values())
    assert len(state.model_dump_json()) < 512 * 1024


async def test_a_bad_alert_gets_422_and_a_good_one_in_the_same_window_still_202(local_env, sandbox, policy):
    group = f"Mixed-{uuid.uuid4().hex[:6]}"
    good = am_group(group, [{"status": "firing", "labels": {"alertname": group, "n": "1"}}], service="wan")
    bad = am_group(group, [{"status": "firing", "labels": {"alertname": group, "n": "2"}}], service="s" * 900)
    async with incident_worker(local_env.client, sandbox.api_url, policy) as declare:
        app = create_app(
            Settings(temporal_task_queue=declare.task_queue),
            policy,
            client=local_env.client,
            batch_window=0.2,
        )
        async with serve_in_background(app) as url, httpx.AsyncClient(base_url=url, timeout=60) as http:
            refused, accepted = await asyncio.gather(
                http.post("/alerts/alertmanager", json=bad), http.post("/alerts/alertmanager", json=good)
            )
            assert refused.status_code == 422, refused.text
            assert "service: 900 characters; a service is at most 200" in refused.json()["error"]
            assert accepted.status_code == 202, accepted.text
            incident_id = accepted.json()["incidents"][0]["incident_id"]
            state = await eventually(lambda: incident_state(local_env, incident_id), what="the incident")
            assert state.service == "wan"
            await local_env.client.get_workflow_handle(incident_id).terminate("test over")


async def test_declared_is_when_the_alert_was_accepted_not_when_a_worker_came(local_env, sandbox, policy):
    queue = f"incidents-{uuid.uuid4().hex[:8]}"
    app = create_app(Settings(temporal_task_queue=queue), policy, client=local_env.client, rollup=False)
    alert = {"title": "Core switch down", "severity": "P2", "dedup_key": f"late-{uuid.uuid4().hex[:8]}"}
    async with serve_in_background(app) as url, httpx.AsyncClient(base_url=url, timeout=60) as http:
        before = datetime.now(UTC)
        response = await http.post("/alerts", json=alert)
        after = datetime.now(UTC)
    assert response.status_code == 202, response.text
    incident_id = response.json()["incidents"][0]["incident_id"]
    await asyncio.sleep(3)  # no worker for 3 s: the incident waits in Temporal
    worker_settings = Settings(
        temporal_task_queue=queue, slack_api_url=sandbox.api_url, slack_bot_token=TOKEN
    )
    async with build_worker(local_env.client, worker_settings, policy):

        async def posted():
            state = await incident_state(local_env, incident_id)
            paged = any(e.kind == "paging" for e in state.timeline)
            return state if state.slack_thread_ts and paged else None

        state = await eventually(posted, what="the declaration in Slack and the first page")
        await local_env.client.get_workflow_handle(incident_id).terminate("test over")
    assert before - timedelta(milliseconds=5) <= state.declared_at <= after, (
        before,
        state.declared_at,
        after,
    )
    declared = next(e for e in state.timeline if e.kind == "declared")
    assert declared.at == state.declared_at
    # The escalation chain counts from there too: level 1 was due at acceptance (paged late, when a
    # worker came, and says so), level 2 is due 15 min (P2) after acceptance.
    level_1 = next(e for e in state.timeline if e.kind == "paging")
    assert level_1.text.startswith("paging level 1: on call for network-primary (declared; ")
    assert level_1.text.endswith(" late)"), level_1.text
    assert [(d.purpose, d.due) for d in state.deadlines if d.purpose == "page"] == [
        ("page", state.declared_at + timedelta(minutes=15))
    ]


async def test_an_alert_firing_again_after_its_incident_closed_is_a_new_incident_with_its_own_ticket(
    local_env, sandbox, policy
):
    dedup = f"again-{uuid.uuid4().hex[:8]}"
    firing = {
        "title": "Printer queue stuck",
        "severity": "info",  # P4: cleared alerts resolve it, and it has no review: it closes
        "dedup_key": dedup,
        "symptoms": ["queue [code]<img src=x onerror=alert(1)>[/code] stuck"],
    }
    async with serve_in_background(servicenow_app()) as snow_url:
        async with httpx.AsyncClient(base_url=snow_url, auth=AUTH, trust_env=False, timeout=10) as snow:
            async with ticketed_worker(local_env, sandbox, policy, snow_url) as declare:
                app = create_app(
                    Settings(temporal_task_queue=declare.task_queue), policy, client=local_env.client
                )
                async with (
                    serve_in_background(app) as url,
                    httpx.AsyncClient(base_url=url, timeout=60) as http,
                ):
                    runs = []
                    for _ in range(2):
                        response = await http.post("/alerts", json=firing)
                        assert response.status_code == 202, response.text
                        [incident] = response.json()["incidents"]
                        assert incident["new"] is True
                        handle = local_env.client.get_workflow_handle(incident["incident_id"])

                        async def ticketed(handle=handle):
                            state = await handle.query(IncidentWorkflow.state)
                            return state if state.ticket else None

                        state = await eventually(ticketed, what="the incident's ticket")
                        cleared = await http.post("/alerts", json={**firing, "status": "resolved"})
                        assert cleared.status_code == 202, cleared.text
                        await asyncio.wait_for(handle.result(), 30)  # resolved, no review: closed
                        runs.append(state)
                    key = runs[0].key
                    # A person re-using the closed key is refused, with the reason.
                    with pytest.raises(IncidentAlreadyExists) as refused:
                        await declare_incident(
                            local_env.client,
                            IncidentDeclaration(key=key, severity="P4", title="again by hand"),
                            declare.task_queue,
                        )
                    assert "is closed (completed at" in str(refused.value)
                    described = await local_env.client.get_workflow_handle(f"incident-{key}").describe()
                    assert described.status == WorkflowExecutionStatus.COMPLETED
            tickets = await tickets_for(snow, key)
    assert runs[0].ticket != runs[1].ticket
    assert len(tickets) == 2 and len({t["correlation_id"] for t in tickets}) == 2
    assert all(t["correlation_id"].startswith(f"{key}#") for t in tickets)
    # ServiceNow reads [code]...[/code] in its journal as HTML: alert text never carries it there.
    for ticket in tickets:
        assert "[code]" not in ticket["description"] and "(code]" in ticket["description"]
