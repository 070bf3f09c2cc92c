"""Network devices through pyATS and Genie: baseline, diagnostic plans, verification.

The workflow calls five activities by name (workflows/device_models.py) on a
`DeviceActivities`:

- `capture_baseline`: the health of the incident's devices and their upstream
  neighbours at declaration (reachability, interfaces, OSPF neighbours, BGP
  peers, route count), kept by the workflow for verification.
- `plan_investigation`: a diagnostic plan from config/plans/<plan>.yaml,
  resolved for the incident's devices into steps, grouped by the device they
  run on: groups run at the same time, the steps of a group one after another.
- `run_investigation_step`: one step: run the command, parse it with Genie,
  apply the check, return the finding.
- `analyse_investigation`: the findings -> the most likely cause (pure).
- `verify_against_baseline`: re-read the baseline's checks and compare.

Threads, knowingly. pyATS/unicon is blocking (a connect is ~2 s of waiting on
a pty, a `show logging` on a busy router can take a minute), so every device
operation runs in this class's own thread pool, and the activities are async:
while a thread sits in unicon, the activity keeps heartbeating from the event
loop, notices cancellation, and enforces its own deadline even when unicon
overruns its timeout. A sync activity in a thread-pool executor could not
heartbeat while its one thread is blocked inside unicon. The pool is ours, not
asyncio's default (min(32, cpus + 4) threads: 6 on a 2-core worker), so fifty
devices really are checked at once.

Sessions are kept. One unicon session per device, reused by the next step on
that device (a connect costs ~2 s, a command ~0.3 s), guarded by a lock so a
session is only ever used by one thread; idle sessions are closed after
`idle_timeout`. A testbed file that changed on disk is loaded again and its
sessions are dropped. Connecting runs no configuration commands: a read-only
tool must not change `logging console` or `exec-timeout` on a production box.

Idempotent by nature: plans may hold only show, ping and traceroute commands
(a plan with anything else is rejected), so a retried activity reads again
and changes nothing.

Failures. A device that refuses the connection, never answers, or rejects
the login is a finding, returned as a step that could not run (or a device
that is not reachable), never an exception: retrying an authentication
failure cannot help, and an unreachable device is itself the news. Refused
and closed connections are retried `connect_attempts` times inside the
activity, with a short pause. A testbed or plan that cannot be loaded is a
non-retryable ApplicationError (a person has to fix a file); anything
unexpected is raised retryable.

Credentials come only from the testbed (its `credentials:` blocks, which may
use `%ENV{...}`), never from the incident; every text that leaves here
(findings, evidence, raw output, errors) has the testbed's passwords and any
`password`/`secret`/`community`/`key` values in device output masked.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator
from temporalio import activity
from temporalio.exceptions import ApplicationError

from workflows.device_models import (
    Analysis,
    AnalysisRequest,
    Baseline,
    BaselineRequest,
    DeviceHealth,
    InvestigationPlan,
    InvestigationRequest,
    InvestigationStep,
    StepRequest,
    StepResult,
    StepStatus,
    Verification,
    VerificationCheck,
    VerificationRequest,
)

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
READ_ONLY_COMMANDS = ("show ", "ping ", "traceroute ")
RAW_OUTPUT_LIMIT = 200_000  # characters kept of one command's output
EVIDENCE_LINES = 12
PING_OK_PERCENT = 80.0  # the first echo of a ping is often lost to ARP
CONNECT_RETRY_PAUSE = 1.0
DEADLINE_GRACE = 1.0  # on top of unicon's own timeout before the activity gives up waiting
HEALTH_COMMANDS = (
    ("show version", "show version"),
    ("show ip interface brief", "show ip interface brief"),
    ("show ip ospf neighbor", "show ip ospf neighbor"),
    ("show ip bgp summary", "show ip bgp summary"),
    ("show ip route summary", "show ip route summary"),
)
INIT_EXEC_COMMANDS = ["term length 0", "term width 0"]

_INTERFACE_ABBREVIATIONS = (
    ("HundredGigE", "Hu"),
    ("FortyGigabitEthernet", "Fo"),
    ("TwentyFiveGigE", "Twe"),
    ("TenGigabitEthernet", "Te"),
    ("GigabitEthernet", "Gi"),
    ("FastEthernet", "Fa"),
    ("Ethernet", "Et"),
    ("Port-channel", "Po"),
    ("Loopback", "Lo"),
    ("Tunnel", "Tu"),
    ("Serial", "Se"),
    ("Vlan", "Vl"),
)
_CONFIG_SECRET = re.compile(
    r"(?P<key>\b(?:password|secret|community|key-string|key|pre-shared-key)\s+(?:\d\s+)?)(?P<value>\S+)",
    re.IGNORECASE,
)


def short_interface(name: str) -> str:
    """GigabitEthernet1 -> Gi1, as engineers write it."""
    for long, short in _INTERFACE_ABBREVIATIONS:
        if name.startswith(long):
            return short + name[len(long) :]
    return name


# =================================================================== errors


class DeviceUnavailable(Exception):
    """The device could not be used: a finding, not a failure of the activity."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def _non_retryable(kind: str, message: str) -> ApplicationError:
    return ApplicationError(message, type=kind, non_retryable=True)


# ===================================================================== plans


class PlanStepSpec(BaseModel):
    title: str
    on: Literal["upstream", "device"] = "upstream"
    command: str
    parser: str | None = None
    check: str
    params: dict[str, Any] = Field(default_factory=dict)
    timeout: float | None = Field(default=None, gt=0)

    @field_validator("command")
    @classmethod
    def _read_only(cls, value: str) -> str:
        if not value.strip().lower().startswith(READ_ONLY_COMMANDS):
            raise ValueError(
                f"{value!r} is not read-only: plan commands must start with show, ping or traceroute"
            )
        return value.strip()

    @field_validator("check")
    @classmethod
    def _known_check(cls, value: str) -> str:
        if value not in CHECKS:
            raise ValueError(f"unknown check {value!r}: use one of {', '.join(sorted(CHECKS))}")
        return value


class PlanSpec(BaseModel):
    name: str
    description: str = ""
    steps: list[PlanStepSpec] = Field(min_length=1)


def load_plan(plans_dir: Path, name: str) -> PlanSpec:
    """config/plans/<name>.yaml, validated; PlanError says what is wrong and where."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise _non_retryable("PlanError", f"bad plan name {name!r}")
    path = plans_dir / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in plans_dir.glob("*.yaml"))
        raise _non_retryable(
            "PlanError", f"no plan {name!r} in {plans_dir} (plans: {', '.join(known) or 'none'})"
        )
    try:
        data = yaml.safe_load(path.read_text())
        return PlanSpec.model_validate(data)
    except (yaml.YAMLError, ValidationError) as exc:
        raise _non_retryable("PlanError", f"plan {path} is not valid: {exc}") from None


class _Params(dict[str, Any]):
    """str.format_map that names the missing parameter instead of a bare KeyError."""

    def __missing__(self, key: str) -> Any:
        raise _MissingParam(key)


class _MissingParam(KeyError):
    pass


def _fill(template: str, params: dict[str, Any]) -> str:
    return template.format_map(_Params(params))


# ==================================================================== checks


@dataclass
class Outcome:
    status: StepStatus
    finding: str
    conclusion: str = ""
    evidence: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)


CheckFn = Callable[[dict[str, Any], str, dict[str, Any]], Outcome]


def _duration_seconds(text: str | None) -> int | None:
    """`00:04:02` -> 242; `1d02h`, `2w3d` -> seconds; `never` -> None."""
    if not text or text == "never":
        return None
    match = re.fullmatch(r"(\d+):(\d\d):(\d\d)", text)
    if match:
        h, m, s = (int(x) for x in match.groups())
        return h * 3600 + m * 60 + s
    units = {"y": 31_536_000, "w": 604_800, "d": 86_400, "h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+)([ywdhms])", text)
    return sum(int(n) * units[u] for n, u in parts) if parts else None


def _human_seconds(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86_400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86_400} d"


def check_ping_reachability(parsed: dict[str, Any], output: str, params: dict[str, Any]) -> Outcome:
    stats = parsed.get("ping", {}).get("statistics", {})
    percent = float(stats.get("success_rate_percent", 0.0))
    sent, received = stats.get("send"), stats.get("received")
    device, source = params.get("device", "the device"), params.get("upstream", "upstream")
    facts = {"success_percent": percent, "sent": sent, "received": received}
    evidence = [line for line in output.splitlines() if line.startswith(("Success rate", "Sending"))]
    if percent >= PING_OK_PERCENT:
        return Outcome(
            StepStatus.ok, f"{percent:g}% success — {device} answers {source}", evidence=evidence, facts=facts
        )
    if percent > 0:
        return Outcome(
            StepStatus.problem,
            f"{percent:g}% success — packet loss between {source} and {device}",
            conclusion="Intermittent: look for errors on the link or a busy control plane",
            evidence=evidence,
            facts=facts,
        )
    return Outcome(
        StepStatus.problem,
        f"0% success — {device} unreachable from {source}",
        evidence=evidence,
        facts=facts,
    )


def check_interface_health(parsed: dict[str, Any], output: str, params: dict[str, Any]) -> Outcome:
    name = params.get("upstream_interface") or next(iter(parsed), "")
    data: dict[str, Any] = parsed.get(name) or next(iter(parsed.values()), {})
    short = short_interface(name)
    oper = data.get("oper_status", "unknown")
    proto = data.get("line_protocol", "unknown")
    counters = data.get("counters", {})
    crc = int(counters.get("in_crc_errors", 0))
    in_errors = int(counters.get("in_errors", 0))
    out_errors = int(counters.get("out_errors", 0))
    last_input = data.get("last_input")
    silent_for = _duration_seconds(last_input)
    facts = {
        "interface": name,
        "oper_status": oper,
        "line_protocol": proto,
        "crc_errors": crc,
        "input_errors": in_errors,
        "output_errors": out_errors,
        "last_input": last_input,
        "last_input_seconds": silent_for,
        "carrier_transitions": data.get("carrier_transitions"),
        "interface_resets": counters.get("out_interface_resets"),
    }
    evidence = [
        line.strip()
        for line in output.splitlines()
        if re.search(r"line protocol is|Last input|CRC|interface resets|carrier transitions", line)
    ]
    finding = f"{oper}/{proto}, {crc} CRC errors"
    if last_input:
        finding += (
            f", last input {_human_seconds(silent_for) + ' ago' if silent_for is not None else last_input}"
        )
    device = params.get("device", "the device")
    upstream = params.get("upstream", "upstream")
    if oper != "up" or proto != "up":
        return Outcome(
            StepStatus.problem,
            finding,
            conclusion=f"The link toward {device} is down at {upstream} {short}: physical layer or {device} powered off",
            evidence=evidence,
            facts=facts,
        )
    if crc or in_errors or out_errors:
        return Outcome(
            StepStatus.problem,
            finding + f", {in_errors} input / {out_errors} output errors",
            conclusion="Errors on the link: check the cable, optics and the far-end port",
            evidence=evidence,
            facts=facts,
        )
    conclusion = f"Physical layer looks OK from {upstream}'s side"
    silent_after = float(params.get("silent_after_seconds", 60))
    if silent_for is not None and silent_for > silent_after:
        conclusion += f", but nothing received from {device} for {_human_seconds(silent_for)}"
    return Outcome(StepStatus.ok, finding, conclusion=conclusion, evidence=evidence, facts=facts)


def _ospf_neighbors(parsed: dict[str, Any]) -> dict[str, dict[str, str]]:
    """router id -> {state, role, interface, address}."""
    neighbors: dict[str, dict[str, str]] = {}
    for interface, data in parsed.get("interfaces", {}).items():
        for router_id, n in data.get("neighbors", {}).items():
            state, _, role = str(n.get("state", "")).partition("/")
            neighbors[router_id] = {
                "state": state.strip().upper(),
                "role": role.strip(),
                "interface": interface,
                "address": n.get("address", ""),
            }
    return neighbors


def check_ospf_neighbor(parsed: dict[str, Any], output: str, params: dict[str, Any]) -> Outcome:
    neighbors = _ospf_neighbors(parsed)
    router_id = params.get("router_id")
    device = params.get("device", "the device")
    full = sorted(r for r, n in neighbors.items() if n["state"] == "FULL")
    facts: dict[str, Any] = {
        "router_id": router_id,
        "neighbors": {r: n["state"] for r, n in neighbors.items()},
        "full": len(full),
        "total": len(neighbors),
    }
    evidence = [line.rstrip() for line in output.splitlines() if line.strip()]
    others = f"{len(full)}/{len(neighbors)} neighbors FULL"
    if router_id is None:
        status = StepStatus.ok if len(full) == len(neighbors) else StepStatus.problem
        return Outcome(status, others, evidence=evidence, facts=facts)
    mine = neighbors.get(router_id)
    facts["present"] = mine is not None
    facts["state"] = mine["state"] if mine else None
    if mine is None:
        return Outcome(
            StepStatus.problem,
            f"{device} ({router_id}) missing from the neighbor table ({others})",
            conclusion=f"OSPF adjacency with {device} lost",
            evidence=evidence,
            facts=facts,
        )
    where = short_interface(mine["interface"])
    if mine["state"] != "FULL":
        return Outcome(
            StepStatus.problem,
            f"{device} ({router_id}) stuck in {mine['state']} on {where}",
            conclusion=f"OSPF adjacency with {device} not converged: hellos seen but no full exchange",
            evidence=evidence,
            facts=facts,
        )
    return Outcome(
        StepStatus.ok,
        f"{device} ({router_id}) FULL on {where} ({others})",
        evidence=evidence,
        facts=facts,
    )


_LOG_LINE = re.compile(
    r"^(?:\d+:\s+)?[*.]?(?P<ts>[A-Z][a-z]{2}\s+\d+\s+(?:\d{4}\s+)?(?P<hms>\d\d:\d\d:\d\d)(?:\.\d+)?)"
    r"(?:\s+[A-Z]{2,5})?:\s+%(?P<tag>[A-Z0-9_]+-\d-[A-Z0-9_]+):\s*(?P<text>.*)$"
)
_UPDOWN = re.compile(r"Interface (?P<intf>\S+?),? changed state to (?P<state>up|down|administratively down)")
_ADJCHG = re.compile(
    r"Nbr (?P<rid>\S+) on (?P<intf>\S+) from (?P<old>\S+) to (?P<new>[^,\s]+)(?:,\s*(?P<why>.*))?"
)
_BGPCHG = re.compile(r"neighbor (?P<peer>\S+)(?: vpn vrf \S+)? (?P<state>Up|Down)\b\s*(?P<why>.*)")


def check_log_events(parsed: dict[str, Any], output: str, params: dict[str, Any]) -> Outcome:
    """Interface flaps toward the device, adjacency changes with it, tracebacks and restarts."""
    interface = params.get("upstream_interface")
    router_id = params.get("router_id")
    peers = {p for p in (router_id, params.get("target_ip")) if p}
    upstream = params.get("upstream", "upstream")
    device = params.get("device", "the device")
    lines = parsed.get("logs") or [line for line in output.splitlines() if "%" in line]
    flaps: list[dict[str, str]] = []
    ospf: list[dict[str, str]] = []
    bgp: list[dict[str, str]] = []
    alarms: list[str] = []
    evidence: list[str] = []
    line_state: str | None = None
    for raw in lines:
        m = _LOG_LINE.match(raw.strip())
        if not m:
            continue
        hms, tag, text = m["hms"], m["tag"], m["text"]
        short_line = f"{hms}: %{tag}: {text}"
        relevant = False
        if tag.startswith(("LINEPROTO-", "LINK-")) and (u := _UPDOWN.search(text)):
            if interface is None or u["intf"] == interface:
                relevant = True
                if tag.startswith("LINEPROTO-"):
                    line_state = u["state"]
                    if u["state"] == "down":
                        flaps.append({"interface": u["intf"], "down_at": hms, "up_at": ""})
                    elif flaps and not flaps[-1]["up_at"]:
                        flaps[-1]["up_at"] = hms
        elif tag.startswith("OSPF-") and (a := _ADJCHG.search(text)):
            if router_id is None or a["rid"] == router_id:
                relevant = True
                ospf.append({"at": hms, "from": a["old"], "to": a["new"], "why": (a["why"] or "").strip()})
        elif tag.startswith("BGP-") and (b := _BGPCHG.search(text)):
            if not peers or b["peer"] in peers:
                relevant = True
                bgp.append({"at": hms, "peer": b["peer"], "state": b["state"], "why": b["why"].strip()})
        if (
            "Traceback" in text
            or tag.startswith(("SYS-2-", "SYS-1-", "SYS-0-", "PMAN-0-"))
            or "RESTART" in tag
        ):
            relevant = True
            alarms.append(short_line)
        if relevant:
            evidence.append(short_line)
    facts: dict[str, Any] = {
        "interface": interface,
        "flaps": flaps,
        "line_protocol_now": line_state,
        "ospf_changes": ospf,
        "ospf_last_state": ospf[-1]["to"] if ospf else None,
        "bgp_changes": bgp,
        "alarms": alarms,
        "first_event_at": (evidence[0].split(": ", 1)[0] if evidence else None),
    }
    if not evidence:
        return Outcome(
            StepStatus.ok,
            f"nothing about {device} in {upstream}'s log ({len(lines)} lines read)",
            facts=facts,
        )
    parts = []
    if flaps:
        first = flaps[0]
        what = f"{short_interface(first['interface'])} flapped at {first['down_at'][:5]}"
        if len(flaps) > 1:
            what += f" ({len(flaps)} times)"
        parts.append(
            what + (", line protocol back up" if line_state == "up" else ", line protocol still down")
        )
    if ospf:
        last = ospf[-1]
        if last["to"].upper() == "FULL":
            parts.append(f"OSPF with {router_id or device} back to FULL at {last['at'][:5]}")
        else:
            parts.append(f"OSPF with {router_id or device} lost at {ospf[0]['at'][:5]}, now {last['to']}")
    if bgp:
        last_bgp = bgp[-1]
        parts.append(f"BGP {last_bgp['peer']} {last_bgp['state'].lower()} at {last_bgp['at'][:5]}")
    if alarms:
        parts.append(f"{len(alarms)} crash/traceback message{'s' if len(alarms) > 1 else ''}")
    recovered = (not flaps or line_state == "up") and (not ospf or ospf[-1]["to"].upper() == "FULL")
    recovered = recovered and (not bgp or bgp[-1]["state"] == "Up") and not alarms
    return Outcome(
        StepStatus.ok if recovered else StepStatus.problem,
        "; ".join(parts),
        evidence=evidence,
        facts=facts,
    )


def _bgp_peers(parsed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """peer address -> {state, prefixes, as, up_down}."""
    peers: dict[str, dict[str, Any]] = {}
    for vrf in parsed.get("vrf", {}).values():
        for address, neighbor in vrf.get("neighbor", {}).items():
            for af in neighbor.get("address_family", {}).values():
                raw = str(af.get("state_pfxrcd", "")).strip()
                established = raw.isdigit()
                peers[address] = {
                    "state": "Established" if established else raw,
                    "prefixes": int(raw) if established else None,
                    "as": af.get("as"),
                    "up_down": af.get("up_down", ""),
                }
    return peers


def check_bgp_neighbor(parsed: dict[str, Any], output: str, params: dict[str, Any]) -> Outcome:
    peers = _bgp_peers(parsed)
    device = params.get("device", "the device")
    wanted = [p for p in (params.get("router_id"), params.get("target_ip")) if p and p in peers]
    facts: dict[str, Any] = {"peers": {a: p["state"] for a, p in peers.items()}}
    evidence = [
        line.rstrip()
        for line in output.splitlines()
        if re.match(r"^(Neighbor|\d+\.\d+\.\d+\.\d+|[0-9a-fA-F:]+:)", line)
    ]

    def describe(address: str) -> str:
        p = peers[address]
        if p["state"] == "Established":
            return f"{address} (AS {p['as']}) Established, {p['prefixes']} prefixes"
        return f"{address} (AS {p['as']}) {p['state']} for {p['up_down']}"

    others = [a for a in peers if a not in wanted]
    down_others = [a for a in others if peers[a]["state"] != "Established"]
    facts["others_down"] = down_others
    if wanted:
        mine = wanted[0]
        facts.update(peer=mine, state=peers[mine]["state"], established=peers[mine]["state"] == "Established")
        text = f"{device} {describe(mine)}"
        if others:
            text += "; " + "; ".join(describe(a) for a in others)
        status = StepStatus.ok if facts["established"] and not down_others else StepStatus.problem
        conclusion = "" if facts["established"] else f"BGP session with {device} is down"
        return Outcome(status, text, conclusion=conclusion, evidence=evidence, facts=facts)
    facts.update(peer=None, state=None, established=None)
    if not peers:
        return Outcome(StepStatus.ok, "no BGP peers configured", facts=facts)
    status = StepStatus.problem if down_others else StepStatus.ok
    return Outcome(status, "; ".join(describe(a) for a in others), evidence=evidence, facts=facts)


def check_value(parsed: dict[str, Any], output: str, params: dict[str, Any]) -> Outcome:
    """Compare one parsed value: params `path` (dots), and `equals`, `one_of`, `at_least` or `at_most`."""
    path = str(params.get("path", ""))
    value: Any = parsed
    for key in [k for k in path.split(".") if k]:
        value = value.get(key) if isinstance(value, dict) else None
    label = params.get("label", path)
    facts = {"path": path, "value": value}
    if value is None:
        return Outcome(StepStatus.problem, f"{label}: not in the output", facts=facts)
    checks = []
    if "equals" in params:
        checks.append((value == params["equals"], f"expected {params['equals']}"))
    if "one_of" in params:
        checks.append((value in params["one_of"], f"expected one of {', '.join(map(str, params['one_of']))}"))
    if "at_least" in params:
        checks.append((float(value) >= float(params["at_least"]), f"expected at least {params['at_least']}"))
    if "at_most" in params:
        checks.append((float(value) <= float(params["at_most"]), f"expected at most {params['at_most']}"))
    failed = [why for ok, why in checks if not ok]
    if failed:
        return Outcome(StepStatus.problem, f"{label}: {value} ({'; '.join(failed)})", facts=facts)
    return Outcome(StepStatus.ok, f"{label}: {value}", facts=facts)


CHECKS: dict[str, CheckFn] = {
    "ping_reachability": check_ping_reachability,
    "interface_health": check_interface_health,
    "ospf_neighbor": check_ospf_neighbor,
    "log_events": check_log_events,
    "bgp_neighbor": check_bgp_neighbor,
    "value": check_value,
}


# ================================================================== analysis


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


# =================================================================== health


def _route_count(parsed: dict[str, Any]) -> int | None:
    vrf = parsed.get("vrf", {}).get("default")
    if not vrf:
        return None
    total = 0
    for source, data in vrf.get("route_source", {}).items():
        if source == "internal" or not isinstance(data, dict):
            continue
        if "networks" in data or "subnets" in data:
            total += int(data.get("networks", 0)) + int(data.get("subnets", 0))
            continue
        for instance in data.values():
            if isinstance(instance, dict):
                total += int(instance.get("networks", 0)) + int(instance.get("subnets", 0))
    return total


def _health_from(device: str, results: dict[str, _CommandResult]) -> DeviceHealth:
    health = DeviceHealth(device=device, reachable=True, checked_at=datetime.now(UTC))
    for command, result in results.items():
        if result.error:
            health.notes.append(f"{command}: {result.error}")
            continue
        parsed = result.parsed or {}
        if command == "show version":
            version = parsed.get("version", {})
            health.uptime = version.get("uptime")
            health.last_reload_reason = version.get("last_reload_reason")
        elif command == "show ip interface brief":
            health.interfaces = {
                name: f"{data.get('status', '?')}/{data.get('protocol', '?')}"
                for name, data in parsed.get("interface", {}).items()
            }
        elif command == "show ip ospf neighbor":
            health.ospf_neighbors = {r: n["state"] for r, n in _ospf_neighbors(parsed).items()}
        elif command == "show ip bgp summary":
            health.bgp_peers = {a: p["state"] for a, p in _bgp_peers(parsed).items()}
        elif command == "show ip route summary":
            health.route_count = _route_count(parsed)
    return health


def _with_known_good(health: DeviceHealth, known_good: dict[str, Any]) -> DeviceHealth:
    """Complete a baseline with the testbed's `custom.known_good` (what healthy looks like)."""
    if not known_good:
        return health if health.reachable else health.model_copy(update={"source": "none"})
    update: dict[str, Any] = {}
    missing: list[str] = []
    interfaces = dict(health.interfaces)
    for name in known_good.get("interfaces", []) or []:
        if interfaces.get(name) != "up/up":
            missing.append(f"interface {name}")
            interfaces[name] = "up/up"
    ospf = dict(health.ospf_neighbors)
    for router_id in known_good.get("ospf_neighbors", []) or []:
        if ospf.get(str(router_id)) != "FULL":
            missing.append(f"OSPF {router_id}")
            ospf[str(router_id)] = "FULL"
    bgp = dict(health.bgp_peers)
    for peer in known_good.get("bgp_peers", []) or []:
        if bgp.get(str(peer)) != "Established":
            missing.append(f"BGP {peer}")
            bgp[str(peer)] = "Established"
    routes = health.route_count
    expected_routes = known_good.get("route_count")
    if expected_routes is not None and (routes is None or routes < int(expected_routes)):
        if routes is not None:
            missing.append(f"route count {routes} < {expected_routes}")
        routes = int(expected_routes)
    update.update(interfaces=interfaces, ospf_neighbors=ospf, bgp_peers=bgp, route_count=routes)
    if not health.reachable:
        update["source"] = "testbed"
        update["notes"] = [*health.notes, "did not answer at declaration: known-good values from the testbed"]
    elif missing:
        update["source"] = "live+testbed"
        update["notes"] = [*health.notes, "below known-good at declaration: " + ", ".join(missing)]
    return health.model_copy(update=update)


def compare(baseline: Baseline, now: dict[str, DeviceHealth]) -> list[VerificationCheck]:
    """Baseline checks, re-read, each with ✅ or ❌ (the template draws them)."""
    checks: list[VerificationCheck] = []
    for name, before in baseline.devices.items():
        after = now.get(name) or DeviceHealth(device=name, reachable=False, error="not checked")
        if after.ping_success_percent is not None:
            reached = after.ping_success_percent >= PING_OK_PERCENT and after.reachable
            detail = f"{after.ping_success_percent:g}% ping success from {after.ping_from}"
            if not after.reachable:
                detail += f"; management: {after.error}"
        else:
            reached = after.reachable
            detail = "answers on its management connection" if reached else f"does not answer: {after.error}"
        checks.append(VerificationCheck(device=name, name=f"{name} reachable", ok=reached, detail=detail))
        if not after.reachable:
            aspects = [
                label
                for label, present in (
                    ("interfaces", before.interfaces),
                    ("OSPF neighbors", before.ospf_neighbors),
                    ("BGP peers", before.bgp_peers),
                    ("route count", before.route_count is not None),
                )
                if present
            ]
            if aspects:
                checks.append(
                    VerificationCheck(
                        device=name,
                        name=f"{name} health",
                        ok=False,
                        detail=f"not checked — {name} did not answer ({', '.join(aspects)})",
                    )
                )
            continue

        wanted_up = sorted(i for i, state in before.interfaces.items() if state == "up/up")
        if wanted_up:
            down = [i for i in wanted_up if after.interfaces.get(i) != "up/up"]
            detail = f"{len(wanted_up) - len(down)}/{len(wanted_up)} up/up as at baseline"
            if down:
                detail += " — " + ", ".join(
                    f"{short_interface(i)} {after.interfaces.get(i, 'missing')}" for i in down
                )
            checks.append(
                VerificationCheck(device=name, name=f"{name} interfaces", ok=not down, detail=detail)
            )

        expected_ospf = set(before.ospf_neighbors) | set(after.ospf_neighbors)
        if expected_ospf:
            fine = {r for r in expected_ospf if after.ospf_neighbors.get(r) in ("FULL", "2WAY")}
            bad = sorted(expected_ospf - fine)
            detail = f"{len(fine)}/{len(expected_ospf)} FULL"
            if bad:
                detail += " — " + ", ".join(f"{r} {after.ospf_neighbors.get(r, 'missing')}" for r in bad)
            checks.append(
                VerificationCheck(device=name, name=f"{name} OSPF neighbors", ok=not bad, detail=detail)
            )

        expected_bgp = set(before.bgp_peers) | set(after.bgp_peers)
        if expected_bgp:
            up = {p for p in expected_bgp if after.bgp_peers.get(p) == "Established"}
            bad = sorted(expected_bgp - up)
            if len(expected_bgp) == 1 and not bad:
                detail = "Established"
            else:
                detail = f"{len(up)}/{len(expected_bgp)} Established"
            if bad:
                detail += " — " + ", ".join(f"{p} {after.bgp_peers.get(p, 'missing')}" for p in bad)
            checks.append(VerificationCheck(device=name, name=f"{name} BGP peers", ok=not bad, detail=detail))

        if before.route_count is not None:
            if after.route_count is None:
                detail = (
                    "could not be read: " + "; ".join(after.notes[-1:])
                    if after.notes
                    else "could not be read"
                )
                checks.append(
                    VerificationCheck(device=name, name=f"{name} route count", ok=False, detail=detail)
                )
            else:
                have, had = after.route_count, before.route_count
                if have == had:
                    detail = f"{have} routes (matches baseline)"
                elif have > had:
                    detail = f"{have} routes (baseline {had})"
                else:
                    detail = f"{have} routes (baseline {had}, {had - have} missing)"
                checks.append(
                    VerificationCheck(device=name, name=f"{name} route count", ok=have >= had, detail=detail)
                )
    return checks


# ================================================================== sessions


@dataclass
class _Command:
    command: str
    parser: str
    timeout: float


@dataclass
class _CommandResult:
    command: str
    output: str = ""
    parsed: dict[str, Any] | None = None
    error_kind: str | None = None
    error: str | None = None


@dataclass
class _Session:
    name: str
    device: Any
    lock: threading.Lock = field(default_factory=threading.Lock)
    last_used: float = field(default_factory=time.monotonic)
    broken: bool = False


class _Progress:
    """Where a device operation is, shared by its thread and the waiting activity."""

    def __init__(self) -> None:
        self.phase = "waiting"
        self.command = ""
        self.since = time.monotonic()
        self.limit: float | None = None
        self.abandoned = False

    def enter(self, phase: str, limit: float | None, command: str = "") -> None:
        self.phase, self.command, self.limit, self.since = phase, command, limit, time.monotonic()

    def overdue(self) -> bool:
        return self.limit is not None and time.monotonic() - self.since > self.limit + DEADLINE_GRACE


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo and len(seen) < 20:
        current = todo.pop(0)
        if any(current is s for s in seen):
            continue
        seen.append(current)
        for nxt in (current.__cause__, current.__context__):
            if nxt is not None:
                todo.append(nxt)
        todo.extend(arg for arg in current.args if isinstance(arg, BaseException))
    return seen


def classify_connect_error(exc: BaseException, timeout: float) -> tuple[str, str]:
    """(kind, words for Slack) for a failed connect."""
    chain = _chain(exc)
    names = {type(e).__name__ for e in chain}
    text = " ".join(str(e) for e in chain)
    if names & {"CredentialsExhaustedError", "UniconAuthenticationError"} or re.search(
        r"Authentication failed|Login invalid|Bad passwords|Permission denied|Access denied", text, re.I
    ):
        return "auth", "refused the login: authentication failed (check the testbed's credentials)"
    if "ConnectionRefusedError" in names or re.search(r"connection refused", text, re.I):
        return "refused", "refused the connection"
    if "TimeoutError" in names or re.search(r"timeout|timed out", text, re.I):
        return "timeout", f"did not answer within {timeout:g} s"
    if "EOF" in names or re.search(r"closed|EOF", text):
        return "closed", "closed the connection"
    first = next(
        (str(e).strip().splitlines()[0] for e in reversed(chain) if str(e).strip()), type(exc).__name__
    )
    return "failed", f"could not be connected to: {first[:200]}"


class _Secrets:
    """Mask the testbed's passwords and config secrets in anything that leaves the activity."""

    def __init__(self, values: set[str]) -> None:
        self._values = sorted((v for v in values if v and len(v) >= 3), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, "********")
        return _CONFIG_SECRET.sub(lambda m: m["key"] + "<removed>", text)

    def tree(self, value: Any) -> Any:
        """The same for every string in parsed data (dicts, lists)."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {k: self.tree(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.tree(v) for v in value]
        return value


def _testbed_secrets(testbed: Any) -> set[str]:
    values: set[str] = set()

    def collect(credentials: Any) -> None:
        for cred in (credentials or {}).values():
            for key, value in dict(cred).items():
                if key != "username":
                    values.add(str(getattr(value, "plaintext", value)))

    collect(getattr(testbed, "credentials", None))
    for device in testbed.devices.values():
        collect(getattr(device, "credentials", None))
        for name in getattr(device, "connections", {}) or {}:
            connection = device.connections[name]
            if isinstance(connection, dict):
                collect(connection.get("credentials"))
    return values


def _heartbeat(*details: Any) -> None:
    if activity.in_activity():
        activity.heartbeat(*details)


def _heartbeat_every() -> float:
    if activity.in_activity():
        timeout = activity.info().heartbeat_timeout
        if timeout:
            return max(0.5, min(5.0, timeout.total_seconds() / 3))
    return 5.0


def _resolve(path: str | Path) -> Path:
    """A relative path from the working directory, else from the project (a fresh clone run from anywhere)."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or candidate.exists():
        return candidate.resolve()
    return (PROJECT_ROOT / candidate).resolve()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")[:60] or "output"


# ================================================================ activities


class DeviceActivities:
    """Activities that speak to the devices of one pyATS testbed."""

    def __init__(
        self,
        testbed_path: str | Path,
        plans_dir: str | Path,
        connect_timeout: float = 20.0,
        command_timeout: float = 60.0,
        *,
        connect_attempts: int = 2,
        idle_timeout: float = 300.0,
        max_threads: int = 64,
        attach_after_lines: int = 25,
    ) -> None:
        self.testbed_path = _resolve(testbed_path)
        self.plans_dir = _resolve(plans_dir)
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.connect_attempts = max(1, connect_attempts)
        self.idle_timeout = idle_timeout
        self.attach_after_lines = attach_after_lines
        self._executor = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="pyats")
        self._lock = threading.Lock()  # testbed, sessions
        self._testbed: Any = None
        self._stamp: tuple[int, int] | None = None
        self._secrets = _Secrets(set())
        self._sessions: dict[str, _Session] = {}
        self._parsers_warm = False

    # ---------------------------------------------------------- activities

    @activity.defn(name="capture_baseline")
    async def capture_baseline(self, request: BaselineRequest) -> Baseline:
        """Health of the incident's devices and their upstream neighbours, all at once.

        A device that does not answer is recorded as not reachable, with why;
        the testbed's `custom.known_good` stands in for what could not be read.
        Read-only, so a retry reads again.
        """
        await self._load_testbed()
        upstream = self._upstreams(request.devices, request.upstream)
        names = list(dict.fromkeys([*request.devices, *upstream.values()]))
        healths = await self._read_health(names, upstream)
        devices = {name: _with_known_good(health, self._known_good(name)) for name, health in healths.items()}
        return Baseline(
            incident_key=request.incident_key,
            captured_at=datetime.now(UTC),
            devices=devices,
            upstream=upstream,
        )

    @activity.defn(name="plan_investigation")
    async def plan_investigation(self, request: InvestigationRequest) -> InvestigationPlan:
        """The plan's steps for the incident's devices, grouped by the device they run on.

        Steps whose parameters are unknown for a device (no upstream, no link
        in the topology) are left out, and `notes` says so. Pure given the
        plan file and the testbed.
        """
        spec = load_plan(self.plans_dir, request.plan)
        await self._load_testbed()
        upstreams = self._upstreams(request.devices, request.upstream)
        notes: list[str] = []
        drafts: list[InvestigationStep] = []
        for target in dict.fromkeys(request.devices):
            if target not in self._testbed.devices:
                notes.append(f"{target} is not in the testbed ({self.testbed_path.name}): nothing to run")
                continue
            up = upstreams.get(target)
            if up is not None and up not in self._testbed.devices:
                notes.append(f"{target}'s upstream {up} is not in the testbed: steps on it skipped")
                up = None
            params = self._step_params(target, up)
            for spec_step in spec.steps:
                runs_on = up if spec_step.on == "upstream" else target
                if runs_on is None:
                    notes.append(
                        f"{_fill_safe(spec_step.title, params)} skipped: no upstream known for {target}"
                    )
                    continue
                try:
                    title = _fill(spec_step.title, params)
                    command = _fill(spec_step.command, params)
                    parser = _fill(spec_step.parser or spec_step.command, params)
                except _MissingParam as missing:
                    notes.append(
                        f"{_fill_safe(spec_step.title, params)} skipped for {target}: {{{missing.args[0]}}} unknown"
                    )
                    continue
                drafts.append(
                    InvestigationStep(
                        index=0,
                        total=0,
                        title=title,
                        device=runs_on,
                        target=target,
                        upstream=up,
                        command=command,
                        parser=parser,
                        check=spec_step.check,
                        params={**params, **spec_step.params},
                        group=runs_on,
                        timeout_seconds=spec_step.timeout,
                    )
                )
        total = len(drafts)
        steps = [s.model_copy(update={"index": i, "total": total}) for i, s in enumerate(drafts, start=1)]
        groups: dict[str, list[int]] = {}
        for s in steps:
            groups.setdefault(s.group, []).append(s.index)
        return InvestigationPlan(
            incident_key=request.incident_key,
            plan=spec.name,
            description=spec.description,
            steps=steps,
            groups=list(groups.values()),
            notes=notes,
        )

    @activity.defn(name="run_investigation_step")
    async def run_investigation_step(self, request: StepRequest) -> StepResult:
        """Run one step: the command, Genie's parser, the check; heartbeats while it runs.

        A device that refuses, never answers or rejects the login gives a
        result with status `error` and the reason, at once: not an exception.
        Read-only, so a retry runs the command again and changes nothing.
        """
        step = request.step
        started = datetime.now(UTC)
        clock = time.monotonic()
        await self._load_testbed()
        timeout = step.timeout_seconds or self.command_timeout
        command = _Command(step.command, step.parser, timeout)
        details = {"step": step.index, "device": step.device, "command": step.command}

        def result(outcome: Outcome, *, error_kind: str | None = None, raw: str = "") -> StepResult:
            raw = self._secrets(raw)
            truncated = len(raw) > RAW_OUTPUT_LIMIT
            lines = raw.count("\n") + 1 if raw else 0
            return StepResult.of(
                step,
                outcome.status,
                self._secrets(outcome.finding),
                conclusion=self._secrets(outcome.conclusion),
                evidence=[self._secrets(line) for line in outcome.evidence[:EVIDENCE_LINES]],
                facts=self._secrets.tree(outcome.facts),
                error_kind=error_kind,
                raw_output=raw[:RAW_OUTPUT_LIMIT],
                raw_truncated=truncated,
                attach_raw=lines > self.attach_after_lines,
                raw_filename=f"{step.device}-{_slug(step.command)}.txt" if raw else "",
                started_at=started,
                duration_seconds=round(time.monotonic() - clock, 3),
            )

        try:
            [answer] = await self._on_device(step.device, [command], details)
        except DeviceUnavailable as unavailable:
            return result(
                Outcome(
                    StepStatus.error, f"{step.device} {unavailable.message}", facts={"device": step.device}
                ),
                error_kind=unavailable.kind,
            )
        if answer.error_kind is not None:
            outcome = Outcome(
                StepStatus.error, answer.error or "failed", evidence=answer.output.splitlines()[-5:]
            )
            return result(outcome, error_kind=answer.error_kind, raw=answer.output)
        check = CHECKS[step.check]
        try:
            outcome = check(answer.parsed or {}, answer.output, step.params)
        except Exception as exc:  # a bug in a check must not stop the investigation
            log.exception("check %s failed on step %s", step.check, step.index)
            outcome = Outcome(StepStatus.error, f"check {step.check} failed: {type(exc).__name__}: {exc}")
            return result(outcome, error_kind="check", raw=answer.output)
        return result(outcome, raw=answer.output)

    @activity.defn(name="analyse_investigation")
    async def analyse_investigation(self, request: AnalysisRequest) -> Analysis:
        """The most likely cause from the steps' findings. Pure: no device is touched."""
        return analyse(request)

    @activity.defn(name="verify_against_baseline")
    async def verify_against_baseline(self, request: VerificationRequest) -> Verification:
        """Re-read the baseline's checks and compare; a failed check is reported, never raised."""
        await self._load_testbed()
        baseline = request.baseline
        now = await self._read_health(list(baseline.devices), baseline.upstream)
        checks = compare(baseline, now)
        failed = [c for c in checks if not c.ok]
        if not checks:
            summary = "nothing to verify: the baseline holds no device"
        elif failed:
            summary = f"{len(failed)} of {len(checks)} checks failed: " + ", ".join(c.name for c in failed)
        else:
            summary = f"all {len(checks)} checks passed"
        return Verification(
            incident_key=request.incident_key,
            checked_at=datetime.now(UTC),
            checks=checks,
            passed=not failed,
            summary=summary,
            devices=now,
        )

    # ----------------------------------------------------------- lifecycle

    async def warm_up(self) -> None:
        """Load the testbed and Genie's parsers before the first incident needs them (~2 s)."""
        await self._load_testbed()
        await asyncio.get_running_loop().run_in_executor(self._executor, self._warm_parsers)

    async def close(self) -> None:
        """Disconnect every session (worker shutdown)."""
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(self._executor, self._retire, s) for s in sessions), return_exceptions=True
        )
        await loop.run_in_executor(self._executor, _reaper.wait, 5.0)  # no zombies left behind
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------- testbed

    async def _load_testbed(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._testbed_now)

    def _testbed_now(self) -> Any:
        try:
            stat = self.testbed_path.stat()
        except OSError as exc:
            raise _non_retryable(
                "TestbedError", f"testbed {self.testbed_path} cannot be read: {exc}"
            ) from None
        stamp = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if stamp == self._stamp and self._testbed is not None:
                return self._testbed
            from pyats.topology import loader

            try:
                testbed = loader.load(str(self.testbed_path))
            except Exception as exc:
                raise _non_retryable(
                    "TestbedError",
                    f"testbed {self.testbed_path} cannot be loaded: {type(exc).__name__}: {exc}",
                ) from None
            retired = list(self._sessions.values())
            self._sessions.clear()
            self._testbed, self._stamp = testbed, stamp
            self._secrets = _Secrets(_testbed_secrets(testbed))
        for session in retired:  # the devices may have changed: reconnect on next use
            self._executor.submit(self._retire, session)
        return testbed

    def _upstreams(self, devices: list[str], given: dict[str, str]) -> dict[str, str]:
        """device -> upstream: from the incident, else the testbed's `custom.upstream`."""
        found: dict[str, str] = {}
        for name in devices:
            upstream = given.get(name)
            if upstream is None and name in self._testbed.devices:
                upstream = (self._testbed.devices[name].custom or {}).get("upstream")
            if upstream:
                found[name] = str(upstream)
        return found

    def _known_good(self, name: str) -> dict[str, Any]:
        if name not in self._testbed.devices:
            return {}
        return dict((self._testbed.devices[name].custom or {}).get("known_good") or {})

    def _step_params(self, target: str, upstream: str | None) -> dict[str, Any]:
        """What a plan can refer to, from the testbed's topology and custom data."""
        device = self._testbed.devices[target]
        custom = device.custom or {}
        params: dict[str, Any] = {"device": target}
        router_id = custom.get("router_id")
        loopback = next(
            (i for i in device.interfaces.values() if i.name.lower().startswith("loopback0")), None
        )
        if router_id is None and loopback is not None and getattr(loopback, "ipv4", None):
            router_id = str(loopback.ipv4.ip)
        if router_id:
            params["router_id"] = str(router_id)
        if upstream is not None:
            params["upstream"] = upstream
            peer = self._testbed.devices[upstream]
            for link in device.find_links(peer):
                mine = next((i for i in link.interfaces if i.device is device), None)
                theirs = next((i for i in link.interfaces if i.device is peer), None)
                if mine is not None and theirs is not None:
                    if getattr(mine, "ipv4", None):
                        params["target_ip"] = str(mine.ipv4.ip)
                    params["upstream_interface"] = theirs.name
                    params["upstream_intf"] = short_interface(theirs.name)
                    break
        if "target_ip" not in params and custom.get("address"):
            params["target_ip"] = str(custom["address"])
        if "target_ip" not in params and router_id:
            params["target_ip"] = str(router_id)
        return params

    # ------------------------------------------------------------- health

    async def _read_health(self, names: list[str], upstream: dict[str, str]) -> dict[str, DeviceHealth]:
        """Each device's health commands, and a ping from its upstream, all at the same time."""
        commands = [_Command(c, p, self.command_timeout) for c, p in HEALTH_COMMANDS]

        async def own(name: str) -> DeviceHealth:
            try:
                results = await self._on_device(name, commands, {"device": name, "reading": "health"})
            except DeviceUnavailable as unavailable:
                return DeviceHealth(
                    device=name,
                    reachable=False,
                    error=unavailable.message,
                    error_kind=unavailable.kind,
                    checked_at=datetime.now(UTC),
                )
            health = _health_from(name, {r.command: r for r in results})
            return health.model_copy(update={"notes": [self._secrets(n) for n in health.notes]})

        async def ping(name: str) -> tuple[str, float | None]:
            source = upstream.get(name)
            if source is None or name not in self._testbed.devices or source not in self._testbed.devices:
                return name, None
            target_ip = self._step_params(name, source).get("target_ip")
            if target_ip is None:
                return name, None
            command = _Command(f"ping {target_ip} repeat 5", f"ping {target_ip}", self.command_timeout)
            try:
                [answer] = await self._on_device(source, [command], {"device": source, "ping": name})
            except DeviceUnavailable:
                return name, None
            stats = (answer.parsed or {}).get("ping", {}).get("statistics", {})
            return name, (float(stats["success_rate_percent"]) if "success_rate_percent" in stats else None)

        healths, pings = await asyncio.gather(
            asyncio.gather(*(own(n) for n in names)), asyncio.gather(*(ping(n) for n in names))
        )
        by_name = {h.device: h for h in healths}
        for name, percent in pings:
            if percent is not None:
                by_name[name] = by_name[name].model_copy(
                    update={"ping_from": upstream[name], "ping_success_percent": percent}
                )
        return {name: by_name[name] for name in names}

    # ---------------------------------------------------------- the threads

    async def _on_device(
        self, name: str, commands: list[_Command], details: dict[str, Any]
    ) -> list[_CommandResult]:
        """Run commands on one device in a pool thread; heartbeat and keep the deadline meanwhile."""
        progress = _Progress()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self._in_session, name, commands, progress)
        future.add_done_callback(_consume)
        every = _heartbeat_every()
        last_beat = time.monotonic()
        try:
            while True:
                done, _ = await asyncio.wait({future}, timeout=0.2)
                if done:
                    return future.result()
                if progress.overdue():
                    progress.abandoned = True
                    if progress.phase == "connecting":
                        raise DeviceUnavailable("timeout", f"did not answer within {progress.limit or 0:g} s")
                    raise DeviceUnavailable(
                        "timeout", f"did not finish `{progress.command}` within {progress.limit or 0:g} s"
                    )
                if time.monotonic() - last_beat >= every:
                    _heartbeat({**details, "phase": progress.phase})
                    last_beat = time.monotonic()
        except BaseException:
            progress.abandoned = True  # the thread cleans its session up when it comes back
            raise

    def _in_session(self, name: str, commands: list[_Command], progress: _Progress) -> list[_CommandResult]:
        session = self._session(name)
        wait = self._connect_timeout(session.device) + self.command_timeout * 2
        if not session.lock.acquire(timeout=wait):
            raise DeviceUnavailable("busy", f"was busy with other checks for more than {wait:g} s")
        try:
            if progress.abandoned:
                return []
            reused = self._connect(session, progress)
            self._warm_parsers()
            results = []
            for i, command in enumerate(commands):
                try:
                    results.append(self._execute(session, command, progress))
                except _SessionLost:
                    if not (reused and i == 0):
                        raise DeviceUnavailable("closed", "closed the session while running checks") from None
                    # A kept session the device dropped meanwhile (a reload, an idle timer): once more, afresh.
                    session.broken = True
                    self._connect(session, progress)
                    results.append(self._execute(session, command, progress))
            return results
        finally:
            session.last_used = time.monotonic()
            if progress.abandoned:
                session.broken = True
            if session.broken:
                _destroy(session.device)
                session.broken = False
            session.lock.release()

    def _session(self, name: str) -> _Session:
        testbed = self._testbed_now()
        with self._lock:
            stale = [
                s
                for s in self._sessions.values()
                if s.name != name
                and time.monotonic() - s.last_used > self.idle_timeout
                and not s.lock.locked()
            ]
            for s in stale:
                del self._sessions[s.name]
            session = self._sessions.get(name)
            if session is None:
                if name not in testbed.devices:
                    raise DeviceUnavailable(
                        "unknown_device", f"is not in the testbed ({self.testbed_path.name})"
                    )
                session = self._sessions[name] = _Session(name=name, device=testbed.devices[name])
        for s in stale:
            self._executor.submit(self._retire, s)
        return session

    def _connect_timeout(self, device: Any) -> float:
        """The device's own connect timeout where its testbed sets one, else the worker's.

        The testbed's place for it is unicon's: `connections.<via>.arguments.connection_timeout`.
        A slow device (a satellite site) gets longer without slowing every other one down.
        """
        try:
            via = device.connections.get("defaults", {}).get("via") or "cli"
            value = (device.connections.get(via, {}).get("arguments") or {}).get("connection_timeout")
            return float(value) if value is not None and float(value) > 0 else self.connect_timeout
        except (AttributeError, TypeError, ValueError):
            return self.connect_timeout

    def _connect(self, session: _Session, progress: _Progress) -> bool:
        """Connect unless a kept session is still up; True when it was reused."""
        device = session.device
        if not session.broken and _is_connected(device):
            return True
        _destroy(device)
        session.broken = False
        timeout = self._connect_timeout(device)
        for attempt in range(1, self.connect_attempts + 1):
            progress.enter("connecting", timeout)
            try:
                device.connect(
                    log_stdout=False,
                    logfile=os.devnull,
                    learn_hostname=False,
                    connection_timeout=timeout,
                    init_exec_commands=INIT_EXEC_COMMANDS,
                    init_config_commands=[],
                )
                return False
            except Exception as exc:
                _destroy(device)
                kind, message = classify_connect_error(exc, timeout)
                if (
                    progress.abandoned
                    or kind not in ("refused", "closed")
                    or attempt == self.connect_attempts
                ):
                    raise DeviceUnavailable(kind, self._secrets(message)) from None
                time.sleep(CONNECT_RETRY_PAUSE * attempt)
        raise DeviceUnavailable("failed", "could not be connected to")  # pragma: no cover

    def _execute(self, session: _Session, command: _Command, progress: _Progress) -> _CommandResult:
        from unicon.core.errors import EOF, SubCommandFailure
        from unicon.core.errors import TimeoutError as UniconTimeout

        progress.enter("running", command.timeout, command.command)
        device = session.device
        try:
            output = device.execute(command.command, timeout=command.timeout)
        except SubCommandFailure as exc:
            text = " ".join(str(a) for e in _chain(exc) for a in e.args if isinstance(a, str))
            said = next((ln.strip() for ln in text.splitlines() if ln.strip().startswith("%")), "")
            return _CommandResult(
                command.command,
                output=said,
                error_kind="command",
                error=f"{session.name} rejected `{command.command}`" + (f": {said}" if said else ""),
            )
        except UniconTimeout:
            session.broken = True
            return _CommandResult(
                command.command,
                error_kind="timeout",
                error=f"{session.name} did not finish `{command.command}` within {command.timeout:g} s",
            )
        except EOF:
            raise _SessionLost() from None
        except Exception as exc:
            if any(type(e).__name__ in ("EOF", "ConnectionError", "OSError") for e in _chain(exc)):
                raise _SessionLost() from None
            raise
        output = str(output).replace("\r\n", "\n").replace("\r", "\n")
        progress.enter("parsing", command.timeout, command.command)
        from genie.metaparser.util.exceptions import SchemaEmptyParserError

        try:
            parsed = device.parse(command.parser, output=output)
        except SchemaEmptyParserError:
            parsed = {}
        except Exception as exc:
            return _CommandResult(
                command.command,
                output=output,
                error_kind="parse",
                error=f"Genie could not parse `{command.parser}` from {session.name}: {type(exc).__name__}",
            )
        return _CommandResult(command.command, output=output, parsed=dict(parsed))

    def _warm_parsers(self) -> None:
        if self._parsers_warm:
            return
        from genie.conf.base import Device
        from genie.libs.parser.utils.common import get_parser

        probe = Device("warm-up", os="iosxe")
        for command in [p for _, p in HEALTH_COMMANDS] + [
            "ping 10.0.0.1",
            "show logging",
            "show interfaces Gi1",
        ]:
            try:
                get_parser(command, probe)
            except Exception:  # only a warm-up
                pass
        self._parsers_warm = True

    def _retire(self, session: _Session) -> None:
        with session.lock:
            _destroy(session.device)


class _SessionLost(Exception):
    pass


def _consume(future: asyncio.Future[Any] | Future[Any]) -> None:
    """An abandoned device thread's outcome is not awaited by anyone: read it so asyncio stays quiet."""
    if not future.cancelled():
        future.exception()


def _is_connected(device: Any) -> bool:
    try:
        return bool(device.is_connected())
    except Exception:
        return False


def _destroy(device: Any) -> None:
    manager = getattr(device, "connectionmgr", None)
    if manager is None or not manager.connections:
        return
    pids = []
    for connection in list(manager.connections.values()):
        pid = getattr(getattr(connection, "spawn", None), "pid", None)
        if isinstance(pid, int) and pid > 0:
            pids.append(pid)
    try:
        device.destroy_all()
    except Exception as exc:  # closing a dead session may fail; the process is gone either way
        log.debug("destroying %s: %s", getattr(device, "name", "?"), exc)
    _reaper.collect(pids)


class _Reaper:
    """Collects the processes of closed sessions (ssh, telnet, mocks) that unicon did not wait for.

    unicon waits only briefly for a closed session's process to exit; on a
    busy worker many exit later and would stay zombies for the worker's
    life. Only the pids of our own sessions are waited for.
    """

    def __init__(self) -> None:
        self._pids: dict[int, float] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def collect(self, pids: list[int]) -> None:
        if not pids:
            return
        with self._lock:
            for pid in pids:
                self._pids[pid] = time.monotonic() + 120
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="pyats-reaper", daemon=True)
                self._thread.start()

    def wait(self, timeout: float) -> bool:
        """True once every process handed over so far has been collected."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._pids:
                    return True
            time.sleep(0.1)
        return False

    def _run(self) -> None:
        while True:
            time.sleep(0.5)
            with self._lock:
                for pid, give_up_at in list(self._pids.items()):
                    try:
                        done = os.waitpid(pid, os.WNOHANG)[0] == pid
                    except ChildProcessError:  # already collected (by unicon)
                        done = True
                    if done or time.monotonic() > give_up_at:
                        del self._pids[pid]
                if not self._pids:
                    self._thread = None
                    return


_reaper = _Reaper()


def _fill_safe(template: str, params: dict[str, Any]) -> str:
    try:
        return _fill(template, params)
    except _MissingParam:
        return template
