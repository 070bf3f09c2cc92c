"""A stand-in for the incident that runs the TicketWorkflow child, for tests/record_histories.py.

It starts the ticket child as IncidentWorkflow does (ABANDON, `<its id>-ticket`), forwards
each change to it by workflow id, in order, and hears `ticket_opened` and `ticket_problem`.
It uses nothing of IncidentWorkflow, and only what workflows/ticket_models.py has had from
the start, so it can drive an older TicketWorkflow as well (record_histories --code).
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.workflow import ParentClosePolicy

from workflows.ticket_models import (
    TicketChangeKind,
    TicketEvent,
    TicketInput,
    TicketProblem,
    TicketRef,
    ticket_workflow_id,
)
from workflows.tickets import TicketWorkflow


@workflow.defn(sandboxed=False)
class TicketParentStandIn:
    def __init__(self) -> None:
        self._outbox: list[TicketEvent] = []
        self._opened: TicketRef | None = None
        self._problems: list[TicketProblem] = []

    @workflow.signal
    def send(self, event: TicketEvent) -> None:
        self._outbox.append(event)

    @workflow.signal
    def ticket_opened(self, ref: TicketRef) -> None:
        self._opened = ref

    @workflow.signal
    def ticket_problem(self, problem: TicketProblem) -> None:
        self._problems.append(problem)

    @workflow.query
    def opened(self) -> TicketRef | None:
        return self._opened

    @workflow.run
    async def run(self, input: TicketInput) -> list[TicketProblem]:
        incident_id = workflow.info().workflow_id
        child_id = ticket_workflow_id(incident_id)
        await workflow.start_child_workflow(
            TicketWorkflow.run,
            input.model_copy(update={"incident_workflow_id": incident_id}),
            id=child_id,
            parent_close_policy=ParentClosePolicy.ABANDON,
        )
        ticket = workflow.get_external_workflow_handle(child_id)
        while True:
            await workflow.wait_condition(lambda: bool(self._outbox))
            event = self._outbox.pop(0)
            await ticket.signal(TicketWorkflow.change, event)
            if event.kind == TicketChangeKind.close:
                break
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._problems
