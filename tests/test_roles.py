"""Roles besides the Incident Commander: communications lead, technical lead, scribe, experts.

The workflow's rules on the time-skipping test server (Slack recorded by fake activities), what
the thread and the header say (the real templates), and the Slack command's parsing.
"""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import WorkflowUpdateFailedError

from activities.rendering import render
from starter.slack_app import parse_command, slack_user
from workflows.incident import IncidentWorkflow
from workflows.models import ClaimSignal, ResolveSignal, RoleSignal, TimelineEntry, role_name

from .workflow_harness import recorded_worker, state_of


async def assign(handle, role: str, who: str, by: str = "U0ALICE", remove: bool = False) -> TimelineEntry:
    return await handle.execute_update(
        IncidentWorkflow.assign_role_command,
        RoleSignal(user=by, role=role, assignee=who, remove=remove),
        result_type=TimelineEntry,
    )


async def test_roles_are_assigned_handed_over_and_taken_back_each_in_the_timeline_and_thread(
    time_skipping_env, legacy_policy
):
    async with recorded_worker(time_skipping_env, legacy_policy) as (declare, slack):
        handle = await declare("P1")
        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="U0ALICE"))
        assert (await assign(handle, "comms", "U0ROBERT")).text == "U0ROBERT is the communications lead"
        assert (await assign(handle, "Communications", "U0CAROL")).text == (
            "communications lead handover: U0ROBERT → U0CAROL"
        )
        await assign(handle, "tech", "U0DAVID")
        await assign(handle, "scribe", "U0ERIN")
        await assign(handle, "sme", "U0FRANK")
        await assign(handle, "expert", "U0GRACE")
        assert (await assign(handle, "sme", "U0FRANK", remove=True)).text == (
            "U0FRANK is no longer a subject-matter expert"
        )
        await assign(handle, "scribe", "U0ERIN", remove=True)
        state = await state_of(handle)
        for _ in range(100):  # the outbox posts beside the incident: the last one may be on its way
            if len([p for p in slack.posts if p.template == "role_assigned"]) == 8:
                break
            await asyncio.sleep(0.05)
        headers_before = slack.headers

        # Refused at once, with the reason, nothing in history.
        for command, reason in (
            (RoleSignal(user="U0ALICE", role="janitor", assignee="U0ROBERT"), "unknown role 'janitor'"),
            (RoleSignal(user="U0ALICE", role="ic", assignee="U0ROBERT"), "takes over with `claim`"),
            (
                RoleSignal(user="U0ALICE", role="tech", assignee="U0DAVID"),
                "U0DAVID is already the technical lead",
            ),
            (RoleSignal(user="U0ALICE", role="sme", assignee="U0GRACE"), "already a subject-matter expert"),
            (RoleSignal(user="U0ALICE", role="scribe", assignee="U0ERIN", remove=True), "is not the scribe"),
        ):
            with pytest.raises(WorkflowUpdateFailedError) as refused:
                await handle.execute_update(IncidentWorkflow.assign_role_command, command)
            assert reason in str(refused.value.cause), (reason, refused.value.cause)
        history = (await handle.fetch_history()).to_json()
        assert "janitor" not in history

        await handle.signal(IncidentWorkflow.resolve, ResolveSignal(user="U0ALICE", resolution="fixed"))
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await assign(handle, "comms", "U0HEIDI")
        assert "the incident is already" in str(refused.value.cause)

    assert state.roles == {"comms": "U0CAROL", "tech": "U0DAVID"}
    assert state.experts == ["U0GRACE"]
    roles = [(e.actor, e.text) for e in state.timeline if e.kind == "role"]
    assert roles == [
        ("U0ALICE", "U0ROBERT is the communications lead"),
        ("U0ALICE", "communications lead handover: U0ROBERT → U0CAROL"),
        ("U0ALICE", "U0DAVID is the technical lead"),
        ("U0ALICE", "U0ERIN is the scribe"),
        ("U0ALICE", "U0FRANK is a subject-matter expert"),
        ("U0ALICE", "U0GRACE is a subject-matter expert"),
        ("U0ALICE", "U0FRANK is no longer a subject-matter expert"),
        ("U0ALICE", "U0ERIN is no longer the scribe"),
    ]
    posts = [p for p in slack.posts if p.template == "role_assigned"]
    assert len(posts) == 8 and posts[0].mentions == ["U0ROBERT"] and posts[-1].mentions == []
    assert headers_before >= 1  # the header follows (coalesced: the outbox sends the latest)
    # The thread's words, rendered by the real template.
    text = render("role_assigned", incident=posts[1].incident, **posts[1].extra)
    assert "*Communications lead handover* — <@U0ROBERT> → <@U0CAROL> (by <@U0ALICE>)" in text
    assert "reminded of stakeholder updates" in text


def test_the_header_lists_the_roles_and_experts(policy):
    from workflows.models import IncidentDeclaration, IncidentState

    d = IncidentDeclaration(key="roles-1", severity="P1", title="R1 down")
    state = IncidentState(
        key=d.key,
        workflow_id=d.workflow_id,
        severity=d.severity,
        title=d.title,
        declared_at=d.declared_at or __import__("datetime").datetime.now(__import__("datetime").UTC),
        commander="U0ALICE",
        roles={"tech": "U0DAVID", "comms": "U0CAROL"},
        experts=["U0GRACE", "<!channel>"],
    )
    header = render("declaration", incident=state, mentions=[])
    assert (
        "*Roles:* Comms lead <@U0CAROL> · Tech lead <@U0DAVID> · Experts <@U0GRACE> @&lt;!channel&gt;"
        in header
    )
    no_roles = render(
        "declaration", incident=state.model_copy(update={"roles": {}, "experts": []}), mentions=[]
    )
    assert "*Roles:*" not in no_roles


@pytest.mark.parametrize(
    ("text", "role", "person", "remove"),
    [
        ("role inc-1 comms <@U0ROBERT|bob>", "comms", "U0ROBERT", False),
        ("role inc-1 tech @dave", "tech", "dave", False),
        ("role inc-1 sme U0GRACE remove", "sme", "U0GRACE", True),
    ],
)
def test_slack_role_command_is_parsed(text: str, role: str, person: str, remove: bool):
    request = parse_command(text)
    assert (request.verb, request.incident, request.status, request.message, request.remove) == (
        "role",
        "inc-1",
        role,
        person,
        remove,
    )


def test_slack_role_command_without_a_person_says_how():
    assert "say the role and the person" in parse_command("role inc-1 comms").problem
    assert slack_user("<@W0ABC>") == "W0ABC" and slack_user("<@U0X|x y>") == "U0X"
    assert [role_name(w) for w in ("Comms", "comms-lead", "TL", "experts", "ic")] == [
        "comms",
        "comms",
        "tech",
        "sme",
        None,
    ]
