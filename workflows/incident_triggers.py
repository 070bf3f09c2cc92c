"""The severity framework's automatic triggers (seed 001, issue 13). Mixed into IncidentWorkflow.

- The impact doubled (an update says so, or the firing alerts or their devices doubled since
  the severity was last set): one level up.
- Reported by customers, paying accounts affected (a flag at declaration or in an update, or an
  alert label): at least P2.
- Any data-integrity concern (same): P1 at once.
- No root cause identified (no update saying identified, fixing or monitoring) 30 minutes after
  a P1's declaration, 2 hours after a P2's: the next tier is paged (a deadline in the table).

Each is a timeline entry with its reason, and each can be turned off or tuned in the policy's
`triggers`. Incidents declared before this release never take them: the run's release marker
(`_release_b`, asked when the run starts) is kept in the state at declaration (`triggers_on`).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from .commands import OPEN_PHASES
    from .deadlines import Deadline
    from .incident_base import IncidentParts
    from .models import AlertEvent, Severity
    from .policy import PagingPolicy, TriggerSettings, format_duration

ROOT_CAUSE_STATUSES = ("identified", "fixing", "monitoring")
_NO = ("", "false", "no", "0", "none", "off")


def one_up(severity: Severity) -> Severity:
    return {Severity.P4: Severity.P3, Severity.P3: Severity.P2}.get(severity, Severity.P1)


def flagged(alert: AlertEvent, label: str) -> bool:
    value = alert.labels.get(label)
    return value is not None and value.strip().lower() not in _NO


class Triggers(IncidentParts):
    """Mixed into IncidentWorkflow."""

    _release_b: bool

    if TYPE_CHECKING:  # provided by IncidentWorkflow and the other mixins

        def _chain(self) -> PagingPolicy | None: ...

        def _start_pages(self, targets: list[Any], chain: PagingPolicy, what: str, **kw: Any) -> None: ...

        async def _change_severity(
            self, new: Severity, user: str, reason: str, request_id: str | None
        ) -> None: ...

    def _add_trigger_deadlines(self) -> None:
        self._deadline_table.add("no_root_cause", self._no_root_cause_due, self._no_root_cause)

    def _triggers(self) -> TriggerSettings | None:
        return self._require_policy().triggers if self._state.triggers_on else None

    # ------------------------------------------------------------ what sets them off

    async def _triggers_at_declaration(self, customer_impact: bool, data_integrity: bool) -> None:
        s = self._state
        s.triggers_on = self._release_b
        await self._take_flags("declared", s.reporter, customer_impact, data_integrity)

    async def _triggers_after_update(
        self, user: str, status: str, scope_doubled: bool, customer_impact: bool, data_integrity: bool
    ) -> None:
        s, t = self._state, self._triggers()
        if t is None:
            return
        if status in ROOT_CAUSE_STATUSES and s.identified_at is None:
            s.identified_at = workflow.now()
            self._schedule()
        if await self._take_flags("update", user, customer_impact, data_integrity):
            return
        if scope_doubled and t.scope_doubled:
            await self._raise(one_up(s.severity), user, f"impact doubled, says {user}")

    async def _triggers_after_alerts(self, alerts: list[AlertEvent], source: str) -> None:
        s, t = self._state, self._triggers()
        if t is None or s.phase not in OPEN_PHASES:
            return
        customer = any(flagged(a, t.customer_impact_label) for a in alerts)
        integrity = any(flagged(a, t.data_integrity_label) for a in alerts)
        if await self._take_flags("alert", source, customer, integrity):
            return
        now = (len(s.alerts_firing), len(s.devices))
        if s.scope_at_severity is None:
            s.scope_at_severity = now
            return
        doubled = [
            (what, before, count)
            for what, count, before in zip(
                ("firing alerts", "devices"), now, s.scope_at_severity, strict=True
            )
            if before > 0 and count >= 2 * before
        ]
        if doubled and t.scope_doubled and s.severity != Severity.P1:
            what, before, count = doubled[0]
            await self._raise(one_up(s.severity), source, f"impact doubled: {what} {before} → {count}")

    async def _take_flags(self, how: str, user: str, customer: bool, integrity: bool) -> bool:
        """A data-integrity concern or paying customers affected: the severity they call for. True if raised."""
        s, t = self._state, self._triggers()
        if t is None:
            return False
        if integrity and not s.data_integrity:
            s.data_integrity = True
            self._record("trigger", user, f"data-integrity concern ({how})")
        if customer and not s.customer_impact:
            s.customer_impact = True
            self._record("trigger", user, f"reported by customers, paying accounts affected ({how})")
        if s.data_integrity and t.data_integrity is not None and t.data_integrity.rank < s.severity.rank:
            await self._raise(t.data_integrity, user, "data-integrity concern")
            return True
        if s.customer_impact and t.customer_impact is not None and t.customer_impact.rank < s.severity.rank:
            await self._raise(t.customer_impact, user, "customer-reported, paying accounts affected")
            return True
        return False

    async def _raise(self, new: Severity, user: str, why: str) -> None:
        if new.rank >= self._state.severity.rank:
            return
        await self._change_severity(new, user, f"trigger: {why}", None)

    def _severity_set(self) -> None:
        """The severity changed: the impact's doubling counts from its size now."""
        s = self._state
        if s.triggers_on:
            s.scope_at_severity = (len(s.alerts_firing), len(s.devices)) if s.alerts_received else None

    # ------------------------------------------------------------ no root cause identified

    def _no_root_cause_due(self) -> Deadline | None:
        s, t = self._state, self._triggers()
        if t is None or s.no_root_cause_fired or s.identified_at is not None or s.phase not in OPEN_PHASES:
            return None
        rule = t.no_root_cause.get(s.severity)
        if rule is None:
            return None
        return Deadline(
            "no_root_cause", s.declared_at + rule.after, f"no root cause after {format_duration(rule.after)}"
        )

    async def _no_root_cause(self, now: datetime) -> None:
        s, t = self._state, self._triggers()
        assert t is not None
        rule = t.no_root_cause[s.severity]
        s.no_root_cause_fired = True
        after = format_duration(rule.after)
        self._record(
            "trigger",
            "",
            f"no root cause identified after {after}: escalating to the next tier ("
            + ", ".join(target.describe() for target in rule.targets)
            + ")",
        )
        self._schedule()
        chain = self._chain()
        if chain is not None:
            self._start_pages(
                rule.targets,
                chain,
                f"no root cause after {after}",
                loop=0,
                level=len(chain.levels) + len(chain.unresolved) + 1,
                due=s.declared_at + rule.after,
                rule=f"no root cause {after}",
            )
        else:  # a severity without a chain: the thread says so, with whom it names
            people = [target.user for target in rule.targets if target.user]
            await self._post(
                "no_root_cause",
                extra={"after": after, "targets": [target.describe() for target in rule.targets]},
                mentions=people,
            )
