"""The per-channel Slack pacer on its own (activities/chat/slack/pacing.py), in fast time: 20 ms a post."""

from __future__ import annotations

import asyncio

import pytest

from activities.chat.slack.pacing import DECLARATION, REPLY, ROLLUP, ChannelPacer, Deferred

INTERVAL = 0.02


def pacer(**overrides) -> ChannelPacer:
    return ChannelPacer(**{"interval": INTERVAL, "max_wait": 1.0, **overrides})


async def test_a_channel_slack_never_limited_is_not_paced():
    p = pacer()
    started = asyncio.get_running_loop().time()
    for n in range(20):
        await p.turn("C1", f"k{n}", DECLARATION)
    assert asyncio.get_running_loop().time() - started < INTERVAL
    assert not p.paced("C1")


async def test_once_limited_posts_go_one_per_interval_rollup_first_then_declarations_then_replies():
    p = pacer()
    p.limited("C1", "first", DECLARATION, retry_after=INTERVAL)
    order: list[str] = []

    async def post(key: str, priority: int, after: float) -> None:
        await asyncio.sleep(after)
        await p.turn("C1", key, priority)
        order.append(key)

    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(
        post("reply-1", REPLY, 0),
        post("decl-1", DECLARATION, 0),
        post("decl-2", DECLARATION, 0.001),
        post("first", DECLARATION, 0.002),  # its retry, after the 429: it kept its place
        post("rollup", ROLLUP, 0.003),  # last to ask, first to go
    )
    assert order == ["rollup", "first", "decl-1", "decl-2", "reply-1"]
    assert loop.time() - started >= 4 * INTERVAL


async def test_a_post_that_would_wait_too_long_is_sent_back_spread_out_keeping_its_place():
    p = pacer(max_wait=5 * INTERVAL)
    p.limited("C1", "k0", DECLARATION, retry_after=INTERVAL)
    delays: dict[str, float] = {}

    async def post(key: str) -> None:
        try:
            await p.turn("C1", key, DECLARATION)
        except Deferred as deferred:
            delays[key] = deferred.delay

    await asyncio.gather(*(post(f"k{n}") for n in range(1, 20)))
    assert len(delays) >= 10  # the back of the line does not hold activities open
    ordered = [delays[k] for k in sorted(delays, key=lambda k: int(k[1:]))]
    assert ordered == sorted(ordered) and ordered[-1] - ordered[0] >= (len(ordered) - 1) * INTERVAL * 0.9
    assert p.depth("C1") >= len(delays)  # each still has its place for when it comes back


async def test_a_cancelled_waiter_does_not_hold_the_line():
    p = pacer()
    p.limited("C1", "x", DECLARATION, retry_after=10 * INTERVAL)
    stuck = asyncio.create_task(p.turn("C1", "stuck", ROLLUP))
    await asyncio.sleep(INTERVAL)
    stuck.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stuck
    p.release("C1", "x")
    await asyncio.wait_for(p.turn("C1", "next", REPLY), timeout=1)


async def test_a_channel_name_and_its_id_share_one_line():
    p = pacer()
    p.limited("#netclaw-alerts", "a", DECLARATION, retry_after=INTERVAL)
    p.alias("netclaw-alerts", "C123")
    assert p.paced("C123") and p.paced("#netclaw-alerts") and p.depth("C123") == 1


async def test_a_channel_calms_down_when_nothing_waits_and_slack_stops_limiting():
    p = pacer(calm_after=2 * INTERVAL)
    p.limited("C1", "a", DECLARATION, retry_after=INTERVAL)
    await p.turn("C1", "a", DECLARATION)
    await asyncio.sleep(5 * INTERVAL)
    assert not p.paced("C1")


async def test_a_short_activity_timeout_caps_the_wait():
    p = pacer(max_wait=1.0)
    p.limited("C1", "a", DECLARATION, retry_after=10 * INTERVAL)
    with pytest.raises(Deferred):
        await p.turn("C1", "b", DECLARATION, max_wait=2 * INTERVAL)
    await asyncio.wait_for(p.turn("C1", "c", ROLLUP), timeout=1)  # the pacer's own 1 s is enough
