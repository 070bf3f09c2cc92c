"""The `incident` CLI: one clear line for every error, real signals against a real dev server,
and `incident dev` starting and stopping the whole stack with nothing left running."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker
from typer.testing import CliRunner

from starter.cli import app, build_list_query
from starter.declare import IncidentAlreadyExists, declare_incident, new_incident_key
from starter.devstack import temporal_server_command
from workflows import limits
from workflows.incident import IncidentWorkflow
from workflows.models import PHASE_ATTR, SERVICE_ATTR, SEVERITY_ATTR, IncidentDeclaration, Severity

from .conftest import ROOT, TEMPORAL_CLI
from .fakes import RecordedSlack

BIN = Path(sys.executable).parent
INCIDENT = BIN / "incident"
runner = CliRunner()


def invoke(args: list[str], **env: str):
    return runner.invoke(app, args, env={"INCIDENT_USER": "tester", **env})


def lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


def assert_one_error_line(result, code: int, *needles: str) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    got = lines(result.output)
    assert len(got) == 1, result.output
    for needle in needles:
        assert needle in got[0], got[0]
    return got[0]


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ------------------------------------------------------------- no server needed

UNREACHABLE = {"TEMPORAL_ADDRESS": "127.0.0.1:1"}


def test_bad_severity_is_one_line_usage_error():
    result = invoke(["declare", "--severity", "P9", "--title", "R1 down"], **UNREACHABLE)
    assert_one_error_line(result, 2, "unknown severity 'P9'", "P1, P2, P3 or P4")


def test_a_device_without_a_name_is_a_usage_error():
    result = invoke(["declare", "-s", "P1", "-t", "R1 down", "--device", "=R2"], **UNREACHABLE)
    assert_one_error_line(result, 2, "--device '=R2': expected DEVICE or DEVICE=UPSTREAM")


def test_severity_aliases_are_accepted_before_contacting_temporal():
    # SEV1 parses, so the next failure is the unreachable server, not the severity.
    result = invoke(["declare", "--severity", "sev1", "--title", "R1 down"], **UNREACHABLE)
    assert_one_error_line(result, 1, "cannot reach Temporal at 127.0.0.1:1")


def test_unknown_update_status_is_clear_and_checked_client_side():
    result = invoke(["update", "X", "--status", "bogus", "--message", "hi"], **UNREACHABLE)
    line = assert_one_error_line(result, 2, "unknown status 'bogus'")
    assert "investigating, identified, fixing, waiting, monitoring" in line


def test_pydantic_validation_is_reported_in_one_line():
    result = invoke(["declare", "--severity", "P2", "--title", "x", "--key", "bad key!"], **UNREACHABLE)
    assert_one_error_line(result, 2, "invalid input: key:")
    result = invoke(["update", "X", "--status", "fixing", "--message", ""], **UNREACHABLE)
    assert_one_error_line(result, 2, "invalid input: message:")


def test_server_not_running_is_one_clear_line():
    for args in (["claim", "X", "--user", "alice"], ["status", "X"], ["list"]):
        result = invoke(args, **UNREACHABLE)
        assert_one_error_line(result, 1, "cannot reach Temporal at 127.0.0.1:1", "incident dev")


def test_generated_key_and_list_query():
    assert re.fullmatch(r"\d{6}-\d{4}-[0-9a-f]{4}", new_incident_key())
    assert build_list_query() == "WorkflowType='IncidentWorkflow'"
    assert build_list_query(True, Severity.P1) == (
        "WorkflowType='IncidentWorkflow' AND ExecutionStatus='Running' AND IncidentSeverity='P1'"
    )


def test_dev_server_command_registers_attributes_and_wal():
    command = temporal_server_command(TEMPORAL_CLI, "127.0.0.1", 7233, 8233, Path("/d/temporal.db"))
    joined = " ".join(command)
    for name in (
        "IncidentSeverity",
        "IncidentPhase",
        "IncidentCommander",
        "IncidentService",
        "IncidentTicket",
    ):
        assert f"--search-attribute {name}=Keyword" in joined
    assert "--sqlite-pragma journal_mode=wal --sqlite-pragma synchronous=normal" in joined
    assert "--db-filename /d/temporal.db" in joined


def _console_script() -> list[str]:
    if INCIDENT.exists():
        return [str(INCIDENT)]
    return [sys.executable, "-c", "from starter.cli import main; main()"]


def test_main_exit_codes_through_os_exit():
    """The console script ends with os._exit: the exit code must still be the command's."""
    env = {**os.environ, **UNREACHABLE}
    cases = [
        (["declare", "--severity", "P9", "--title", "x"], 2, "unknown severity"),
        (["claim"], 2, "Missing argument 'ID'"),
        (["claim", "X", "--bogus"], 2, "No such option: --bogus"),
        (["claim", "X", "--user", "a"], 1, "cannot reach Temporal"),
    ]
    for args, code, needle in cases:
        proc = subprocess.run(
            [*_console_script(), *args], env=env, capture_output=True, text=True, timeout=30, cwd=ROOT
        )
        assert proc.returncode == code, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert len(lines(proc.stderr)) == 1 and needle in proc.stderr, proc.stderr
    proc = subprocess.run([*_console_script(), "--help"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "declare" in proc.stdout


# ------------------------------------------------------------- against a real dev server


@pytest.fixture
def server(local_env) -> dict[str, str]:
    """Environment for the CLI: the session's dev server and a task queue of this test's own."""
    return {
        "TEMPORAL_ADDRESS": local_env.client.service_client.config.target_host,
        "TEMPORAL_TASK_QUEUE": unique("cli-tq"),
        "TEMPORAL_UI_PORT": "18233",
    }


def test_unknown_incident_is_one_line(server):
    for args in (
        ["status", "nope-404"],
        ["claim", "nope-404", "--user", "a"],
        ["resolve", "nope-404", "-r", "x"],
    ):
        result = invoke(args, **server)
        assert_one_error_line(result, 1, "no incident nope-404")


async def test_declare_sets_attributes_summary_and_refuses_a_duplicate(local_env, server):
    key = unique("decl")
    args = ["declare", "--severity", "SEV1", "--title", "R1 unreachable, WAN outage Site A"]
    args += ["--service", "wan-a", "--symptom", "no ping", "--impact", "Site A down", "--key", key]
    result = await asyncio.to_thread(invoke, args, **server)
    assert result.exit_code == 0, result.output
    assert f"incident-{key}" in result.output
    assert f"http://localhost:18233/namespaces/default/workflows/incident-{key}" in result.output

    desc = await local_env.client.get_workflow_handle(f"incident-{key}").describe()
    assert desc.task_queue == server["TEMPORAL_TASK_QUEUE"]
    assert desc.typed_search_attributes.get(SEVERITY_ATTR) == "P1"
    assert desc.typed_search_attributes.get(PHASE_ATTR) == "declared"
    assert desc.typed_search_attributes.get(SERVICE_ATTR) == "wan-a"
    assert await desc.static_summary() == "P1 · R1 unreachable, WAN outage Site A"
    assert "Site A down" in (await desc.static_details() or "")

    again = await asyncio.to_thread(invoke, args, **server)
    assert_one_error_line(again, 1, f"incident {key} already exists")

    # The library function raises Temporal's own error type too.
    with pytest.raises(IncidentAlreadyExists) as caught:
        declaration = IncidentDeclaration(key=key, severity="P1", title="again")
        await declare_incident(local_env.client, declaration, server["TEMPORAL_TASK_QUEUE"])
    from temporalio.exceptions import WorkflowAlreadyStartedError

    assert isinstance(caught.value, WorkflowAlreadyStartedError)


async def test_signal_without_worker_is_delivered_not_lost(local_env, server):
    key = unique("nowkr")
    result = await asyncio.to_thread(
        invoke, ["declare", "-s", "P3", "-t", "printer on fire", "--key", key], **server
    )
    assert result.exit_code == 0, result.output
    started = time.monotonic()
    result = await asyncio.to_thread(invoke, ["claim", key, "--user", "bob", "--wait", "2"], **server)
    assert result.exit_code == 0, result.output
    assert "no worker has processed it yet" in result.output
    assert time.monotonic() - started < 5
    status = await asyncio.to_thread(invoke, ["status", key, "--wait", "1"], **server)
    assert status.exit_code == 0 and "P3" in status.output and "needs a running worker" in status.output


async def test_closed_incident_refuses_signals(local_env, server):
    key = unique("closed")
    result = await asyncio.to_thread(invoke, ["declare", "-s", "P2", "-t", "flap", "--key", key], **server)
    assert result.exit_code == 0, result.output
    await local_env.client.get_workflow_handle(f"incident-{key}").terminate("test")
    result = await asyncio.to_thread(invoke, ["update", key, "--status", "fixing", "-m", "x"], **server)
    assert_one_error_line(result, 1, f"incident {key} is closed")


async def test_signals_report_the_workflows_outcome(local_env, server, policy):
    """With a worker: accepted and rejected outcomes, status, list, and the result after completion."""
    address = server["TEMPORAL_ADDRESS"]
    client = await Client.connect(address, data_converter=pydantic_data_converter)
    slack = RecordedSlack(policy)
    key = unique("flow")

    async def cli(*args: str):
        return await asyncio.to_thread(invoke, list(args), **server)

    async with Worker(
        client,
        task_queue=server["TEMPORAL_TASK_QUEUE"],
        workflows=[IncidentWorkflow],
        activities=slack.activities,
    ):
        result = await cli("declare", "-s", "P1", "-t", "Core switch down", "--key", key, "--service", "core")
        assert result.exit_code == 0, result.output

        result = await cli("claim", key, "--user", "alice")
        assert result.exit_code == 0 and "accepted: claimed" in result.output, result.output

        result = await cli("claim", f"incident-{key}", "--user", "alice")
        assert_one_error_line(result, 1, "rejected:", "already the Incident Commander")

        result = await cli(
            "update", key, "--status", "Fixing", "-m", "replacing PSU", "--eta", "15:00", "-u", "alice"
        )
        assert result.exit_code == 0 and "accepted: update" in result.output, result.output

        result = await cli("severity", key, "sev2", "--reason", "partial", "-u", "alice")
        assert result.exit_code == 0 and "accepted: severity" in result.output, result.output

        result = await cli("role", key, "comms", "@bob", "-u", "alice")
        assert result.exit_code == 0 and "accepted: role" in result.output, result.output
        assert "bob is the communications lead" in result.output, result.output
        result = await cli("role", key, "comms", "bob", "-u", "alice")
        assert_one_error_line(result, 1, "rejected:", "bob is already the communications lead")
        result = await cli("role", key, "janitor", "bob")
        assert_one_error_line(result, 2, "ROLE: unknown role 'janitor'", "comms, tech, scribe, sme")

        result = await cli("status", key)
        assert result.exit_code == 0, result.output
        for needle in (
            "Core switch down",
            "monitoring",
            "alice",
            "claimed",
            "replacing PSU",
            "P2",
            "Communications lead",
        ):
            assert needle in result.output, (needle, result.output)
        # The refused claim was answered by the update's validator: nothing of it in the timeline.
        assert "rejected" not in result.output, result.output

        # Visibility is eventually consistent: wait (with a deadline) for this incident's row to show
        # its commander and phase; other rows (other incidents of the session) do not count.
        listed, row = "", ""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            listed = (await cli("list", "--open", "--severity", "P2")).output
            row = next((line for line in listed.splitlines() if key in line), "")
            if "alice" in row and "monitoring" in row:
                break
            await asyncio.sleep(0.2)
        assert "alice" in row.split() and "monitoring" in row.split(), listed
        assert key not in (await cli("list", "--severity", "P4")).output

        # The IncidentCommander search attribute itself, as `temporal workflow list --query` reads it.
        commander_query = f"IncidentCommander='alice' AND WorkflowId='incident-{key}'"
        by_commander: list[str] = []
        deadline = time.monotonic() + 20
        while not by_commander and time.monotonic() < deadline:
            by_commander = [w.id async for w in client.list_workflows(commander_query)]
            await asyncio.sleep(0 if by_commander else 0.2)
        assert by_commander == [f"incident-{key}"], commander_query
        described = await client.get_workflow_handle(f"incident-{key}").describe()
        attributes = {pair.key.name: pair.value for pair in described.typed_search_attributes}
        assert attributes["IncidentCommander"] == "alice", attributes

        result = await cli("resolve", key, "-r", "PSU replaced", "--root-cause", "fan failure", "-u", "alice")
        assert result.exit_code == 0 and "accepted: resolved" in result.output, result.output

        # A claim on the resolved incident (still running: its review is open) is refused at once
        # with the reason, and leaves nothing in the workflow's history.
        handle = client.get_workflow_handle(f"incident-{key}")
        started = time.monotonic()
        result = await cli("claim", key, "-u", "refused-bob")
        took = time.monotonic() - started
        assert_one_error_line(result, 1, "rejected: claim:", "already review; it cannot be claimed")
        assert took < 1.0, took
        history = (await handle.fetch_history()).to_json()
        assert "refused-bob" not in history and "UPDATE_ACCEPTED" in history  # the others' updates are there
        result = await cli("review-done", key, "--notes", "actions filed", "-u", "alice")
        assert result.exit_code == 0 and "accepted: review_done" in result.output, result.output
        await client.get_workflow_handle(f"incident-{key}").result()

    # Worker gone: the closed incident's status comes from the workflow's result.
    result = await cli("status", key, "--wait", "0.5")
    assert result.exit_code == 0, result.output
    for needle in ("completed", "PSU replaced", "fan failure", "MTTR", "review_done"):
        assert needle in result.output, (needle, result.output)
    result = await cli("claim", key, "-u", "bob")
    assert_one_error_line(result, 1, f"incident {key} is closed")


# ------------------------------------------------------------- incident dev


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rfind(")") + 2] != "Z"


class DevProcess:
    """`incident dev` as a subprocess; collects its output as it comes."""

    def __init__(self, data_dir: Path, ports: dict[str, int]) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("TEMPORAL_ADDRESS", "SLACK_API_URL")}
        env["COLUMNS"] = "200"
        env.setdefault("WORKER_METRICS_ADDRESS", f"127.0.0.1:{ports.get('metrics') or free_port()}")
        args = ["dev", "--temporal-port", str(ports["temporal"]), "--ui-port", str(ports["ui"])]
        args += ["--slack-port", str(ports["slack"]), "--data-dir", str(data_dir)]
        flags = (
            "servicenow",
            "jira",
            "pagerduty",
            "opsgenie",
            "smtp",
            "smtp-http",
            "alert",
            "slack-app",
            "status-page",
        )
        for flag in flags:
            if flag in ports:
                args += [f"--{flag}-port", str(ports[flag])]
        self.proc = subprocess.Popen(
            [*_console_script(), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=ROOT,
        )
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    @property
    def text(self) -> str:
        return "".join(self.output)

    def wait_for(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not seen; output:\n{self.text}")
            time.sleep(0.05)

    def child_pids(self) -> dict[str, int]:
        return {name: int(pid) for name, pid in re.findall(r"started (\S+) \(pid (\d+)\)", self.text)}

    def interrupt(self, timeout: float = 15) -> int:
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=2)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


needs_stack = pytest.mark.skipif(
    not (ROOT / "worker.py").exists() or not (ROOT / "sandbox" / "slack" / "__init__.py").exists(),
    reason="worker.py or sandbox/slack/ not written yet",
)


@needs_stack
def test_dev_starts_everything_and_ctrl_c_leaves_nothing_running(tmp_path):
    names = ("temporal", "ui", "slack", "servicenow", "pagerduty", "opsgenie", "alert", "slack-app")
    names += ("smtp", "smtp-http", "status-page", "jira")
    ports = {name: free_port() for name in names}
    data_dir = tmp_path / "data"
    env = {"TEMPORAL_ADDRESS": f"127.0.0.1:{ports['temporal']}", "TEMPORAL_UI_PORT": str(ports["ui"])}
    key = unique("dev")

    for run in (1, 2):  # the second run reuses the same db file: restart must work, history must survive
        dev = DevProcess(data_dir, ports)
        try:
            dev.wait_for("Ready.", timeout=45)
            pids = dev.child_pids()
            assert set(pids) == {
                "temporal",
                "slack-sandbox",
                "servicenow-sandbox",
                "jira-sandbox",
                "pagerduty-sandbox",
                "opsgenie-sandbox",
                "smtp-sandbox",
                "worker",
                "alerts",
                "slack-app",
                "status-page",
            }, dev.text
            for needle in (
                f"127.0.0.1:{ports['temporal']}",
                f"http://localhost:{ports['ui']}",
                "incident declare",
            ):
                assert needle in dev.text
            with httpx.Client(trust_env=False, timeout=5) as http:
                assert http.get(f"http://127.0.0.1:{ports['ui']}/").status_code == 200
                assert http.get(f"http://127.0.0.1:{ports['slack']}/").status_code == 200
                assert http.get(f"http://127.0.0.1:{ports['alert']}/healthz").status_code == 200
                assert http.get(f"http://127.0.0.1:{ports['slack-app']}/healthz").status_code == 200
                assert http.get(f"http://127.0.0.1:{ports['status-page']}/healthz").status_code == 200
            if run == 1:
                result = invoke(["declare", "-s", "P1", "-t", "dev stack smoke", "--key", key], **env)
                assert result.exit_code == 0, result.output
                result = invoke(["claim", key, "--user", "alice"], **env)
                assert "accepted: claimed" in result.output, result.output + dev.text
                # The worker serves its metrics where `incident dev` told it to, and says where.
                environ = Path(f"/proc/{pids['worker']}/environ").read_bytes().split(b"\0")
                address = next(
                    v.split(b"=", 1)[1].decode() for v in environ if v.startswith(b"WORKER_METRICS_ADDRESS=")
                )
                assert f"localhost:{address.rpartition(':')[2]}/metrics" in dev.text, dev.text
                assert f"localhost:{ports['alert']}/metrics" in dev.text, dev.text
                deadline, scraped = time.monotonic() + 15, ""
                with httpx.Client(trust_env=False, timeout=5) as http:
                    while "incident_time_to_acknowledge_seconds_count" not in scraped:
                        assert time.monotonic() < deadline, scraped[-2000:]
                        scraped = http.get(f"http://{address}/metrics").text
                        time.sleep(0.3)
                    assert http.get(f"http://127.0.0.1:{ports['alert']}/metrics").status_code == 200
            else:
                result = invoke(["status", key], **env)
                assert (
                    result.exit_code == 0 and "alice" in result.output and "dev stack smoke" in result.output
                )
            started = time.monotonic()
            assert dev.interrupt(timeout=15) == 0, dev.text
            assert time.monotonic() - started < 15
        finally:
            dev.kill()
        left = {name: pid for name, pid in pids.items() if _alive(pid)}
        assert not left, f"still running after Ctrl-C: {left}\n{dev.text}"
    assert (data_dir / "temporal.db").exists()
    assert (data_dir / "logs" / "worker.log").exists()


def test_dev_refuses_a_busy_port_in_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k != "TEMPORAL_ADDRESS"}
        proc = subprocess.run(
            [*_console_script(), "dev", "--temporal-port", str(port), "--ui-port", str(free_port())]
            + ["--data-dir", str(tmp_path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in proc.stdout
    assert "started" not in proc.stdout and "Traceback" not in proc.stdout + proc.stderr


# ------------------------------------------------------- the CLI at the edge

UNREACHABLE = {"TEMPORAL_ADDRESS": "127.0.0.1:1"}


def test_fields_over_their_limits_are_usage_errors_before_temporal_is_asked():
    # Temporal is not running: the limits are checked first, and the answer names field and limit.
    result = invoke(["declare", "-s", "P2", "-t", "t", "--service", "s" * 300], **UNREACHABLE)
    assert_one_error_line(result, 2, "service: 300 characters; at most 200")
    result = invoke(["declare", "-s", "P2", "-t", "t", "--symptom", "x" * 3001], **UNREACHABLE)
    assert_one_error_line(result, 2, "symptoms[0]: 3,001 characters; at most 3,000")
    result = invoke(["update", "k", "--status", "fixing", "-m", "m" * 3001], **UNREACHABLE)
    assert_one_error_line(result, 2, "message: 3,001 characters; at most 3,000")
    result = invoke(["resolve", "k", "-r", "r" * 5000], **UNREACHABLE)
    assert_one_error_line(result, 2, "resolution: 5,000 characters; at most 3,000")


async def test_a_closed_incidents_key_is_refused_and_a_ticket_workflow_is_not_an_incident(local_env, server):
    key = f"closed-{uuid.uuid4().hex[:8]}"
    queue = server["TEMPORAL_TASK_QUEUE"]
    handle = await declare_incident(
        local_env.client, IncidentDeclaration(key=key, severity="P4", title="first"), queue
    )
    await handle.terminate("closed for the test")
    result = await asyncio.to_thread(invoke, ["declare", "-s", "P4", "-t", "again", "--key", key], **server)
    assert_one_error_line(
        result, 1, f"incident {key} already existed and is closed (terminated at", "another --key"
    )
    result = await asyncio.to_thread(invoke, ["claim", f"incident-{key}-ticket", "-u", "alice"], **server)
    assert_one_error_line(result, 1, "no incident")
    assert limits.MAX_TEXT == 3000  # the numbers above are the documented ones


async def test_an_update_no_worker_takes_in_time_goes_as_a_signal(local_env, server):
    """A worker seen polling lately but gone (or too busy): the update waits `wait` s, then the
    same command goes as a signal, kept until a worker runs, and the caller hears so."""
    from starter.declare import CommandPending, send_command
    from workflows.models import ClaimSignal

    key = unique("slow")
    declaration = IncidentDeclaration(key=key, severity="P3", title="printer on fire")
    await declare_incident(local_env.client, declaration, server["TEMPORAL_TASK_QUEUE"])
    started = time.monotonic()
    with pytest.raises(CommandPending) as pending:
        # No task_queue: the worker check is skipped, as when a worker polled a moment ago.
        await send_command(
            local_env.client, key, "claim", ClaimSignal(user="bob", request_id="r-slow"), wait=1.5
        )
    assert 1.4 < time.monotonic() - started < 5
    assert "no worker answered within 1.5 s" in str(pending.value)
    handle = local_env.client.get_workflow_handle(f"incident-{key}")
    signals = [
        e.workflow_execution_signaled_event_attributes
        for e in (await handle.fetch_history()).events
        if e.HasField("workflow_execution_signaled_event_attributes")
    ]
    assert [s.signal_name for s in signals] == ["claim"]
    assert b"r-slow" in signals[0].input.payloads[0].data
    await handle.terminate("test done")


def test_snooze_refuses_a_duration_it_cannot_read_before_asking_temporal() -> None:
    for duration, needle in (("soon", "is not a duration"), ("3d", "at most 1d")):
        result = invoke(["snooze", "k-1", duration], TEMPORAL_ADDRESS="127.0.0.1:1")
        assert_one_error_line(result, 2, "DURATION", needle)
