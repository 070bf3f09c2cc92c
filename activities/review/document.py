"""The post-incident review document and its artifacts, drafted from the incident's own record.

Nothing here is typed in again: every line comes from the incident's state (its timeline,
figures, roles, baseline and verification). The sections only people can write (what went
well, contributing factors, 5 whys, ...) are left as prompts. The template is
activities/templates/review/review.md.j2 (Markdown).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from activities.rendering import environment
from workflows.device_models import DeviceHealth
from workflows.figures import IncidentFigures, figures_of
from workflows.models import ROLES, IncidentState
from workflows.review_models import ReviewSchedule

TEMPLATE = "review/review.md.j2"
# Timeline entries that say what was escalated and why (the review's Response section).
ESCALATION_KINDS = ("escalation", "severity", "trigger", "no_root_cause")


def _cell(value: Any) -> str:
    """Text for one Markdown table cell: one line, pipes escaped."""
    text = "" if value is None else str(value)
    return " ".join(text.split()).replace("|", "\\|")


def _utc_seconds(value: datetime | str | None) -> str:
    if isinstance(value, str) and value:
        value = datetime.fromisoformat(value)
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M:%S}" if isinstance(value, datetime) else "—"


def _env() -> Any:
    env = environment()
    env.filters.setdefault("cell", _cell)
    env.filters.setdefault("utc_seconds", _utc_seconds)
    return env


@dataclass
class HealthRow:
    device: str
    check: str
    before: str
    after: str


def _reading(health: DeviceHealth | None) -> dict[str, str]:
    if health is None:
        return {}
    if not health.reachable:
        return {"reachable": f"no ({health.error or 'unreachable'})"}
    found = {"reachable": "yes"}
    if health.ping_success_percent is not None:
        found["ping"] = f"{health.ping_success_percent:g}%"
    for name, state in sorted(health.interfaces.items()):
        found[f"interface {name}"] = state
    for peer, state in sorted(health.ospf_neighbors.items()):
        found[f"OSPF {peer}"] = state
    for peer, state in sorted(health.bgp_peers.items()):
        found[f"BGP {peer}"] = state
    if health.route_count is not None:
        found["routes"] = str(health.route_count)
    if health.uptime:
        found["uptime (show version)"] = health.uptime
    if health.last_reload_reason:
        found["last reload reason (show version)"] = health.last_reload_reason
    return found


def health_rows(state: IncidentState) -> list[HealthRow]:
    """The baseline beside the verification's reading, per device and check."""
    before = state.baseline.devices if state.baseline else {}
    after = state.verification.devices if state.verification else {}
    rows = []
    for device in sorted(set(before) | set(after)):
        b, a = _reading(before.get(device)), _reading(after.get(device))
        for check in [*b, *(c for c in a if c not in b)]:
            rows.append(HealthRow(device, check, b.get(check, "—"), a.get(check, "—")))
    return rows


def roles_of(state: IncidentState) -> list[tuple[str, str]]:
    rows = [(ROLES[r].capitalize(), state.roles[r]) for r in ROLES if r in state.roles]
    if state.experts:
        rows.append(("Subject-matter experts", ", ".join(state.experts)))
    return rows


def render_review(
    state: IncidentState,
    *,
    figures: IncidentFigures | None = None,
    schedule: ReviewSchedule | None = None,
    ui_url: str = "",
) -> str:
    """The review as Markdown."""
    figures = figures or figures_of(state)
    schedule = schedule or state.review
    escalated = [e for e in state.timeline if e.kind in ESCALATION_KINDS]
    escalated += [e for e in state.timeline if e.kind == "paging" and not e.text.endswith("(declared)")]
    escalated.sort(key=lambda e: e.at)
    text = (
        _env()
        .get_template(TEMPLATE)
        .render(
            incident=state,
            figures=figures,
            schedule=schedule,
            roles=roles_of(state),
            escalated=escalated,
            health=health_rows(state),
            ui_url=ui_url,
        )
    )
    return text.strip() + "\n"


def timeline_text(state: IncidentState) -> str:
    """The timeline as a tab-separated file: UTC time, kind, who, what."""
    lines = ["time_utc\tkind\tactor\ttext"]
    for e in state.timeline:
        lines.append("\t".join((_utc_seconds(e.at), e.kind, _cell(e.actor), _cell(e.text))))
    return "\n".join(lines) + "\n"


def health_text(state: IncidentState) -> str:
    """The pre/post health-check comparison as a Markdown table."""
    rows = health_rows(state)
    if not rows:
        return "No device health was captured for this incident.\n"
    out = ["| Device | Check | Before (baseline) | After (verification) |", "|---|---|---|---|"]
    out += [f"| {_cell(r.device)} | {_cell(r.check)} | {_cell(r.before)} | {_cell(r.after)} |" for r in rows]
    if state.baseline:
        out.append(f"\nBaseline captured {_utc_seconds(state.baseline.captured_at)} UTC.")
    if state.verification:
        v = state.verification
        out.append(
            f"Verification {_utc_seconds(v.checked_at)} UTC: {'passed' if v.passed else 'FAILED'}: {v.summary}"
        )
    return "\n".join(out) + "\n"
