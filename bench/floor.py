"""Temporal's own floor, measured in the same run on the same server as what a bench measures.

Two tiny workflows on their own task queue, run by a worker in the bench's
process:

- `BenchFloor`: a bare workflow start plus one no-op activity, the least a
  durable incident can cost (one at a time, and N started at once for the
  burst throughput every burst or throughput figure is divided by);
- `BenchFloorTimer`: a timer set for a given moment, then one no-op activity: the least a
  page falling due can cost (its lateness: activity ran minus the moment);
- `BenchFloorSignals`: one long-lived workflow for the floors of talking to
  a running incident: a signal that runs one no-op activity (signal ->
  activity ran), a signal until a query sees it (what `incident claim`
  does today, without the CLI's own describe calls and poll interval), a
  bare query, and a bare update round trip (what claim as an update costs
  at the least).

This module is imported again by the workflow sandbox: keep its imports
to the standard library and temporalio.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from temporalio import activity, workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

_ran: dict[str, asyncio.Future] = {}


@activity.defn(name="bench_floor_noop")
async def floor_noop(token: str) -> None:
    waiter = _ran.get(token)
    if waiter is not None and not waiter.done():
        waiter.set_result(time.time())


@workflow.defn(name="BenchFloor")
class FloorWorkflow:
    """The least a durable incident can cost: a start and one activity."""

    @workflow.run
    async def run(self, token: str) -> None:
        await workflow.execute_activity(floor_noop, token, start_to_close_timeout=timedelta(seconds=10))


@dataclass
class TimerInput:
    token: str
    due: float  # epoch seconds


@workflow.defn(name="BenchFloorTimer")
class FloorTimerWorkflow:
    """The least a page falling due can cost: a timer until `due`, then one activity."""

    @workflow.run
    async def run(self, timer: TimerInput) -> None:
        wait = timer.due - workflow.now().timestamp()
        if wait > 0:
            await workflow.sleep(wait)
        await workflow.execute_activity(floor_noop, timer.token, start_to_close_timeout=timedelta(seconds=10))


@workflow.defn(name="BenchFloorSignals")
class FloorSignalsWorkflow:
    """A running workflow to signal, query and update: the floor of talking to an open incident."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.inbox: list[str] = []
        self.done = False

    @workflow.run
    async def run(self) -> None:
        while not self.done:
            await workflow.wait_condition(lambda: bool(self.inbox) or self.done)
            while self.inbox:
                await workflow.execute_activity(
                    floor_noop, self.inbox.pop(0), start_to_close_timeout=timedelta(seconds=10)
                )

    @workflow.signal
    def poke(self, token: str) -> None:
        """Seen by the `saw` query at once; runs one no-op activity."""
        self.seen.add(token)
        self.inbox.append(token)

    @workflow.signal
    def mark(self, token: str) -> None:
        """Seen by the `saw` query; no activity."""
        self.seen.add(token)

    @workflow.signal
    def stop(self) -> None:
        self.done = True

    @workflow.query
    def saw(self, token: str) -> bool:
        return token in self.seen

    @workflow.update
    def touch(self, token: str) -> str:
        self.seen.add(token)
        return token


@dataclass
class Timed:
    sent: float  # before the start call / the signal / the HTTP request
    accepted: float  # start returned / signal returned / 202 received
    done: float | None = None  # activity ran / declaration visible in Slack


def ms(values: list[Timed], start: str = "sent") -> list[float]:
    """Milliseconds from `sent` (or `accepted`) to `done`."""
    return [((t.done or 0) - getattr(t, start)) * 1000 for t in values]


@dataclass
class Burst:
    """N bare starts at once: the bare workflow's burst throughput on this server."""

    timed: list[Timed]

    @property
    def size(self) -> int:
        return len(self.timed)

    @property
    def returned_s(self) -> float:
        """First start call -> last start returned."""
        return max(t.accepted for t in self.timed) - min(t.sent for t in self.timed)

    @property
    def ran_s(self) -> float:
        """First start call -> last activity ran."""
        return max(t.done or 0 for t in self.timed) - min(t.sent for t in self.timed)

    def as_dict(self) -> dict:
        return {
            "measure": f"floor: {self.size} bare starts at once",
            "starts": self.size,
            "all_returned_s": round(self.returned_s, 3),
            "all_ran_s": round(self.ran_s, 3),
            "starts_returned_per_s": round(self.size / self.returned_s, 1),
            "runs_per_s": round(self.size / self.ran_s, 1),
        }


class Floor:
    """The floor workflows on their own task queue, with a worker in this process.

    async with Floor(client) as floor:
        one = await floor.sequential(30)
    """

    def __init__(self, client: Client, task_queue: str | None = None) -> None:
        self.client = client
        self.queue = task_queue or f"floor-{uuid.uuid4().hex[:6]}"
        self.worker = Worker(
            client,
            task_queue=self.queue,
            workflows=[FloorWorkflow, FloorTimerWorkflow, FloorSignalsWorkflow],
            activities=[floor_noop],
        )
        self._signals: WorkflowHandle | None = None

    async def __aenter__(self) -> Floor:
        await self.worker.__aenter__()
        await self.once()  # warm up: the first workflow task imports and validates the workflow
        return self

    async def __aexit__(self, *exc) -> None:
        if self._signals is not None:
            # Let it finish while the worker runs: no task left for the server to retry (and log).
            await self._signals.signal(FloorSignalsWorkflow.stop)
            await asyncio.wait_for(self._signals.result(), 30)
        await self.worker.__aexit__(*exc)

    # ------------------------------------------------------------ starts

    async def _until_ran(self, token: str, send: Callable[[], Awaitable[object]], wait: float = 60) -> Timed:
        """Time `send()` (which makes the no-op activity run for `token`) until that activity ran."""
        waiter = _ran[token] = asyncio.get_running_loop().create_future()
        sent = time.time()
        await send()
        timed = Timed(sent, time.time())
        try:
            timed.done = await asyncio.wait_for(waiter, wait)
        finally:
            del _ran[token]
        return timed

    async def once(self, wait: float = 60) -> Timed:
        """`wait`: seconds the start call and then the activity may take (a big burst takes long)."""
        token = f"floor-{uuid.uuid4().hex[:12]}"
        return await self._until_ran(
            token,
            lambda: self.client.start_workflow(
                FloorWorkflow.run,
                token,
                id=token,
                task_queue=self.queue,
                rpc_timeout=timedelta(seconds=wait),
            ),
            wait,
        )

    async def sequential(self, n: int) -> list[Timed]:
        return [await self.once() for _ in range(n)]

    async def bursts(self, size: int, rounds: int) -> list[Timed]:
        results: list[Timed] = []
        for _ in range(rounds):
            results += (await self.burst(size)).timed
            await asyncio.sleep(0.5)
        return results

    async def burst(self, size: int, wait: float = 60) -> Burst:
        return Burst(list(await asyncio.gather(*(self.once(wait) for _ in range(size)))))

    # ------------------------------------------------------------ timers

    async def timers(self, dues: list[float], per_s: float = 20) -> list[float]:
        """One timer workflow per moment in `dues` (epoch seconds), started `per_s` a second from
        now; once all have run, each one's lateness in ms (its no-op activity ran minus its moment).

        Paced: a workflow sets its timer as (due - now) at the start of its first workflow task, so
        a hundred started at once would set timers late by the worker's backlog of first tasks."""
        tokens = [f"floor-timer-{uuid.uuid4().hex[:12]}" for _ in dues]
        loop = asyncio.get_running_loop()
        for token in tokens:
            _ran[token] = loop.create_future()
        began = time.time()

        async def start(n: int, token: str, due: float) -> None:
            await asyncio.sleep(max(0.0, began + n / per_s - time.time()))
            await self.client.start_workflow(
                FloorTimerWorkflow.run, TimerInput(token, due), id=token, task_queue=self.queue
            )

        try:
            await asyncio.gather(
                *(start(n, token, due) for n, (token, due) in enumerate(zip(tokens, dues, strict=True)))
            )
            wait = max(dues) - time.time() + 120
            ran = await asyncio.wait_for(asyncio.gather(*(_ran[t] for t in tokens)), max(wait, 120))
        finally:
            for token in tokens:
                _ran.pop(token, None)
        return [(r - due) * 1000 for r, due in zip(ran, dues, strict=True)]

    # ----------------------------------------------- a running workflow

    async def _handle(self) -> WorkflowHandle:
        if self._signals is None:
            self._signals = await self.client.start_workflow(
                FloorSignalsWorkflow.run, id=f"floor-signals-{uuid.uuid4().hex[:8]}", task_queue=self.queue
            )
            await self._signals.query(FloorSignalsWorkflow.saw, "")  # its first workflow task ran
        return self._signals

    async def signal_activity(self, n: int) -> list[Timed]:
        """Signal -> the no-op activity it schedules ran, one at a time."""
        handle = await self._handle()
        out = []
        for _ in range(n):
            token = uuid.uuid4().hex
            out.append(await self._until_ran(token, partial(handle.signal, FloorSignalsWorkflow.poke, token)))
        return out

    async def signal_seen(self, n: int) -> list[Timed]:
        """Signal, then query until the query sees it (no sleep between queries), one at a time."""
        handle = await self._handle()
        out = []
        for _ in range(n):
            token = uuid.uuid4().hex
            sent = time.time()
            await handle.signal(FloorSignalsWorkflow.mark, token)
            timed = Timed(sent, time.time())
            while not await handle.query(FloorSignalsWorkflow.saw, token):
                pass
            timed.done = time.time()
            out.append(timed)
        return out

    async def _round_trips(self, n: int, call: Callable[[WorkflowHandle], Awaitable[object]]) -> list[Timed]:
        handle = await self._handle()
        out = []
        for _ in range(n):
            sent = time.time()
            await call(handle)
            done = time.time()
            out.append(Timed(sent, done, done))
        return out

    async def query(self, n: int) -> list[Timed]:
        """A bare query round trip."""
        return await self._round_trips(n, lambda h: h.query(FloorSignalsWorkflow.saw, ""))

    async def update(self, n: int) -> list[Timed]:
        """A bare update round trip (the handler only records the token)."""
        return await self._round_trips(
            n, lambda h: h.execute_update(FloorSignalsWorkflow.touch, uuid.uuid4().hex)
        )
