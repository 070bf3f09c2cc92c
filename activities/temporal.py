"""What workflows ask Temporal itself about other workflows.

Workflow code cannot describe another execution; an activity with the
worker's client can.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from workflows.maintenance import (
    MaintenanceNotice,
    MaintenanceQuestion,
    MaintenanceWorkflow,
    maintenance_workflow_id,
)


class TemporalActivities:
    def __init__(self, client: Client) -> None:
        self._client = client

    @activity.defn(name="incident_is_running")
    async def incident_is_running(self, workflow_id: str) -> bool:
        """Whether the latest run of `workflow_id` is still running (continue-as-new included)."""
        try:
            described = await self._client.get_workflow_handle(workflow_id).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return described.status == WorkflowExecutionStatus.RUNNING

    @activity.defn(name="maintenance_window")
    async def maintenance_window(self, question: MaintenanceQuestion) -> MaintenanceNotice:
        """The service's open maintenance window, if any; the window is told of the incident."""
        handle = self._client.get_workflow_handle(maintenance_workflow_id(question.service))
        try:
            window = await handle.execute_update(MaintenanceWorkflow.hold, question.incident_workflow_id)
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:  # no window, or it has ended
                return MaintenanceNotice(service=question.service)
            raise
        except WorkflowUpdateFailedError:
            return MaintenanceNotice(service=question.service)
        return MaintenanceNotice(service=question.service, until=window.until, reason=window.reason)
