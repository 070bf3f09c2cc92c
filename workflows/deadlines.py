"""The incident's one deadline table: purpose -> due time, one handler per purpose.

Every timer an incident keeps is a purpose here: a rule that reads the state
and says when (if at all) the purpose is due, and a handler that does what is
due. The workflow recomputes the table from the state after every change and
sleeps until its earliest entry, so a change that moves a deadline (a claim, an
update, a new severity) moves the timer with it, and adding a timer is one
`add` call and one handler: nothing else in the loop changes.

Pure code with no Temporal calls of its own: imported once by the worker.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Deadline:
    purpose: str  # "escalation", "reminder", "review"
    due: datetime
    label: str  # what the timer is for, as the UI and `incident status` show it: "escalation 2 due"


DueRule = Callable[[], "Deadline | None"]
Handler = Callable[[datetime], Awaitable[None]]


class DeadlineTable:
    def __init__(self) -> None:
        self._purposes: dict[str, tuple[DueRule, Handler]] = {}

    def add(self, purpose: str, due: DueRule, handler: Handler) -> None:
        if purpose in self._purposes:
            raise ValueError(f"deadline purpose {purpose!r} is already in the table")
        self._purposes[purpose] = (due, handler)

    def entries(self) -> list[Deadline]:
        """Every purpose that is due at some time, earliest first (ties in the order they were added)."""
        found = [d for due, _ in self._purposes.values() if (d := due()) is not None]
        return sorted(found, key=lambda d: d.due)

    def next(self) -> Deadline | None:
        entries = self.entries()
        return entries[0] if entries else None

    def due(self, purpose: str) -> datetime | None:
        rule = self._purposes.get(purpose)
        entry = rule[0]() if rule else None
        return entry.due if entry else None

    async def fire_due(self, now: datetime) -> Deadline | None:
        """Run the handler of the earliest purpose due by `now`; the one fired, or None."""
        entry = self.next()
        if entry is None or entry.due > now:
            return None
        await self._purposes[entry.purpose][1](now)
        return entry
