"""A device's health (baseline and verification): the commands read, what they say, the comparison.

`HEALTH_COMMANDS` are read on each device; `_health_from` turns their results
into a `DeviceHealth`, `_with_known_good` completes a baseline with the
testbed's `custom.known_good`, and `compare` checks a later reading against
the baseline (pure).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from workflows.device_models import Baseline, DeviceHealth, VerificationCheck

from .checks import PING_OK_PERCENT, _bgp_peers, _ospf_neighbors, short_interface
from .sessions import _CommandResult

KEEP_OUTPUT = ("show version",)  # kept whole (masked) for the post-incident review's artifacts
MAX_KEPT_OUTPUT = 20_000  # characters of one kept output
HEALTH_COMMANDS = (
    ("show version", "show version"),
    ("show ip interface brief", "show ip interface brief"),
    ("show ip ospf neighbor", "show ip ospf neighbor"),
    ("show ip bgp summary", "show ip bgp summary"),
    ("show ip route summary", "show ip route summary"),
)


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
        if command in KEEP_OUTPUT and result.output:
            health.outputs[command] = result.output[:MAX_KEPT_OUTPUT]
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
