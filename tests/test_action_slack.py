"""`/incident action` through the real Slack handler (the sandbox acting as Slack, a real worker on
the dev server): a bad field is answered to the person alone, naming it, and nothing is added; a good
one is in the incident and its thread, escaped; `done N` closes it."""

from __future__ import annotations

from .stack import eventually, templates_of
from .test_slack_app import ALICE, BOB, Stack, declared, stack  # noqa: F401 - the module's stack fixture


async def test_slash_incident_action_refuses_a_bad_field_naming_it_and_adds_a_good_one(
    stack: Stack,  # noqa: F811 - the fixture imported above
) -> None:
    incident = await declared(stack, "P3")
    key = incident.key
    for text, named in (
        (f"action {key} Add a second PSU <@{BOB}> P9", "priority: unknown priority 'P9'"),
        (f"action {key} Add a second PSU <@{BOB}> someday", "due: 'someday' is neither a date"),
        (f"action {key} Add a second PSU", "owner: say who does it"),
        (f"action {key} done two", "number: say which action item is done"),
    ):
        answer = await stack.act("command", user=ALICE, channel="incidents", text=text)
        assert answer["status"] == 200
        told = await stack.heard(ALICE, named)
        assert "/incident action [ID]" in told  # with the usage
    # Past dates pass the handler's reading but not the workflow's: its reason, naming the field.
    await stack.act(
        "command", user=ALICE, channel="incidents", text=f"action {key} Fix it <@{BOB}> 2020-01-01"
    )
    assert "due: 2020-01-01 is in the past" in await stack.heard(ALICE, "refused the action item")
    assert (await stack.incident(incident.workflow_id)).action_items == []

    await stack.act(
        "command",
        user=ALICE,
        channel="incidents",
        text=f"action {key} Alert on <!channel> PSU state <@{BOB}> P2 7d",
    )
    told = await stack.heard(ALICE, key, "took the action item")
    assert "&lt;!channel&gt;" in told and "<!channel>" not in told
    state = await stack.incident(incident.workflow_id)
    (item,) = state.action_items
    assert (item.text, item.owner, item.priority) == ("Alert on <!channel> PSU state", BOB, "P2")
    assert (item.due - item.added_at.date()).days == 7

    async def in_thread() -> list[dict] | None:
        messages = await stack.sandbox.thread(state.slack_channel, state.slack_thread_ts)
        return messages if "action_item_added" in templates_of(messages) else None

    messages = await eventually(in_thread, what="the action item in the thread")
    (added,) = [m for m in messages if "Action item 1" in m.get("text", "")]
    assert "&lt;!channel&gt;" in added["text"] and "<!channel>" not in added["text"] and BOB in added["text"]

    await stack.act("command", user=BOB, channel="incidents", text=f"action {key} done 1")
    assert "closed the action item" in await stack.heard(BOB, key)
    assert (await stack.incident(incident.workflow_id)).action_items[0].status == "done"
