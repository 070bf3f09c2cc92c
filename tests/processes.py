"""Real processes for durability tests: a worker (`python -m worker`) and a dev server on a db file."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import yaml

from activities.settings import Settings
from starter.connect import TemporalUnreachable, connect

from .conftest import ROOT, TEMPORAL_CLI


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_fast_policy(directory: Path) -> Path:
    """The default policy with Slack calls timing out after 2 s, so a killed worker's call is retried soon."""
    policy = yaml.safe_load((ROOT / "config" / "policy.yaml").read_text())
    policy["chat"].update(call_timeout="2s", max_retry_interval="1s")
    path = directory / "policy.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


class WorkerProcess:
    """`python -m worker` as an operator runs it, configured by environment variables."""

    def __init__(self, address: str, task_queue: str, slack_api_url: str, policy: Path, log: Path) -> None:
        self.env = {
            **os.environ,
            "TEMPORAL_ADDRESS": address,
            "TEMPORAL_TASK_QUEUE": task_queue,
            "SLACK_API_URL": slack_api_url,
            "SLACK_BOT_TOKEN": "xoxb-test-token",
            "INCIDENT_POLICY": str(policy),
        }
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "worker"], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


class DevServer:
    """`temporal server start-dev` on a SQLite file, stoppable and restartable on the same file."""

    def __init__(self, db: Path, port: int, log: Path) -> None:
        self.db, self.port, self.log = db, port, log
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        args = [
            str(TEMPORAL_CLI),
            "server",
            "start-dev",
            "--headless",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--db-filename",
            str(self.db),
            "--log-level",
            "error",
        ]
        for name in (
            "IncidentSeverity",
            "IncidentPhase",
            "IncidentCommander",
            "IncidentService",
            "IncidentTicket",
        ):
            args += ["--search-attribute", f"{name}=Keyword"]
        with self.log.open("a") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        for _ in range(150):
            if self.process.poll() is not None:
                raise RuntimeError(f"dev server exited: {self.log.read_text()[-2000:]}")
            try:
                await connect(Settings(temporal_address=self.address))
                return
            except TemporalUnreachable:
                await asyncio.sleep(0.2)
        raise RuntimeError("dev server did not start within 30 s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
