"""Network devices through pyATS and Genie: baseline, diagnostic plans, verification.

The workflow calls five activities by name (workflows/device_models.py) on a
`DeviceActivities`:

- `capture_baseline`: the health of the incident's devices and their upstream
  neighbours at declaration (reachability, interfaces, OSPF neighbours, BGP
  peers, route count), kept by the workflow for verification.
- `plan_investigation`: a diagnostic plan from config/plans/<plan>.yaml,
  resolved for the incident's devices into steps, grouped by the device they
  run on: groups run at the same time, the steps of a group one after another.
- `run_investigation_step`: one step: run the command, parse it with Genie,
  apply the check, return the finding.
- `analyse_investigation`: the findings -> the most likely cause (pure).
- `verify_against_baseline`: re-read the baseline's checks and compare.

Threads, knowingly. pyATS/unicon is blocking (a connect is ~2 s of waiting on
a pty, a `show logging` on a busy router can take a minute), so every device
operation runs in this class's own thread pool, and the activities are async:
while a thread sits in unicon, the activity keeps heartbeating from the event
loop, notices cancellation, and enforces its own deadline even when unicon
overruns its timeout. A sync activity in a thread-pool executor could not
heartbeat while its one thread is blocked inside unicon. The pool is ours, not
asyncio's default (min(32, cpus + 4) threads: 6 on a 2-core worker), so fifty
devices really are checked at once.

Sessions are kept. One unicon session per device, reused by the next step on
that device (a connect costs ~2 s, a command ~0.3 s), guarded by a lock so a
session is only ever used by one thread; idle sessions are closed after
`idle_timeout`. A testbed file that changed on disk is loaded again and its
sessions are dropped. Connecting runs no configuration commands: a read-only
tool must not change `logging console` or `exec-timeout` on a production box.

Idempotent by nature: plans may hold only show, ping and traceroute commands
(a plan with anything else is rejected), so a retried activity reads again
and changes nothing.

Failures. A device that refuses the connection, never answers, or rejects
the login is a finding, returned as a step that could not run (or a device
that is not reachable), never an exception: retrying an authentication
failure cannot help, and an unreachable device is itself the news. Refused
and closed connections are retried `connect_attempts` times inside the
activity, with a short pause. A testbed or plan that cannot be loaded is a
non-retryable ApplicationError (a person has to fix a file); anything
unexpected is raised retryable.

Credentials come only from the testbed (its `credentials:` blocks, which may
use `%ENV{...}`), never from the incident; every text that leaves here
(findings, evidence, raw output, errors) has the testbed's passwords and any
`password`/`secret`/`community`/`key` values in device output masked.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio import activity

from workflows.device_models import (
    Analysis,
    AnalysisRequest,
    Baseline,
    BaselineRequest,
    DeviceHealth,
    InvestigationPlan,
    InvestigationRequest,
    InvestigationStep,
    StepRequest,
    StepResult,
    StepStatus,
    Verification,
    VerificationRequest,
)

from .analysis import analyse
from .checks import CHECKS, Outcome, short_interface
from .errors import DeviceUnavailable, _non_retryable
from .health import HEALTH_COMMANDS, _health_from, _with_known_good, compare
from .masking import _Secrets, _testbed_secrets
from .plans import _fill, _fill_safe, _MissingParam, load_plan
from .sessions import (
    CONNECT_RETRY_PAUSE,
    INIT_EXEC_COMMANDS,
    _chain,
    _Command,
    _CommandResult,
    _consume,
    _destroy,
    _is_connected,
    _Progress,
    _reaper,
    _Session,
    _SessionLost,
    classify_connect_error,
)

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
RAW_OUTPUT_LIMIT = 200_000  # characters kept of one command's output
EVIDENCE_LINES = 12


def _heartbeat(*details: Any) -> None:
    if activity.in_activity():
        activity.heartbeat(*details)


def _heartbeat_every() -> float:
    if activity.in_activity():
        timeout = activity.info().heartbeat_timeout
        if timeout:
            return max(0.5, min(5.0, timeout.total_seconds() / 3))
    return 5.0


def _resolve(path: str | Path) -> Path:
    """A relative path from the working directory, else from the project (a fresh clone run from anywhere)."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or candidate.exists():
        return candidate.resolve()
    return (PROJECT_ROOT / candidate).resolve()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")[:60] or "output"


class DeviceActivities:
    """Activities that speak to the devices of one pyATS testbed."""

    def __init__(
        self,
        testbed_path: str | Path,
        plans_dir: str | Path,
        connect_timeout: float = 20.0,
        command_timeout: float = 60.0,
        *,
        connect_attempts: int = 2,
        idle_timeout: float = 300.0,
        max_threads: int = 64,
        attach_after_lines: int = 25,
    ) -> None:
        self.testbed_path = _resolve(testbed_path)
        self.plans_dir = _resolve(plans_dir)
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.connect_attempts = max(1, connect_attempts)
        self.idle_timeout = idle_timeout
        self.attach_after_lines = attach_after_lines
        self._executor = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="pyats")
        self._lock = threading.Lock()  # testbed, sessions
        self._testbed: Any = None
        self._stamp: tuple[int, int] | None = None
        self._secrets = _Secrets(set())
        self._sessions: dict[str, _Session] = {}
        self._parsers_warm = False

    # ---------------------------------------------------------- activities

    @activity.defn(name="capture_baseline")
    async def capture_baseline(self, request: BaselineRequest) -> Baseline:
        """Health of the incident's devices and their upstream neighbours, all at once.

        A device that does not answer is recorded as not reachable, with why;
        the testbed's `custom.known_good` stands in for what could not be read.
        Read-only, so a retry reads again.
        """
        await self._load_testbed()
        upstream = self._upstreams(request.devices, request.upstream)
        names = list(dict.fromkeys([*request.devices, *upstream.values()]))
        healths = await self._read_health(names, upstream)
        devices = {name: _with_known_good(health, self._known_good(name)) for name, health in healths.items()}
        return Baseline(
            incident_key=request.incident_key,
            captured_at=datetime.now(UTC),
            devices=devices,
            upstream=upstream,
        )

    @activity.defn(name="plan_investigation")
    async def plan_investigation(self, request: InvestigationRequest) -> InvestigationPlan:
        """The plan's steps for the incident's devices, grouped by the device they run on.

        Steps whose parameters are unknown for a device (no upstream, no link
        in the topology) are left out, and `notes` says so. Pure given the
        plan file and the testbed.
        """
        spec = load_plan(self.plans_dir, request.plan)
        await self._load_testbed()
        upstreams = self._upstreams(request.devices, request.upstream)
        notes: list[str] = []
        drafts: list[InvestigationStep] = []
        for target in dict.fromkeys(request.devices):
            if target not in self._testbed.devices:
                notes.append(f"{target} is not in the testbed ({self.testbed_path.name}): nothing to run")
                continue
            up = upstreams.get(target)
            if up is not None and up not in self._testbed.devices:
                notes.append(f"{target}'s upstream {up} is not in the testbed: steps on it skipped")
                up = None
            params = self._step_params(target, up)
            for spec_step in spec.steps:
                runs_on = up if spec_step.on == "upstream" else target
                if runs_on is None:
                    notes.append(
                        f"{_fill_safe(spec_step.title, params)} skipped: no upstream known for {target}"
                    )
                    continue
                try:
                    title = _fill(spec_step.title, params)
                    command = _fill(spec_step.command, params)
                    parser = _fill(spec_step.parser or spec_step.command, params)
                except _MissingParam as missing:
                    notes.append(
                        f"{_fill_safe(spec_step.title, params)} skipped for {target}: {{{missing.args[0]}}} unknown"
                    )
                    continue
                drafts.append(
                    InvestigationStep(
                        index=0,
                        total=0,
                        title=title,
                        device=runs_on,
                        target=target,
                        upstream=up,
                        command=command,
                        parser=parser,
                        check=spec_step.check,
                        params={**params, **spec_step.params},
                        group=runs_on,
                        timeout_seconds=spec_step.timeout,
                    )
                )
        total = len(drafts)
        steps = [s.model_copy(update={"index": i, "total": total}) for i, s in enumerate(drafts, start=1)]
        groups: dict[str, list[int]] = {}
        for s in steps:
            groups.setdefault(s.group, []).append(s.index)
        return InvestigationPlan(
            incident_key=request.incident_key,
            plan=spec.name,
            description=spec.description,
            steps=steps,
            groups=list(groups.values()),
            notes=notes,
        )

    @activity.defn(name="run_investigation_step")
    async def run_investigation_step(self, request: StepRequest) -> StepResult:
        """Run one step: the command, Genie's parser, the check; heartbeats while it runs.

        A device that refuses, never answers or rejects the login gives a
        result with status `error` and the reason, at once: not an exception.
        Read-only, so a retry runs the command again and changes nothing.
        """
        step = request.step
        started = datetime.now(UTC)
        clock = time.monotonic()
        await self._load_testbed()
        timeout = step.timeout_seconds or self.command_timeout
        command = _Command(step.command, step.parser, timeout)
        details = {"step": step.index, "device": step.device, "command": step.command}

        def result(outcome: Outcome, *, error_kind: str | None = None, raw: str = "") -> StepResult:
            raw = self._secrets(raw)
            truncated = len(raw) > RAW_OUTPUT_LIMIT
            lines = raw.count("\n") + 1 if raw else 0
            return StepResult.of(
                step,
                outcome.status,
                self._secrets(outcome.finding),
                conclusion=self._secrets(outcome.conclusion),
                evidence=[self._secrets(line) for line in outcome.evidence[:EVIDENCE_LINES]],
                facts=self._secrets.tree(outcome.facts),
                error_kind=error_kind,
                raw_output=raw[:RAW_OUTPUT_LIMIT],
                raw_truncated=truncated,
                attach_raw=lines > self.attach_after_lines,
                raw_filename=f"{step.device}-{_slug(step.command)}.txt" if raw else "",
                started_at=started,
                duration_seconds=round(time.monotonic() - clock, 3),
            )

        try:
            [answer] = await self._on_device(step.device, [command], details)
        except DeviceUnavailable as unavailable:
            return result(
                Outcome(
                    StepStatus.error, f"{step.device} {unavailable.message}", facts={"device": step.device}
                ),
                error_kind=unavailable.kind,
            )
        if answer.error_kind is not None:
            outcome = Outcome(
                StepStatus.error, answer.error or "failed", evidence=answer.output.splitlines()[-5:]
            )
            return result(outcome, error_kind=answer.error_kind, raw=answer.output)
        check = CHECKS[step.check]
        try:
            outcome = check(answer.parsed or {}, answer.output, step.params)
        except Exception as exc:  # a bug in a check must not stop the investigation
            log.exception("check %s failed on step %s", step.check, step.index)
            outcome = Outcome(StepStatus.error, f"check {step.check} failed: {type(exc).__name__}: {exc}")
            return result(outcome, error_kind="check", raw=answer.output)
        return result(outcome, raw=answer.output)

    @activity.defn(name="analyse_investigation")
    async def analyse_investigation(self, request: AnalysisRequest) -> Analysis:
        """The most likely cause from the steps' findings. Pure: no device is touched."""
        return analyse(request)

    @activity.defn(name="verify_against_baseline")
    async def verify_against_baseline(self, request: VerificationRequest) -> Verification:
        """Re-read the baseline's checks and compare; a failed check is reported, never raised."""
        await self._load_testbed()
        baseline = request.baseline
        now = await self._read_health(list(baseline.devices), baseline.upstream)
        checks = compare(baseline, now)
        failed = [c for c in checks if not c.ok]
        if not checks:
            summary = "nothing to verify: the baseline holds no device"
        elif failed:
            summary = f"{len(failed)} of {len(checks)} checks failed: " + ", ".join(c.name for c in failed)
        else:
            summary = f"all {len(checks)} checks passed"
        return Verification(
            incident_key=request.incident_key,
            checked_at=datetime.now(UTC),
            checks=checks,
            passed=not failed,
            summary=summary,
            devices=now,
        )

    # ----------------------------------------------------------- lifecycle

    async def warm_up(self) -> None:
        """Load the testbed and Genie's parsers before the first incident needs them (~2 s)."""
        await self._load_testbed()
        await asyncio.get_running_loop().run_in_executor(self._executor, self._warm_parsers)

    async def close(self) -> None:
        """Disconnect every session (worker shutdown)."""
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(self._executor, self._retire, s) for s in sessions), return_exceptions=True
        )
        await loop.run_in_executor(self._executor, _reaper.wait, 5.0)  # no zombies left behind
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------- testbed

    async def _load_testbed(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._testbed_now)

    def _testbed_now(self) -> Any:
        try:
            stat = self.testbed_path.stat()
        except OSError as exc:
            raise _non_retryable(
                "TestbedError", f"testbed {self.testbed_path} cannot be read: {exc}"
            ) from None
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if stamp == self._stamp and self._testbed is not None:
                return self._testbed
            from pyats.topology import loader

            try:
                testbed = loader.load(str(self.testbed_path))
            except Exception as exc:
                raise _non_retryable(
                    "TestbedError",
                    f"testbed {self.testbed_path} cannot be loaded: {type(exc).__name__}: {exc}",
                ) from None
            retired = list(self._sessions.values())
            self._sessions.clear()
            self._testbed, self._stamp = testbed, stamp
            self._secrets = _Secrets(_testbed_secrets(testbed))
        for session in retired:  # the devices may have changed: reconnect on next use
            self._executor.submit(self._retire, session)
        return testbed

    def _upstreams(self, devices: list[str], given: dict[str, str]) -> dict[str, str]:
        """device -> upstream: from the incident, else the testbed's `custom.upstream`."""
        found: dict[str, str] = {}
        for name in devices:
            upstream = given.get(name)
            if upstream is None and name in self._testbed.devices:
                upstream = (self._testbed.devices[name].custom or {}).get("upstream")
            if upstream:
                found[name] = str(upstream)
        return found

    def _known_good(self, name: str) -> dict[str, Any]:
        if name not in self._testbed.devices:
            return {}
        return dict((self._testbed.devices[name].custom or {}).get("known_good") or {})

    def _step_params(self, target: str, upstream: str | None) -> dict[str, Any]:
        """What a plan can refer to, from the testbed's topology and custom data."""
        device = self._testbed.devices[target]
        custom = device.custom or {}
        params: dict[str, Any] = {"device": target}
        router_id = custom.get("router_id")
        loopback = next(
            (i for i in device.interfaces.values() if i.name.lower().startswith("loopback0")), None
        )
        if router_id is None and loopback is not None and getattr(loopback, "ipv4", None):
            router_id = str(loopback.ipv4.ip)
        if router_id:
            params["router_id"] = str(router_id)
        if upstream is not None:
            params["upstream"] = upstream
            peer = self._testbed.devices[upstream]
            for link in device.find_links(peer):
                mine = next((i for i in link.interfaces if i.device is device), None)
                theirs = next((i for i in link.interfaces if i.device is peer), None)
                if mine is not None and theirs is not None:
                    if getattr(mine, "ipv4", None):
                        params["target_ip"] = str(mine.ipv4.ip)
                    params["upstream_interface"] = theirs.name
                    params["upstream_intf"] = short_interface(theirs.name)
                    break
        if "target_ip" not in params and custom.get("address"):
            params["target_ip"] = str(custom["address"])
        if "target_ip" not in params and router_id:
            params["target_ip"] = str(router_id)
        return params

    # ------------------------------------------------------------- health

    async def _read_health(self, names: list[str], upstream: dict[str, str]) -> dict[str, DeviceHealth]:
        """Each device's health commands, and a ping from its upstream, all at the same time."""
        commands = [_Command(c, p, self.command_timeout) for c, p in HEALTH_COMMANDS]

        async def own(name: str) -> DeviceHealth:
            try:
                results = await self._on_device(name, commands, {"device": name, "reading": "health"})
            except DeviceUnavailable as unavailable:
                return DeviceHealth(
                    device=name,
                    reachable=False,
                    error=unavailable.message,
                    error_kind=unavailable.kind,
                    checked_at=datetime.now(UTC),
                )
            health = _health_from(name, {r.command: r for r in results})
            return health.model_copy(
                update={
                    "notes": [self._secrets(n) for n in health.notes],
                    "outputs": {c: self._secrets(o) for c, o in health.outputs.items()},
                }
            )

        async def ping(name: str) -> tuple[str, float | None]:
            source = upstream.get(name)
            if source is None or name not in self._testbed.devices or source not in self._testbed.devices:
                return name, None
            target_ip = self._step_params(name, source).get("target_ip")
            if target_ip is None:
                return name, None
            command = _Command(f"ping {target_ip} repeat 5", f"ping {target_ip}", self.command_timeout)
            try:
                [answer] = await self._on_device(source, [command], {"device": source, "ping": name})
            except DeviceUnavailable:
                return name, None
            stats = (answer.parsed or {}).get("ping", {}).get("statistics", {})
            return name, (float(stats["success_rate_percent"]) if "success_rate_percent" in stats else None)

        healths, pings = await asyncio.gather(
            asyncio.gather(*(own(n) for n in names)), asyncio.gather(*(ping(n) for n in names))
        )
        by_name = {h.device: h for h in healths}
        for name, percent in pings:
            if percent is not None:
                by_name[name] = by_name[name].model_copy(
                    update={"ping_from": upstream[name], "ping_success_percent": percent}
                )
        return {name: by_name[name] for name in names}

    # ---------------------------------------------------------- the threads

    async def _on_device(
        self, name: str, commands: list[_Command], details: dict[str, Any]
    ) -> list[_CommandResult]:
        """Run commands on one device in a pool thread; heartbeat and keep the deadline meanwhile."""
        progress = _Progress()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self._in_session, name, commands, progress)
        future.add_done_callback(_consume)
        every = _heartbeat_every()
        last_beat = time.monotonic()
        try:
            while True:
                done, _ = await asyncio.wait({future}, timeout=0.2)
                if done:
                    return future.result()
                if progress.overdue():
                    progress.abandoned = True
                    if progress.phase == "connecting":
                        raise DeviceUnavailable("timeout", f"did not answer within {progress.limit or 0:g} s")
                    raise DeviceUnavailable(
                        "timeout", f"did not finish `{progress.command}` within {progress.limit or 0:g} s"
                    )
                if time.monotonic() - last_beat >= every:
                    _heartbeat({**details, "phase": progress.phase})
                    last_beat = time.monotonic()
        except BaseException:
            progress.abandoned = True  # the thread cleans its session up when it comes back
            raise

    def _in_session(self, name: str, commands: list[_Command], progress: _Progress) -> list[_CommandResult]:
        session = self._session(name)
        wait = self._connect_timeout(session.device) + self.command_timeout * 2
        if not session.lock.acquire(timeout=wait):
            raise DeviceUnavailable("busy", f"was busy with other checks for more than {wait:g} s")
        try:
            if progress.abandoned:
                return []
            reused = self._connect(session, progress)
            self._warm_parsers()
            results = []
            for i, command in enumerate(commands):
                try:
                    results.append(self._execute(session, command, progress))
                except _SessionLost:
                    if not (reused and i == 0):
                        raise DeviceUnavailable("closed", "closed the session while running checks") from None
                    # A kept session the device dropped meanwhile (a reload, an idle timer): once more, afresh.
                    session.broken = True
                    self._connect(session, progress)
                    results.append(self._execute(session, command, progress))
            return results
        finally:
            session.last_used = time.monotonic()
            if progress.abandoned:
                session.broken = True
            if session.broken:
                _destroy(session.device)
                session.broken = False
            session.lock.release()

    def _session(self, name: str) -> _Session:
        testbed = self._testbed_now()
        with self._lock:
            stale = [
                s
                for s in self._sessions.values()
                if s.name != name
                and time.monotonic() - s.last_used > self.idle_timeout
                and not s.lock.locked()
            ]
            for s in stale:
                del self._sessions[s.name]
            session = self._sessions.get(name)
            if session is None:
                if name not in testbed.devices:
                    raise DeviceUnavailable(
                        "unknown_device", f"is not in the testbed ({self.testbed_path.name})"
                    )
                session = self._sessions[name] = _Session(name=name, device=testbed.devices[name])
        for s in stale:
            self._executor.submit(self._retire, s)
        return session

    def _connect_timeout(self, device: Any) -> float:
        """The device's own connect timeout where its testbed sets one, else the worker's.

        The testbed's place for it is unicon's: `connections.<via>.arguments.connection_timeout`.
        A slow device (a satellite site) gets longer without slowing every other one down.
        """
        try:
            via = device.connections.get("defaults", {}).get("via") or "cli"
            value = (device.connections.get(via, {}).get("arguments") or {}).get("connection_timeout")
            return float(value) if value is not None and float(value) > 0 else self.connect_timeout
        except (AttributeError, TypeError, ValueError):
            return self.connect_timeout

    def _connect(self, session: _Session, progress: _Progress) -> bool:
        """Connect unless a kept session is still up; True when it was reused."""
        device = session.device
        if not session.broken and _is_connected(device):
            return True
        _destroy(device)
        session.broken = False
        timeout = self._connect_timeout(device)
        for attempt in range(1, self.connect_attempts + 1):
            progress.enter("connecting", timeout)
            try:
                device.connect(
                    log_stdout=False,
                    logfile=os.devnull,
                    learn_hostname=False,
                    connection_timeout=timeout,
                    init_exec_commands=INIT_EXEC_COMMANDS,
                    init_config_commands=[],
                )
                return False
            except Exception as exc:
                _destroy(device)
                kind, message = classify_connect_error(exc, timeout)
                if (
                    progress.abandoned
                    or kind not in ("refused", "closed")
                    or attempt == self.connect_attempts
                ):
                    raise DeviceUnavailable(kind, self._secrets(message)) from None
                time.sleep(CONNECT_RETRY_PAUSE * attempt)
        raise DeviceUnavailable("failed", "could not be connected to")  # pragma: no cover

    def _execute(self, session: _Session, command: _Command, progress: _Progress) -> _CommandResult:
        from unicon.core.errors import EOF, SubCommandFailure
        from unicon.core.errors import TimeoutError as UniconTimeout

        progress.enter("running", command.timeout, command.command)
        device = session.device
        try:
            output = device.execute(command.command, timeout=command.timeout)
        except SubCommandFailure as exc:
            text = " ".join(str(a) for e in _chain(exc) for a in e.args if isinstance(a, str))
            said = next((ln.strip() for ln in text.splitlines() if ln.strip().startswith("%")), "")
            return _CommandResult(
                command.command,
                output=said,
                error_kind="command",
                error=f"{session.name} rejected `{command.command}`" + (f": {said}" if said else ""),
            )
        except UniconTimeout:
            session.broken = True
            return _CommandResult(
                command.command,
                error_kind="timeout",
                error=f"{session.name} did not finish `{command.command}` within {command.timeout:g} s",
            )
        except EOF:
            raise _SessionLost() from None
        except Exception as exc:
            if any(type(e).__name__ in ("EOF", "ConnectionError", "OSError") for e in _chain(exc)):
                raise _SessionLost() from None
            raise
        output = str(output).replace("\r\n", "\n").replace("\r", "\n")
        progress.enter("parsing", command.timeout, command.command)
        from genie.metaparser.util.exceptions import SchemaEmptyParserError

        try:
            parsed = device.parse(command.parser, output=output)
        except SchemaEmptyParserError:
            parsed = {}
        except Exception as exc:
            return _CommandResult(
                command.command,
                output=output,
                error_kind="parse",
                error=f"Genie could not parse `{command.parser}` from {session.name}: {type(exc).__name__}",
            )
        return _CommandResult(command.command, output=output, parsed=dict(parsed))

    def _warm_parsers(self) -> None:
        if self._parsers_warm:
            return
        from genie.conf.base import Device
        from genie.libs.parser.utils.common import get_parser

        probe = Device("warm-up", os="iosxe")
        for command in [p for _, p in HEALTH_COMMANDS] + [
            "ping 10.0.0.1",
            "show logging",
            "show interfaces Gi1",
        ]:
            try:
                get_parser(command, probe)
            except Exception:  # only a warm-up
                pass
        self._parsers_warm = True

    def _retire(self, session: _Session) -> None:
        with session.lock:
            _destroy(session.device)
