"""`incident report` over 50 incidents this test runs on a real dev server: the figures it prints
are the ones the test computes itself from what it did, and its HTML opens in a real browser.

The dev server has no time skipping, so an incident's declaration is back-dated by its time to
acknowledge (`declared_at`, as a receiver sets it when a worker comes late): the escalation
chain's levels due by then are paged at once (counted by the fake paging activity), and the
claim, the mitigation (a `monitoring` update) and the resolution follow in real time, seconds
apart. The times the test expects are its own back-dating and the times the workflow answered
its commands with (each update's answer is the timeline entry it wrote), never the report's
own reading of the results.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import mean
from typing import Any

import pytest
from temporalio.worker import Worker
from typer.testing import CliRunner

from starter.cli import app
from starter.declare import declare_incident
from workflows.incident import IncidentWorkflow
from workflows.models import (
    AcknowledgeSignal,
    ClaimSignal,
    IncidentDeclaration,
    ResolveSignal,
    ReviewDoneSignal,
    Severity,
    UpdateSignal,
)
from workflows.policy import Policy

from .browser import Browser, find_chromium
from .conftest import start_dev_server
from .fakes import RecordedSlack
from .workflow_harness import without_tickets

SERVICES = ["wan-site-a", "core-dc1", "dns", "vpn"]
ROOT_CAUSES = ["software crash", "fibre cut", "expired certificate", "config push", None]
SEVERITIES = [Severity.P1] * 12 + [Severity.P2] * 14 + [Severity.P3] * 14 + [Severity.P4] * 10
# Minutes from declaration to the first acknowledgement or claim, per severity: each at least
# a minute away from its chain's levels (P1 5/15/30, P2 15/30), below its unresolved rules
# (P1 30m, P2 1h), so which levels fired does not depend on the test's own few seconds.
TTA_MINUTES = {
    Severity.P1: [2, 3.5, 7, 9, 12, 17, 20, 24],
    Severity.P2: [4, 8, 13, 17, 22, 27, 33, 40],
    Severity.P3: [3, 10, 30, 45, 90],
    Severity.P4: [5, 20, 60, 120],
}
REVIEW_SOON = timedelta(seconds=3)  # P2 and P3 reviews fall due this soon after resolution


def short_reviews(policy: Policy) -> Policy:
    """P2's and P3's reviews due seconds after resolution, so some are held late during the test
    (every day a business day: a review's deadline counts business days only, and the test may run
    on a weekend)."""
    severities = dict(policy.severities)
    for sev in (Severity.P2, Severity.P3):
        severities[sev] = severities[sev].model_copy(update={"review_within": REVIEW_SOON})
    return without_tickets(policy).model_copy(
        update={
            "severities": severities,
            "review": policy.review.model_copy(update={"grace": timedelta(0)}),
            "business_hours": policy.business_hours.model_copy(update={"weekdays": list(range(7))}),
        }
    )


@pytest.fixture(scope="module")
async def own_server():
    """A dev server of this module's own: the report counts every completed incident on it."""
    env = await start_dev_server()
    try:
        yield env
    finally:
        await env.shutdown()


class Played:
    """What the test did to one incident and when the workflow says it happened."""

    def __init__(self, severity: Severity, service: str) -> None:
        self.severity = severity
        self.service = service
        self.key = f"rep-{uuid.uuid4().hex[:10]}"
        self.declared_at: datetime
        self.detected_at: datetime | None = None
        self.acknowledged_at: datetime
        self.mitigated_at: datetime | None = None
        self.resolved_at: datetime
        self.review_due = severity != Severity.P4
        self.review_on_time = False
        self.levels_due = 0
        self.root_cause: str | None = None

    def seconds(self, end: datetime | None) -> float | None:
        return None if end is None else (end - self.declared_at).total_seconds()


async def play(
    client: Any, queue: str, played: Played, policy: Policy, slack: RecordedSlack, rng: random.Random
) -> None:
    sev = played.severity
    tta = timedelta(minutes=rng.choice(TTA_MINUTES[sev]))
    now = datetime.now(UTC)
    played.declared_at = now - tta
    by_alert = rng.random() < 0.5
    if by_alert:
        played.detected_at = played.declared_at - timedelta(seconds=rng.randrange(20, 600))
    chain = policy.for_severity(sev).paging
    played.levels_due = 0 if chain is None else sum(1 for *_, offset in chain.steps() if offset <= tta)
    declaration = IncidentDeclaration(
        key=played.key,
        severity=sev,
        title=f"report test {sev.value} on {played.service}",
        service=played.service,
        reporter="alertmanager (noc)" if by_alert else "tester",
        # The CLI's detected_at is the moment a person declares: not a detection time to count.
        detected_at=played.detected_at if by_alert else played.declared_at,
        declared_at=played.declared_at,
    )
    handle = await declare_incident(client, declaration, queue)
    if chain is not None:  # the levels due are paged (and the pages answered) before anyone answers
        await _paging_settled(handle, played, slack)
    user = rng.choice(["U0ALICE", "U0BOB", "U0CAROL"])
    if rng.random() < 0.4:
        ack = await handle.execute_update(IncidentWorkflow.acknowledge_command, AcknowledgeSignal(user=user))
        played.acknowledged_at = ack.at
        await asyncio.sleep(rng.uniform(0.1, 0.6))
        if (await handle.query(IncidentWorkflow.state)).commander is None:  # acknowledge_claims: claimed
            await handle.execute_update(IncidentWorkflow.claim_command, ClaimSignal(user=user))
    else:
        claim = await handle.execute_update(IncidentWorkflow.claim_command, ClaimSignal(user=user))
        played.acknowledged_at = claim.at
    await asyncio.sleep(rng.uniform(0.1, 1.0))
    await handle.execute_update(
        IncidentWorkflow.update_command, UpdateSignal(user=user, status="fixing", message="on it")
    )
    if rng.random() < 0.8:
        await asyncio.sleep(rng.uniform(0.1, 1.5))
        mitigated = await handle.execute_update(
            IncidentWorkflow.update_command,
            UpdateSignal(user=user, status="monitoring", message="fix in, watching"),
        )
        played.mitigated_at = mitigated.at
    await asyncio.sleep(rng.uniform(0.1, 1.5))
    # A time-based rule (unresolved for an hour, by the back-dated declaration) may have paged since
    # the acknowledgement: every page the fake took is in the incident before it is resolved.
    await _pages_recorded(handle, played, slack)
    played.root_cause = rng.choice(ROOT_CAUSES)
    resolved = await handle.execute_update(
        IncidentWorkflow.resolve_command,
        ResolveSignal(user=user, resolution="back to normal", root_cause=played.root_cause or ""),
    )
    played.resolved_at = resolved.at
    if played.mitigated_at is None:
        played.mitigated_at = played.resolved_at
    held = sev == Severity.P1 or (sev == Severity.P2 and rng.random() < 0.5)
    if held:
        await handle.execute_update(IncidentWorkflow.review_done_command, ReviewDoneSignal(user=user))
        played.review_on_time = True
    elif played.review_due:
        # P2/P3 reviews held late: their deadline is REVIEW_SOON after the resolution (the meeting,
        # on the next business day, would keep the incident open until then plus the grace).
        await asyncio.sleep((REVIEW_SOON + timedelta(seconds=1)).total_seconds())
        await handle.execute_update(IncidentWorkflow.review_done_command, ReviewDoneSignal(user=user))
    await handle.result()


async def _paging_settled(handle: Any, played: Played, slack: RecordedSlack) -> None:
    """Every level due has been paged and each page the fake took is recorded in the incident
    (the same for three looks 0.2 s apart), so an acknowledgement holds back no page in flight."""
    loop = asyncio.get_running_loop()
    deadline, same = loop.time() + 20, 0
    while loop.time() < deadline and same < 3:
        state = await handle.query(IncidentWorkflow.state)
        levels = sum(1 for e in state.timeline if e.kind == "paging")
        taken = sum(1 for page in slack.pages if page.incident_key == played.key)
        recorded = len(state.paging.pages)
        same = same + 1 if levels == played.levels_due and recorded == taken > 0 else 0
        await asyncio.sleep(0.2)
    assert same >= 3, f"{played.key}: paging did not settle"


async def _pages_recorded(handle: Any, played: Played, slack: RecordedSlack) -> None:
    """Each page the fake took for this incident is recorded in it (the same for three looks)."""
    loop = asyncio.get_running_loop()
    deadline, same = loop.time() + 20, 0
    while loop.time() < deadline and same < 3:
        state = await handle.query(IncidentWorkflow.state)
        taken = sum(1 for page in slack.pages if page.incident_key == played.key)
        same = same + 1 if len(state.paging.pages) == taken else 0
        await asyncio.sleep(0.2)
    assert same >= 3, f"{played.key}: a page the fake took is not recorded"


def expected_group(group: list[Played], pages: dict[str, int]) -> dict[str, Any]:
    def avg(values: list[float | None]) -> float | None:
        got = [v for v in values if v is not None]
        return mean(got) if got else None

    due = [p for p in group if p.review_due]
    return {
        "count": len(group),
        "mtta": avg([p.seconds(p.acknowledged_at) for p in group]),
        "mttd": avg(
            [
                None if p.detected_at is None else (p.declared_at - p.detected_at).total_seconds()
                for p in group
            ]
        ),
        "mttm": avg([p.seconds(p.mitigated_at) for p in group]),
        "mttr": avg([p.seconds(p.resolved_at) for p in group]),
        "reviews": (sum(p.review_on_time for p in due), len(due)),
        "escalations": mean(max(p.levels_due - 1, 0) for p in group),
        "pages": mean(pages[p.key] for p in group),
    }


def check_group(got: dict[str, Any], want: dict[str, Any], where: str) -> None:
    assert got["count"] == want["count"], where
    for name in ("mtta", "mttd", "mttm", "mttr"):
        if want[name] is None:
            assert got[name]["seconds"] is None, (where, name)
        else:
            assert got[name]["seconds"] == pytest.approx(want[name], abs=0.01), (where, name)
    assert (got["reviews_on_time"]["on_time"], got["reviews_on_time"]["due"]) == want["reviews"], where
    assert got["escalations_per_incident"] == pytest.approx(want["escalations"]), where
    assert got["pages_per_incident"] == pytest.approx(want["pages"]), where
    assert got["action_items"]["rate"] is None, where  # no result carries action items yet


async def test_report_over_50_incidents_gives_the_figures_the_test_computes(own_server, policy, tmp_path):
    client = own_server.client
    queue = f"report-{uuid.uuid4().hex[:6]}"
    worker_policy = short_reviews(policy)
    slack = RecordedSlack(worker_policy)
    rng = random.Random(20261201)
    played = [Played(sev, SERVICES[i % len(SERVICES)]) for i, sev in enumerate(SEVERITIES)]
    async with Worker(client, task_queue=queue, workflows=[IncidentWorkflow], activities=slack.activities):
        gate = asyncio.Semaphore(25)

        async def one(p: Played, seed: int) -> None:
            async with gate:
                await play(client, queue, p, worker_policy, slack, random.Random(seed))

        await asyncio.gather(*(one(p, rng.randrange(10**9)) for p in played))

    # The pages the fake paging service took: one page is a person at a level, whatever carried it.
    paged = {(p.incident_key, p.level, p.loop, p.person.user_id) for p in slack.pages}
    pages_per_incident = Counter(key for key, *_ in paged)
    levels_paged = defaultdict(set)
    for key, level, loop, _ in paged:
        levels_paged[key].add((level, loop))
    for p in played:
        assert len(levels_paged[p.key]) <= p.levels_due, p.key  # a level may have nobody on call
    pages = {p.key: pages_per_incident[p.key] for p in played}
    this_week = f"{datetime.now(UTC).isocalendar()[0]}-W{datetime.now(UTC).isocalendar()[1]:02d}"
    per_person = Counter(person for *_, person in paged)

    env = {"TEMPORAL_ADDRESS": own_server.client.service_client.config.target_host}
    html = tmp_path / "report.html"
    result = await asyncio.to_thread(
        CliRunner().invoke, app, ["report", "--since", "1d", "--json", "--html", str(html)], env=env
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)

    check_group(report["overall"], expected_group(played, pages), "overall")
    for sev in Severity:
        group = [p for p in played if p.severity == sev]
        check_group(report["by_severity"][sev.value], expected_group(group, pages), sev.value)
    for service in SERVICES:
        group = [p for p in played if p.service == service]
        check_group(report["by_service"][service], expected_group(group, pages), service)

    got_people = {(r["person"], r["week"]): r for r in report["pages_per_person_week"]}
    assert {person for person, _ in got_people} == set(per_person)
    for person, n in per_person.items():
        row = got_people[(person, this_week)]
        assert row["pages"] == n and row["over_limit"] == (n > 5), (person, row)
    assert {r["person"] for r in report["over_limit"]} == {p for p, n in per_person.items() if n > 5}
    assert report["max_pages_per_person_week"] == 5

    causes = Counter(p.root_cause for p in played if p.root_cause)
    assert {r["root_cause"]: r["count"] for r in report["recurring_root_causes"]} == {
        c: n for c, n in causes.items() if n >= 2
    }
    for name in ("MTTA", "MTTD", "MTTM", "MTTR"):
        assert name in report["definitions"]

    # --severity and --service narrow it; the text output names every definition.
    result = await asyncio.to_thread(
        CliRunner().invoke, app, ["report", "--severity", "P1", "--service", "dns"], env=env
    )
    assert result.exit_code == 0, result.output
    n = sum(1 for p in played if p.severity == Severity.P1 and p.service == "dns")
    assert f"{n} completed incidents declared since" in result.output, result.output
    for needle in ("MTTA: mean time to acknowledge", "MTTR: mean time to resolve", "severity P1"):
        assert needle in result.output, needle

    # The HTML report in a real headless browser: its tables and its four charts are there.
    chromium, why = find_chromium()
    if chromium is None:
        pytest.fail(why)
    browser = Browser(chromium)
    dom = await browser.dom(html.as_uri())
    assert dom.count("<svg") >= 4 and "Incidents per week, by severity" in dom
    assert "over the limit" in dom and "Definitions" in dom
    shot = await browser.screenshot(html.as_uri(), tmp_path / "report.png", width=1280, height=1500)
    assert shot.stat().st_size > 20_000
    if os.environ.get("REPORT_SCREENSHOTS"):  # docs/ for the README
        target = Path(os.environ["REPORT_SCREENSHOTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target / "report.png")
