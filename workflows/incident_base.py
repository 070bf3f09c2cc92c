"""What the mixins of IncidentWorkflow call on one another, declared once for the type checker.

IncidentWorkflow (incident.py) is put together from mixins: the commands, the children, the
Slack voice, paging, snooze, the war room, the severity triggers and the stakeholder updates.
Each uses a few methods another one provides; they are declared here, under TYPE_CHECKING,
so every mixin inherits the same declaration instead of writing its own. At run time the class
is empty.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .deadlines import DeadlineTable
    from .incident_input import OutboxItem
    from .models import IncidentState, PostedMessage
    from .policy import Policy, SeverityPolicy


class IncidentParts:
    _state: IncidentState
    _deadline_table: DeadlineTable

    if TYPE_CHECKING:  # provided by IncidentWorkflow and its mixins

        def _require_policy(self) -> Policy: ...

        def _severity_policy(self) -> SeverityPolicy: ...

        def _record(
            self, kind: str, actor: str, text: str, request_id: str | None = None, at: Any = None
        ) -> None: ...

        def _publish(self) -> None: ...

        def _schedule(self) -> None: ...

        def _refuse(self, kind: str, command: Any) -> None: ...

        def _snapshot(self) -> IncidentState: ...

        def _slack_options(self) -> dict[str, Any]: ...

        async def _post(
            self,
            template: str,
            *,
            extra: dict[str, Any] | None = None,
            mentions: list[str] | None = None,
            channel: str | None = None,
            in_thread: bool = True,
            after_investigation: bool = False,
        ) -> PostedMessage | None: ...

        async def _refresh_header(self) -> None: ...

        def _queue_once(self, kind: str, sending: OutboxItem | None) -> None: ...
