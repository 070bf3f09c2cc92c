"""ChannelAnnouncer: one workflow per Slack channel that keeps an incident storm readable.

Slack takes about one chat.postMessage per second per channel. A storm of new
incidents into one channel would otherwise queue every declaration behind
that limit, each incident retrying its own post once a second, and a person
would see the storm only as fast as the threads trickle in. So:

- the alert receivers tell it which incidents they just declared for the
  channel (signal `declared`, with signal-with-start, so it runs only when
  needed);
- once `threshold` of them arrive within `window`, it posts a roll-up, one
  message that lists them all ("20 P3 incidents declared in the last 3 s"),
  and another for the newcomers at most every `rollup_every` while the storm
  lasts, so every incident is listed in Slack after one successful post;
- each incident still posts its own declaration (its thread), retrying
  through Slack's rate limit as every post does.

It completes after a quiet `window`; the next declaration starts it again.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    # Pure data. Passed through so each new run does not rebuild every pydantic
    # model in the sandbox (~60 ms of worker CPU per run, measured).
    from .announcer_models import (
        LISTED_KEPT,
        ROLLUPS_KEPT,
        AnnouncerInput,
        AnnouncerState,
        DeclaredIncident,
        IncidentsDeclared,
        Rollup,
    )
    from .models import IncidentState, PostedMessage, SlackPost
    from .policy import Policy
    from .retries import failure_reason, unlimited_retries

# Activity names, registered by worker.py (workflow code must not import activities/).
LOAD_POLICY = "load_incident_policy"
POST_SLACK_MESSAGE = "post_slack_message"
ROLLUP_TEMPLATE = "storm_rollup"


@workflow.defn
class ChannelAnnouncer:
    @workflow.init
    def __init__(self, input: AnnouncerInput) -> None:
        self._storm = input.storm
        self._policy = input.policy
        self._state = input.carried or AnnouncerState(channel=input.channel.strip().lstrip("#"))
        self._woken = False

    # ------------------------------------------------------------ messages

    @workflow.signal
    def declared(self, batch: IncidentsDeclared) -> None:
        for incident in batch.incidents:
            self._note(incident)
        self._woken = True

    @workflow.query
    def state(self) -> AnnouncerState:
        return self._state

    def _note(self, incident: DeclaredIncident) -> None:
        s = self._state
        if incident.workflow_id in s.seen or incident.workflow_id in s.listed:
            return
        now = workflow.now()
        s.seen[incident.workflow_id] = now
        s.unannounced.append(incident)
        s.unannounced_since = s.unannounced_since or now
        if s.storm_started_at is None and len(s.seen) >= self._storm.threshold:
            s.storm_started_at = now

    # ---------------------------------------------------------------- run

    @workflow.run
    async def run(self, input: AnnouncerInput) -> AnnouncerState:
        if self._policy is None:
            self._policy = await workflow.execute_local_activity(
                LOAD_POLICY, result_type=Policy, start_to_close_timeout=timedelta(seconds=10)
            )
        s = self._state
        while True:
            now = workflow.now()
            self._forget_older_than_window(now)
            rollup_at = self._rollup_due()
            if rollup_at is not None and rollup_at <= now:
                await self._post_rollup()
                continue
            if not (s.seen or s.unannounced):
                break  # a quiet window: done until the next declaration starts a new run
            if workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    AnnouncerInput(channel=s.channel, storm=self._storm, policy=self._policy, carried=s)
                )
            wake_at = [rollup_at, min(s.seen.values()) + self._storm.window if s.seen else None]
            self._woken = False
            try:
                await workflow.wait_condition(
                    lambda: self._woken,
                    timeout=max(min(t for t in wake_at if t is not None) - now, timedelta(milliseconds=1)),
                )
            except TimeoutError:
                pass  # something is due: the loop finds it
        await workflow.wait_condition(workflow.all_handlers_finished)
        return s

    def _forget_older_than_window(self, now: datetime) -> None:
        s = self._state
        s.seen = {wid: at for wid, at in s.seen.items() if now - at < self._storm.window}
        if s.storm_started_at is None:
            # Too few to be a storm: those incidents announced themselves.
            s.unannounced = [i for i in s.unannounced if i.workflow_id in s.seen]
            if not s.unannounced:
                s.unannounced_since = None
        elif not s.seen and not s.unannounced:
            s.storm_started_at, s.storm_listed = None, 0

    def _next_post_at(self) -> datetime:
        s = self._state
        return s.last_post_at + self._storm.post_every if s.last_post_at else workflow.now()

    def _rollup_due(self) -> datetime | None:
        s = self._state
        if s.storm_started_at is None or not s.unannounced or s.unannounced_since is None:
            return None
        if s.continuing:
            return self._next_post_at()  # the rest of a roll-up too long for one message
        due = max(s.unannounced_since + self._storm.gather, self._next_post_at())
        if s.last_rollup_at is not None:
            due = max(due, s.last_rollup_at + self._storm.rollup_every)
        return due

    # -------------------------------------------------------- side effects

    async def _post_rollup(self) -> None:
        s = self._state
        now = workflow.now()
        # At most max_listed in one message; the rest follow in the next, as soon as Slack allows.
        listed, rest = s.unannounced[: self._storm.max_listed], s.unannounced[self._storm.max_listed :]
        s.unannounced, s.unannounced_since, s.continuing = rest, (now if rest else None), bool(rest)
        earlier = s.storm_listed
        s.storm_listed += len(listed)
        s.listed = (s.listed + [i.workflow_id for i in listed])[-LISTED_KEPT:]
        counts: dict[str, int] = {}
        for incident in sorted(listed, key=lambda i: i.severity.rank):
            counts[incident.severity.value] = counts.get(incident.severity.value, 0) + 1
        oldest = min((s.seen.get(i.workflow_id, now) for i in listed), default=now)
        worst = min((i.severity for i in listed), key=lambda sev: sev.rank)
        s.posts += 1
        info = workflow.info()
        post = SlackPost(
            channel=s.channel,
            idempotency_key=f"{info.workflow_id}/{info.first_execution_run_id}/{s.posts}/rollup",
            template=ROLLUP_TEMPLATE,
            # The Slack activity takes an incident; for a roll-up it is the storm itself.
            incident=IncidentState(
                key=f"storm-{s.channel}",
                workflow_id=info.workflow_id,
                severity=worst,
                title=f"{len(listed)} incidents declared",
                declared_at=now,
            ),
            extra={
                "incidents": [i.model_dump(mode="json") for i in listed],
                "count": len(listed),
                "severity_counts": counts,
                "span_seconds": max(1, math.ceil((now - oldest).total_seconds())),
                "earlier": earlier,
                "storm_started_at": s.storm_started_at,
                "following": len(rest),
            },
        )
        posted = await self._post(post, "roll-up")
        s.last_rollup_at = workflow.now()
        s.rollups = [
            *s.rollups,
            Rollup(at=now, ts=posted.ts if posted else None, incidents=[i.workflow_id for i in listed]),
        ][-ROLLUPS_KEPT:]

    async def _post(self, post: SlackPost, what: str) -> PostedMessage | None:
        try:
            return await self._slack(post)
        except ActivityError as err:
            self._state.errors = [*self._state.errors, f"{what} not posted: {failure_reason(err)}"][
                -ROLLUPS_KEPT:
            ]
            return None

    async def _slack(self, post: SlackPost) -> PostedMessage:
        assert self._policy is not None, "the policy is loaded before anything is posted"
        chat = self._policy.chat
        try:
            return await workflow.execute_activity(
                POST_SLACK_MESSAGE,
                post,
                result_type=PostedMessage,
                start_to_close_timeout=chat.call_timeout,
                # Unlimited attempts, as for the incidents' own posts: a rate limit
                # (Retry-After) or an outage delays a post, it never drops it.
                retry_policy=unlimited_retries(chat.max_retry_interval),
            )
        finally:
            self._state.last_post_at = workflow.now()
