"""What a paging service must do for an incident: the interface every paging backend implements.

PAGING_BACKENDS (activities/settings.py) chooses which services the worker can page through
(activities/backends.py); the escalation policy says which one each target is paged by.
The models are the workflow's (workflows/paging_models.py).

Each method runs inside its Temporal activity and is retried there, so each is safe to
repeat: a retried page must not page twice (the page's idempotency key, the service's own
dedup key). A failure retrying cannot fix (bad key, unknown routing key) is a non-retryable
ApplicationError whose message says what to change; anything else is raised to be retried,
with `next_retry_delay` when the service asked for one (429 Retry-After).
"""

from __future__ import annotations

from typing import Protocol

from workflows.paging_models import Page, PageDelivered, PagingService, PagingUpdate


class PagingBackend(Protocol):
    service: PagingService

    async def page(self, page: Page) -> PageDelivered:
        """Page `page.person` for the incident; a retry returns the earlier delivery (`duplicate`)."""
        ...

    async def update(self, update: PagingUpdate) -> None:
        """Acknowledge or resolve the incident's page(s) at the service; repeating it is harmless."""
        ...

    async def aclose(self) -> None: ...
