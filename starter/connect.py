"""One way to reach Temporal, used by the CLI, the worker and the receivers."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime

from activities.settings import Settings, get_settings
from workflows.models import SEARCH_ATTRIBUTES  # noqa: F401  (re-exported for starters)


class TemporalUnreachable(RuntimeError):
    pass


async def connect(
    settings: Settings | None = None, address: str | None = None, runtime: Runtime | None = None
) -> Client:
    """Connect with the pydantic converter (every client and worker must use it); `runtime`: the
    SDK's runtime (its telemetry), else the default one."""
    settings = settings or get_settings()
    target = address or settings.temporal_address
    try:
        return await Client.connect(
            target,
            namespace=settings.temporal_namespace,
            data_converter=pydantic_data_converter,
            runtime=runtime,
        )
    except RuntimeError as exc:  # the core bridge raises RuntimeError on connection failure
        raise TemporalUnreachable(f"cannot reach Temporal at {target}: {exc}") from None
