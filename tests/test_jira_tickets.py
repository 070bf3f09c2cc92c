"""Jira behind the ticket interface, and people across systems, against the sandboxes over real HTTP.

The real clients (activities/tickets/jira.py, servicenow.py, activities/people.py)
talk to the Jira, ServiceNow and Slack sandboxes; Temporal's ActivityEnvironment
stands in for retries (`attempt`). A lost answer is the sandbox doing the call
and answering too late for the client's timeout.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.people import People, SlackEmails
from activities.tickets import JiraTickets, ServiceNowTickets, TicketActivities
from sandbox import jira as jira_sandbox
from sandbox import servicenow as servicenow_sandbox
from sandbox.people import person
from sandbox.slack import create_app as create_slack
from sandbox.slack import serve_in_background
from workflows.ticket_models import ActionItemTicket, TicketChange, TicketOpen, TicketRef

JIRA_AUTH = (jira_sandbox.DEFAULT_EMAIL, jira_sandbox.DEFAULT_TOKEN)
AT = datetime(2026, 11, 22, 14, 32, tzinfo=UTC)
NOBODY = "U0NOBODY"  # a Slack user with no account in ServiceNow or Jira


@pytest.fixture(scope="module")
async def urls() -> AsyncIterator[dict[str, str]]:
    async with (
        serve_in_background(jira_sandbox.create_app()) as jira_url,
        serve_in_background(servicenow_sandbox.create_app()) as snow_url,
        serve_in_background(create_slack()) as slack_url,
    ):
        yield {"jira": jira_url, "servicenow": snow_url, "slack": slack_url + "/api/"}


@pytest.fixture
async def site(urls) -> AsyncIterator[httpx.AsyncClient]:
    """The Jira sandbox's control API, freshly reset."""
    async with httpx.AsyncClient(base_url=urls["jira"], auth=JIRA_AUTH, timeout=10) as client:
        (await client.post("/_sandbox/reset")).raise_for_status()
        yield client


def people(urls: dict[str, str]) -> People:
    """Emails from the Slack sandbox's users.info, as the worker asks them (no on-call file)."""
    return People(SlackEmails.from_settings(urls["slack"], "xoxb-sandbox-token"))


def jira(urls: dict[str, str], timeout: float = 10.0) -> JiraTickets:
    return JiraTickets(urls["jira"], *JIRA_AUTH, "OPS", timeout=timeout, people=people(urls))


async def run(activity: Any, arg: Any, attempt: int = 1) -> Any:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=attempt)
    return await env.run(activity, arg)


def declaration(severity: str = "P1", system: str = "jira") -> TicketOpen:
    key = f"test-{uuid.uuid4().hex[:8]}"
    return TicketOpen(
        incident_key=key,
        correlation_id=f"{key}#0a1b2c3d",
        workflow_id=f"incident-{key}",
        severity=severity,
        title="R1 unreachable, WAN outage Site A",
        service="wan",
        symptoms=["BGP session to R2 down"],
        impact=["Site A offline for 300 users"],
        reporter="alertmanager",
        declared_at=AT,
        system=system,
    )


def change(ref: TicketRef, n: int, kind: str, **fields: Any) -> TicketChange:
    return TicketChange(
        ticket=ref,
        incident_key="k",
        kind=kind,
        idempotency_key=f"incident-k/ticket/{n}/{kind}",
        at=AT + timedelta(minutes=n),
        **fields,
    )


async def issues(site: httpx.AsyncClient) -> list[dict[str, Any]]:
    return (await site.get("/_sandbox/state")).json()["issue_list"]


async def issue(site: httpx.AsyncClient, key: str) -> dict[str, Any]:
    return next(i for i in await issues(site) if i["key"] == key)


async def test_an_incident_lives_its_life_as_one_jira_issue_assigned_to_the_ics_account(urls, site) -> None:
    tickets = TicketActivities(jira(urls))
    opening = declaration("P1")
    ref = await run(tickets.open_ticket, opening)
    assert ref.system == "jira" and ref.created and re.fullmatch(r"OPS-\d+", ref.number)
    assert ref.url == f"{urls['jira']}/browse/{ref.number}"
    again = await run(tickets.open_ticket, opening)  # found by its label, not opened twice
    assert (again.number, again.created) == (ref.number, False)

    engineer = person("U0ENGINEER1")
    steps = [
        change(ref, 1, "claim", actor="U0ENGINEER1", assigned_to="U0ENGINEER1"),
        change(ref, 2, "update", actor="U0ENGINEER1", status="identified", text="R1 reloaded after a crash"),
        change(ref, 3, "severity", actor="U0ENGINEER1", severity="P2", previous_severity="P1"),
        change(ref, 4, "resolve", actor="U0ENGINEER1", resolution="R1 back", root_cause="software crash"),
        change(ref, 5, "close", actor="U0ENGINEER1", text="review held"),
    ]
    states = [(await run(tickets.update_ticket, step)).state for step in steps]
    assert states == ["In Progress", "In Progress", "In Progress", "Done", "Done"]

    [seen] = await issues(site)
    fields = seen["fields"]
    assert fields["summary"] == "[P1] R1 unreachable, WAN outage Site A (wan)"
    assert f"incident-{opening.correlation_id}" in fields["labels"]
    assert "BGP session to R2 down" in seen["description_text"]
    assert fields["assignee"]["accountId"] == engineer.account_id  # by email, via Slack's users.info
    assert fields["priority"]["name"] == "High" and fields["status"]["name"] == "Done"
    assert fields["resolution"] == {"name": "Done"}
    tags = [re.findall(r"\[ref: ([^\]]+)\]", text) for text in seen["comment_texts"]]
    assert tags == [[s.idempotency_key] for s in steps]
    assert "Root cause: software crash" in seen["comment_texts"][3]


async def test_a_retried_open_after_a_create_whose_answer_was_lost_finds_the_first_issue(urls, site) -> None:
    tickets = TicketActivities(jira(urls, timeout=0.3))
    opening = declaration()
    await site.post("/_sandbox/faults", json={"method": "POST", "path": "/issue", "delay": 0.8})
    with pytest.raises(ApplicationError) as first:
        await run(tickets.open_ticket, opening, attempt=1)
    assert first.value.type == "JiraTimeout" and not first.value.non_retryable
    ref = await run(tickets.open_ticket, opening, attempt=2)
    assert not ref.created
    assert [i["key"] for i in await issues(site)] == [ref.number]  # one issue, not two


async def test_a_retried_change_whose_answer_was_lost_is_not_written_twice(urls, site) -> None:
    tickets = TicketActivities(jira(urls, timeout=0.3))
    ref = await run(tickets.open_ticket, declaration())
    update = change(ref, 1, "update", actor="alice", status="fixing", text="reseating the optic")
    await site.post("/_sandbox/faults", json={"method": "POST", "path": "/comment", "delay": 0.8})
    with pytest.raises(ApplicationError):
        await run(tickets.update_ticket, update, attempt=1)
    again = await run(tickets.update_ticket, update, attempt=2)
    assert again.duplicate
    assert len((await issue(site, ref.number))["comment_texts"]) == 1


async def test_a_claim_by_someone_without_a_jira_account_is_written_unassigned_and_says_so(
    urls, site
) -> None:
    tickets = TicketActivities(jira(urls))
    ref = await run(tickets.open_ticket, declaration())
    changed = await run(tickets.update_ticket, change(ref, 1, "claim", actor=NOBODY, assigned_to=NOBODY))
    assert changed.problem == (
        f"no Jira account for u0nobody@sandbox.example ({NOBODY}): the issue is not assigned"
    )
    seen = await issue(site, ref.number)
    assert seen["fields"]["assignee"] is None and seen["fields"]["status"]["name"] == "In Progress"
    assert changed.problem in seen["comment_texts"][0]


async def test_jira_refuses_what_jira_refuses_and_retrying_cannot_fix(urls, site) -> None:
    wrong = TicketActivities(JiraTickets(urls["jira"], JIRA_AUTH[0], "not-the-token", "OPS"))
    with pytest.raises(ApplicationError) as refused:
        await run(wrong.open_ticket, declaration())
    assert refused.value.non_retryable and "401" in refused.value.message
    # An assignee that is not an account (a Slack id written as is): 400 naming the field.
    bad = await site.put("/rest/api/3/issue/OPS-999", json={"fields": {}})
    assert bad.status_code == 404
    created = await site.post(
        "/rest/api/3/issue",
        json={"fields": {"project": {"key": "OPS"}, "issuetype": {"name": "Task"}, "summary": "x"}},
    )
    answer = await site.put(
        f"/rest/api/3/issue/{created.json()['key']}", json={"fields": {"assignee": {"accountId": "U0ALICE"}}}
    )
    assert answer.status_code == 400
    assert answer.json()["errors"] == {"assignee": "User 'U0ALICE' cannot be assigned issues."}
    description = await site.post(
        "/rest/api/3/issue",
        json={
            "fields": {
                "project": {"key": "OPS"},
                "issuetype": {"name": "Task"},
                "summary": "x",
                "description": "plain text is not ADF",
            }
        },
    )
    assert description.status_code == 400 and "description" in description.json()["errors"]


async def test_an_action_item_is_one_jira_issue_linked_to_the_incidents_across_retries(urls, site) -> None:
    tickets = TicketActivities(jira(urls, timeout=0.3))
    opening = declaration()
    incident = await run(tickets.open_ticket, opening)
    item = ActionItemTicket(
        incident=incident,
        incident_key=opening.incident_key,
        correlation_id=opening.correlation_id,
        number=1,
        text="Add a second uplink at Site A",
        owner="U0BOB",
        priority="P2",
        due=date(2026, 11, 29),
    )
    await site.post("/_sandbox/faults", json={"method": "POST", "path": "/issue", "delay": 0.8})
    with pytest.raises(ApplicationError):
        await run(tickets.file_action_item, item, attempt=1)  # created, answer lost, not linked yet
    filed = await run(tickets.file_action_item, item, attempt=2)
    again = await run(tickets.file_action_item, item, attempt=3)
    assert filed.ticket.number == again.ticket.number != incident.number and not filed.problem

    all_issues = await issues(site)
    assert len(all_issues) == 2  # the incident's and the action item's, once
    action = await issue(site, filed.ticket.number)
    assert f"incident-{opening.correlation_id}-action-1" in action["fields"]["labels"]
    assert action["fields"]["assignee"]["accountId"] == person("U0BOB").account_id
    assert action["fields"]["duedate"] == "2026-11-29" and action["fields"]["priority"]["name"] == "High"
    links = action["fields"]["issuelinks"]
    assert [(link["type"]["name"], link["outwardIssue"]["key"]) for link in links] == [
        ("Relates", incident.number)
    ]


async def test_the_policys_system_picks_the_backend_and_a_missing_one_is_named(urls, site) -> None:
    snow = ServiceNowTickets.from_settings(urls["servicenow"], "admin", "admin", people=people(urls))
    both = TicketActivities(snow, others={"jira": jira(urls)})
    assert (await run(both.open_ticket, declaration(system="jira"))).system == "jira"
    assert (await run(both.open_ticket, declaration(system=""))).system == "servicenow"
    only_snow = TicketActivities(snow)
    with pytest.raises(ApplicationError) as missing:
        await run(only_snow.open_ticket, declaration(system="jira"))
    assert missing.value.non_retryable and "JIRA_URL" in missing.value.message


async def test_servicenow_assigns_the_ics_sys_user_found_by_email_and_says_when_there_is_none(urls) -> None:
    snow = ServiceNowTickets.from_settings(urls["servicenow"], "admin", "admin", people=people(urls))
    tickets = TicketActivities(snow)
    ref = await run(tickets.open_ticket, declaration(system="servicenow"))
    claimed = await run(tickets.update_ticket, change(ref, 1, "claim", actor="x", assigned_to="U0ENGINEER1"))
    assert not claimed.problem
    async with httpx.AsyncClient(base_url=urls["servicenow"], auth=("admin", "admin")) as client:
        path = f"/api/now/table/incident/{ref.sys_id}"
        record = (await client.get(path, params={"sysparm_display_value": "all"})).json()["result"]
        assert record["assigned_to"] == {
            "value": person("U0ENGINEER1").sys_id,
            "display_value": "Engineer One",
        }
        handover = await run(tickets.update_ticket, change(ref, 2, "claim", actor=NOBODY, assigned_to=NOBODY))
        assert handover.problem.startswith(f"no ServiceNow account for u0nobody@sandbox.example ({NOBODY})")
        record = (await client.get(path)).json()["result"]
        assert record["assigned_to"] == person("U0ENGINEER1").sys_id  # unchanged: nobody to assign
        # The sandbox checks the reference as ServiceNow would: a Slack id is no sys_user.
        await client.patch(path, json={"assigned_to": "U0ALICE"})
        assert (await client.get(path)).json()["result"]["assigned_to"] == person("U0ENGINEER1").sys_id
        state = (await client.get("/_sandbox/state")).json()
        assert {"table": "incident", "field": "assigned_to", "value": "U0ALICE"} in state[
            "unresolved_references"
        ]


async def test_people_are_cached_and_misses_are_kept_briefly() -> None:
    asked: list[str] = []

    class Emails:
        async def email_of(self, user: str) -> str | None:
            asked.append(user)
            return "alice@example.com" if user == "U0ALICE" else None

    now = [0.0]
    directory = People(Emails(), clock=lambda: now[0])

    async def find(email: str | None, who: str) -> str | None:
        return "acc-alice" if email == "alice@example.com" else None

    assert (await directory.account("Jira", "U0ALICE", find)).account == "acc-alice"
    assert (await directory.account("Jira", "U0ALICE", find)).account == "acc-alice"
    assert (await directory.account("Jira", NOBODY, find)).account is None
    assert (await directory.account("Jira", NOBODY, find)).account is None
    assert asked == ["U0ALICE", NOBODY]
    now[0] += 301  # a miss is asked again after five minutes, a hit is still kept
    await directory.account("Jira", NOBODY, find)
    await directory.account("Jira", "U0ALICE", find)
    assert asked == ["U0ALICE", NOBODY, NOBODY]
