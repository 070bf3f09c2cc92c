"""The worker's severity policy, handed to each new incident once."""

from __future__ import annotations

from temporalio import activity

from workflows.policy import Policy


class PolicyActivities:
    def __init__(self, policy: Policy) -> None:
        # Loaded (and validated) when the worker starts, so a bad file stops
        # the worker at once instead of failing incidents later.
        self._policy = policy

    @activity.defn(name="load_incident_policy")
    async def load_incident_policy(self) -> Policy:
        """Pure read of memory: safe to retry any number of times."""
        return self._policy
