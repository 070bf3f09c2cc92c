"""Network devices through pyATS and Genie: baseline, diagnostic plans, verification.

backend.py names what a device backend provides (DeviceBackend). `DeviceActivities`
(activities.py, which also says how the threads, the kept sessions, failures and
credentials work) is the pyATS backend the worker registers; the rest is what it is
built from:

- plans.py: config/plans/<plan>.yaml, validated (read-only commands only).
- checks.py: the checks a plan step names, output -> finding (pure).
- analysis.py: the findings -> the most likely cause (pure).
- health.py: a device's health for the baseline, and the comparison (pure).
- sessions.py: unicon sessions' commands, progress, connect errors, teardown.
- masking.py: the testbed's passwords and config secrets, masked.
- errors.py: a device that cannot be used; a file a person must fix.

The names other code imports are re-exported here.
"""

from __future__ import annotations

from .activities import DeviceActivities as DeviceActivities
from .analysis import analyse as analyse
from .backend import DeviceBackend as DeviceBackend
from .health import HEALTH_COMMANDS as HEALTH_COMMANDS
from .masking import _Secrets as _Secrets
