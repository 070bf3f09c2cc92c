"""MaintenanceWorkflow: a service's maintenance window, during which its incidents page nobody.

One workflow per service (`maintenance-<service>`), started by `incident maintenance start`.
Alerts for the service during the window still open incidents: an incident whose severity
pages (a `paging:` chain) asks at its declaration whether its service is in maintenance
(`maintenance_window` activity, which also tells the window of it), posts in its thread that
paging is held, and holds its paging deadlines until the window ends. The window tells each
such incident when it ends, early (`incident maintenance end`) or on time, or moves
(`start` again extends it): what is still open then pages as usual, at once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel, Field


def maintenance_workflow_id(service: str) -> str:
    return f"maintenance-{service.strip().lower()}"


class MaintenanceWindow(BaseModel):
    service: str = Field(min_length=1, max_length=200)
    until: datetime
    reason: str = ""
    by: str = ""
    held: list[str] = Field(default_factory=list)  # incident workflow ids told to hold their paging


class MaintenanceNotice(BaseModel):
    """What the window tells an incident it holds: its new end, or None when it is over."""

    service: str
    until: datetime | None = None
    reason: str = ""


class MaintenanceQuestion(BaseModel):
    """An incident asks at its declaration whether its service is in maintenance (and registers)."""

    service: str
    incident_workflow_id: str


class MaintenanceChange(BaseModel):
    until: datetime | None = None  # None: end now
    reason: str = ""
    by: str = ""


@workflow.defn
class MaintenanceWorkflow:
    @workflow.init
    def __init__(self, window: MaintenanceWindow) -> None:
        self._window = window
        self._changed = False

    @workflow.run
    async def run(self, window: MaintenanceWindow) -> MaintenanceWindow:
        while True:
            self._changed = False
            left = self._window.until - workflow.now()
            if left <= timedelta(0):
                break
            try:
                await workflow.wait_condition(
                    lambda: self._changed,
                    timeout=left,
                    timeout_summary=f"maintenance of {self._window.service} ends",
                )
            except TimeoutError:
                break
            await self._tell(self._window.until)  # moved: the incidents hold until the new end
        self._window.until = min(self._window.until, workflow.now())
        await self._tell(None)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._window

    async def _tell(self, until: datetime | None) -> None:
        notice = MaintenanceNotice(service=self._window.service, until=until, reason=self._window.reason)
        for incident in list(self._window.held):
            handle = workflow.get_external_workflow_handle(incident)
            try:
                await handle.signal("maintenance", notice)
            except Exception:  # noqa: BLE001 - an incident that ended meanwhile needs no notice
                workflow.logger.info("maintenance notice not delivered to %s", incident)

    @workflow.signal
    def change(self, change: MaintenanceChange) -> None:
        """Extend (a later `until`) or end (None) the window."""
        self._window.until = change.until if change.until is not None else workflow.now()
        if change.reason:
            self._window.reason = change.reason
        self._changed = True

    @workflow.update
    def hold(self, incident_workflow_id: str) -> MaintenanceWindow:
        """An incident of the service, declared in the window: tell it when the window ends."""
        if incident_workflow_id not in self._window.held:
            self._window.held.append(incident_workflow_id)
        return self._window

    @workflow.query
    def window(self) -> MaintenanceWindow:
        return self._window
