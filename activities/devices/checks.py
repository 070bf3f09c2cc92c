"""The checks a plan step names: a command's Genie-parsed output -> an `Outcome` (pure).

`CHECKS` maps the names plans use (`check: ping_reachability`, ...) to the
functions; the helpers that read OSPF and BGP tables and interface names are
shared with the analysis and the health readings.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from workflows.device_models import StepStatus

PING_OK_PERCENT = 80.0  # the first echo of a ping is often lost to ARP

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


def short_interface(name: str) -> str:
    """GigabitEthernet1 -> Gi1, as engineers write it."""
    for long, short in _INTERFACE_ABBREVIATIONS:
        if name.startswith(long):
            return short + name[len(long) :]
    return name


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
