"""The status page (issue 13) in a real browser before, during and after a P1, and never an internal note.

A dev server of its own (the page lists every incident it finds, so no other test's may be
there), the real worker and activities with the Slack sandbox, the status page served over HTTP,
and Debian's Chromium loading it. Screenshots go to the test's tmp dir; with
STATUS_PAGE_SCREENSHOTS=docs they are also written where the README shows them:

    STATUS_PAGE_SCREENSHOTS=docs .venv/bin/pytest -n 0 tests/test_status_page.py
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from activities.settings import Settings
from sandbox.slack import serve_in_background
from starter.status_page import (
    PublicStatus,
    build_page,
    create_app,
    public_incident,
    render_page,
)
from workflows.incident import IncidentWorkflow
from workflows.models import (
    ClaimSignal,
    ResolveSignal,
    ReviewDoneSignal,
    RoleSignal,
    Severity,
    StakeholderSignal,
    TimelineEntry,
    TimelineNote,
    UpdateSignal,
)

from .browser import Browser, find_chromium
from .conftest import start_dev_server
from .stack import eventually, incident_worker
from .test_stakeholders import with_stakeholders

SERVICES = ["wan-site-a", "wan-site-b", "datacenter-core"]
TITLE = "R1 unreachable, WAN outage Site A"  # the incident's own title: internal
IMPACT = "Site A (240 users) has no WAN access"
INVESTIGATING = "We are investigating a loss of connectivity at Site A."
IDENTIFIED = "A power supply failed in Site A's edge router; traffic is moving to the backup link."
RESOLVED = "The power supply was replaced and Site A is back on its primary link."
# What the responders say among themselves: none of it may reach the page.
INTERNAL_UPDATE = "INTERNAL-7f3a: TAC case 7731 blames firmware 17.3; do not share"
INTERNAL_NOTE = "INTERNAL-9c2e: Bob's change at 14:01 is the likely trigger"
INTERNAL_ROOT_CAUSE = "INTERNAL-51d0: PSU batch recall ignored in October"
INTERNAL = (INTERNAL_UPDATE, INTERNAL_NOTE, INTERNAL_ROOT_CAUSE, TITLE, "U0ALICE", "U0ROBERT")


@pytest.fixture(scope="module")
def browser() -> Browser:
    executable, why = find_chromium()
    if executable is None:
        pytest.skip(why)
    return Browser(executable)


@pytest.fixture(scope="module")
async def own_env():
    env = await start_dev_server()
    try:
        yield env
    finally:
        await env.shutdown()


def keep_screenshot(path: Path) -> None:
    """Also into STATUS_PAGE_SCREENSHOTS (docs/ for the README), when set."""
    where = os.environ.get("STATUS_PAGE_SCREENSHOTS")
    if where:
        target = Path(where)
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target / path.name)


async def test_the_status_page_before_during_and_after_a_p1_shows_what_the_comms_lead_published_and_never_an_internal_note(
    own_env, sandbox, policy, browser, tmp_path
):
    client = own_env.client
    # Stakeholders hear of it by the page alone: nothing in the shared Slack sandbox's #stakeholders,
    # which test_stakeholders.py reads.
    app = create_app(Settings(status_page_title="Example Networks status"), client=client, services=SERVICES)
    async with (
        serve_in_background(app) as url,
        httpx.AsyncClient(base_url=url) as http,
        incident_worker(client, sandbox.api_url, with_stakeholders(policy, emails=[], channel="")) as declare,
    ):

        async def page_json() -> dict:
            response = await http.get("/api/status.json")
            assert response.status_code == 200, response.text
            return response.json()

        async def look(name: str, height: int) -> str:
            """The page in the browser: its DOM, and a screenshot kept as status-page-<name>.png."""
            shot = await browser.screenshot(url + "/", tmp_path / f"status-page-{name}.png", height=height)
            keep_screenshot(shot)
            return await browser.dom(url + "/")

        def components(page: dict) -> dict[str, dict]:
            return {c["name"]: c for c in page["components"]}

        # Before: every service operational, nothing open, no history.
        before = await page_json()
        assert before["status"] == "operational" and before["label"] == "All systems operational"
        assert sorted(components(before)) == sorted(SERVICES)
        assert all(
            c["status"] == "operational" and not c["open"] and not c["history"] for c in before["components"]
        )
        dom = await look("before", 800)
        assert "All systems operational" in dom and dom.count(">Operational<") == 3

        # During: a P1 with internal updates and notes, and what the comms lead published.
        handle = await declare(
            "P1", key=f"status-{uuid.uuid4().hex[:8]}", title=TITLE, service="wan-site-a", impact=[IMPACT]
        )
        await handle.execute_update(IncidentWorkflow.claim_command, ClaimSignal(user="U0ALICE"))
        await handle.execute_update(
            IncidentWorkflow.assign_role_command,
            RoleSignal(user="U0ALICE", role="comms", assignee="U0ROBERT"),
        )
        await handle.execute_update(
            IncidentWorkflow.update_command,
            UpdateSignal(user="U0ALICE", status="identified", message=INTERNAL_UPDATE),
        )
        await handle.execute_update(
            IncidentWorkflow.add_to_timeline_command, TimelineNote(user="U0ALICE", text=INTERNAL_NOTE)
        )
        for status, understanding in (("investigating", INVESTIGATING), ("fixing", IDENTIFIED)):
            entry = await handle.execute_update(
                IncidentWorkflow.stakeholder_update_command,
                StakeholderSignal(user="U0ROBERT", status=status, understanding=understanding, impact=IMPACT),
                result_type=TimelineEntry,
            )
            assert entry.kind == "stakeholder"

        async def published() -> dict | None:
            page = await page_json()
            wan = components(page)["wan-site-a"]
            return page if wan["open"] and len(wan["open"][0]["updates"]) == 2 else None

        during = await eventually(published, what="the two published updates on the page")
        wan = components(during)["wan-site-a"]
        assert during["status"] == "major_outage" and wan["status"] == "major_outage"
        (incident,) = wan["open"]
        assert incident["status"] == "identified" and incident["name"] == IMPACT  # fixing: Identified
        assert [u["text"] for u in incident["updates"]] == [IDENTIFIED, IMPACT]
        assert [u["status"] for u in incident["updates"]] == ["identified", "investigating"]
        assert all(c["status"] == "operational" for n, c in components(during).items() if n != "wan-site-a")
        dom = await look("during", 1000)
        assert "Major outage" in dom and IMPACT in dom and "A power supply failed in Site A" in dom
        assert ">Identified<" in dom

        # After: resolved, the resolution published, the incident in the service's history.
        await handle.execute_update(
            IncidentWorkflow.resolve_command,
            ResolveSignal(user="U0ALICE", resolution=RESOLVED, root_cause=INTERNAL_ROOT_CAUSE),
        )

        async def resolved() -> dict | None:
            page = await page_json()
            return page if components(page)["wan-site-a"]["history"] else None

        after = await eventually(resolved, what="the incident in the history")
        wan = components(after)["wan-site-a"]
        assert after["status"] == "operational" and wan["status"] == "operational" and not wan["open"]
        (past,) = wan["history"]
        assert past["status"] == "resolved" and past["resolved_at"] and past["duration"]
        assert [u["text"] for u in past["updates"]] == [RESOLVED, IDENTIFIED, IMPACT]
        assert wan["days"][-1]["impact"] == "major_outage" and wan["days"][-1]["incidents"] == 1
        assert all(d["impact"] == "operational" for d in wan["days"][:-1]) and len(wan["days"]) == 90
        dom_after = await look("after", 1000)
        assert "All systems operational" in dom_after and RESOLVED in dom_after and ">Resolved<" in dom_after

        # The internal words were in the incident all along.
        state = await handle.query(IncidentWorkflow.state)
        timeline = " ".join(e.text for e in state.timeline)
        assert INTERNAL_UPDATE in timeline and INTERNAL_NOTE in timeline
        assert state.root_cause == INTERNAL_ROOT_CAUSE and state.title == TITLE
        # Reviewed, the incident completes: its history now comes from its result, without a worker.
        await handle.execute_update(IncidentWorkflow.review_done_command, ReviewDoneSignal(user="U0ALICE"))
        summary = await handle.result()
        assert INTERNAL_UPDATE in " ".join(e.text for e in summary.timeline)

    reread = create_app(Settings(), client=client, services=SERVICES)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=reread), base_url="http://page") as fresh:
        completed = (await fresh.get("/api/status.json")).json()
        html = (await fresh.get("/")).text
    assert completed["components"] == after["components"] and completed["unread"] == 0

    # And never on the page.
    for shown in (json.dumps(before), json.dumps(during), json.dumps(after), json.dumps(completed)):
        for text in (dom, dom_after, html):
            for secret in (*INTERNAL, handle.id.removeprefix("incident-")):
                assert secret not in shown and secret not in text


def entry(minutes: int, kind: str, text: str) -> TimelineEntry:
    return TimelineEntry(
        at=datetime(2026, 12, 1, 14, 0, tzinfo=UTC) + timedelta(minutes=minutes), kind=kind, text=text
    )


def test_only_stakeholder_entries_are_public_and_an_incident_without_one_is_not_shown() -> None:
    timeline = [
        entry(0, "declared", "declared P1"),
        entry(1, "update", "[identified] internal words"),
        entry(2, "note", "a pinned Slack message"),
        entry(3, "rejected", "stakeholder_update: this severity has no stakeholder updates"),
    ]
    fields = {"run": "incident-x/1", "service": "dns", "severity": Severity.P2, "resolved_at": None}
    assert public_incident(timeline=timeline, started_at=timeline[0].at, **fields) is None
    timeline.append(entry(4, "stakeholder", "initial notification: Lookups fail for some customers"))
    timeline.append(entry(9, "stakeholder", "status update: [monitoring] A fix is in;\nwe are watching"))
    incident = public_incident(timeline=timeline, started_at=timeline[0].at, **fields)
    assert incident is not None and incident.status is PublicStatus.monitoring
    assert [u.text for u in incident.updates] == [
        "A fix is in;\nwe are watching",
        "Lookups fail for some customers",
    ]
    assert "internal" not in incident.model_dump_json() and "pinned" not in incident.model_dump_json()


def test_text_from_people_is_escaped_on_the_page() -> None:
    now = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
    timeline = [
        entry(4, "stakeholder", 'initial notification: <script>alert("x")</script> & <b>VPN</b> down')
    ]
    incident = public_incident(
        run="incident-y/1",
        service="<img src=x onerror=alert(1)>",
        severity=Severity.P3,
        timeline=timeline,
        started_at=timeline[0].at,
        resolved_at=None,
    )
    assert incident is not None
    html = render_page(build_page([incident], [], now))
    assert "<script>alert" not in html and "<img src=x" not in html and "<b>VPN" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;VPN&lt;/b&gt; down" in html
    assert "Degraded performance" in html


async def test_without_temporal_the_page_says_it_is_unavailable_and_asks_to_retry() -> None:
    app = create_app(Settings(temporal_address="127.0.0.1:1"), services=["wan-site-a"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://page") as http:
        page, data = await http.get("/"), await http.get("/api/status.json")
        health = await http.get("/healthz")
    assert page.status_code == data.status_code == 503 and page.headers["retry-after"] == "5"
    assert "unavailable" in page.text and data.json() == {
        "ok": False,
        "error": "status temporarily unavailable",
    }
    assert health.json() == {"ok": True}
