"""One way to reach Temporal, used by the CLI, the worker and the receivers."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime

from activities.audit import ALERT_CLIENT, CLI_CLIENT, SLACK_CLIENT, client_identity
from activities.settings import Settings, get_settings
from workflows.models import SEARCH_ATTRIBUTES  # noqa: F401  (re-exported for starters)

# The parts that give incidents commands, each under its own client identity
# (`incident-cli:alice@host`, `slack-handler:4242@host`, `alert-receiver:4242@host`): Temporal
# writes it into the history with every signal and update, and `incident audit` reads from it
# where a command came from. The worker keeps the SDK's `pid@host`.
__all__ = ["ALERT_CLIENT", "CLI_CLIENT", "SLACK_CLIENT", "TemporalUnreachable", "connect"]


class TemporalUnreachable(RuntimeError):
    pass


async def connect(
    settings: Settings | None = None,
    address: str | None = None,
    runtime: Runtime | None = None,
    role: str | None = None,
) -> Client:
    """Connect with the pydantic converter (every client and worker must use it); `runtime`: the
    SDK's runtime (its telemetry), else the default one; `role`: CLI_CLIENT, SLACK_CLIENT or
    ALERT_CLIENT, the client's identity in the histories (else the SDK's `pid@host`)."""
    settings = settings or get_settings()
    target = address or settings.temporal_address
    try:
        return await Client.connect(
            target,
            namespace=settings.temporal_namespace,
            data_converter=pydantic_data_converter,
            runtime=runtime,
            identity=client_identity(role) if role else None,
        )
    except RuntimeError as exc:  # the core bridge raises RuntimeError on connection failure
        raise TemporalUnreachable(f"cannot reach Temporal at {target}: {exc}") from None
