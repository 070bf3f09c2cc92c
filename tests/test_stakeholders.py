"""Stakeholder updates of a SEV1 (issue 13): the seed's three messages in the stakeholder channel
and by email, each once; the initial notification at minute 10 at the latest; an overdue
update reminds the communications lead.

On the real dev server with the real activities, the Slack sandbox and the SMTP sandbox over
their real protocols; the timing on the time-skipping test server with fake activities.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest
from temporalio.client import WorkflowUpdateFailedError

from sandbox import smtp as smtp_sandbox
from workflows.incident import IncidentWorkflow
from workflows.models import (
    ClaimSignal,
    ResolveSignal,
    RoleSignal,
    Severity,
    StakeholderSignal,
    TimelineEntry,
)
from workflows.policy import Policy

from .stack import eventually, incident_worker
from .workflow_harness import minutes, recorded_worker, state_of

RECIPIENTS = ["vp-eng@example.com", "cto@example.com"]


def with_stakeholders(policy: Policy, **settings) -> Policy:
    stakeholders = policy.stakeholders.model_copy(
        update={"severities": [Severity.P1], "channel": "stakeholders", "emails": RECIPIENTS, **settings}
    )
    return policy.model_copy(update={"stakeholders": stakeholders})


async def test_a_sev1s_three_messages_reach_the_channel_and_the_mailboxes_once_each(
    local_env, sandbox, policy, tmp_path
):
    key = f"stake-{uuid.uuid4().hex[:8]}"
    async with smtp_sandbox.run_sandbox(tmp_path / "smtp") as smtp:
        settings = {"smtp_host": smtp.host, "smtp_port": smtp.smtp_port, "smtp_starttls": False}
        async with incident_worker(
            local_env.client, sandbox.api_url, with_stakeholders(policy), **settings
        ) as declare:
            handle = await declare(
                "P1",
                key=key,
                title="R1 unreachable, WAN outage Site A",
                service="wan-site-a",
                impact=["Site A has no WAN: 240 users offline"],
            )
            await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="U0ALICE"))
            await handle.execute_update(
                IncidentWorkflow.assign_role_command,
                RoleSignal(user="U0ALICE", role="comms", assignee="U0ROBERT"),
            )
            first = await handle.execute_update(
                IncidentWorkflow.stakeholder_update_command,
                StakeholderSignal(
                    user="U0ROBERT",
                    status="investigating",
                    understanding="R1 stopped answering at 14:02",
                    impact="Site A (240 users) has no WAN access",
                ),
                result_type=TimelineEntry,
            )
            assert first.kind == "stakeholder" and first.text.startswith(
                "initial notification: Site A (240 users)"
            )
            await handle.execute_update(
                IncidentWorkflow.stakeholder_update_command,
                StakeholderSignal(
                    user="U0ROBERT",
                    status="fixing",
                    understanding="R1's power supply failed",
                    actions=["Traffic moved to R2", "PSU ordered"],
                    next_steps=["Swap the PSU at 15:00"],
                ),
            )
            await handle.signal(
                IncidentWorkflow.resolve, ResolveSignal(user="U0ALICE", resolution="PSU swapped; R1 back")
            )

            listed = await sandbox.web.conversations_list(limit=1000)
            channel = next(c["id"] for c in listed["channels"] if c["name"] == "stakeholders")

            async def three_in_channel() -> list | None:
                history = await sandbox.history(channel)
                mine = [
                    m for m in history if key in str(m.get("metadata")) or "wan-site-a" in m.get("text", "")
                ]
                return mine if len(mine) >= 3 else None

            posted = await eventually(three_in_channel, what="three stakeholder messages in #stakeholders")

            async def mailed() -> list | None:
                async with httpx.AsyncClient(base_url=smtp.http_url) as http:
                    found = (await http.get("/_sandbox/messages")).json()
                return found if len({m["message_id"] for m in found}) >= 3 else None

            mail = await eventually(mailed, what="three stakeholder emails")

    texts = [m["text"] for m in sorted(posted, key=lambda m: float(m["ts"]))]
    assert len(texts) == 3, texts
    assert (
        "*Subject:* [P1] wan-site-a" in texts[0]
        and "*Impact:* Site A (240 users) has no WAN access" in texts[0]
    )
    assert "*Current Status:*" in texts[0] and "*Next Update:*" in texts[0]
    assert "[P1 UPDATE]" in texts[1] and "*Status:* Mitigating" in texts[1]
    for heading in ("*Current Understanding:* R1's power supply failed", "*Actions Taken:*", "*Next Steps:*"):
        assert heading in texts[1], texts[1]
    for heading in ("*Resolution:*", "*Duration:*", "*Impact Summary:*", "*Follow-up:*"):
        assert heading in texts[2], texts[2]
    # By email: three messages, each to both recipients once (no Message-ID twice to anyone).
    assert len({m["message_id"] for m in mail}) == 3
    assert not [m for m in mail if m.get("duplicate_of")], mail
    for m in mail:
        assert sorted(r.lower() for r in m["rcpt_to"]) == sorted(RECIPIENTS)
    subjects = sorted(m["subject"] for m in mail)
    assert any(s.startswith("[RESOLVED]") for s in subjects) and any("[P1 UPDATE]" in s for s in subjects), (
        subjects
    )


async def test_the_initial_notification_goes_out_at_minute_10_and_an_overdue_update_reminds_the_comms_lead(
    time_skipping_env, policy
):
    env = time_skipping_env
    async with recorded_worker(env, with_stakeholders(policy, emails=[])) as (declare, slack):
        handle = await declare("P1", impact=["Site A has no WAN"])
        await env.sleep(timedelta(minutes=2))
        await handle.signal(IncidentWorkflow.claim, ClaimSignal(user="U0ALICE"))
        await handle.signal(
            IncidentWorkflow.assign_role, RoleSignal(user="U0ALICE", role="comms", assignee="U0ROBERT")
        )
        await env.sleep(timedelta(minutes=19))  # minute 21: initial at 10, a reminder at 25 not yet
        await handle.signal(
            IncidentWorkflow.stakeholder_update,
            StakeholderSignal(user="U0ROBERT", status="identified", understanding="PSU failed"),
        )
        await env.sleep(timedelta(minutes=20))  # next due 21 + 15 = 36: one reminder
        state = await state_of(handle)
        reminders = [p for p in slack.posts if p.template == "stakeholder_reminder"]
        low = await declare("P3")
        await env.sleep(timedelta(hours=3))
        low_state = await state_of(low)

    assert minutes(state, "stakeholder") == [10, 21]
    (initial, update) = [e for e in state.timeline if e.kind == "stakeholder"]
    assert initial.text == "initial notification: Site A has no WAN" and initial.actor == ""
    assert update.text == "status update: [identified] PSU failed" and update.actor == "U0ROBERT"
    # At 10 (with the initial notification sent for the comms lead) and at 36 (15 after the update).
    assert [
        round((p.incident.stakeholder_reminded_at - state.declared_at) / timedelta(minutes=1))
        for p in reminders
    ] == [10, 36]
    assert len(reminders) == 2 and all(p.mentions == ["U0ROBERT"] for p in reminders)
    assert [
        p.channel
        for p in slack.posts
        if p.template.startswith("stakeholder_") and p.template != "stakeholder_reminder"
    ] == [
        "stakeholders",
        "stakeholders",
    ]
    assert minutes(low_state, "stakeholder") == []  # a P3: no stakeholder updates (the policy's severities)


@pytest.mark.parametrize("status", ["panicking", ""])
async def test_a_stakeholder_update_with_an_unknown_status_is_refused(time_skipping_env, policy, status):
    async with recorded_worker(time_skipping_env, with_stakeholders(policy, emails=[])) as (declare, _):
        handle = await declare("P1")
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(
                IncidentWorkflow.stakeholder_update_command,
                StakeholderSignal(user="U0ROBERT", status=status, understanding="x"),
            )
        assert "unknown status" in str(refused.value.cause)
