"""The worker's severity policy, handed to each new incident once."""

from __future__ import annotations

from temporalio import activity

from workflows.policy import Policy


class PolicyActivities:
    def __init__(self, policy: Policy, tickets_off_because: str | None = None) -> None:
        # Loaded (and validated) when the worker starts, so a bad file stops
        # the worker at once instead of failing incidents later.
        if tickets_off_because and policy.tickets.enabled:
            # No ticketing backend on this worker: incidents start no ticket child at all
            # (a child per incident that could only say "off" is load for nothing in a storm).
            tickets = policy.tickets.model_copy(update={"enabled": False, "off_reason": tickets_off_because})
            policy = policy.model_copy(update={"tickets": tickets})
        self._policy = policy

    @activity.defn(name="load_incident_policy")
    async def load_incident_policy(self) -> Policy:
        """Pure read of memory: safe to retry any number of times."""
        return self._policy
