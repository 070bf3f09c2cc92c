"""The ServiceNow sandbox (sandbox/servicenow.py) over real HTTP, and read by ServiceNow's own client, pysnc."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from sandbox.servicenow import create_app
from sandbox.slack import serve_in_background

AUTH = ("admin", "admin")
TABLE = "/api/now/table/incident"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
async def served(tmp_path_factory) -> AsyncIterator[tuple[Starlette, str]]:
    app = create_app(state_file=tmp_path_factory.mktemp("servicenow") / "state.json")
    async with serve_in_background(app) as url:
        yield app, url


@pytest.fixture
async def http(served) -> AsyncIterator[httpx.AsyncClient]:
    """An authenticated client on a freshly reset sandbox."""
    _, url = served
    async with httpx.AsyncClient(base_url=url, auth=AUTH, timeout=10) as client:
        (await client.post("/_sandbox/reset")).raise_for_status()
        yield client


async def insert(http: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    response = await http.post(TABLE, json=fields)
    assert response.status_code == 201, response.text
    return response.json()["result"]


async def test_insert_answers_201_with_sys_id_number_and_every_incident_field(
    http: httpx.AsyncClient,
) -> None:
    response = await http.post(TABLE, json={"short_description": "R1 down", "urgency": 1, "impact": "1"})
    assert response.status_code == 201
    record = response.json()["result"]
    assert re.fullmatch(r"[0-9a-f]{32}", record["sys_id"])
    assert record["number"] == "INC0010001"
    assert response.headers["location"].endswith(f"{TABLE}/{record['sys_id']}")
    assert record["state"] == "1" and record["active"] == "true"
    assert record["urgency"] == "1" and record["impact"] == "1" and record["priority"] == "1"
    assert record["sys_created_by"] == "admin" and re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", record["sys_created_on"]
    )
    for field in ("close_code", "close_notes", "work_notes", "comments", "correlation_id", "assigned_to"):
        assert record[field] == "", field  # present, so pysnc can set them later
    second = await insert(http, short_description="second")
    assert second["number"] == "INC0010002"


async def test_query_filters_orders_pages_and_counts(http: httpx.AsyncClient) -> None:
    await insert(http, short_description="core down", category="network", urgency="1", correlation_id="k-1")
    await insert(http, short_description="db slow", category="database", urgency="2", correlation_id="k-2")
    await insert(
        http, short_description="core flapping", category="network", urgency="3", correlation_id="k-3"
    )

    async def numbers(query: str, **params: Any) -> list[str]:
        response = await http.get(
            TABLE, params={"sysparm_query": query, "sysparm_fields": "number", **params}
        )
        assert response.status_code == 200, response.text
        return [r["number"] for r in response.json()["result"]]

    assert await numbers("category=network^urgency=1") == ["INC0010001"]
    assert await numbers("category=network^ORDERBYDESCnumber") == ["INC0010003", "INC0010001"]
    assert await numbers("urgency=1^ORurgency=2^ORDERBYnumber") == ["INC0010001", "INC0010002"]
    assert await numbers("short_descriptionLIKEcore^NQcorrelation_id=k-2^ORDERBYnumber") == [
        "INC0010001",
        "INC0010002",
        "INC0010003",
    ]
    assert await numbers("correlation_idINk-2,k-3^urgency!=3") == ["INC0010002"]
    assert await numbers("correlation_idNOT INk-1,k-2") == ["INC0010003"]
    assert await numbers("short_descriptionSTARTSWITHdb^assigned_toISEMPTY") == ["INC0010002"]
    assert await numbers("urgency>=2^ORDERBYDESCurgency") == ["INC0010003", "INC0010002"]
    assert await numbers("correlation_id=nope") == []

    page = await http.get(
        TABLE,
        params={
            "sysparm_query": "ORDERBYnumber",
            "sysparm_limit": 2,
            "sysparm_offset": 1,
            "sysparm_fields": "number",
        },
    )
    assert [r["number"] for r in page.json()["result"]] == ["INC0010002", "INC0010003"]
    assert page.headers["x-total-count"] == "3"
    assert list(page.json()["result"][0]) == ["number"]  # sysparm_fields
    bad = await http.get(TABLE, params={"sysparm_query": "Not A Condition"})
    assert bad.status_code == 400 and bad.json()["status"] == "failure"


async def test_display_values_false_true_and_all(http: httpx.AsyncClient) -> None:
    record = await insert(http, short_description="x", impact="2", urgency="1", category="network")
    url = f"{TABLE}/{record['sys_id']}"
    fields = "state,priority,category,number"
    plain = (await http.get(url, params={"sysparm_fields": fields})).json()["result"]
    assert plain == {"state": "1", "priority": "2", "category": "network", "number": record["number"]}
    shown = (await http.get(url, params={"sysparm_fields": fields, "sysparm_display_value": "true"})).json()
    assert shown["result"]["state"] == "New" and shown["result"]["priority"] == "2 - High"
    both = (await http.get(url, params={"sysparm_fields": fields, "sysparm_display_value": "all"})).json()
    assert both["result"]["state"] == {"display_value": "New", "value": "1"}
    assert both["result"]["category"] == {"display_value": "Network", "value": "network"}


async def test_work_notes_append_to_the_journal_and_read_back_newest_first(http: httpx.AsyncClient) -> None:
    record = await insert(http, short_description="x", work_notes="first note")
    url = f"{TABLE}/{record['sys_id']}"
    for text in ("second note", "third note"):
        response = await http.patch(url, json={"work_notes": text})
        assert response.status_code == 200
    await http.put(url, json={"work_notes": "   "})  # blank notes are not journaled

    plain = (await http.get(url, params={"sysparm_fields": "work_notes"})).json()["result"]
    assert plain == {"work_notes": ""}  # a journal field reads back empty as a value
    shown = (
        await http.get(url, params={"sysparm_fields": "work_notes", "sysparm_display_value": "true"})
    ).json()
    text = shown["result"]["work_notes"]
    entries = re.findall(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d - System Administrator \(Work notes\)\n(.*)$", text, re.M
    )
    assert entries == ["third note", "second note", "first note"]
    assert text.endswith("first note\n\n")

    journal = await http.get(
        "/api/now/table/sys_journal_field",
        params={"sysparm_query": f"element_id={record['sys_id']}^element=work_notes^ORDERBYsys_created_on"},
    )
    assert [j["value"] for j in journal.json()["result"]] == ["first note", "second note", "third note"]
    assert (await http.get(url)).json()["result"]["sys_mod_count"] == "3"


async def test_resolve_and_close_stamp_their_times_and_close_deactivates(http: httpx.AsyncClient) -> None:
    record = await insert(http, short_description="x")
    url = f"{TABLE}/{record['sys_id']}"
    resolved = (await http.patch(url, json={"state": "6", "close_code": "Solution provided"})).json()[
        "result"
    ]
    assert resolved["state"] == "6" and resolved["resolved_at"] and resolved["resolved_by"] == "admin"
    assert resolved["active"] == "true" and resolved["closed_at"] == ""
    closed = (await http.patch(url, json={"state": 7})).json()["result"]
    assert closed["state"] == "7" and closed["incident_state"] == "7" and closed["closed_at"]
    assert closed["active"] == "false" and closed["resolved_at"] == resolved["resolved_at"]


async def test_unknown_fields_are_ignored_and_long_text_is_cut(http: httpx.AsyncClient) -> None:
    record = await insert(http, short_description="s" * 300, no_such_field="x", number="INC9999999")
    assert len(record["short_description"]) == 160
    assert "no_such_field" not in record and record["number"] == "INC0010001"


async def test_auth_basic_and_bearer_with_servicenow_401(served, http: httpx.AsyncClient) -> None:
    _, url = served
    async with httpx.AsyncClient(base_url=url) as anonymous:
        response = await anonymous.get(TABLE)
        assert response.status_code == 401
        assert response.json() == {
            "error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"},
            "status": "failure",
        }
        assert "www-authenticate" in response.headers
        assert (await anonymous.get(TABLE, auth=("admin", "wrong"))).status_code == 401
        bearer = {"Authorization": "Bearer sandbox-oauth-token"}
        assert (await anonymous.get(TABLE, headers=bearer)).status_code == 200
        wrong = {"Authorization": "Bearer nope"}
        assert (await anonymous.get(TABLE, headers=wrong)).status_code == 401


async def test_errors_have_servicenow_shapes(http: httpx.AsyncClient) -> None:
    missing = await http.patch(f"{TABLE}/{'0' * 32}", json={"state": "2"})
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "No Record found"
    assert (await http.get(f"{TABLE}/{'0' * 32}")).status_code == 404
    unknown = await http.get("/api/now/table/no_such_table")
    assert unknown.status_code == 400 and unknown.json()["error"]["message"] == "Invalid table no_such_table"
    bad_json = await http.post(TABLE, content=b"{not json", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400 and bad_json.json()["status"] == "failure"
    record = await insert(http, short_description="to delete")
    assert (await http.delete(f"{TABLE}/{record['sys_id']}")).status_code == 204
    assert (await http.get(f"{TABLE}/{record['sys_id']}")).status_code == 404


async def test_faults_fail_delay_or_lose_the_answer_after_committing(http: httpx.AsyncClient) -> None:
    await http.post("/_sandbox/faults", json={"method": "POST", "status": 429, "retry_after": 7, "count": 2})
    for _ in range(2):
        limited = await http.post(TABLE, json={"short_description": "x"})
        assert limited.status_code == 429 and limited.headers["retry-after"] == "7"
        assert limited.json()["status"] == "failure"
    assert (await http.get(TABLE)).json()["result"] == []  # nothing was written
    assert (await http.get("/_sandbox/faults")).json()["faults"] == []  # count used up

    await http.post("/_sandbox/faults", json={"method": "*", "status": 500})
    assert (await http.get(TABLE)).status_code == 500
    assert (await http.get(TABLE)).status_code == 200

    # The worst case: the write is committed, the answer is an error (or never comes in time).
    await http.post(
        "/_sandbox/faults", json={"method": "POST", "status": 503, "perform": True, "retry_after": 3}
    )
    lost = await http.post(TABLE, json={"short_description": "committed anyway"})
    assert lost.status_code == 503 and lost.headers["retry-after"] == "3"
    assert [r["short_description"] for r in (await http.get(TABLE)).json()["result"]] == ["committed anyway"]

    await http.post("/_sandbox/faults", json={"method": "POST", "delay": 1.0})
    with pytest.raises(httpx.ReadTimeout):
        await http.post(TABLE, json={"short_description": "slow"}, timeout=0.2)
    assert (await http.get(TABLE, params={"sysparm_query": "short_description=slow"})).json()["result"]

    await http.post("/_sandbox/faults", json={"method": "PATCH", "status": 403, "count": -1})
    record = (await http.get(TABLE)).json()["result"][0]
    for _ in range(3):
        assert (await http.put(f"{TABLE}/{record['sys_id']}", json={"state": "2"})).status_code == 403
    await http.delete("/_sandbox/faults")
    assert (await http.patch(f"{TABLE}/{record['sys_id']}", json={"state": "2"})).status_code == 200
    assert (await http.post("/_sandbox/faults", json={"method": "POST"})).status_code == 400


async def test_down_answers_503_to_every_call_until_it_is_back(http: httpx.AsyncClient) -> None:
    await insert(http, short_description="before the outage")
    assert (await http.post("/_sandbox/down", json={"down": True})).json()["down"] is True
    for call in (http.get(TABLE), http.post(TABLE, json={"short_description": "x"})):
        response = await call
        assert response.status_code == 503 and response.json()["status"] == "failure"
    assert (await http.get("/_sandbox/state")).json()["down"] is True  # the control API still answers
    await http.post("/_sandbox/down", json={"down": False})
    assert len((await http.get(TABLE)).json()["result"]) == 1
    calls = (await http.get("/_sandbox/calls", params={"method": "POST"})).json()
    assert [c["status"] for c in calls] == [201, 503]


async def test_state_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "servicenow.json"
    async with serve_in_background(create_app(state_file=state)) as url:
        async with httpx.AsyncClient(base_url=url, auth=AUTH) as http:
            first = await insert(http, short_description="persisted", correlation_id="k-persist")
            await http.patch(f"{TABLE}/{first['sys_id']}", json={"work_notes": "noted"})
    assert state.exists() and not list(tmp_path.glob(".*.tmp"))
    async with serve_in_background(create_app(state_file=state)) as url:
        async with httpx.AsyncClient(base_url=url, auth=AUTH) as http:
            found = await http.get(
                TABLE, params={"sysparm_query": "correlation_id=k-persist", "sysparm_display_value": "true"}
            )
            [record] = found.json()["result"]
            assert record["number"] == "INC0010001" and "noted" in record["work_notes"]
            assert (await insert(http, short_description="next"))["number"] == "INC0010002"


async def test_the_page_lists_tickets_with_state_and_work_notes(served, http: httpx.AsyncClient) -> None:
    record = await insert(http, short_description="R1 <down>", work_notes="looking at BGP")
    await http.patch(
        f"{TABLE}/{record['sys_id']}", json={"state": "6", "close_notes": "root cause: fibre cut"}
    )
    page = await http.get("/")
    assert page.status_code == 200
    for text in ("INC0010001", "Resolved", "R1 &lt;down&gt;", "looking at BGP", "root cause: fibre cut"):
        assert text in page.text
    form = await http.get("/incident.do", params={"sys_id": record["sys_id"]}, follow_redirects=True)
    assert "INC0010001" in form.text


async def test_pysnc_reads_and_writes_tickets(served, http: httpx.AsyncClient) -> None:
    """ServiceNow's own client, pysnc, over httpx into the same app: its shapes are the sandbox's."""
    from pysnc.asyncio import AsyncServiceNowClient

    app, _ = served
    made = await insert(
        http, short_description="core down", correlation_id="k-pysnc", urgency="1", impact="1"
    )
    await http.patch(f"{TABLE}/{made['sys_id']}", json={"work_notes": "first look"})

    # pysnc only accepts https:// instances; the ASGI transport answers for any host.
    session = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), auth=AUTH)
    client = AsyncServiceNowClient("https://sandbox.service-now.test", session)
    try:
        gr = await client.GlideRecord("incident")
        gr.add_query("correlation_id", "k-pysnc")
        await gr.query()
        rows = [
            (r.get_value("number"), r.get_value("priority"), r.get_display_value("priority"))
            async for r in gr
        ]
        assert rows == [("INC0010001", "1", "1 - Critical")]

        one = await client.GlideRecord("incident")
        assert await one.get(made["sys_id"])
        assert "first look" in one.get_display_value("work_notes")

        new = await client.GlideRecord("incident")
        new.initialize()
        new.short_description = "opened with pysnc"
        new.correlation_id = "k-pysnc-2"
        sys_id = await new.insert()
        assert new.get_value("number") == "INC0010002" and new.get_display_value("state") == "New"
        new.work_notes = "written with pysnc"
        new.state = "6"
        new.close_code = "Solution provided"
        new.close_notes = "fixed"
        await new.update()
    finally:
        await client.close()

    record = (await http.get(f"{TABLE}/{sys_id}", params={"sysparm_display_value": "true"})).json()["result"]
    assert record["state"] == "Resolved" and record["close_notes"] == "fixed"
    assert "written with pysnc" in record["work_notes"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make a self-signed certificate")
async def test_pysnc_sync_client_over_https(tmp_path: Path) -> None:
    """The requests-based pysnc client against `python -m sandbox.servicenow` serving TLS."""
    import requests
    from pysnc import ServiceNowClient

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "sandbox.servicenow", "--port", str(port)]
        + ["--ssl-certfile", str(cert), "--ssl-keyfile", str(key)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"https://127.0.0.1:{port}"
    try:
        trusted = ssl.create_default_context(cafile=str(cert))
        async with httpx.AsyncClient(base_url=base, verify=trusted, auth=AUTH, trust_env=False) as http:
            deadline = time.monotonic() + 10
            while True:
                try:
                    (await http.get("/_sandbox/health")).raise_for_status()
                    break
                except httpx.TransportError:
                    assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
                    assert time.monotonic() < deadline, "the sandbox did not start"
                    await asyncio.sleep(0.05)
            await insert(http, short_description="over TLS", correlation_id="k-tls")

        session = requests.Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE would otherwise replace `verify`
        session.verify = str(cert)
        session.auth = AUTH

        def read_with_pysnc() -> list[tuple[str, str]]:
            with session:
                client = ServiceNowClient(base, session)
                gr = client.GlideRecord("incident")
                gr.add_query("correlation_id", "k-tls")
                gr.query()
                return [(r.get_value("number"), r.get_display_value("state")) for r in gr]

        assert await asyncio.to_thread(read_with_pysnc) == [("INC0010001", "New")]
    finally:
        server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
