"""Runbook links: the policy's per-service runbooks (validated at load, absent from the policies
running incidents recorded), an alert's `runbook_url` and `incident declare --runbook` into the
incident's state and its declaration in Slack, and bad runbook URLs refused at the edge."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from datetime import timedelta

import httpx
import pytest

from activities.rendering import _link as render_link
from activities.rendering import render
from starter.alerts import (
    AlertmanagerWebhook,
    GrafanaWebhook,
    _merge_declarations,
    create_app,
    from_alertmanager,
)
from workflows import limits
from workflows.incident import IncidentWorkflow
from workflows.models import IncidentDeclaration
from workflows.policy import Policy, PolicyError, RunbookSettings, load_policy
from workflows.ui import static_details

from .conftest import ROOT
from .stack import eventually, incident_worker, posted_state, terminate_all
from .test_cli import UNREACHABLE as CLI_UNREACHABLE
from .test_cli import assert_one_error_line, invoke
from .test_input_limits import GRAFANA_DOCS_EXAMPLE, UNREACHABLE, am_alert, am_body
from .workflow_harness import recorded_worker, state_of

HISTORIES = ROOT / "tests" / "histories"
R1_RUNBOOK = "docs/runbooks/wan-site-a-r1-unreachable.md"


def recorded_policies() -> list[tuple[str, dict]]:
    """The policy each recorded incident loaded (its `load_incident_policy` local activity's result)."""
    found = []
    for path in sorted(HISTORIES.glob("*.json")):
        for event in json.loads(path.read_text())["events"]:
            marker = event.get("markerRecordedEventAttributes")
            if not marker or "result" not in marker.get("details", {}):
                continue
            detail = json.loads(base64.b64decode(marker["details"]["data"]["payloads"][0]["data"]))
            if detail.get("activity_type") == "load_incident_policy":
                result = marker["details"]["result"]["payloads"][0]["data"]
                found.append((path.name, json.loads(base64.b64decode(result))))
    return found


def test_the_default_policy_links_the_r1_runbook_and_allows_90_days(policy):
    assert policy.runbooks.max_last_tested_age == timedelta(days=90)
    assert policy.runbooks.for_service("wan-site-a") == R1_RUNBOOK
    assert policy.runbooks.for_service("no-such-service") == "" and policy.runbooks.for_service("") == ""
    assert (ROOT / R1_RUNBOOK).is_file()


def test_policies_recorded_before_runbooks_still_load_with_none():
    # Histories recorded since runbooks (tests/histories is append-only) carry the field.
    recorded = [(name, raw) for name, raw in recorded_policies() if "runbooks" not in raw]
    assert len(recorded) >= 5
    for name, raw in recorded:
        policy = Policy.model_validate(raw)
        assert policy.runbooks == RunbookSettings(), name
        assert policy.runbooks.for_service("wan-site-a") == "", name


def test_a_path_becomes_a_link_under_base_url_and_a_url_stays_itself():
    runbooks = RunbookSettings(
        base_url="https://git.example.com/netops/incident/blob/main/",
        services={"wan-site-a": R1_RUNBOOK, "core": "https://wiki.example.com/runbooks/core#cpu"},
    )
    assert (
        runbooks.for_service("wan-site-a")
        == f"https://git.example.com/netops/incident/blob/main/{R1_RUNBOOK}"
    )
    assert runbooks.for_service(" core ") == "https://wiki.example.com/runbooks/core#cpu"
    # Through JSON, as the policy travels in an incident's history.
    again = Policy.model_validate_json(
        load_policy().model_copy(update={"runbooks": runbooks}).model_dump_json()
    )
    assert again.runbooks == runbooks


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("max_last_tested_age: 90d", "max_last_tested_age: often"), "runbooks.max_last_tested_age"),
        (('base_url: ""', "base_url: ftp://files.example.com/"), "runbooks.base_url: Value error"),
        (
            (f"wan-site-a: {R1_RUNBOOK}", "wan-site-a: ../../etc/passwd"),
            "runbooks.services: Value error, wan-site-a: '../../etc/passwd': neither an http(s) URL nor a path",
        ),
        (
            (f"wan-site-a: {R1_RUNBOOK}", "wan-site-a: javascript://alert(1)"),
            "wan-site-a: 'javascript://alert(1)': not an http(s) URL",
        ),
        (
            (f"wan-site-a: {R1_RUNBOOK}", "wan-site-a: https://wiki.example.com/" + "x" * limits.MAX_LINK),
            "characters; a URL is at most 2,000",
        ),
        (
            ("  services:\n", "  colour: red\n  services:\n"),
            "runbooks.colour: Extra inputs are not permitted",
        ),
    ],
)
def test_a_bad_runbooks_section_names_the_field_at_load(tmp_path, change, message):
    text = (ROOT / "config" / "policy.yaml").read_text()
    assert change[0] in text
    bad = tmp_path / "policy.yaml"
    bad.write_text(text.replace(change[0], change[1], 1))
    with pytest.raises(PolicyError) as err:
        load_policy(bad)
    assert message in str(err.value)


# ---------------------------------------------------------------- the receivers: runbook_url


def test_alertmanager_and_grafana_runbook_url_annotations_reach_the_declaration(policy):
    body = am_body(
        [am_alert(1), am_alert(2, annotations={"runbook_url": "https://wiki.example.com/runbooks/r1"})]
    )
    first, second = from_alertmanager(AlertmanagerWebhook.model_validate(body), policy.alerts, "alertmanager")
    assert (first.declaration.runbook, second.declaration.runbook) == (
        "",
        "https://wiki.example.com/runbooks/r1",
    )
    # The group declares once: with the runbook of the first of its alerts that names one.
    assert _merge_declarations([first, second]).runbook == "https://wiki.example.com/runbooks/r1"
    common = am_body([am_alert(1)], annotations={"runbook_url": " https://wiki.example.com/runbooks/wan "})
    [only] = from_alertmanager(AlertmanagerWebhook.model_validate(common), policy.alerts, "alertmanager")
    assert only.declaration.runbook == "https://wiki.example.com/runbooks/wan"
    grafana = from_alertmanager(GrafanaWebhook.model_validate(GRAFANA_DOCS_EXAMPLE), policy.alerts, "grafana")
    assert grafana[0].declaration.runbook == "https://myrunbook.com/runbook/1234"


@pytest.mark.parametrize(
    ("path", "body", "names"),
    [
        (
            "/alerts/alertmanager",
            am_body([am_alert(annotations={"runbook_url": "https://wiki.example.com/" + "x" * 5000})]),
            "alerts.0.annotations.runbook_url",  # over an annotation's own limit (3,000)
        ),
        (
            "/alerts",
            {"title": "t", "severity": "P2", "dedup_key": "k", "runbook_url": "ftp://files.example.com/r1"},
            "runbook_url: not an http(s) URL",
        ),
    ],
)
async def test_a_bad_runbook_url_is_422_naming_the_field(policy, path, body, names):
    app = create_app(UNREACHABLE, policy, token="")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as http:
        response = await http.post(path, json=body)
        assert response.status_code == 422, response.text
        assert names in response.json()["error"]


@pytest.mark.parametrize(
    ("source", "body", "names"),
    [
        (
            "alertmanager",
            am_body([am_alert(annotations={"runbook_url": "javascript:alert(1)"})]),
            "alerts[0].annotations.runbook_url: not an http(s) URL",
        ),
        (
            "alertmanager",
            am_body([am_alert(annotations={"runbook_url": "docs/runbooks/r1.md"})]),
            "alerts[0].annotations.runbook_url: not an http(s) URL",
        ),
        (
            "alertmanager",
            am_body([am_alert(annotations={"runbook_url": "https://wiki.example.com/" + "x" * 2100})]),
            "alerts[0].annotations.runbook_url: 2,125 characters; a URL is at most 2,000",
        ),
        (
            "grafana",
            am_body([am_alert()], annotations={"runbook_url": "https://wiki.example.com/r 1"}),
            "commonAnnotations.runbook_url: a URL cannot hold spaces",
        ),
    ],
)
async def test_an_alert_with_a_bad_runbook_url_is_taken_without_the_link_and_says_why(
    policy, source, body, names
):
    # Alertmanager and Grafana never send again an alert answered 4xx: refusing it would lose it.
    model = AlertmanagerWebhook if source == "alertmanager" else GrafanaWebhook
    [delivery] = from_alertmanager(model.model_validate(body), policy.alerts, source)
    assert delivery.declaration.runbook == ""
    [noted] = delivery.declaration.symptoms
    assert noted.startswith(f"runbook link ignored: {names}"), noted
    app = create_app(UNREACHABLE, policy, token="")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as http:
        response = await http.post(f"/alerts/{source}", json=body)
        assert response.status_code == 503, response.text  # past the edge: Temporal is away


async def test_a_good_runbook_url_passes_the_edge(policy):
    app = create_app(UNREACHABLE, policy, token="")
    runbook = {"runbook_url": "https://wiki.example.com/runbooks/r1"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as http:
        for path, body in (
            ("/alerts/alertmanager", am_body([am_alert(annotations=runbook)])),
            ("/alerts/grafana", am_body([am_alert()], annotations=runbook)),
            ("/alerts", {"title": "t", "severity": "P2", "dedup_key": "k", **runbook}),
        ):
            response = await http.post(path, json=body)
            assert response.status_code == 503, response.text  # past the edge: Temporal is away


def test_incident_declare_refuses_a_runbook_that_is_not_an_http_url_before_asking_temporal():
    for runbook, why in (
        ("docs/runbooks/r1.md", "--runbook: not an http(s) URL"),
        ("https://wiki.example.com/" + "x" * 2000, "--runbook: 2,025 characters; a URL is at most 2,000"),
    ):
        result = invoke(["declare", "-s", "P2", "-t", "t", "--runbook", runbook], **CLI_UNREACHABLE)
        assert_one_error_line(result, 2, why)


# ---------------------------------------------------------------- the incident: state and Slack


def with_base_url(policy: Policy) -> Policy:
    runbooks = policy.runbooks.model_copy(
        update={"base_url": "https://git.example.com/netops/incident/blob/main"}
    )
    return policy.model_copy(update={"runbooks": runbooks})


async def declared(slack, handle):
    """The declaration the incident posted, rendered as Slack gets it, and the incident's state."""

    async def posted():
        return next((p for p in slack.posts if p.template == "declaration"), None)

    post = await eventually(posted, what="the declaration")
    return render("declaration", incident=post.incident, mentions=[]), await state_of(handle)


async def test_the_incident_links_its_services_runbook_from_the_policy(time_skipping_env, policy):
    async with recorded_worker(time_skipping_env, policy) as (declare, slack):
        as_text, state = await declared(slack, await declare("P1", service="wan-site-a"))
        assert state.runbook == R1_RUNBOOK
        # No runbooks.base_url: a path in the repository, shown as text, not a link.
        assert f"*Runbook:* `{R1_RUNBOOK}`" in as_text.splitlines()

    async with recorded_worker(time_skipping_env, policy) as (declare, slack):
        handle = await declare("P1", service="wan-site-a", policy=with_base_url(policy))
        as_link, state = await declared(slack, handle)
    url = f"https://git.example.com/netops/incident/blob/main/{R1_RUNBOOK}"
    assert state.runbook == url
    assert f"*Runbook:* <{url}|git.example.com/…/wan-site-a-r1-unreachable.md>" in as_link.splitlines()


async def test_the_declarations_runbook_wins_over_the_policys_and_is_escaped(time_skipping_env, policy):
    runbook = "https://wiki.example.com/r1?site=a&view=<full>|print"
    async with recorded_worker(time_skipping_env, policy) as (declare, slack):
        text, state = await declared(slack, await declare("P2", service="wan-site-a", runbook=runbook))
    assert state.runbook == runbook
    [line] = [line for line in text.splitlines() if line.startswith("*Runbook:*")]
    assert line == (
        "*Runbook:* <https://wiki.example.com/r1?site=a&amp;view=&lt;full&gt;%7Cprint"
        "|wiki.example.com/r1?site=a&amp;view=&lt;full&gt;|print>"
    )
    assert "Runbook" not in render(
        "declaration", incident=state.model_copy(update={"runbook": ""}), mentions=[]
    )


def test_only_http_urls_become_slack_links_and_the_temporal_ui_shows_the_runbook():
    assert render_link("javascript:alert(1)", "x") == "x"
    assert render_link("https://a.example.com/x|y", "x") == "<https://a.example.com/x%7Cy|x>"
    declaration = IncidentDeclaration(
        key="k", severity="P1", title="t", runbook="https://wiki.example.com/runbooks/(r1)"
    )
    assert "Runbook: [Runbook](https://wiki.example.com/runbooks/%28r1%29)" in static_details(declaration)
    with pytest.raises(ValueError, match="not an http"):
        IncidentDeclaration(key="k", severity="P1", title="t", runbook="file:///etc/passwd")


async def test_cli_declare_runbook_reaches_slack_and_incident_status(local_env, sandbox, policy):
    """Over the real stack: the CLI declares, a worker with the real activities posts to the Slack sandbox."""
    async with incident_worker(local_env.client, sandbox.api_url, policy) as declare:
        env = {
            "TEMPORAL_ADDRESS": local_env.client.service_client.config.target_host,
            "TEMPORAL_TASK_QUEUE": declare.task_queue,
        }
        key = f"rb-{uuid.uuid4().hex[:8]}"
        handle = local_env.client.get_workflow_handle(f"incident-{key}")
        args = ["declare", "-s", "P2", "-t", "R1 unreachable, WAN outage Site A", "--service", "wan-site-a"]
        args += ["--key", key, "--runbook", "https://wiki.example.com/runbooks/r1-unreachable"]
        result = await asyncio.to_thread(invoke, args, **env)
        assert result.exit_code == 0, result.output
        state = await posted_state(handle)
        thread = await sandbox.thread(state.slack_channel, state.slack_thread_ts)
        assert (
            "*Runbook:* <https://wiki.example.com/runbooks/r1-unreachable|wiki.example.com/runbooks/r1-unreachable>"
            in thread[0]["text"]
        )
        status = await asyncio.to_thread(invoke, ["status", key, "--wait", "5"], **env)
        assert status.exit_code == 0, status.output
        assert re.search(r"Runbook\s+https://wiki\.example\.com/runbooks/r1-unreachable", status.output)
        await terminate_all([handle])


async def test_the_war_room_bookmarks_the_incidents_runbook_when_it_is_a_link(local_env, sandbox, policy):
    """A P1 on wan-site-a: the declaration's runbook URL is bookmarked; the policy's path (no
    base_url) cannot be, so a runbook link among the declaration's links is, as before runbooks."""
    url = "https://wiki.example.com/runbooks/r1-unreachable"
    async with incident_worker(local_env.client, sandbox.api_url, policy) as declare:
        by_runbook = await declare("P1", service="wan-site-a", runbook=url)
        by_link = await declare("P1", service="wan-site-a", links=["https://runbooks.example.com/r1"])
        for handle, expected in ((by_runbook, url), (by_link, "https://runbooks.example.com/r1")):

            async def opened(handle=handle):
                state = await handle.query(IncidentWorkflow.state)
                return state if state.war_room and state.war_room.summary_ts else None

            state = await eventually(opened, what="the war room")
            assert state.runbook in (url, R1_RUNBOOK)
            listed = await sandbox.web.bookmarks_list(channel_id=state.war_room.channel)
            assert {b["title"]: b["link"] for b in listed["bookmarks"]}["Runbook"] == expected
