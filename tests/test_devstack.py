"""`incident dev` on a bad day: a part that dies comes back by itself, on the same port with the same
state, the Temporal dev server included; Ctrl-C still stops everything; no secret on a command line;
no warning when TEMPORAL_ADDRESS names the very server it starts; and the mock lab's scenario can be
switched while it runs (`incident devices recovered`), so the all-✅ verification can be seen.

One `incident dev` is shared by the stack tests of this module (in file order; the last one presses
Ctrl-C); the supervisor's rules are also tested in-process on stand-in children, without a stack.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from rich.console import Console
from typer.testing import CliRunner

import starter.devstack as devstack
from activities.settings import Settings
from sandbox.devices import scenario_of, write_testbed
from starter.cli import app
from starter.devstack import (
    Child,
    DevConfig,
    DevStack,
    DevStackError,
    lab_testbed_path,
    restart_delay,
    same_address,
)

ROOT = Path(__file__).resolve().parent.parent
INCIDENT = Path(sys.executable).parent / "incident"
COMPONENTS = {
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
}
SANDBOX_USER = "admin:admin"
runner = CliRunner()

needs_stack = pytest.mark.skipif(
    not (ROOT / "worker.py").exists() or not (ROOT / "sandbox" / "slack" / "__init__.py").exists(),
    reason="worker.py or sandbox/slack/ not written yet",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def group_of(pid: int) -> list[int]:
    """The live processes in process group `pid` (a child of the stack leads its own)."""
    return devstack._group_members(pid)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def eventually(check, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(interval)


# ------------------------------------------------------------------ one shared stack


class Stack:
    """`incident dev -q` as a subprocess with free ports and its own data dir and signing secret."""

    def __init__(self, data_dir: Path) -> None:
        names = ("temporal", "ui", "slack", "servicenow", "pagerduty", "opsgenie", "alert", "app")
        names += ("smtp", "smtp_http", "status_page", "jira")
        self.ports = {name: free_port() for name in names}
        self.data_dir = data_dir
        self.secret = f"devstack-secret-{uuid.uuid4().hex[:12]}"
        self.pagerduty_secret = f"devstack-pd-secret-{uuid.uuid4().hex[:12]}"
        self.opsgenie_token = f"devstack-og-token-{uuid.uuid4().hex[:12]}"
        self.address = f"127.0.0.1:{self.ports['temporal']}"
        drop = (
            "TEMPORAL_ADDRESS",
            "SLACK_API_URL",
            "SERVICENOW_URL",
            "PAGERDUTY_EVENTS_URL",
            "OPSGENIE_API_URL",
            "SMTP_HOST",
            "PYATS_TESTBED",
            "SLACK_SIGNING_SECRET",
        )
        env = {k: v for k, v in os.environ.items() if k not in drop}
        # TEMPORAL_ADDRESS names the dev server's own address: the expected case, no warning.
        env.update(COLUMNS="200", TEMPORAL_ADDRESS=self.address, SLACK_SIGNING_SECRET=self.secret)
        env.update(WORKER_METRICS_ADDRESS=f"127.0.0.1:{free_port()}")  # not the default: stacks side by side
        env.update(PAGERDUTY_WEBHOOK_SECRET=self.pagerduty_secret, OPSGENIE_WEBHOOK_TOKEN=self.opsgenie_token)
        # The default policy's escalation chains (a P2 pages its primary at PagerDuty too), whatever
        # INCIDENT_POLICY the environment running the tests has.
        env.pop("INCIDENT_POLICY", None)
        p = self.ports
        args = ["dev", "-q", "--data-dir", str(data_dir), "--temporal-port", str(p["temporal"])]
        args += ["--ui-port", str(p["ui"]), "--slack-port", str(p["slack"])]
        args += ["--servicenow-port", str(p["servicenow"]), "--alert-port", str(p["alert"])]
        args += ["--slack-app-port", str(p["app"]), "--status-page-port", str(p["status_page"])]
        args += ["--pagerduty-port", str(p["pagerduty"]), "--opsgenie-port", str(p["opsgenie"])]
        args += ["--smtp-port", str(p["smtp"]), "--smtp-http-port", str(p["smtp_http"])]
        args += ["--jira-port", str(p["jira"])]
        self.proc = subprocess.Popen(
            [str(INCIDENT), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=ROOT,
        )
        self.output: list[str] = []
        self.seen: set[int] = set()  # every pid a component ever had
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    @property
    def text(self) -> str:
        return "".join(self.output)

    def wait_for(self, pattern: str, timeout: float, start: int = 0) -> re.Match[str]:
        """The first match of `pattern` (a regex, per line) in the output from character `start` on."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.text[start:], re.M)
            if match:
                return match
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not seen within {timeout:.0f} s; output:\n{self.text}")
            time.sleep(0.05)

    def pids(self) -> dict[str, int]:
        """Each component's current pid, from the `started X (pid N)` and `X restarted (pid M)` lines."""
        found: dict[str, int] = {}
        for match in re.finditer(r"^(?:started (\S+)|(\S+) restarted) \(pid (\d+)\)", self.text, re.M):
            found[match.group(1) or match.group(2)] = int(match.group(3))
        self.seen.update(found.values())
        return found

    def env(self) -> dict[str, str]:
        return {"TEMPORAL_ADDRESS": self.address, "TEMPORAL_UI_PORT": str(self.ports["ui"])}

    def cli(self, *args: str):
        return runner.invoke(app, list(args), env={"INCIDENT_USER": "tester", **self.env()})

    def status(self, key: str) -> str:
        result = self.cli("status", key)
        assert result.exit_code == 0, result.output
        return result.output

    def kill(self, name: str) -> tuple[int, int]:
        """kill -9 a component; (its pid, the offset in the output to look for its restart from)."""
        pid = self.pids()[name]
        offset = len(self.text)
        os.kill(pid, signal.SIGKILL)
        return pid, offset

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in self.seen:  # the stack was killed itself: leave nothing behind
            for member in group_of(pid):
                os.kill(member, signal.SIGKILL)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if not INCIDENT.exists():
        pytest.skip("the `incident` console script is not installed")
    stack = Stack(tmp_path_factory.mktemp("devstack") / "data")
    try:
        stack.wait_for(r"^Ready\.", timeout=90)
        assert set(stack.pids()) == COMPONENTS, stack.text
        yield stack
    finally:
        stack.stop()


def declare(stack: Stack, key: str, *extra: str) -> None:
    result = stack.cli("declare", "-s", "P2", "-t", f"devstack {key}", "--key", key, *extra)
    assert result.exit_code == 0, result.output + stack.text


@needs_stack
def test_no_warning_when_temporal_address_names_the_dev_servers_own(stack: Stack) -> None:
    before_ready = stack.text[: stack.text.index("Ready.")]
    assert f"TEMPORAL_ADDRESS={stack.address} does not answer" not in before_ready, before_ready
    assert f"no Temporal server at {stack.address} yet: starting the dev server there" in before_ready
    flat = " ".join(before_ready.replace("│", " ").split())  # a long data dir wraps the table's rows
    assert "mock lab, scenario outage" in flat and "switch: incident devices" in flat, before_ready


@needs_stack
def test_no_secret_on_any_command_line_and_the_parts_still_agree(stack: Stack) -> None:
    pids = stack.pids()
    for name, pid in pids.items():
        for member in group_of(pid) or [pid]:
            line = cmdline(member)
            secrets = (stack.secret, stack.pagerduty_secret, stack.opsgenie_token, SANDBOX_USER)
            for secret in (*secrets, "--signing-secret", "--user", "--webhook-secret", "--webhook-token"):
                assert secret not in line, f"{name} (pid {member}) shows {secret!r}: {line}"
    assert f"SLACK_SIGNING_SECRET={stack.secret}".encode() in Path(
        f"/proc/{pids['slack-sandbox']}/environ"
    ).read_bytes().split(b"\0")
    # The paging sandboxes sign their webhooks with what the receiver checks.
    pd_secret = f"PAGERDUTY_WEBHOOK_SECRET={stack.pagerduty_secret}".encode()
    og_token = f"OPSGENIE_WEBHOOK_TOKEN={stack.opsgenie_token}".encode()
    for name, wanted in (
        ("pagerduty-sandbox", [pd_secret]),
        ("opsgenie-sandbox", [og_token]),
        ("alerts", [pd_secret, og_token]),
    ):
        environ = Path(f"/proc/{pids[name]}/environ").read_bytes().split(b"\0")
        assert all(w in environ for w in wanted), f"{name} lacks a paging webhook secret"

    # The sandbox signs with the secret from its environment and the Slack handler accepts it;
    # the worker opens the ticket with the user the ServiceNow sandbox got from its environment.
    declare(stack, "secrets")

    def thread() -> re.Match[str] | None:
        text = stack.status("secrets")
        return re.search(r"Ticket\s+INC\d+", text) and re.search(r"Slack\s+#(\S+), thread (\S+)", text)

    found = eventually(thread, 30, "the ticket and the Slack thread of the incident")

    # Acknowledged in PagerDuty: the sandbox's signed webhook is accepted by the receiver (not 401).
    with httpx.Client(
        base_url=f"http://127.0.0.1:{stack.ports['pagerduty']}", trust_env=False, timeout=30
    ) as pagerduty:
        eventually(
            lambda: pagerduty.get("/_sandbox/alerts", params={"dedup_key": "secrets"}).json(),
            30,
            "the incident's page at PagerDuty: " + stack.status("secrets"),
        )
        webhook = pagerduty.post(
            "/_sandbox/acknowledge", json={"dedup_key": "secrets", "user": "Alice"}
        ).json()
    assert webhook["webhook"]["status"] == 202, webhook
    assert "acknowledged via pagerduty" in stack.status("secrets")

    with httpx.Client(
        base_url=f"http://127.0.0.1:{stack.ports['slack']}", trust_env=False, timeout=30
    ) as http:
        acted = http.post(
            "/_sandbox/act/reaction",
            json={"user": "U0ALICE", "channel": found.group(1), "ts": found.group(2), "name": "raised_hand"},
        ).json()
    assert acted.get("status") == 200, acted
    eventually(lambda: "U0ALICE" in stack.status("secrets"), 30, "the reaction's claim")


@needs_stack
def test_the_smtp_sandbox_takes_mail_shows_it_and_the_worker_is_pointed_at_it(stack: Stack) -> None:
    before_ready = " ".join(stack.text[: stack.text.index("Ready.")].replace("│", " ").split())
    assert "SMTP sandbox" in before_ready and "smtp/" in before_ready, before_ready
    environ = Path(f"/proc/{stack.pids()['worker']}/environ").read_bytes().split(b"\0")
    for wanted in ("SMTP_HOST=127.0.0.1", f"SMTP_PORT={stack.ports['smtp']}", "SMTP_STARTTLS=false"):
        assert wanted.encode() in environ, wanted
    with smtplib.SMTP("127.0.0.1", stack.ports["smtp"], timeout=10) as relay:
        relay.sendmail("a@example.com", ["b@example.com"], "Subject: devstack <mail>\r\n\r\nhello\r\n")
    page = httpx.get(f"http://127.0.0.1:{stack.ports['smtp_http']}/?refresh=0", trust_env=False, timeout=10)
    assert page.status_code == 200 and "devstack &lt;mail&gt;" in page.text


@needs_stack
def test_a_killed_worker_comes_back_and_the_incident_goes_on(stack: Stack) -> None:
    before = stack.pids()
    old, offset = stack.kill("worker")
    stack.wait_for(
        rf"^worker \(pid {old}\) was killed by SIGKILL; restarting it in 0\.5 s \(restart 1\)$", 10, offset
    )
    started = time.monotonic()
    new = int(stack.wait_for(r"^worker restarted \(pid (\d+)\), answering", 60, offset).group(1))
    assert new != old and alive(new) and not alive(old)
    assert time.monotonic() - started < 60
    after = stack.pids()
    assert after["worker"] == new
    assert {k: v for k, v in after.items() if k != "worker"} == {
        k: v for k, v in before.items() if k != "worker"
    }
    assert all(alive(pid) for pid in after.values()), stack.text
    # It works: a signal that needs the worker's verdict is accepted. (Up to ~10 s late: a task Temporal
    # had given the dead worker waits on its sticky queue for the schedule-to-start timeout first.)
    result = stack.cli(
        "update", "secrets", "-u", "U0ALICE", "--status", "identified", "-m", "after the kill", "--wait", "40"
    )
    assert result.exit_code == 0 and "accepted" in result.output, result.output + stack.text
    log = (stack.data_dir / "logs" / "worker.log").read_text()
    assert f"incident dev: pid {old} was killed by SIGKILL; restarting" in log


@needs_stack
def test_killed_servers_come_back_on_their_ports_with_their_state(stack: Stack) -> None:
    servers = ("slack-sandbox", "servicenow-sandbox", "alerts", "slack-app")
    before = stack.pids()
    offset = len(stack.text)
    for name in servers:
        stack.kill(name)
    for name in servers:
        stack.wait_for(rf"^{name} \(pid {before[name]}\) was killed by SIGKILL; restarting it", 10, offset)
        stack.wait_for(rf"^{name} restarted \(pid \d+\)", 60, offset)
    after = stack.pids()
    for name in servers:
        assert after[name] != before[name] and alive(after[name]) and not alive(before[name])
    assert after["temporal"] == before["temporal"] and after["worker"] == before["worker"]
    p = stack.ports
    with httpx.Client(trust_env=False, timeout=10) as http:
        assert http.get(f"http://127.0.0.1:{p['alert']}/healthz").status_code == 200
        assert http.get(f"http://127.0.0.1:{p['app']}/healthz").status_code == 200
        # State files survive: the ticket and the Slack thread of the incident declared before.
        number = re.search(r"Ticket\s+(INC\d+)", stack.status("secrets"))
        assert number, stack.status("secrets")
        tickets = http.get(
            f"http://127.0.0.1:{p['servicenow']}/api/now/table/incident",
            params={"sysparm_query": f"number={number.group(1)}"},
            auth=tuple(SANDBOX_USER.split(":")),  # type: ignore[arg-type]
        )
        assert tickets.status_code == 200 and len(tickets.json()["result"]) == 1, tickets.text
        state = http.get(f"http://127.0.0.1:{p['slack']}/_sandbox/state").text
        assert "devstack secrets" in state
    # The restarted sandbox still signs, the restarted handler still verifies.
    found = re.search(r"Slack\s+#(\S+), thread (\S+)", stack.status("secrets"))
    assert found, stack.status("secrets")
    with httpx.Client(base_url=f"http://127.0.0.1:{p['slack']}", trust_env=False, timeout=30) as http:
        acted = http.post(
            "/_sandbox/act/reaction",
            json={"user": "U0BOB", "channel": found.group(1), "ts": found.group(2), "name": "raised_hand"},
        ).json()
    assert acted.get("status") == 200, acted


@needs_stack
def test_a_killed_temporal_server_comes_back_with_its_incidents(stack: Stack) -> None:
    before = stack.pids()
    old, offset = stack.kill("temporal")
    stack.wait_for(rf"^temporal \(pid {old}\) was killed by SIGKILL; restarting it in", 10, offset)
    new = int(stack.wait_for(r"^temporal restarted \(pid (\d+)\)", 60, offset).group(1))
    assert new != old and alive(new)
    assert "devstack secrets" in stack.status("secrets")  # the history is in the db file
    # The worker rides it out (or is restarted): a signal is handled again.
    result = eventually(
        lambda: (
            (r := stack.cli("update", "secrets", "-u", "U0ALICE", "--status", "fixing", "-m", "x"))
            and "accepted" in r.output
            and r
        ),
        60,
        "an update accepted after Temporal's restart",
        interval=0.5,
    )
    assert result.exit_code == 0
    after = stack.pids()
    assert after["slack-sandbox"] == before["slack-sandbox"] and after["alerts"] == before["alerts"]
    assert all(alive(pid) for pid in after.values()), stack.text


@needs_stack
def test_switching_the_lab_to_recovered_turns_the_verification_green(stack: Stack) -> None:
    data = ["--data-dir", str(stack.data_dir)]
    shown = stack.cli("devices", *data)
    assert shown.exit_code == 0 and "scenario outage" in shown.output, shown.output
    declare(stack, "lab", "--device", "R1=R2")
    # The baseline is taken during the outage (R1 down: the testbed's known-good values stand in).
    eventually(lambda: "baseline captured" in stack.status("lab"), 90, "the baseline", interval=0.5)
    switched = stack.cli("devices", "recovered", *data)
    assert switched.exit_code == 0, switched.output
    assert "outage → recovered" in switched.output and "R1: down (connection refused) → up" in switched.output
    assert scenario_of(lab_testbed_path(stack.data_dir)) == "recovered"
    resolved = stack.cli(
        "resolve", "lab", "-u", "U0ALICE", "-r", "R1 reloaded itself", "--root-cause", "crash"
    )
    assert resolved.exit_code == 0, resolved.output
    try:
        eventually(
            lambda: re.search(r"verification ✅ all 10 check", stack.status("lab")),
            90,
            "the post-resolution verification, all passed, in the timeline",
            interval=1,
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{stack.status('lab')}") from None


@needs_stack
def test_ctrl_c_stops_everything_including_restarted_children(stack: Stack) -> None:
    current = stack.pids()
    assert stack.seen > set(current.values())  # some were restarted
    stack.proc.send_signal(signal.SIGINT)
    assert stack.proc.wait(timeout=30) == 0, stack.text
    stopped = stack.wait_for(r"^stopped (.*)$", 5).group(1)
    for name, pid in current.items():
        assert f"{name} (pid {pid})" in stopped
    left = {pid: cmdline(pid) for pid in stack.seen if alive(pid)}
    left.update({m: cmdline(m) for pid in stack.seen for m in group_of(pid)})
    assert not left, f"still running after Ctrl-C: {left}\n{stack.text}"


# ------------------------------------------------------------------ the supervisor's rules, in-process


def test_restart_backoff_doubles_and_is_capped() -> None:
    assert [restart_delay(n) for n in range(7)] == [0.5, 1, 2, 4, 8, 15, 15]
    assert restart_delay(1000) == devstack.RESTART_BACKOFF_MAX


def test_same_address_treats_every_loopback_spelling_alike() -> None:
    assert same_address("127.0.0.1:7233", "127.0.0.1", 7233)
    assert same_address("localhost:7233", "127.0.0.1", 7233)
    assert not same_address("127.0.0.1:7233", "127.0.0.1", 17233)
    assert not same_address("temporal.example.com:7233", "127.0.0.1", 7233)


def test_a_dotenv_temporal_address_counts_as_set(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("TEMPORAL_ADDRESS", raising=False)
    monkeypatch.delenv("PYATS_TESTBED", raising=False)
    dotenv = tmp_path / ".env"
    dotenv.write_text("TEMPORAL_ADDRESS=127.0.0.1:7233\n")
    config = DevConfig.from_env(Settings(_env_file=dotenv))  # type: ignore[call-arg]
    assert config.temporal_address == "127.0.0.1:7233" and config.testbed is None
    assert DevConfig.from_env(Settings(_env_file=None)).temporal_address is None  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("named", "warned"),
    [("own", False), ("other", True)],
)
async def test_a_silent_temporal_address_warns_only_when_it_is_not_the_dev_servers(
    tmp_path: Path, named: str, warned: bool
) -> None:
    port, other = free_port(), free_port()
    with socket.socket() as busy:  # the UI port is taken: start_temporal stops right after its message
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        address = f"127.0.0.1:{port if named == 'own' else other}"
        config = DevConfig(temporal_port=port, ui_port=busy.getsockname()[1], temporal_address=address)
        config.data_dir = tmp_path
        buffer = io.StringIO()
        stack = DevStack(config, Console(file=buffer, width=200))
        with pytest.raises(DevStackError, match="already in use"):
            await stack.start_temporal()
    said = buffer.getvalue()
    assert ("does not answer" in said) is warned, said
    assert ("starting the dev server there" in said) is not warned, said


def _stand_in(stack: DevStack, name: str, script: str) -> Child:
    return stack._spawn(name, [sys.executable, "-c", script])


async def test_a_temporal_that_keeps_dying_at_start_stops_the_stack(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(devstack, "RESTART_BACKOFF_FIRST", 0.01)
    stack = DevStack(DevConfig(data_dir=tmp_path), Console(file=io.StringIO(), width=200))
    child = _stand_in(
        stack, "temporal", "print('bind: address already in use', flush=True); raise SystemExit(1)"
    )

    async def never_answers(child: Child) -> bool:
        while child.proc.poll() is None:
            await asyncio.sleep(0.01)
        stack._check_alive(child, "starting")
        return False

    child.ready = never_answers
    with pytest.raises(DevStackError) as caught:
        await asyncio.wait_for(stack._supervise(child), 30)
    message = str(caught.value)
    assert f"died {devstack.TEMPORAL_MAX_FAILED_STARTS} times in a row before answering" in message
    assert "address already in use" in message
    assert child.restarts == devstack.TEMPORAL_MAX_FAILED_STARTS
    await stack.stop_all()


async def test_other_parts_are_restarted_however_often_they_die(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(devstack, "RESTART_BACKOFF_FIRST", 0.01)
    monkeypatch.setattr(devstack, "RESTART_BACKOFF_MAX", 0.02)
    buffer = io.StringIO()
    stack = DevStack(DevConfig(data_dir=tmp_path), Console(file=buffer, width=200))
    child = _stand_in(stack, "alerts", "raise SystemExit(3)")
    task = asyncio.create_task(stack._supervised(child))
    stack.supervisors = [task]
    deadline = time.monotonic() + 20
    while child.restarts < devstack.TEMPORAL_MAX_FAILED_STARTS + 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not task.done() and child.restarts >= devstack.TEMPORAL_MAX_FAILED_STARTS + 2
    await stack.stop_all()
    assert task.done() and child.proc.poll() is not None
    assert "alerts (pid " in buffer.getvalue() and "exited with code 3; restarting it in" in buffer.getvalue()


async def test_a_stop_in_progress_restarts_nothing_and_stops_the_restarted(tmp_path: Path) -> None:
    stack = DevStack(DevConfig(data_dir=tmp_path), Console(file=io.StringIO(), width=200))
    forever = "import time\nwhile True: time.sleep(1)"
    answering = _stand_in(stack, "worker", forever)
    waiting = _stand_in(stack, "alerts", forever)

    async def slow_to_answer(child: Child) -> bool:
        await asyncio.sleep(60)
        return True

    answering.ready = waiting.ready = slow_to_answer
    tasks = [asyncio.create_task(stack._supervised(c)) for c in (answering, waiting)]
    stack.supervisors = tasks
    first_worker, first_alerts = answering.pid, waiting.pid
    os.kill(first_alerts, signal.SIGKILL)
    while waiting.pid == first_alerts:  # respawned, now waiting for it to answer
        await asyncio.sleep(0.05)
    os.kill(first_worker, signal.SIGKILL)
    await asyncio.sleep(0.3)  # the worker's supervisor is in its backoff when the stop begins
    assert answering.pid == first_worker
    await stack.stop_all()
    assert all(t.done() for t in tasks)
    assert answering.pid == first_worker, "restarted during a stop"
    assert waiting.pid != first_alerts and waiting.proc.poll() is not None, (
        "a restarted child was left running"
    )
    await asyncio.sleep(devstack.RESTART_BACKOFF_FIRST + 0.2)
    assert answering.pid == first_worker and [c.name for c in stack.children] == ["worker", "alerts"]


# ------------------------------------------------------------------ the devices command, no stack


def test_devices_command_validates_and_refuses_a_testbed_of_ones_own(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("PYATS_TESTBED", raising=False)
    data = ["--data-dir", str(tmp_path)]
    result = runner.invoke(app, ["devices", *data])
    assert result.exit_code == 1 and "no mock lab testbed at" in result.output
    write_testbed("outage", lab_testbed_path(tmp_path))
    result = runner.invoke(app, ["devices", "sideways", *data])
    assert result.exit_code == 2 and "unknown scenario 'sideways'" in result.output
    result = runner.invoke(app, ["devices", "recover", *data])  # a unique start of the name will do
    assert result.exit_code == 0 and "outage → recovered" in result.output, result.output
    assert scenario_of(lab_testbed_path(tmp_path)) == "recovered"
    result = runner.invoke(app, ["devices", *data])
    assert "scenario recovered" in result.output and "* recovered" in result.output
    result = runner.invoke(app, ["devices", "healthy", *data], env={"PYATS_TESTBED": "/etc/lab.yaml"})
    assert result.exit_code == 1 and "PYATS_TESTBED=/etc/lab.yaml is set" in result.output
    assert scenario_of(lab_testbed_path(tmp_path)) == "recovered"


def test_the_stack_writes_the_lab_testbed_unless_one_is_given(tmp_path: Path) -> None:
    stack = DevStack(DevConfig(data_dir=tmp_path, scenario="healthy"), Console(file=io.StringIO()))
    stack.prepare_testbed()
    assert stack.testbed == str(lab_testbed_path(tmp_path)) and stack.lab_scenario == "healthy"
    assert stack._child_env()["PYATS_TESTBED"] == stack.testbed
    assert scenario_of(stack.testbed) == "healthy"
    own = DevStack(DevConfig(data_dir=tmp_path, testbed="/etc/lab.yaml"), Console(file=io.StringIO()))
    own.prepare_testbed()
    assert own._child_env()["PYATS_TESTBED"] == "/etc/lab.yaml" and own.lab_scenario is None
    assert not lab_testbed_path(tmp_path).exists()  # nothing left for `incident devices` to switch in vain


def test_servicenow_sandbox_takes_its_user_from_the_environment(monkeypatch) -> None:
    import sandbox.servicenow as servicenow

    seen: dict[str, object] = {}
    monkeypatch.setattr(servicenow, "create_app", lambda **kw: seen.update(kw))
    monkeypatch.setattr(servicenow.uvicorn, "run", lambda *a, **kw: None)
    monkeypatch.setenv("SERVICENOW_SANDBOX_USER", "svc:s3cret:with-colon")
    servicenow.main(["--port", "1"])
    assert seen["users"] == {"svc": "s3cret:with-colon"}
    servicenow.main(["--port", "1", "--user", "cli:pw"])  # the flag still works, and wins
    assert seen["users"] == {"cli": "pw"}
