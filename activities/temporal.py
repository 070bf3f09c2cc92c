"""What workflows ask Temporal itself about other workflows.

Workflow code cannot describe another execution; an activity with the
worker's client can.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode


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
