"""The parts of a unicon session: commands and their results, progress, connect errors, teardown.

`DeviceActivities` (activities.py) keeps one `_Session` per device and runs
it in its own threads; what it runs and gets back, how a thread tells the
waiting activity where it is (`_Progress`), how a failed connect is put into
words, and how a closed session's processes are collected (`_Reaper`) are here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

CONNECT_RETRY_PAUSE = 1.0
DEADLINE_GRACE = 1.0  # on top of unicon's own timeout before the activity gives up waiting
INIT_EXEC_COMMANDS = ["term length 0", "term width 0"]


@dataclass
class _Command:
    command: str
    parser: str
    timeout: float


@dataclass
class _CommandResult:
    command: str
    output: str = ""
    parsed: dict[str, Any] | None = None
    error_kind: str | None = None
    error: str | None = None


@dataclass
class _Session:
    name: str
    device: Any
    lock: threading.Lock = field(default_factory=threading.Lock)
    last_used: float = field(default_factory=time.monotonic)
    broken: bool = False


class _Progress:
    """Where a device operation is, shared by its thread and the waiting activity."""

    def __init__(self) -> None:
        self.phase = "waiting"
        self.command = ""
        self.since = time.monotonic()
        self.limit: float | None = None
        self.abandoned = False

    def enter(self, phase: str, limit: float | None, command: str = "") -> None:
        self.phase, self.command, self.limit, self.since = phase, command, limit, time.monotonic()

    def overdue(self) -> bool:
        return self.limit is not None and time.monotonic() - self.since > self.limit + DEADLINE_GRACE


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo and len(seen) < 20:
        current = todo.pop(0)
        if any(current is s for s in seen):
            continue
        seen.append(current)
        for nxt in (current.__cause__, current.__context__):
            if nxt is not None:
                todo.append(nxt)
        todo.extend(arg for arg in current.args if isinstance(arg, BaseException))
    return seen


def classify_connect_error(exc: BaseException, timeout: float) -> tuple[str, str]:
    """(kind, words for Slack) for a failed connect."""
    chain = _chain(exc)
    names = {type(e).__name__ for e in chain}
    text = " ".join(str(e) for e in chain)
    if names & {"CredentialsExhaustedError", "UniconAuthenticationError"} or re.search(
        r"Authentication failed|Login invalid|Bad passwords|Permission denied|Access denied", text, re.I
    ):
        return "auth", "refused the login: authentication failed (check the testbed's credentials)"
    if "ConnectionRefusedError" in names or re.search(r"connection refused", text, re.I):
        return "refused", "refused the connection"
    if "TimeoutError" in names or re.search(r"timeout|timed out", text, re.I):
        return "timeout", f"did not answer within {timeout:g} s"
    if "EOF" in names or re.search(r"closed|EOF", text):
        return "closed", "closed the connection"
    first = next(
        (str(e).strip().splitlines()[0] for e in reversed(chain) if str(e).strip()), type(exc).__name__
    )
    return "failed", f"could not be connected to: {first[:200]}"


class _SessionLost(Exception):
    pass


def _consume(future: asyncio.Future[Any] | Future[Any]) -> None:
    """An abandoned device thread's outcome is not awaited by anyone: read it so asyncio stays quiet."""
    if not future.cancelled():
        future.exception()


def _is_connected(device: Any) -> bool:
    try:
        return bool(device.is_connected())
    except Exception:
        return False


def _destroy(device: Any) -> None:
    manager = getattr(device, "connectionmgr", None)
    if manager is None or not manager.connections:
        return
    pids = []
    for connection in list(manager.connections.values()):
        pid = getattr(getattr(connection, "spawn", None), "pid", None)
        if isinstance(pid, int) and pid > 0:
            pids.append(pid)
    try:
        device.destroy_all()
    except Exception as exc:  # closing a dead session may fail; the process is gone either way
        log.debug("destroying %s: %s", getattr(device, "name", "?"), exc)
    _reaper.collect(pids)


class _Reaper:
    """Collects the processes of closed sessions (ssh, telnet, mocks) that unicon did not wait for.

    unicon waits only briefly for a closed session's process to exit; on a
    busy worker many exit later and would stay zombies for the worker's
    life. Only the pids of our own sessions are waited for.
    """

    def __init__(self) -> None:
        self._pids: dict[int, float] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def collect(self, pids: list[int]) -> None:
        if not pids:
            return
        with self._lock:
            for pid in pids:
                self._pids[pid] = time.monotonic() + 120
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="pyats-reaper", daemon=True)
                self._thread.start()

    def wait(self, timeout: float) -> bool:
        """True once every process handed over so far has been collected."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._pids:
                    return True
            time.sleep(0.1)
        return False

    def _run(self) -> None:
        while True:
            time.sleep(0.5)
            with self._lock:
                for pid, give_up_at in list(self._pids.items()):
                    try:
                        done = os.waitpid(pid, os.WNOHANG)[0] == pid
                    except ChildProcessError:  # already collected (by unicon)
                        done = True
                    if done or time.monotonic() > give_up_at:
                        del self._pids[pid]
                if not self._pids:
                    self._thread = None
                    return


_reaper = _Reaper()
