"""An action item's Jira issue exists once, linked to the incident's, even when the create's answer is
lost: the real activities on the dev server, the Jira sandbox over real HTTP, the policy's
`tickets.system: jira`."""

from __future__ import annotations

from typing import Any

import httpx
from temporalio.service import RPCError, RPCStatusCode

from sandbox import jira as jira_sandbox
from sandbox.slack import serve_in_background
from workflows.action_models import ActionItemDoneSignal, ActionItemSignal, action_followup_id
from workflows.incident import IncidentWorkflow
from workflows.models import ClaimSignal, IncidentSummary, ResolveSignal, ReviewDoneSignal
from workflows.policy import Policy

from .stack import eventually, first_pages_out, incident_worker

JIRA_AUTH = (jira_sandbox.DEFAULT_EMAIL, jira_sandbox.DEFAULT_TOKEN)


def in_jira(policy: Policy) -> Policy:
    return policy.model_copy(update={"tickets": policy.tickets.model_copy(update={"system": "jira"})})


async def issues(site: httpx.AsyncClient) -> list[dict[str, Any]]:
    return (await site.get("/_sandbox/state")).json()["issue_list"]


async def test_an_action_items_jira_issue_exists_once_linked_to_the_incidents_when_the_answer_is_lost(
    local_env, sandbox, policy
) -> None:
    async with (
        serve_in_background(jira_sandbox.create_app()) as jira_url,
        httpx.AsyncClient(base_url=jira_url, auth=JIRA_AUTH, timeout=10) as site,
    ):
        (await site.post("/_sandbox/reset")).raise_for_status()
        jira = {
            "jira_url": jira_url,
            "jira_email": JIRA_AUTH[0],
            "jira_api_token": JIRA_AUTH[1],
            "jira_project": "OPS",
            "jira_timeout": 0.5,  # the sandbox's late answer (0.8 s) is lost
        }
        async with incident_worker(local_env.client, sandbox.api_url, in_jira(policy), **jira) as declare:
            handle = await declare("P3")
            await first_pages_out(handle, policy)

            async def ticketed():
                state = await handle.query(IncidentWorkflow.state)
                return state if state.ticket_ref is not None else None

            opened = await eventually(ticketed, what="the incident's Jira issue")
            # The next create is made, and its answer comes too late: the activity times out and retries.
            await site.post("/_sandbox/faults", json={"method": "POST", "path": "/issue", "delay": 0.8})
            added = await handle.execute_update(
                IncidentWorkflow.add_action_item_command,
                ActionItemSignal(
                    user="U0ENGINEER1",
                    text="Add a second uplink at Site A",
                    owner="U0BOB",
                    priority="P2",
                    due="7d",
                ),
            )

            async def filed():
                state = await handle.query(IncidentWorkflow.state)
                return state if state.action_items[0].ticket else None

            state = await eventually(filed, timeout=60, what="the action item's Jira issue")
            await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="U0ENGINEER1"))
            await handle.execute_update(
                IncidentWorkflow.complete_action_item_command, ActionItemDoneSignal(user="U0BOB", number=1)
            )
            await handle.signal(
                IncidentWorkflow.resolve, ResolveSignal(user="U0ENGINEER1", resolution="fixed")
            )

            async def in_review():
                return (await handle.query(IncidentWorkflow.state)).phase.value == "review"

            await eventually(in_review, what="the review")
            await handle.execute_update(
                IncidentWorkflow.review_done_command, ReviewDoneSignal(user="U0ENGINEER1")
            )
            summary = await local_env.client.get_workflow_handle(
                handle.id, result_type=IncidentSummary
            ).result()
            try:
                await local_env.client.get_workflow_handle(action_followup_id(handle.id)).describe()
                follow_up_started = True
            except RPCError as exc:
                assert exc.status == RPCStatusCode.NOT_FOUND
                follow_up_started = False
            all_issues = await issues(site)

    assert added.kind == "action_item"
    (item,) = state.action_items
    incident_issue = next(i for i in all_issues if i["key"] == opened.ticket_ref.number)
    (incident_label,) = [
        label for label in incident_issue["fields"]["labels"] if label.startswith("incident-")
    ]
    labelled = [i for i in all_issues if f"{incident_label}-action-1" in i["fields"]["labels"]]
    assert len(labelled) == 1 and len(all_issues) == 2  # the incident's issue and the action item's, once
    (action,) = labelled
    assert action["key"] == item.ticket and item.ticket_url.endswith(f"/browse/{item.ticket}")
    links = action["fields"]["issuelinks"]
    assert [(link["type"]["name"], link["outwardIssue"]["key"]) for link in links] == [
        ("Relates", opened.ticket_ref.number)
    ]
    assert (
        action["fields"]["priority"]["name"] == "High" and action["fields"]["duedate"] == item.due.isoformat()
    )
    # The first attempt's answer was lost: the retry found the issue it had made, by its label.
    said = [e.text for e in state.timeline if e.kind == "action_item_ticket"]
    assert said == [f"action item 1 found filed as {item.ticket}, linked to {opened.ticket_ref.number}"]
    # In the incident's result; done before it completed, so no follow-up workflow.
    assert [(i.number, i.status.value, i.ticket) for i in summary.action_items] == [(1, "done", item.ticket)]
    assert not follow_up_started
