"""The paging activities: who a level's targets are now, a page, and telling a service it is over.

- `resolve_page_targets` reads the schedules (config/oncall.yaml and its overrides, read again
  whenever either file changed, so an override added a minute ago counts) at the moment the
  level fires, and asks
  Slack for each person's Do Not Disturb. Slack failing is no reason to page nobody: the person
  is then taken as not in DND and the problem is said in the incident's timeline.
- `send_page` pages through the backend the page names, exactly once by its idempotency key. A
  page that waited before it started (a backlog, a retry, a worker down) first asks the incident
  whether it was acknowledged meanwhile, and is then held, not sent. One that started within
  ASK_IF_WAITED of being scheduled pages at once: an acknowledgement the incident took before it
  started has cancelled it (an activity cancelled before it starts never runs), and one that came
  later races the page as it would race the question (which costs a round trip through the
  worker's busiest queue: 1-2 s of a new incident's first page in a burst, measured).
- `update_paging_service` acknowledges or resolves the incident at PagerDuty or Opsgenie.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Protocol

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

from workflows.paging_models import (
    DndStatus,
    Page,
    PageDelivered,
    PagedPerson,
    PagingService,
    PagingUpdate,
    ResolvedTarget,
    ResolveTargets,
    TargetSpec,
    TargetsResolved,
)

from .backend import PagingBackend
from .schedule import (
    OnCall,
    OnCallError,
    default_oncall_file,
    default_overrides_file,
    load_oncall,
    on_call,
)

DND_TIMEOUT = 3.0  # seconds for one dnd.info: a page waits for nobody's DND longer than this
# A page that waited longer than this between being scheduled and starting (or is a retry) asks the
# incident whether it was acknowledged meanwhile before it pages.
ASK_IF_WAITED = timedelta(seconds=1)


class DndLookup(Protocol):
    async def do_not_disturb(self, user_id: str) -> DndStatus: ...


class ThreadLinks(Protocol):
    async def thread_link(self, channel: str, ts: str) -> str | None: ...


class PagingActivities:
    def __init__(
        self,
        backends: Mapping[PagingService, PagingBackend],
        client: Client | None,
        dnd: DndLookup | None,
        oncall_file: str | Path | None = None,
        overrides_file: str | Path | None = None,
        *,
        threads: ThreadLinks | None = None,
        ui_url: Callable[[str], str] | None = None,
    ) -> None:
        self._threads = threads
        self._ui_url = ui_url
        self._backends = dict(backends)
        self._client = client
        self._dnd = dnd
        self._oncall_file = Path(oncall_file) if oncall_file else default_oncall_file()
        self._overrides_file = (
            Path(overrides_file) if overrides_file else default_overrides_file(self._oncall_file)
        )
        self._loaded: tuple[tuple[float, float], OnCall] | None = None

    def _oncall(self) -> OnCall:
        """The schedules and overrides, read again only when either file changed (an override
        added a minute ago counts; a storm of pages does not parse the YAML once per level)."""
        stamp = (_mtime(self._oncall_file), _mtime(self._overrides_file))
        if self._loaded is None or self._loaded[0] != stamp:
            self._loaded = (stamp, load_oncall(self._oncall_file, self._overrides_file))
        return self._loaded[1]

    @activity.defn(name="resolve_page_targets")
    async def resolve_page_targets(self, request: ResolveTargets) -> TargetsResolved:
        found = TargetsResolved()
        try:
            oncall: OnCall | None = self._oncall()
        except OnCallError as exc:
            oncall = None
            found.problems.append(f"the on-call schedules cannot be read: {exc}")
        for spec in request.targets:
            if spec.channel:
                found.broadcasts.append("channel")
            elif spec.group:
                found.broadcasts.append(spec.group)
            elif spec.user:
                found.people.append(
                    ResolvedTarget(person=_person(oncall, spec.user), via=spec.via, why=spec.user)
                )
            elif spec.schedule:
                found.people.extend(self._on_call(oncall, spec, request, found.problems))
        if request.round_robin is not None and found.people:
            found.people = [found.people[request.round_robin % len(found.people)]]
        found.people = self._reachable(found.people, found.problems)
        if request.check_dnd and self._dnd is not None:
            found.people = list(
                await asyncio.gather(*(self._with_dnd(t, found.problems) for t in found.people))
            )
        return found

    def _reachable(self, people: list[ResolvedTarget], problems: list[str]) -> list[ResolvedTarget]:
        """Each person's services cut to those this worker pages through (PAGING_BACKENDS), so
        the thread says how they were really paged; what was cut is said once, not paged."""
        cut: set[PagingService] = set()
        kept = []
        for target in people:
            via = [v for v in target.via if v in self._backends]
            cut.update(v for v in target.via if v not in self._backends)
            if via:
                kept.append(target.model_copy(update={"via": via}))
            else:
                problems.append(f"{target.person.user_id} not paged: no service of theirs is configured")
        if cut:
            names = ", ".join(sorted(v.value for v in cut))
            problems.append(
                f"not paged through {names}: this worker does not page through it (PAGING_BACKENDS: "
                f"{', '.join(v.value for v in self._backends) or 'none'})"
            )
        return kept

    def _on_call(
        self, oncall: OnCall | None, spec: TargetSpec, request: ResolveTargets, problems: list[str]
    ) -> list[ResolvedTarget]:
        assert spec.schedule is not None
        if oncall is None:
            return []
        try:
            schedule = oncall.schedule(spec.schedule)
        except KeyError as exc:
            problems.append(str(exc.args[0]))
            return []
        people = on_call(schedule, request.at)
        if not people:
            problems.append(f"nobody is on call for {spec.schedule} at {request.at:%Y-%m-%d %H:%M} UTC")
        return [
            ResolvedTarget(
                person=PagedPerson(user_id=p.user, name=p.name, email=p.email or None, phone=p.phone or None),
                via=spec.via,
                why=f"on call for {spec.schedule}",
            )
            for p in people
        ]

    async def _with_dnd(self, target: ResolvedTarget, problems: list[str]) -> ResolvedTarget:
        assert self._dnd is not None
        try:
            status = await asyncio.wait_for(self._dnd.do_not_disturb(target.person.user_id), DND_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - Slack down: page as if not in DND, and say so
            problems.append(
                f"Do Not Disturb of {target.person.user_id} unknown ({type(exc).__name__}: {exc})"
            )
            return target
        return target.model_copy(update={"dnd": status})

    @activity.defn(name="send_page")
    async def send_page(self, page: Page) -> PageDelivered:
        backend = self._backends.get(page.service)
        if backend is None:
            raise ApplicationError(
                f"this worker cannot page through {page.service.value}: add it to PAGING_BACKENDS"
                f" (it pages through {', '.join(s.value for s in self._backends) or 'nothing'})",
                type="PagingServiceOff",
                non_retryable=True,
            )
        if (
            not page.despite_acknowledgement
            and waited(activity.info())
            and await self._acknowledged(page.incident_workflow_id)
        ):
            return PageDelivered(service=page.service, reference="", held=True)
        if page.link is None:
            page = page.model_copy(update={"link": await self._link(page)})
        return await backend.page(page)

    async def _link(self, page: Page) -> str | None:
        """Where the person paged opens the incident: its Slack thread, else its Temporal UI page."""
        if self._threads is not None and page.thread_channel and page.thread_ts:
            link = await self._threads.thread_link(page.thread_channel, page.thread_ts)
            if link:
                return link
        return self._ui_url(page.incident_workflow_id) if self._ui_url is not None else None

    async def _acknowledged(self, workflow_id: str) -> bool:
        if self._client is None:
            return False
        try:
            return bool(await self._client.get_workflow_handle(workflow_id).query("paging_acknowledged"))
        except Exception as exc:  # noqa: BLE001 - cannot ask: the workflow's own check stands
            activity.logger.warning("cannot ask %s whether it was acknowledged: %s", workflow_id, exc)
            return False

    @activity.defn(name="update_paging_service")
    async def update_paging_service(self, update: PagingUpdate) -> None:
        backend = self._backends.get(update.service)
        if backend is None:
            raise ApplicationError(
                f"this worker cannot reach {update.service.value}: add it to PAGING_BACKENDS",
                type="PagingServiceOff",
                non_retryable=True,
            )
        await backend.update(update)

    @property
    def activities(self) -> list:
        return [self.resolve_page_targets, self.send_page, self.update_paging_service]


def waited(info: activity.Info) -> bool:
    """A retry, or a first attempt that started more than ASK_IF_WAITED after it was scheduled
    (both times the server's: no clock of this machine's in it)."""
    if info.attempt > 1:
        return True
    return info.started_time - info.current_attempt_scheduled_time > ASK_IF_WAITED


def _person(oncall: OnCall | None, user: str) -> PagedPerson:
    known = oncall.file.people.get(user) if oncall is not None else None
    if known is None:
        return PagedPerson(user_id=user)
    return PagedPerson(user_id=user, name=known.name, email=known.email or None, phone=known.phone or None)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime_ns / 1e9
    except OSError:
        return -1.0  # missing (no overrides file yet): changes when it appears
