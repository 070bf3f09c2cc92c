"""The worker's own set-up, apart from what it runs."""

from __future__ import annotations

import importlib.util
import os

import worker


def test_the_worker_writes_the_workflow_modules_bytecode_the_sandbox_reimports_every_run():
    # The sandbox imports the workflow's module again for each run; without a
    # .pyc (PYTHONDONTWRITEBYTECODE is set on these machines) each import compiles.
    source = worker.WORKFLOW_CODE / "incident.py"
    cached = importlib.util.cache_from_source(str(source))
    if os.path.exists(cached):
        os.remove(cached)
    worker.precompile_workflow_code()
    assert os.path.exists(cached)
    assert os.stat(cached).st_mtime >= os.stat(source).st_mtime
