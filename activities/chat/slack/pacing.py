"""Posting to a Slack channel at the pace Slack allows, most important first.

Slack takes about one chat.postMessage per second per channel and answers
the rest with 429 + Retry-After. Left alone, a storm of new incidents into
one channel becomes a herd: every incident's post retries each time Slack
says "in a second", one of them wins at random, and the roll-up that lists
them all waits its turn among a hundred (measured: a minute at p50).

So this worker keeps, for each channel Slack has told it to slow down in, a
queue of the posts waiting for it, in order of what a person needs first:
the storm roll-up, then each incident's declaration (its thread), then
replies in threads. One post goes per `interval`. A post that would wait
longer than `max_wait` does not hold its activity open: it is told to come
back (Temporal retries it after that delay) and keeps its place in the
queue meanwhile, so posts come back spread out at the pace they can go,
not all at once.

A channel Slack never limits is never paced.

Several workers (replicas) each pace their own posts; none can know how many
others post to the channel, or what they hold. Temporal hands each retry to
any of them, so a deferred post often comes back to another worker. What a
worker can know is that Slack refused a post it had spaced itself: once is
chance (the 429 still pushes the channel back by its Retry-After), twice in a
row means another worker is spending the channel's budget. Then this worker
yields the channel: it sends one post as a probe once an `interval` per
refusal in a row has passed (at most `max_interval`), and every other post
straight back to Temporal, to be retried in an `interval` by whichever worker
picks it up, the roll-up too; the worker Slack lets post ends up with the
line, in its order. A probe Slack takes ends the yielding. A place kept for
a deferred post that is `absent_grace` overdue is given up: its retry most
likely went to another worker. (Measured, tests/test_two_workers.py with
TWO_WORKERS_KILL=0: 100 new incidents into one channel from two workers drew
62-71 429s in 137-145 s while each paced for itself, 29-32 in 108-110 s now;
one worker alone, 20-26 in 121-127 s.)
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# Lower goes first.
ROLLUP = 0
DECLARATION = 1
REPLY = 2


class Deferred(Exception):
    """The post's turn is further off than an activity should wait: come back in `delay` seconds."""

    def __init__(self, delay: float, ahead: int) -> None:
        super().__init__(f"{ahead} posts ahead; back in {delay:.0f}s")
        self.delay = delay
        self.ahead = ahead


@dataclass
class _Entry:
    priority: int
    seq: int
    present: bool = True  # an activity is waiting for it right now
    back_at: float = 0.0  # absent: when its retry is due

    @property
    def order(self) -> tuple[int, int]:
        return (self.priority, self.seq)


@dataclass
class _Channel:
    next_free: float
    last_limited: float
    queue: dict[str, _Entry] = field(default_factory=dict)
    sent: str | None = None  # the last post this pacer let go here, until Slack refuses it
    refusals: int = 0  # posts this pacer spaced that Slack refused, in a row
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # replaced on every change


class ChannelPacer:
    def __init__(
        self,
        interval: float = 1.0,
        max_wait: float = 5.0,
        absent_grace: float = 10.0,
        calm_after: float = 60.0,
        max_interval: float | None = None,
        yield_after: int = 2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.max_wait = max_wait
        # A deferred post that never came back loses its place after this.
        self.absent_grace = absent_grace
        # A channel with nothing queued and no 429 for this long is no longer paced.
        self.calm_after = calm_after
        # The widest spacing of a yielding worker's probe (default 5 x interval).
        self.max_interval = 5 * interval if max_interval is None else max(max_interval, interval)
        # Spaced posts Slack refused in a row after which this worker yields the channel.
        self.yield_after = yield_after
        self._clock = clock
        self._channels: dict[str, _Channel] = {}
        self._aliases: dict[str, str] = {}
        self._seq = itertools.count()

    # ------------------------------------------------------------ public

    def paced(self, channel: str) -> bool:
        return self._current(self._key(channel)) is not None

    def depth(self, channel: str) -> int:
        state = self._current(self._key(channel))
        return len(state.queue) if state else 0

    def alias(self, name: str, channel_id: str) -> None:
        """`name` (`#netclaw-alerts`) is the channel `channel_id`: one queue for both."""
        name = name.lstrip("#")
        if name == channel_id or self._aliases.get(name) == channel_id:
            return
        self._aliases[name] = channel_id
        named = self._channels.pop(name, None)
        if named is None:
            return
        known = self._channels.get(channel_id)
        if known is None:
            self._channels[channel_id] = named
            return
        known.next_free = max(known.next_free, named.next_free)
        known.last_limited = max(known.last_limited, named.last_limited)
        for key, entry in named.queue.items():
            known.queue.setdefault(key, entry)

    async def turn(self, channel: str, key: str, priority: int, max_wait: float | None = None) -> None:
        """Return when the post `key` may go to `channel`; raise Deferred if that is too far off.

        `max_wait` (default: the pacer's) caps the wait here; it must stay well
        inside the activity's start-to-close timeout.
        """
        max_wait = self.max_wait if max_wait is None else min(self.max_wait, max_wait)
        state = self._current(self._key(channel))
        if state is None:
            return  # Slack has not limited this channel: no waiting
        entry = state.queue.get(key) or _Entry(priority, next(self._seq))
        entry.present = True
        try:
            while True:
                state.queue[key] = entry  # again, if a twin attempt took the place meanwhile
                now = self._clock()
                self._drop_lost(state, now)
                ahead = [e for e in state.queue.values() if e.order < entry.order]
                if now >= state.next_free and not any(e.present for e in ahead):
                    del state.queue[key]
                    if state.sent is not None:  # Slack took the last one
                        state.refusals = 0
                    state.sent = key
                    state.next_free = now + self.interval  # a refusal pushes it further (limited)
                    self._changed(state)
                    return
                if state.refusals >= self.yield_after:
                    # Another worker has the channel: back to Temporal, for whichever worker posts.
                    entry.present = False
                    entry.back_at = now + self.interval
                    self._changed(state)
                    raise Deferred(self.interval, len(ahead))
                wait = max(state.next_free - now, 0.0) + len(ahead) * self.interval
                if wait > max_wait:
                    # Back a little before its turn, to wait the rest here.
                    delay = max(wait - max_wait / 2, self.interval)
                    entry.present = False
                    entry.back_at = now + delay
                    self._changed(state)
                    raise Deferred(delay, len(ahead))
                try:
                    await asyncio.wait_for(state.changed.wait(), timeout=max(state.next_free - now, 0.05))
                except TimeoutError:
                    pass
        except Deferred:
            raise
        except BaseException:
            # Cancelled (worker shutting down, activity timed out): it must not hold the line.
            if state.queue.get(key) is entry:
                del state.queue[key]
                self._changed(state)
            raise

    def limited(self, channel: str, key: str, priority: int, retry_after: float) -> None:
        """Slack answered 429: pace the channel; `key` keeps (or takes) its place for its retry."""
        now = self._clock()
        name = self._key(channel)
        state = self._current(name)
        if state is None:
            state = self._channels[name] = _Channel(next_free=now, last_limited=now)
        elif key == state.sent:
            # Refused although this pacer spaced it: again, and another worker posts here too.
            state.sent = None
            state.refusals += 1
            retry_after = max(retry_after, min(self.interval * state.refusals, self.max_interval))
        state.last_limited = now
        state.next_free = max(state.next_free, now + retry_after)
        entry = state.queue.get(key)
        if entry is None:
            entry = state.queue[key] = _Entry(priority, next(self._seq))
        entry.present = False
        entry.back_at = now + retry_after

    def release(self, channel: str, key: str) -> None:
        """The post gave up for good (a refusal that no retry can change): free its place."""
        state = self._current(self._key(channel))
        if state is not None:
            state.queue.pop(key, None)

    # ----------------------------------------------------------- private

    def _key(self, channel: str) -> str:
        name = channel.lstrip("#")
        return self._aliases.get(name, name)

    def _current(self, key: str) -> _Channel | None:
        state = self._channels.get(key)
        if state is None:
            return None
        now = self._clock()
        self._drop_lost(state, now)
        if not state.queue and now - max(state.last_limited, state.next_free) > self.calm_after:
            del self._channels[key]
            return None
        return state

    @staticmethod
    def _changed(state: _Channel) -> None:
        state.changed.set()
        state.changed = asyncio.Event()

    def _drop_lost(self, state: _Channel, now: float) -> None:
        lost = [k for k, e in state.queue.items() if not e.present and now > e.back_at + self.absent_grace]
        for key in lost:
            del state.queue[key]
