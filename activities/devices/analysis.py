"""The findings of an investigation's steps -> the most likely cause, a suspect and next steps (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from workflows.device_models import (
    Analysis,
    AnalysisRequest,
    InvestigationPlan,
    StepResult,
    StepStatus,
)

from .checks import PING_OK_PERCENT, _human_seconds, short_interface


def analyse(request: AnalysisRequest) -> Analysis:
    """The findings of each target's steps -> what most likely happened (pure)."""
    by_target: dict[str, dict[str, StepResult]] = {}
    failed = 0
    for result in request.results:
        by_target.setdefault(result.target, {}).setdefault(result.check, result)
        failed += result.status == StepStatus.error
    targets = list(dict.fromkeys(step.target for step in request.plan.steps)) or list(by_target)
    lines: list[str] = []
    causes: list[str] = []
    suspects: list[str] = []
    next_steps: list[str] = []
    confidence = "low"
    rank = {"low": 0, "medium": 1, "high": 2}
    for target in targets:
        results = by_target.get(target, {})
        verdict = _analyse_target(target, request.plan, results)
        lines += verdict.lines
        causes.append(verdict.cause)
        next_steps += verdict.next_steps
        if verdict.suspect and verdict.suspect not in suspects:
            suspects.append(verdict.suspect)
        if rank[verdict.confidence] > rank[confidence]:
            confidence = verdict.confidence
    if not targets:
        causes.append("nothing was investigated: the incident names no device the testbed knows")
        lines += request.plan.notes
    return Analysis(
        incident_key=request.incident_key,
        likely_cause=" ".join(causes),
        suspect=suspects[0] if suspects else None,
        suspects=suspects,
        confidence=confidence,
        summary_lines=lines,
        next_steps=list(dict.fromkeys(next_steps)),
        steps_failed=failed,
    )


@dataclass
class _Verdict:
    cause: str
    suspect: str | None
    confidence: str
    lines: list[str]
    next_steps: list[str]


def _analyse_target(target: str, plan: InvestigationPlan, results: dict[str, StepResult]) -> _Verdict:
    step = next((s for s in plan.steps if s.target == target), None)
    upstream = step.upstream if step else None
    ran = {check: r for check, r in results.items() if r.status != StepStatus.error}
    if not upstream:
        return _Verdict(
            cause=f"{target}: no upstream neighbour is known, so it could not be looked at from outside.",
            suspect=target,
            confidence="low",
            lines=[f"{target} has no upstream neighbour in the incident or the testbed."],
            next_steps=[f"Name {target}'s upstream neighbour (alert label or testbed `custom.upstream`)"],
        )
    if not ran:
        reasons = {r.finding for r in results.values()} or {"no step ran"}
        return _Verdict(
            cause=(
                f"{target}: could not be checked from {upstream} ({'; '.join(sorted(reasons))}); "
                f"the fault may be {upstream} itself or the path to it."
            ),
            suspect=upstream,
            confidence="low",
            lines=[f"No step on {upstream} could run: {'; '.join(sorted(reasons))}."],
            next_steps=[f"Check access to {upstream} (console, management network, credentials)"],
        )

    ping = ran.get("ping_reachability")
    intf = ran.get("interface_health")
    ospf = ran.get("ospf_neighbor")
    logs = ran.get("log_events")
    bgp = ran.get("bgp_neighbor")
    intf_name = short_interface(str((intf.facts if intf else {}).get("interface") or "the link"))
    percent = ping.facts.get("success_percent", 0) if ping is not None else None
    unreachable = percent is not None and percent < PING_OK_PERCENT
    link_up = (
        intf is not None and intf.facts.get("oper_status") == "up" and intf.facts.get("line_protocol") == "up"
    )
    link_down = intf is not None and not link_up
    link_errors = intf is not None and bool(intf.facts.get("crc_errors") or intf.facts.get("input_errors"))
    ospf_lost = ospf is not None and ospf.facts.get("present") is False
    ospf_stuck = ospf is not None and ospf.facts.get("present") and ospf.facts.get("state") != "FULL"
    bgp_down = bgp is not None and bgp.facts.get("established") is False
    flaps = (logs.facts.get("flaps") if logs else None) or []
    alarms = (logs.facts.get("alarms") if logs else None) or []

    lines: list[str] = []
    if flaps:
        back = logs is not None and logs.facts.get("line_protocol_now") == "up"
        lines.append(
            f"{upstream} saw {short_interface(flaps[0]['interface'])} flap at {flaps[0]['down_at'][:5]}."
            + (" Line protocol came back up" if back else " Line protocol is still down")
            + (" but OSPF hasn't re-converged." if (ospf_lost or ospf_stuck) and back else ".")
        )
    elif ospf_lost or ospf_stuck:
        lines.append(f"OSPF adjacency between {upstream} and {target} is not FULL.")
    if unreachable:
        lines.append(f"{target} does not answer ping from {upstream} ({percent:g}%).")
    if link_up and not link_errors:
        silent = intf.facts.get("last_input_seconds") if intf else None
        lines.append(
            f"{upstream} {intf_name} is up/up with no errors"
            + (
                f"; nothing received from {target} for {_human_seconds(silent)}."
                if silent and silent > 60
                else "."
            )
        )
    if bgp_down:
        lines.append(f"The BGP session with {target} is {bgp.facts.get('state') if bgp else 'down'}.")
    if alarms:
        lines.append(f"{upstream}'s log has {len(alarms)} crash/traceback message(s): check {upstream} too.")

    if unreachable and link_down:
        return _Verdict(
            cause=(
                f"The link between {upstream} {intf_name} and {target} is down: a physical fault "
                f"(cable, optic, far-end port) or {target} lost power."
            ),
            suspect=target,
            confidence="medium",
            lines=lines,
            next_steps=[
                f"Check {target}'s power and console",
                f"Check the cabling on {upstream} {intf_name}",
            ],
        )
    if unreachable and link_errors:
        return _Verdict(
            cause=f"Errors on {upstream} {intf_name} toward {target}: a physical-layer problem on that link.",
            suspect=target,
            confidence="medium",
            lines=lines,
            next_steps=[f"Check optics and cabling between {upstream} {intf_name} and {target}"],
        )
    if unreachable and (ospf_lost or ospf_stuck or bgp_down):
        flap_at = f" at {flaps[0]['down_at'][:5]}" if flaps else ""
        return _Verdict(
            cause=(
                f"{target} itself: the link from {upstream} is up but {target} answers nothing "
                f"(no ping, no OSPF hellos{', BGP down' if bgp_down else ''}). "
                f"Likely a problem on {target}'s side{flap_at} — a crash, reload or power event "
                f"bounced the interface and {target} has not come back."
            ),
            suspect=target,
            confidence="high" if flaps else "medium",
            lines=lines,
            next_steps=[
                f"Get console access to {target}",
                f"Check {target}'s `show version` (uptime, last reload reason) and crashinfo when it is back",
            ],
        )
    if unreachable:
        return _Verdict(
            cause=f"{target} does not answer from {upstream}; the evidence does not say why.",
            suspect=target,
            confidence="low",
            lines=lines,
            next_steps=[f"Get console access to {target}"],
        )
    if ospf_lost or ospf_stuck:
        return _Verdict(
            cause=(
                f"{target} answers ping but has no OSPF adjacency with {upstream}: an OSPF configuration "
                "problem (area, timers, authentication, MTU) rather than the device."
            ),
            suspect=target,
            confidence="medium",
            lines=lines,
            next_steps=[f"Compare OSPF interface settings on {upstream} {intf_name} and {target}"],
        )
    return _Verdict(
        cause=f"No fault visible from {upstream}: {target} answers and its adjacencies are up.",
        suspect=None,
        confidence="low",
        lines=lines or [f"{target} answers ping from {upstream} and nothing looks wrong on the way."],
        next_steps=[f"Look beyond {target}: the service, or devices further downstream"],
    )
