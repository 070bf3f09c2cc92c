"""The `incident` command: declare, signal, inspect and list incidents; `incident dev` runs it all.

Every error a person can act on (unknown incident, closed incident, bad
severity or status, Temporal not running) is ONE red line on stderr and a
non-zero exit code (1, or 2 for bad input), never a traceback.
Set INCIDENT_DEBUG=1 to see tracebacks of unexpected errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import getpass
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar
from zoneinfo import ZoneInfo

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

import activities.settings as ports
from activities.audit import AuditEntry, derive_audit, fetch_histories, to_json_lines
from activities.paging.schedule import (
    OnCall,
    OnCallError,
    Override,
    Participant,
    Schedule,
    active_override,
    current_shift,
    load_oncall,
    overrides_document,
    wall_to_utc,
)
from activities.review.document import render_review
from activities.settings import Settings
from starter.actions import action_items, overdue, send_action_command
from starter.connect import CLI_CLIENT, TemporalUnreachable, connect
from starter.declare import (
    CommandPending,
    CommandRefused,
    IncidentError,
    InputTooLong,
    build_list_query,
    declare_incident,
    describe_incident,
    incident_key,
    new_incident_key,
    query_state,
    send_command,
    send_signal,
    ui_url,
    worker_polling,
)
from workflows import limits
from workflows.action_models import ActionItemDoneSignal, ActionItemSignal, due_date
from workflows.action_state import ActionItem, action_priority
from workflows.commands import STAKEHOLDER_STATUSES, snooze_problem
from workflows.figures import figures_of, seconds_text
from workflows.maintenance import (
    MaintenanceChange,
    MaintenanceWindow,
    MaintenanceWorkflow,
    maintenance_workflow_id,
)
from workflows.models import (
    COMMANDER_ATTR,
    PHASE_ATTR,
    ROLES,
    SERVICE_ATTR,
    SEVERITY_ATTR,
    SLACK_USER_ID,
    UPDATE_STATUSES,
    AcknowledgeSignal,
    ClaimSignal,
    IncidentDeclaration,
    IncidentState,
    IncidentSummary,
    Phase,
    ResolveSignal,
    ReviewDoneSignal,
    RoleSignal,
    Severity,
    SeveritySignal,
    Signal,
    SnoozeSignal,
    StakeholderSignal,
    TimelineEntry,
    UpdateSignal,
    WarRoomSignal,
    role_name,
    workflow_id_for,
)
from workflows.policy import format_duration, parse_duration

T = TypeVar("T")

app = typer.Typer(
    name="incident",
    help="Durable incident response on Temporal: declare, claim, update, resolve and review incidents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

out = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)

USAGE = 2  # exit code for bad input, as click uses for usage errors
DEFAULT_WAIT = 10.0


# ------------------------------------------------------------------ errors


class CliError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = 1) -> NoReturn:
    raise CliError(message, code)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _pydantic_line(exc: ValidationError) -> str:
    parts = []
    for item in exc.errors():
        where = ".".join(str(p) for p in item["loc"])
        msg = item["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "invalid input: " + "; ".join(parts)


def _unreachable_line(exc: TemporalUnreachable) -> str:
    """`cannot reach Temporal at H:P (connection refused): is it running? ...` - the core's detail shortened."""
    text = _one_line(str(exc))
    match = re.match(r"(cannot reach Temporal at \S+?): (.*)", text)
    if match:
        reason = re.search(r'message: "([^"]+)"', match.group(2))
        detail = reason.group(1).lower() if reason else match.group(2)[:160]
        text = f"{match.group(1)} ({detail})"
    return f"{text}: is it running? `incident dev` starts one; TEMPORAL_ADDRESS points elsewhere"


def _run(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run one command's coroutine; turn every expected failure into CliError (one line)."""
    try:
        return asyncio.run(factory())
    except CliError:
        raise
    except TemporalUnreachable as exc:
        raise CliError(_unreachable_line(exc)) from None
    except InputTooLong as exc:
        raise CliError(_one_line(str(exc)), USAGE) from None
    except CommandRefused as exc:
        raise CliError(f"rejected: {exc.command}: {_one_line(exc.reason)}") from None
    except IncidentError as exc:
        raise CliError(_one_line(str(exc))) from None
    except ValidationError as exc:
        raise CliError(_pydantic_line(exc), USAGE) from None
    except RPCError as exc:
        raise CliError(
            f"Temporal refused: {exc.status.name if exc.status else 'error'}: {_one_line(exc.message)}"
        ) from None


def _report(exc: CliError) -> NoReturn:
    err.print(f"[red]error: {escape(str(exc))}[/red]")
    raise typer.Exit(exc.code)


def _command(func: Callable[..., None]) -> Callable[..., None]:
    """Wrap a command body so a CliError prints one red line and exits with its code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            func(*args, **kwargs)
        except CliError as exc:
            _report(exc)

    return wrapper


# ------------------------------------------------------------------ helpers


def default_user() -> str:
    """INCIDENT_USER, else the login name."""
    user = os.environ.get("INCIDENT_USER")
    if user:
        return user
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return "unknown"


def _settings() -> Settings:
    # Fresh each time (not the cached get_settings()): tests and `incident dev` change the environment.
    return Settings()


async def _client(settings: Settings) -> Client:
    return await connect(settings, role=CLI_CLIENT)


def _parse_severity(value: str) -> Severity:
    try:
        return Severity.parse(value)
    except ValueError as exc:
        fail(str(exc), USAGE)


def _check_status(value: str) -> str:
    status = value.strip().lower()
    if status not in UPDATE_STATUSES:
        fail(f"unknown status {value!r}: use one of {', '.join(UPDATE_STATUSES)}", USAGE)
    return status


def _build(model: Callable[..., T], **fields: Any) -> T:
    try:
        return model(**fields)
    except ValidationError as exc:
        fail(_pydantic_line(exc), USAGE)


def _fmt_time(value: datetime | None, with_date: bool = True) -> str:
    if value is None:
        return "—"
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S UTC" if with_date else "%H:%M:%S")


def _fmt_duration(seconds: float | None) -> str:
    return "" if seconds is None else format_duration(timedelta(seconds=seconds), most=2)


UserOption = Annotated[
    str,
    typer.Option("--user", "-u", help="Who you are (default: $INCIDENT_USER, else your login name)."),
]
WaitOption = Annotated[
    float,
    typer.Option("--wait", help="Seconds to wait for the worker's outcome (0: don't wait).", min=0),
]
IdArgument = Annotated[
    str, typer.Argument(metavar="ID", help="Incident key, or its workflow id incident-<key>.")
]


# ------------------------------------------------------------------ declare


@app.command()
@_command
def declare(
    severity: Annotated[str, typer.Option("--severity", "-s", help="P1..P4 (or SEV1..SEV4).")],
    title: Annotated[str, typer.Option("--title", "-t", help="One line: what is broken, where.")],
    service: Annotated[str, typer.Option("--service", help="Affected service.")] = "",
    symptom: Annotated[list[str] | None, typer.Option("--symptom", help="A symptom (repeatable).")] = None,
    impact: Annotated[list[str] | None, typer.Option("--impact", help="An impact (repeatable).")] = None,
    link: Annotated[
        list[str] | None, typer.Option("--link", help="A link: dashboard, alert (repeatable).")
    ] = None,
    key: Annotated[
        str | None, typer.Option("--key", help="Incident key (default: yymmdd-HHMM-xxxx, UTC).")
    ] = None,
    reporter: Annotated[
        str | None, typer.Option("--reporter", help="Who declares (default: --user).")
    ] = None,
    device: Annotated[
        list[str] | None,
        typer.Option(
            "--device",
            help="A device to investigate, as named in the pyATS testbed; DEVICE or DEVICE=UPSTREAM (repeatable).",
        ),
    ] = None,
    customer_impact: Annotated[
        bool,
        typer.Option("--customer-impact", help="Customers report it, paying accounts affected: at least P2."),
    ] = False,
    data_integrity: Annotated[
        bool, typer.Option("--data-integrity", help="A data-integrity concern: P1 at once.")
    ] = False,
    runbook: Annotated[
        str,
        typer.Option(
            "--runbook",
            metavar="URL",
            help="The runbook to follow, an http(s) URL (default: the policy's for --service, if any).",
        ),
    ] = "",
) -> None:
    """Declare an incident: starts its workflow."""
    sev = _parse_severity(severity)
    devices, upstream = [], {}
    for item in device or []:
        name, _, neighbour = item.partition("=")
        if not name.strip():
            fail(f"--device {item!r}: expected DEVICE or DEVICE=UPSTREAM", USAGE)
        devices.append(name.strip())
        if neighbour.strip():
            upstream[name.strip()] = neighbour.strip()
    declaration = _build(
        IncidentDeclaration,
        key=key or new_incident_key(),
        severity=sev,
        title=title.strip(),
        service=service.strip(),
        symptoms=list(symptom or []),
        impact=list(impact or []),
        links=list(link or []),
        reporter=reporter or default_user(),
        detected_at=datetime.now(UTC),
        devices=devices,
        upstream=upstream,
        customer_impact=customer_impact,
        data_integrity=data_integrity,
        runbook=_runbook_option(runbook),
    )
    problems = limits.over_limits(declaration.model_dump())
    if problems:
        fail("; ".join(problems[:5]), USAGE)
    settings = _settings()

    async def go() -> None:
        client = await _client(settings)
        await declare_incident(client, declaration, settings.temporal_task_queue)

    _run(go)
    url = ui_url(declaration.workflow_id, settings.temporal_namespace, settings.temporal_ui_port)
    out.print(
        f"[green]declared[/green] {declaration.severity.value} incident [bold]{escape(declaration.key)}[/bold]: {escape(declaration.title)}"
    )
    out.print(f"  incident     {escape(declaration.key)}")
    out.print(f"  workflow     {escape(declaration.workflow_id)}")
    out.print(f"  Temporal UI  {url}", soft_wrap=True)
    out.print(f"  next         incident claim {escape(declaration.key)} --user <you>", soft_wrap=True)


def _runbook_option(value: str) -> str:
    problem = limits.http_url_problem(value.strip()) if value.strip() else None
    if problem:
        fail(f"--runbook: {problem}", USAGE)
    return value.strip()


# ------------------------------------------------------------------ signals


def _signal_and_report(ident: str, name: str, signal: Signal, wait: float) -> None:
    """Give the incident a command (a Temporal update) and print what it made of it.

    Refused: one red line with the incident's reason, exit 1, nothing changed. With
    `--wait 0` the command is sent as a signal and not waited for.
    """
    problems = limits.over_limits(signal.model_dump())
    if problems:
        fail("; ".join(problems[:5]), USAGE)
    settings = _settings()
    key = incident_key(workflow_id_for(ident))

    async def go() -> TimelineEntry | str:
        client = await _client(settings)
        if wait <= 0:
            await send_signal(client, ident, name, signal)
            return "nowait"
        try:
            return await send_command(
                client, ident, name, signal, wait=wait, task_queue=settings.temporal_task_queue
            )
        except CommandPending as pending:
            return str(pending)

    outcome = _run(go)
    if outcome == "nowait":
        out.print(f"sent {name} to incident {escape(key)} (request {signal.request_id})")
        return
    if isinstance(outcome, str):
        out.print(
            f"[yellow]{escape(outcome)} (incident dev / python -m worker); "
            "no worker has processed it yet[/yellow]",
            soft_wrap=True,
        )
        return
    out.print(
        f"[green]accepted: {escape(outcome.kind)}[/green] — {escape(_one_line(outcome.text))}", soft_wrap=True
    )


@app.command()
@_command
def claim(ident: IdArgument, user: UserOption = "", wait: WaitOption = DEFAULT_WAIT) -> None:
    """Become Incident Commander (or take over from the current one)."""
    signal = _build(ClaimSignal, user=user or default_user())
    _signal_and_report(ident, "claim", signal, wait)


@app.command()
@_command
def snooze(
    ident: IdArgument,
    duration: Annotated[str, typer.Argument(metavar="DURATION", help="How long: 30m, 2h (at most 1d).")],
    reason: Annotated[str, typer.Option("--reason", help="Why, for the thread and the timeline.")] = "",
    user: UserOption = "",
    wait: WaitOption = DEFAULT_WAIT,
) -> None:
    """Hold reminders, escalation and paging for DURATION; a new alert or a severity raise ends it."""
    if problem := snooze_problem(duration):
        raise CliError(f"DURATION: {problem}", code=2)
    signal = _build(SnoozeSignal, user=user or default_user(), duration=duration, reason=reason)
    _signal_and_report(ident, "snooze", signal, wait)


@app.command("ack")
@_command
def acknowledge(ident: IdArgument, user: UserOption = "", wait: WaitOption = DEFAULT_WAIT) -> None:
    """Acknowledge the page: all paging for the incident stops (IC only if the policy says so)."""
    signal = _build(AcknowledgeSignal, user=user or default_user(), source="cli")
    _signal_and_report(ident, "acknowledge", signal, wait)


@app.command()
@_command
def update(
    ident: IdArgument,
    status: Annotated[str, typer.Option("--status", help=f"One of: {', '.join(UPDATE_STATUSES)}.")],
    message: Annotated[str, typer.Option("--message", "-m", help="What changed.")],
    eta: Annotated[str | None, typer.Option("--eta", help="Expected time to fix, free text.")] = None,
    scope_doubled: Annotated[
        bool, typer.Option("--scope-doubled", help="The impact doubled: severity one level up.")
    ] = False,
    customer_impact: Annotated[
        bool,
        typer.Option("--customer-impact", help="Customers report it, paying accounts affected: at least P2."),
    ] = False,
    data_integrity: Annotated[
        bool, typer.Option("--data-integrity", help="A data-integrity concern: P1 at once.")
    ] = False,
    user: UserOption = "",
    wait: WaitOption = DEFAULT_WAIT,
) -> None:
    """Post a status update."""
    checked = _check_status(status)
    signal = _build(
        UpdateSignal,
        user=user or default_user(),
        status=checked,
        message=message,
        eta=eta or None,
        scope_doubled=scope_doubled,
        customer_impact=customer_impact,
        data_integrity=data_integrity,
    )
    _signal_and_report(ident, "update", signal, wait)


@app.command("stakeholder")
@_command
def stakeholder(
    ident: IdArgument,
    status: Annotated[
        str,
        typer.Option(
            "--status", help="investigating, identified, mitigating, monitoring (fixing/waiting: mitigating)."
        ),
    ],
    understanding: Annotated[
        str, typer.Option("--understanding", "-m", help="Current understanding, in plain words.")
    ],
    action: Annotated[
        list[str] | None, typer.Option("--action", help="An action taken (repeatable).")
    ] = None,
    next_step: Annotated[list[str] | None, typer.Option("--next", help="A next step (repeatable).")] = None,
    impact: Annotated[
        str, typer.Option("--impact", help="Who is affected and how (the first notification).")
    ] = "",
    user: UserOption = "",
    wait: WaitOption = DEFAULT_WAIT,
) -> None:
    """Publish a stakeholder update: the stakeholder channel and email (the first is the initial notification)."""
    if status.strip().lower() not in STAKEHOLDER_STATUSES:
        raise CliError(
            f"--status: unknown status {status!r}; use one of {', '.join(STAKEHOLDER_STATUSES)}", code=2
        )
    signal = _build(
        StakeholderSignal,
        user=user or default_user(),
        status=status.strip().lower(),
        understanding=understanding,
        actions=list(action or []),
        next_steps=list(next_step or []),
        impact=impact,
    )
    _signal_and_report(ident, "stakeholder_update", signal, wait)


@app.command("warroom")
@_command
def warroom(ident: IdArgument, user: UserOption = "", wait: WaitOption = DEFAULT_WAIT) -> None:
    """Open the incident's war room: its own Slack channel (a P1 gets one when declared)."""
    signal = _build(WarRoomSignal, user=user or default_user())
    _signal_and_report(ident, "open_war_room", signal, wait)


@app.command()
@_command
def role(
    ident: IdArgument,
    role_: Annotated[
        str, typer.Argument(metavar="ROLE", help=f"One of {', '.join(ROLES)} (communications lead, ...).")
    ],
    person: Annotated[str, typer.Argument(metavar="PERSON", help="Who: a Slack user id (U0BOB) or a name.")],
    remove: Annotated[bool, typer.Option("--remove", help="Take the role back from PERSON.")] = False,
    user: UserOption = "",
    wait: WaitOption = DEFAULT_WAIT,
) -> None:
    """Give a role besides the IC: comms (communications lead), tech, scribe, sme (any number)."""
    if role_name(role_) is None:
        raise CliError(f"ROLE: unknown role {role_!r}; use one of {', '.join(ROLES)}", code=2)
    signal = _build(
        RoleSignal, user=user or default_user(), role=role_, assignee=person.removeprefix("@"), remove=remove
    )
    _signal_and_report(ident, "assign_role", signal, wait)


@app.command()
@_command
def resolve(
    ident: IdArgument,
    resolution: Annotated[str, typer.Option("--resolution", "-r", help="What fixed it.")],
    root_cause: Annotated[str, typer.Option("--root-cause", help="Why it happened.")] = "",
    user: UserOption = "",
    wait: WaitOption = DEFAULT_WAIT,
) -> None:
    """Resolve the incident."""
    signal = _build(ResolveSignal, user=user or default_user(), resolution=resolution, root_cause=root_cause)
    _signal_and_report(ident, "resolve", signal, wait)


@app.command()
@_command
def severity(
    ident: IdArgument,
    new_severity: Annotated[str, typer.Argument(metavar="SEVERITY", help="P1..P4 (or SEV1..SEV4).")],
    reason: Annotated[str, typer.Option("--reason", help="Why the severity changes.")] = "",
    user: UserOption = "",
    wait: WaitOption = DEFAULT_WAIT,
) -> None:
    """Change the incident's severity."""
    sev = _parse_severity(new_severity)
    signal = _build(SeveritySignal, user=user or default_user(), severity=sev.value, reason=reason)
    _signal_and_report(ident, "set_severity", signal, wait)


@app.command("review-done")
@_command
def review_done(
    ident: IdArgument,
    notes: Annotated[str, typer.Option("--notes", help="Review outcome, link to the document.")] = "",
    user: UserOption = "",
    wait: WaitOption = DEFAULT_WAIT,
) -> None:
    """Mark the post-incident review done (completes the incident)."""
    signal = _build(ReviewDoneSignal, user=user or default_user(), notes=notes)
    _signal_and_report(ident, "review_done", signal, wait)


# ------------------------------------------------------------------ status


def _sa(desc: Any, key: Any) -> str:
    try:
        return desc.typed_search_attributes.get(key) or ""
    except Exception:  # noqa: BLE001
        return ""


def _timeline_table(timeline: list[TimelineEntry]) -> Table:
    table = Table(title="Timeline", title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("Time (UTC)", no_wrap=True)
    table.add_column("Kind", no_wrap=True)
    table.add_column("Actor")
    table.add_column("Text")
    for entry in timeline:
        style = (
            "red"
            if entry.kind in ("rejected", "refused")
            else ("yellow" if entry.kind in ("escalation", "reminder") else None)
        )
        table.add_row(
            _fmt_time(entry.at).removesuffix(" UTC"),
            entry.kind,
            escape(entry.actor),
            escape(entry.text),
            style=style,
        )
    return table


def _fields_table(rows: list[tuple[str, str]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for name, value in rows:
        grid.add_row(name, value)
    return grid


def _counts(updates: int, reminders: int, escalations: int) -> str:
    def n(count: int, word: str) -> str:
        return f"{count} {word}" + ("" if count == 1 else "s")

    return ", ".join((n(updates, "update"), n(reminders, "reminder"), n(escalations, "escalation")))


def _state_from_summary(summary: IncidentSummary, workflow_id: str) -> IncidentState:
    """What a completed incident's result says, as a state (no worker to ask for the rest)."""
    return IncidentState(
        key=summary.key,
        workflow_id=workflow_id,
        severity=summary.severity,
        title=summary.title,
        phase=Phase.review,
        commander=summary.commander,
        declared_at=summary.declared_at,
        claimed_at=summary.claimed_at,
        resolved_at=summary.resolved_at,
        resolution=summary.resolution,
        root_cause=summary.root_cause,
        updates=summary.updates,
        reminders=summary.reminders,
        escalations=summary.escalations,
        timeline=summary.timeline,
        review=summary.review,
    )


def next_deadlines(state: IncidentState) -> str:
    """The deadline table as one line: `update reminder due 14:47, escalation 2 due 14:50` (UTC)."""
    entries = [(d.label, d.due) for d in state.deadlines]
    if not entries:  # a state from before the table was shown
        entries = [
            ("update reminder due", state.next_reminder_at),
            ("escalation due", state.next_escalation_at),
        ]
    shown = [
        f"{label} {due:%H:%M}" + ("" if due.date() == state.declared_at.date() else f" ({due:%m-%d})")
        for label, due in entries
        if due is not None
    ]
    return ", ".join(shown) or "—"


def _role_rows(state: IncidentState) -> list[tuple[str, str]]:
    """One row per role held besides the IC, and one for the subject-matter experts."""
    rows = [(ROLES[r].capitalize(), state.roles[r]) for r in ROLES if r in state.roles]
    if state.experts:
        rows.append(("Experts", ", ".join(state.experts)))
    return rows


def _print_state(state: IncidentState, status: str, url: str) -> None:
    figures = figures_of(state)  # the numbers the closing message and the review show
    mtta = figures.tta if figures.acknowledged_at else ""
    mttr = figures.ttr if state.resolved_at else ""
    mttm = figures.ttm if figures.mitigated_at else ""
    slack = "—"
    if state.slack_channel:
        slack = f"#{state.slack_channel}" + (
            f", thread {state.slack_thread_ts}" if state.slack_thread_ts else ""
        )
    last = "—"
    if state.last_update_at:
        last = f"{_fmt_time(state.last_update_at)} [{state.status or ''}] {state.last_update or ''}"
    rows = [
        ("Incident", f"{state.key}  ({state.workflow_id}, {status})"),
        ("Title", state.title),
        ("Severity", state.severity.value),
        ("Phase", state.phase.value),
        ("Commander", state.commander or "— (awaiting claim)"),
        *_role_rows(state),
        *(
            [("War room", f"#{state.war_room.name}" + (" (archived)" if state.war_room.archived else ""))]
            if state.war_room
            else []
        ),
        ("Service", state.service or "—"),
        ("Runbook", state.runbook or "—"),
        ("Ticket", state.ticket or "—"),
        ("Slack", slack),
        ("Declared", _fmt_time(state.declared_at)),
        ("Claimed", _fmt_time(state.claimed_at) + (f"  (MTTA {mtta})" if mtta else "")),
        *([("Mitigated", f"{_fmt_time(figures.mitigated_at)}  (MTTM {mttm})")] if mttm else []),
        ("Resolved", _fmt_time(state.resolved_at) + (f"  (MTTR {mttr})" if mttr else "")),
        ("Last update", last),
        ("Next", next_deadlines(state)),
        ("Counts", figures.counts),
    ]
    if state.review is not None:
        rows.append(
            (
                "Review",
                f"meeting {state.review.meeting_local}, due {_fmt_time(state.review.deadline)}, "
                f"done {_fmt_time(state.reviewed_at)}",
            )
        )
    elif state.review_due_at or state.reviewed_at:
        rows.append(("Review", f"due {_fmt_time(state.review_due_at)}, done {_fmt_time(state.reviewed_at)}"))
    rows.extend(_action_rows(state.action_items))
    _print_outcome_and_timeline(rows, state, url)


def _action_rows(items: list[ActionItem]) -> list[tuple[str, str]]:
    """`Action items: 1 open (1 overdue), 2 done` and one line per item (`incident action list` has all)."""
    if not items:
        return []
    today = datetime.now(UTC).date()
    open_ = [i for i in items if i.is_open]
    late = sum(1 for i in open_ if overdue(i, today))
    head = f"{len(open_)} open" + (f" ({late} overdue)" if late else "") + f", {len(items) - len(open_)} done"
    lines = [
        f"{i.number}. [{i.status.value}] {i.priority} due {i.due.isoformat()} {i.owner}"
        + (f" {i.ticket}" if i.ticket else "")
        + f": {i.text}"
        for i in items
    ]
    return [("Action items", "\n".join([head, *lines]))]


def _print_summary(summary: IncidentSummary, workflow_id: str, status: str, url: str) -> None:
    rows = [
        ("Incident", f"{summary.key}  ({workflow_id}, {status})"),
        ("Title", summary.title),
        ("Severity", summary.severity.value),
        ("Phase", "closed"),
        ("Commander", summary.commander or "—"),
        ("Declared", _fmt_time(summary.declared_at)),
        (
            "Claimed",
            _fmt_time(summary.claimed_at)
            + (
                f"  (MTTA {seconds_text(summary.time_to_acknowledge_seconds)})"
                if summary.time_to_acknowledge_seconds is not None
                else ""
            ),
        ),
        (
            "Resolved",
            _fmt_time(summary.resolved_at)
            + (f"  (MTTR {seconds_text(summary.time_to_resolve_seconds)})" if summary.resolved_at else ""),
        ),
        ("Counts", _counts(summary.updates, summary.reminders, summary.escalations)),
        *_action_rows(summary.action_items),
    ]
    _print_outcome_and_timeline(rows, summary, url)


def _print_outcome_and_timeline(
    rows: list[tuple[str, str]], incident: IncidentState | IncidentSummary, url: str
) -> None:
    if incident.resolution:
        rows.append(("Resolution", incident.resolution))
    if incident.root_cause:
        rows.append(("Root cause", incident.root_cause))
    rows.append(("Temporal UI", url))
    out.print(_fields_table([(n, escape(v)) for n, v in rows]))
    out.print()
    out.print(_timeline_table(incident.timeline))


@app.command()
@_command
def status(
    ident: IdArgument,
    wait: Annotated[
        float, typer.Option("--wait", help="Seconds to wait for a worker to answer.", min=0.5)
    ] = 5.0,
) -> None:
    """Show an incident: phase, severity, commander, ticket, Slack thread, deadlines and its timeline."""
    settings = _settings()

    async def go() -> None:
        client = await _client(settings)
        handle, desc = await describe_incident(client, ident)
        running = desc.status == WorkflowExecutionStatus.RUNNING
        status_name = desc.status.name.lower() if desc.status else "unknown"
        url = ui_url(handle.id, settings.temporal_namespace, settings.temporal_ui_port)
        state = None
        polling = await worker_polling(client, desc.task_queue)
        if polling:
            try:
                state = await query_state(handle, wait=wait if running else min(wait, 3.0))
            except RPCError:
                state = None
        if state is not None:
            _print_state(state, status_name, url)
            return
        if desc.status == WorkflowExecutionStatus.COMPLETED:
            try:
                summary = await client.get_workflow_handle(handle.id, result_type=IncidentSummary).result()
            except (WorkflowFailureError, RPCError):
                summary = None
            if summary is not None:
                _print_summary(summary, handle.id, status_name, url)
                return
        # No worker answered: what Temporal itself knows.
        title = ""
        try:
            title = await desc.static_summary() or ""
        except Exception:  # noqa: BLE001
            pass
        rows = [
            ("Incident", f"{incident_key(handle.id)}  ({handle.id}, {status_name})"),
            ("Summary", title or "—"),
            ("Severity", _sa(desc, SEVERITY_ATTR) or "—"),
            ("Phase", _sa(desc, PHASE_ATTR) or "—"),
            ("Commander", _sa(desc, COMMANDER_ATTR) or "—"),
            ("Service", _sa(desc, SERVICE_ATTR) or "—"),
            ("Started", _fmt_time(desc.start_time)),
            ("Closed", _fmt_time(desc.close_time)),
            ("Temporal UI", url),
        ]
        out.print(_fields_table([(n, escape(v)) for n, v in rows]))
        if running:
            why = (
                f"no worker answered within {wait:g} s" if polling else f"no worker polls {desc.task_queue!r}"
            )
            out.print(
                f"[yellow]{escape(why)}: the timeline needs a running worker (incident dev / python -m worker)[/yellow]",
                soft_wrap=True,
            )

    _run(go)


# ------------------------------------------------------------------ audit


def _audit_table(entries: list[AuditEntry]) -> Table:
    """Every cell is a Text: what people, alerts and devices wrote is shown, never read as markup."""
    table = Table(title="Audit trail", title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("Time (UTC)", no_wrap=True)
    table.add_column("Source", no_wrap=True)
    table.add_column("Actor")
    table.add_column("Kind", no_wrap=True)
    table.add_column("What")
    table.add_column("Detail", overflow="fold")
    for entry in entries:
        failed = entry.what.startswith(("FAILED", "TIMED OUT")) or "refused:" in entry.detail
        table.add_row(
            *(
                Text(value)
                for value in (
                    _fmt_time(entry.time).removesuffix(" UTC"),
                    entry.source,
                    entry.actor,
                    entry.kind,
                    entry.what,
                    entry.detail,
                )
            ),
            style="red" if failed else ("yellow" if entry.kind == "deadline" else None),
        )
    return table


@app.command()
@_command
def audit(
    ident: IdArgument,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="JSON Lines: one object a line (time, actor, source, kind, what, detail)."
        ),
    ] = False,
) -> None:
    """Everything that happened to an incident, read from its Temporal history: every command (who,
    when, from where: cli, slack, alert, temporal-ui, temporal-cli), page, acknowledgement, Slack
    message and ticket change. No worker needed."""
    settings = _settings()

    async def go() -> list[AuditEntry]:
        client = await _client(settings)
        handle, _ = await describe_incident(client, ident)
        return derive_audit(await fetch_histories(client, handle.id))

    entries = _run(go)
    if as_json:
        sys.stdout.write(to_json_lines(entries))
        sys.stdout.flush()
        return
    out.print(_audit_table(entries))


# ------------------------------------------------------------------ review


@app.command()
@_command
def review(
    ident: IdArgument,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write the Markdown here instead of printing it.")
    ] = None,
    wait: Annotated[
        float, typer.Option("--wait", help="Seconds to wait for a worker to answer.", min=0.5)
    ] = 5.0,
) -> None:
    """The post-incident review, drafted from the incident's state and timeline (Markdown): open
    or completed incidents (a completed one without a worker is drafted from its result)."""
    settings = _settings()

    async def go() -> str:
        client = await _client(settings)
        handle, desc = await describe_incident(client, ident)
        url = settings.incident_ui_url(handle.id)
        state = None
        if await worker_polling(client, desc.task_queue):
            try:
                state = await query_state(handle, wait=wait)
            except RPCError:
                state = None
        if state is None and desc.status == WorkflowExecutionStatus.COMPLETED:
            summary = await client.get_workflow_handle(handle.id, result_type=IncidentSummary).result()
            state = _state_from_summary(summary, handle.id)
        if state is None:
            raise CliError(f"no worker answered for {handle.id} within {wait:g} s, and it has not completed")
        return render_review(state, ui_url=url)

    text = _run(go)
    if out_file is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    out_file.write_text(text)
    out.print(f"review of {escape(ident)} written to {escape(str(out_file))}")


# ------------------------------------------------------------------ list


@app.command("list")
@_command
def list_incidents(
    open_only: Annotated[bool, typer.Option("--open", help="Only incidents still running.")] = False,
    severity_filter: Annotated[
        str | None, typer.Option("--severity", "-s", help="Only this severity.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many.", min=1)] = 50,
) -> None:
    """List incidents from Temporal visibility, newest first."""
    sev = _parse_severity(severity_filter) if severity_filter else None
    query = build_list_query(open_only, sev)
    settings = _settings()

    async def go() -> list[tuple[Any, str]]:
        client = await _client(settings)
        executions = [wf async for wf in client.list_workflows(query, limit=limit)]
        gate = asyncio.Semaphore(10)

        async def title(wf: Any) -> str:
            # Visibility rows carry no summary; describe gives the static one ("P1 · title").
            async with gate:
                try:
                    desc = await client.get_workflow_handle(wf.id, run_id=wf.run_id).describe(
                        rpc_timeout=timedelta(seconds=3)
                    )
                    text = await desc.static_summary() or ""
                except Exception:  # noqa: BLE001 - a missing title is not worth failing for
                    return ""
                return re.sub(r"^P\d · ", "", text)

        titles = await asyncio.gather(*(title(wf) for wf in executions))
        return list(zip(executions, titles, strict=True))

    rows = _run(go)
    if not rows:
        out.print(f"no incidents match ({query})", soft_wrap=True)
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in ("Incident", "Sev", "Phase", "Commander", "Status", "Started (UTC)", "Title"):
        if column in ("Incident", "Sev", "Phase", "Status", "Started (UTC)"):  # must stay whole
            table.add_column(
                column, no_wrap=True, min_width=len("investigating") if column == "Phase" else None
            )
        else:
            table.add_column(column, min_width=8, overflow="fold")
    for wf, title_text in rows:
        attrs = wf.typed_search_attributes
        status_name = wf.status.name.lower() if wf.status else "?"
        table.add_row(
            escape(incident_key(wf.id)),
            attrs.get(SEVERITY_ATTR) or "",
            attrs.get(PHASE_ATTR) or "",
            escape(attrs.get(COMMANDER_ATTR) or ""),
            status_name if status_name != "running" else "[green]running[/green]",
            _fmt_time(wf.start_time).removesuffix(" UTC")[:16],
            escape(title_text),
        )
    out.print(table)


# ------------------------------------------------------------------ report


@app.command()
@_command
def report(
    since: Annotated[
        str, typer.Option("--since", help="Incidents declared in this last period: 30d, 2w, 12h.")
    ] = "30d",
    severity_filter: Annotated[
        str | None, typer.Option("--severity", "-s", help="Only this severity (its final one).")
    ] = None,
    service: Annotated[str | None, typer.Option("--service", help="Only this service.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The figures as JSON (seconds).")] = False,
    html: Annotated[
        Path | None,
        typer.Option("--html", metavar="FILE", help="Also write the report with its charts as HTML."),
    ] = None,
) -> None:
    """MTTA, MTTD, MTTM, MTTR, reviews on time, action items, escalations and pages per severity and
    service, pages per on-call person per week, recurring root causes: from the completed incidents'
    results (Temporal visibility). Each figure's definition is printed with it."""
    from starter.report import build_report, fetch_closed_incidents
    from workflows.policy import PolicyError, load_policy

    try:
        period = parse_duration(since)
    except ValueError as exc:
        fail(f"--since {since!r}: {exc}", USAGE)
    sev = _parse_severity(severity_filter) if severity_filter else None
    settings = _settings()
    try:
        limit = load_policy(settings.incident_policy).reporting.max_pages_per_person_week
    except PolicyError as exc:
        fail(f"policy: {_one_line(str(exc))}")
    now = datetime.now(UTC)
    start = now - period

    async def go() -> Any:
        client = await _client(settings)
        return await fetch_closed_incidents(client, start, sev)

    found = build_report(
        _run(go),
        since=start,
        now=now,
        max_pages_per_person_week=limit,
        severity=sev,
        service=service.strip() if service else None,
    )
    if html is not None:
        from starter.report_html import write_html

        try:
            write_html(found, html)
        except OSError as exc:
            fail(f"--html {html}: {exc.strerror or exc}")
    if as_json:
        sys.stdout.write(found.model_dump_json(indent=2) + "\n")
        sys.stdout.flush()
        return
    _print_report(found)
    if html is not None:
        out.print(f"HTML report: {escape(str(html))}", soft_wrap=True)


def _print_report(found: Any) -> None:
    from starter.report import GROUP_COLUMNS, group_row

    filters = "".join(f", {k} {v}" for k, v in found.filters.items() if k != "since")
    out.print(
        f"{found.overall.count} completed incidents declared since {_fmt_time(found.since)}{escape(filters)}",
        soft_wrap=True,
    )
    for title, groups in (("By severity", found.by_severity), ("By service", found.by_service)):
        table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
        for column in GROUP_COLUMNS:
            table.add_column(column, justify="left" if not column else "right")
        rows = [group_row("All", found.overall)] if title == "By severity" else []
        rows += [group_row(name, g) for name, g in groups.items()]
        for row in rows:
            table.add_row(*(Text(cell) for cell in row))
        out.print(table)
    limit = found.max_pages_per_person_week
    table = Table(
        title=f"Pages per on-call person per week (policy limit {limit})",
        title_justify="left",
        show_edge=False,
        pad_edge=False,
    )
    for column in ("Person", "Week", "Pages", ""):
        table.add_column(column)
    for p in found.pages_per_person_week:
        table.add_row(
            Text(p.person), p.week, str(p.pages), "[red]over the limit[/red]" if p.over_limit else ""
        )
    out.print(table if found.pages_per_person_week else "Pages per on-call person per week: none")
    if found.recurring_root_causes:
        table = Table(title="Recurring root causes", title_justify="left", show_edge=False, pad_edge=False)
        table.add_column("Root cause", overflow="fold")
        table.add_column("Incidents", justify="right")
        table.add_column("Keys", overflow="fold")
        for r in found.recurring_root_causes:
            table.add_row(Text(r.root_cause), str(r.count), Text(", ".join(r.incidents)))
        out.print(table)
    else:
        out.print("Recurring root causes: none given twice")
    out.print("Definitions:")
    for name, text in found.definitions.items():
        out.print(f"  {name}: {escape(text)}", soft_wrap=True)


# ------------------------------------------------------------------ dev


@app.command()
@_command
def dev(
    temporal_port: Annotated[
        int, typer.Option("--temporal-port", envvar="TEMPORAL_PORT", help="Temporal gRPC port.")
    ] = ports.TEMPORAL_PORT,
    ui_port: Annotated[
        int, typer.Option("--ui-port", envvar="TEMPORAL_UI_PORT", help="Temporal UI port.")
    ] = ports.TEMPORAL_UI_PORT,
    slack_port: Annotated[
        int, typer.Option("--slack-port", envvar="SLACK_SANDBOX_PORT", help="Slack sandbox port.")
    ] = ports.SLACK_SANDBOX_PORT,
    servicenow_port: Annotated[
        int,
        typer.Option("--servicenow-port", envvar="SERVICENOW_SANDBOX_PORT", help="ServiceNow sandbox port."),
    ] = ports.SERVICENOW_SANDBOX_PORT,
    jira_port: Annotated[
        int, typer.Option("--jira-port", envvar="JIRA_SANDBOX_PORT", help="Jira sandbox port.")
    ] = ports.JIRA_SANDBOX_PORT,
    pagerduty_port: Annotated[
        int,
        typer.Option("--pagerduty-port", envvar="PAGERDUTY_SANDBOX_PORT", help="PagerDuty sandbox port."),
    ] = ports.PAGERDUTY_SANDBOX_PORT,
    opsgenie_port: Annotated[
        int,
        typer.Option("--opsgenie-port", envvar="OPSGENIE_SANDBOX_PORT", help="Opsgenie sandbox port."),
    ] = ports.OPSGENIE_SANDBOX_PORT,
    smtp_port: Annotated[
        int, typer.Option("--smtp-port", envvar="SMTP_SANDBOX_PORT", help="SMTP sandbox's SMTP port.")
    ] = ports.SMTP_SANDBOX_PORT,
    smtp_http_port: Annotated[
        int,
        typer.Option("--smtp-http-port", envvar="SMTP_SANDBOX_HTTP_PORT", help="SMTP sandbox's page port."),
    ] = ports.SMTP_SANDBOX_HTTP_PORT,
    alert_port: Annotated[
        int, typer.Option("--alert-port", envvar="ALERT_RECEIVER_PORT", help="Alert receivers' port.")
    ] = ports.ALERT_RECEIVER_PORT,
    slack_app_port: Annotated[
        int, typer.Option("--slack-app-port", envvar="SLACK_APP_PORT", help="Slack handler's port.")
    ] = ports.SLACK_APP_PORT,
    status_page_port: Annotated[
        int, typer.Option("--status-page-port", envvar="STATUS_PAGE_PORT", help="Status page's port.")
    ] = ports.STATUS_PAGE_PORT,
    data_dir: Annotated[
        Path,
        typer.Option("--data-dir", envvar="INCIDENT_DATA_DIR", help="Temporal history, sandbox state, logs."),
    ] = Path(".data"),
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Don't echo the worker's and sandbox's output.")
    ] = False,
    scenario: Annotated[
        str,
        typer.Option(
            "--scenario",
            help="The mock lab's scenario to start in: outage, recovered or healthy "
            "(switch later with `incident devices`; ignored when PYATS_TESTBED is set).",
        ),
    ] = "outage",
) -> None:
    """Run everything locally: Temporal + UI, Slack, ServiceNow, Jira, PagerDuty, Opsgenie and SMTP sandboxes, worker, receivers, Slack handler, status page.

    A part that dies is restarted (same port, environment and state); Ctrl-C stops it all.
    """
    from starter.devstack import DevConfig, run_dev

    config = DevConfig.from_env(
        _settings(),
        temporal_port=temporal_port,
        ui_port=ui_port,
        slack_port=slack_port,
        servicenow_port=servicenow_port,
        jira_port=jira_port,
        pagerduty_port=pagerduty_port,
        opsgenie_port=opsgenie_port,
        smtp_port=smtp_port,
        smtp_http_port=smtp_http_port,
        alert_port=alert_port,
        slack_app_port=slack_app_port,
        status_page_port=status_page_port,
        data_dir=data_dir,
        echo_logs=not quiet,
        scenario=_scenario(scenario),
    )
    code = run_dev(config, out)
    if code:
        raise typer.Exit(code)


def _scenario(value: str) -> str:
    """A scenario of the mock lab, from its name or the start of it (`recover`: recovered)."""
    from sandbox.devices import scenarios

    known = list(scenarios())
    wanted = value.strip().lower()
    matches = [n for n in known if n == wanted] or [n for n in known if wanted and n.startswith(wanted)]
    if len(matches) != 1:
        fail(f"unknown scenario {value!r}: use one of {', '.join(known)}", USAGE)
    return matches[0]


@app.command()
@_command
def devices(
    scenario: Annotated[
        str | None,
        typer.Argument(help="outage, recovered or healthy; none: show the current one and the others."),
    ] = None,
    data_dir: Annotated[
        Path,
        typer.Option("--data-dir", envvar="INCIDENT_DATA_DIR", help="The data dir `incident dev` runs with."),
    ] = Path(".data"),
) -> None:
    """Switch the mock lab of `incident dev` to another scenario; the worker sees it at its next device check.

    outage: R1 down (what `incident dev` starts with). recovered: R1 back, so the post-resolution
    verification passes. healthy: before the incident.
    """
    from sandbox.devices import scenario_changes, scenario_of, scenarios
    from starter.devstack import DevStackError, lab_testbed_path, switch_lab

    lab = lab_testbed_path(data_dir.expanduser().resolve())
    settings = _settings()
    own = settings.pyats_testbed if "pyats_testbed" in settings.model_fields_set else None
    if own and Path(own).expanduser().resolve() != lab:
        message = (
            f"PYATS_TESTBED={own} is set: the worker uses that testbed, not the mock lab's scenarios; "
            "unset it and restart `incident dev` to switch scenarios"
        )
        if scenario is None:
            out.print(escape(message))
            return
        fail(message)
    if scenario is None:
        current = scenario_of(lab)
        if current is None:
            fail(f"no mock lab testbed at {lab}: `incident dev` writes it when it starts (same --data-dir)")
        out.print(f"mock lab: scenario [bold]{current}[/bold] ({escape(str(lab))})", soft_wrap=True)
        for line in scenario_changes(None, current):
            out.print(f"  {escape(line)}")
        out.print("scenarios:")
        for name, description in scenarios().items():
            mark = "*" if name == current else " "
            out.print(f"{mark} {name:<10} {escape(description)}", soft_wrap=True)
        others = "|".join(name for name in scenarios() if name != current)
        out.print(f"switch: incident devices {others}")
        return
    try:
        switched = switch_lab(lab.parent, _scenario(scenario))
    except DevStackError as exc:
        fail(str(exc))
    if switched.before == switched.after:
        out.print(f"mock lab: already in scenario [bold]{switched.after}[/bold]; nothing changed")
        return
    description = scenarios()[switched.after]
    out.print(
        f"mock lab: {switched.before} → [bold]{switched.after}[/bold] ({escape(description)})", soft_wrap=True
    )
    for line in switched.changes:
        out.print(f"  {escape(line)}")
    out.print(
        f"wrote {escape(str(switched.path))}; the worker reloads it at its next device check", soft_wrap=True
    )


# ------------------------------------------------------------------ on-call schedules

oncall_app = typer.Typer(
    help="Who is on call for each schedule now (or --at TIME): since when, until the next handoff. "
    "The commands export a schedule's calendar feed and manage overrides. "
    "Schedules: config/oncall.yaml, or the file $INCIDENT_ONCALL names.",
    add_completion=False,
    rich_markup_mode=None,
)
app.add_typer(oncall_app, name="oncall")

TIME_HELP = (
    "ISO 8601, e.g. 2026-12-01T14:00 (the schedule's time zone) or 2026-12-01T14:00+01:00 / ...T13:00Z; "
    "'now' is now."
)


def _load_oncall() -> OnCall:
    try:
        return load_oncall()
    except OnCallError as exc:
        fail(str(exc))


def _parse_time(text: str, tz: ZoneInfo, option: str) -> datetime:
    """TIME as the options take it: ISO 8601; without an offset, wall time in `tz` (DST rule of the schedules)."""
    value = text.strip()
    if value.lower() == "now":
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        fail(
            f"{option} {text!r} is not a time: use ISO 8601, e.g. 2026-12-01T14:00 or 2026-12-01T14:00+01:00",
            USAGE,
        )
    if parsed.tzinfo is None:
        return wall_to_utc(parsed, tz)
    return parsed.astimezone(UTC)


def _known_schedule(oncall: OnCall, name: str) -> Schedule:
    if name not in oncall.file.schedules:
        fail(f"unknown schedule {name!r}: use one of {', '.join(oncall.names())}", USAGE)
    return oncall.schedule(name)


def _when(value: datetime, tz: ZoneInfo) -> str:
    """`Mon 2026-03-30 10:00 CEST (08:00 UTC)`: the schedule's zone first, then UTC."""
    here, there = value.astimezone(tz), value.astimezone(UTC)
    same_day = here.date() == there.date()
    return f"{here:%a %Y-%m-%d %H:%M %Z} ({there:{'%H:%M' if same_day else '%m-%d %H:%M'}} UTC)"


@oncall_app.callback(invoke_without_command=True)
@_command
def oncall_now(
    ctx: typer.Context,
    at: Annotated[str | None, typer.Option("--at", help=f"When (default: now). {TIME_HELP}")] = None,
    schedule_name: Annotated[
        str | None, typer.Option("--schedule", "-s", help="Only this schedule (default: all).")
    ] = None,
) -> None:
    """Who is on call for each schedule: since when, and until the next handoff."""
    if ctx.invoked_subcommand is not None:
        return
    oncall = _load_oncall()
    schedules = (
        [_known_schedule(oncall, schedule_name)]
        if schedule_name
        else [oncall.schedule(n) for n in oncall.names()]
    )
    zones = sorted({s.time_zone for s in schedules})
    if at is not None and at.strip().lower() != "now" and len(zones) > 1:
        try:
            naive = datetime.fromisoformat(at.strip()).tzinfo is None
        except ValueError:
            naive = False
        if naive:
            fail(
                f"--at {at!r} has no UTC offset and the schedules are in different zones ({', '.join(zones)}):"
                " add one (e.g. +01:00 or Z) or pick a schedule with --schedule",
                USAGE,
            )
    instant = _parse_time(at or "now", schedules[0].tz(), "--at")
    title = _when(instant, schedules[0].tz()) if len(zones) == 1 else f"{instant:%a %Y-%m-%d %H:%M} UTC"
    table = Table(
        title=f"On call at {title}",
        title_justify="left",
        show_edge=False,
        pad_edge=False,
    )
    table.add_column("Schedule", no_wrap=True)
    table.add_column("On call")
    table.add_column("Since", no_wrap=True)
    table.add_column("Until (next handoff)", no_wrap=True)
    table.add_column("Note", overflow="fold")
    for schedule in schedules:
        tz = schedule.tz()
        config = oncall.file.schedules[schedule.name]
        note = f"next in {config.offset_from}'s rotation" if config.offset_from and config.offset == 1 else ""
        if config.offset_from and config.offset != 1:
            note = f"{config.offset_from}, {config.offset:+d} in its rotation"
        shift = current_shift(schedule, instant)
        if shift is None:
            table.add_row(escape(schedule.name), "[yellow]nobody[/yellow]", "", "", escape(note))
            continue
        covering = active_override(schedule, instant)
        if covering is not None:
            note = f"override {covering.id}" + (f": {covering.reason}" if covering.reason else "")
        who = shift.participant
        table.add_row(
            escape(schedule.name),
            escape(f"{who.display} ({who.user})" if who.name else who.user),
            _when(shift.start, tz),
            _when(shift.end, tz),
            escape(note),
        )
    out.print(table)


@oncall_app.command("export")
@_command
def oncall_export(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The schedule, e.g. network-primary.")],
    weeks: Annotated[
        int, typer.Option("--weeks", "-w", help="How many weeks of shifts.", min=1, max=104)
    ] = 8,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the .ics here (default: standard output).")
    ] = None,
    start: Annotated[
        str | None, typer.Option("--from", help=f"First day (default: now). {TIME_HELP}")
    ] = None,
) -> None:
    """Write an iCalendar (.ics) feed of the schedule's shifts for the next weeks, for calendar apps.

    One event per shift, in UTC, with UIDs that stay the same from one export to the next, so a
    calendar subscribed to the file (served over HTTP) updates in place.
    """
    from activities.paging.ical import calendar as ical_calendar  # icalendar only when exporting

    oncall = _load_oncall()
    schedule = _known_schedule(oncall, name)
    begin = _parse_time(start or "now", schedule.tz(), "--from")
    feed = ical_calendar(schedule, begin, begin + timedelta(weeks=weeks))
    data = feed.to_ical()
    if output is None:
        sys.stdout.write(data.decode())
        sys.stdout.flush()
        return
    try:
        _write_atomically(output, data)
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")
    count = len(feed.walk("VEVENT"))
    out.print(
        f"wrote {count} shift(s) of {escape(name)} for {weeks} week(s) from {_when(begin, schedule.tz())}"
        f" to {escape(str(output))}",
        soft_wrap=True,
    )


def _write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename it over: readers see the old or the new file."""
    path = path.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


@contextlib.contextmanager
def _overrides_lock(path: Path) -> Iterator[None]:
    """One `incident oncall override` at a time edits the overrides file (read, change, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


OVERRIDES_HEADER = (
    b"# On-call overrides: who covers a schedule from when to when; they win over every layer.\n"
    b"# Written by `incident oncall override`; editing by hand is fine (times without an offset\n"
    b"# are the schedule's local time). The last one listed wins where two overlap.\n"
)


def _save_overrides(path: Path, overrides: list[Override]) -> None:
    import yaml

    body = yaml.safe_dump(overrides_document(overrides), sort_keys=False, allow_unicode=True)
    _write_atomically(path, OVERRIDES_HEADER + body.encode())


@oncall_app.command("override")
@_command
def oncall_override(
    name: Annotated[
        str | None, typer.Argument(metavar="NAME", help="The schedule, e.g. network-primary.")
    ] = None,
    user: Annotated[
        str | None, typer.Option("--user", "-u", help="Slack user id of who covers, e.g. U0BOB.")
    ] = None,
    start: Annotated[str | None, typer.Option("--from", help=f"Start. {TIME_HELP}")] = None,
    end: Annotated[str | None, typer.Option("--to", help=f"End. {TIME_HELP}")] = None,
    reason: Annotated[str, typer.Option("--reason", help="Why, e.g. 'Alice at the dentist'.")] = "",
    remove: Annotated[
        str | None,
        typer.Option("--remove", metavar="ID", help="Remove this override instead (see `oncall overrides`)."),
    ] = None,
) -> None:
    """Someone covers a schedule from --from to --to (wins over every layer); or --remove ID.

    The override goes into the overrides file ($INCIDENT_ONCALL_OVERRIDES, default oncall-overrides.yaml
    next to the schedule file), which is replaced atomically.
    """
    oncall = _load_oncall()
    path = Path(oncall.overrides_source)
    if remove is not None:
        if any(v is not None for v in (name, user, start, end)) or reason:
            fail("--remove ID takes no NAME, --user, --from, --to or --reason", USAGE)
        with _overrides_lock(path):
            current = _load_oncall().overrides
            kept = [o for o in current if o.id != remove]
            if len(kept) == len(current):
                fail(f"no override {remove!r} in {path} (`incident oncall overrides --all` lists them)")
            _save_overrides(path, kept)
        out.print(f"removed override {escape(remove)} from {escape(str(path))}", soft_wrap=True)
        return
    missing = [
        flag
        for flag, value in (("NAME", name), ("--user", user), ("--from", start), ("--to", end))
        if not value
    ]
    if missing:
        fail(f"missing {', '.join(missing)} (or --remove ID)", USAGE)
    assert name and user and start and end
    schedule = _known_schedule(oncall, name)
    who = user.strip()
    if who not in oncall.file.participants():
        fail(
            f"--user {who!r} is not a participant of any schedule in {oncall.source}"
            " (Slack user ids like U0ALICE, listed under people:)",
            USAGE,
        )
    tz = schedule.tz()
    begin, finish = _parse_time(start, tz, "--from"), _parse_time(end, tz, "--to")
    if finish <= begin:
        fail(f"--to {_when(finish, tz)} is not after --from {_when(begin, tz)}", USAGE)
    if finish <= datetime.now(UTC):
        fail(f"the override would already be over (--to {_when(finish, tz)}): nothing would change", USAGE)
    override = _build(
        Override,
        schedule=name,
        user=who,
        start=begin.astimezone(tz),
        end=finish.astimezone(tz),
        reason=reason.strip(),
        created_by=default_user(),
        created_at=datetime.now(UTC).replace(microsecond=0),
    )
    with _overrides_lock(path):
        current = _load_oncall().overrides
        if any(o.id == override.id for o in current):
            fail(f"{name} already has that override ({override.id}): {who} from {_when(begin, tz)}", USAGE)
        _save_overrides(path, [*current, override])
    person = schedule.participant(who) if who in schedule.people else Participant(user=who)
    out.print(
        f"[green]override {override.id}[/green]: {escape(person.display)} covers {escape(name)}"
        f" from {_when(begin, tz)} to {_when(finish, tz)} (in {escape(str(path))})",
        soft_wrap=True,
    )


@oncall_app.command("overrides")
@_command
def oncall_overrides(
    name: Annotated[str | None, typer.Argument(metavar="[NAME]", help="Only this schedule's.")] = None,
    show_all: Annotated[bool, typer.Option("--all", help="Also the ones that are over.")] = False,
) -> None:
    """List overrides (current and upcoming; --all for past ones too)."""
    oncall = _load_oncall()
    if name is not None:
        _known_schedule(oncall, name)
    now = datetime.now(UTC)
    rows = [o for o in oncall.overrides if (name is None or o.schedule == name) and (show_all or o.end > now)]
    if not rows:
        out.print(f"no overrides ({escape(oncall.overrides_source)})", soft_wrap=True)
        return
    table = Table(show_edge=False, pad_edge=False)
    for column in ("ID", "Schedule", "Who", "From", "To", "Reason", "By"):
        table.add_column(column, no_wrap=column in ("ID", "Schedule"))
    for o in rows:
        schedule = oncall.schedule(o.schedule)
        tz, person = schedule.tz(), schedule.participant(o.user)
        style = "dim" if o.end <= now else ("green" if o.start <= now else None)
        table.add_row(
            o.id,
            escape(o.schedule),
            escape(f"{person.display} ({o.user})" if person.name else o.user),
            _when(o.start, tz),
            _when(o.end, tz),
            escape(o.reason),
            escape(o.created_by),
            style=style,
        )
    out.print(table)


# ------------------------------------------------------------------ main


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; usage errors become one line too."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="incident", standalone_mode=False)
    except typer.TyperException as exc:  # typer's (vendored click's) usage errors
        if type(exc).__name__ == "NoArgsIsHelpError":
            out.print(exc.format_message(), markup=False)
            return exc.exit_code
        ctx = getattr(exc, "ctx", None)
        where = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
        err.print(f"[red]error: {escape(_one_line(exc.format_message()))}{escape(where)}[/red]")
        return exc.exit_code
    except typer.Abort:
        err.print("[red]aborted[/red]")
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the promise: one line, never a traceback
        if os.environ.get("INCIDENT_DEBUG"):
            raise
        err.print(
            f"[red]error: unexpected {type(exc).__name__}: {escape(_one_line(str(exc)))} (INCIDENT_DEBUG=1 shows more)[/red]"
        )
        return 1
    return result if isinstance(result, int) else 0


# ------------------------------------------------------------------ maintenance windows

maintenance_app = typer.Typer(
    help="Maintenance windows: alerts for a service in one still open incidents, which page nobody "
    "until the window ends (severities with a paging chain).",
    add_completion=False,
    rich_markup_mode=None,
)
app.add_typer(maintenance_app, name="maintenance")
ServiceOption = Annotated[
    str, typer.Option("--service", help="The service, as alerts and incidents name it.")
]


@maintenance_app.command("start")
@_command
def maintenance_start(
    service: ServiceOption,
    length: Annotated[str, typer.Option("--for", help="How long: 30m, 2h, 1d (at most 1w).")],
    reason: Annotated[str, typer.Option("--reason", help="Why, for the incidents' threads.")] = "",
    user: UserOption = "",
) -> None:
    """Start a window (or move the end of the running one to --for from now)."""
    service = service.strip()
    if not service:
        raise CliError("--service: must not be empty", code=2)
    try:
        duration = parse_duration(length)
    except ValueError as exc:
        raise CliError(f"--for: {exc}", code=2) from None
    if duration > timedelta(weeks=1):
        raise CliError(f"--for: a maintenance window is at most 1w; {length!r} is longer", code=2)
    settings = _settings()
    until = datetime.now(UTC) + duration
    window = MaintenanceWindow(service=service, until=until, reason=reason, by=user or default_user())

    async def go() -> str:
        client = await _client(settings)
        try:
            await client.start_workflow(
                MaintenanceWorkflow.run,
                window,
                id=maintenance_workflow_id(service),
                task_queue=settings.temporal_task_queue,
                static_summary=f"Maintenance · {service}",
            )
            return "started"
        except WorkflowAlreadyStartedError:
            handle = client.get_workflow_handle(maintenance_workflow_id(service))
            await handle.signal(
                MaintenanceWorkflow.change, MaintenanceChange(until=until, reason=reason, by=window.by)
            )
            return "moved"

    what = _run(go)
    out.print(f"maintenance of {escape(service)} {what}: until {until:%Y-%m-%d %H:%M} UTC")


@maintenance_app.command("end")
@_command
def maintenance_end(service: ServiceOption, user: UserOption = "") -> None:
    """End the service's window now: its open incidents page as usual."""
    settings = _settings()

    async def go() -> None:
        client = await _client(settings)
        handle = client.get_workflow_handle(maintenance_workflow_id(service))
        try:
            await handle.signal(
                MaintenanceWorkflow.change, MaintenanceChange(until=None, by=user or default_user())
            )
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise CliError(f"no maintenance window is open for {service}") from None
            raise

    _run(go)
    out.print(f"maintenance of {escape(service)} ended")


@maintenance_app.command("list")
@_command
def maintenance_list() -> None:
    """The open windows."""
    settings = _settings()

    async def go() -> list[MaintenanceWindow]:
        client = await _client(settings)
        query = "WorkflowType='MaintenanceWorkflow' AND ExecutionStatus='Running'"
        found = []
        async for wf in client.list_workflows(query):
            found.append(await client.get_workflow_handle(wf.id).query(MaintenanceWorkflow.window))
        return found

    windows = _run(go)
    if not windows:
        out.print("no maintenance window is open")
        return
    for w in windows:
        reason = f" ({escape(w.reason)})" if w.reason else ""
        out.print(
            f"{escape(w.service)} until {w.until:%Y-%m-%d %H:%M} UTC{reason}, {len(w.held)} incident(s) held"
        )


# ------------------------------------------------------------------ runbooks

runbook_app = typer.Typer(
    help="Runbooks: check Markdown runbooks against the runbook template (docs/runbooks/).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
app.add_typer(runbook_app, name="runbook")


@runbook_app.command("lint")
@_command
def runbook_lint(
    paths: Annotated[
        list[str], typer.Argument(metavar="PATH...", help="Runbooks, or directories searched for *.md.")
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the findings as a JSON list (path, line, code, message).")
    ] = False,
    max_age: Annotated[
        str | None,
        typer.Option(
            "--max-age",
            help="Oldest Last Tested allowed, e.g. 90d, 12w (default: the policy's runbooks.max_last_tested_age).",
        ),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            metavar="DATE",
            help="Judge Last Tested as of this day, YYYY-MM-DD (default: today, UTC).",
        ),
    ] = None,
) -> None:
    """Check runbooks: the template's sections and Quick Reference, local links, Last Tested, code languages.

    One line per finding, `path:line: CODE message`; exit status 0 when there is none, 1 when
    there are, 2 for a PATH that does not exist or a bad option.
    """
    from starter.runbook_lint import LintOptions, NoSuchPath, findings_json, lint_paths

    today = datetime.now(UTC).date()
    if as_of is not None:
        try:
            today = date.fromisoformat(as_of.strip())
        except ValueError:
            fail(f"--as-of {as_of!r} is not a day: use YYYY-MM-DD", USAGE)
    if max_age is not None:
        try:
            options = LintOptions(parse_duration(max_age), today, "--max-age")
        except ValueError as exc:
            fail(f"--max-age: {exc}", USAGE)
    else:
        from workflows.policy import PolicyError, load_policy

        try:
            policy = load_policy(_settings().incident_policy)
        except PolicyError as exc:
            fail(str(exc), USAGE)
        options = LintOptions(policy.runbooks.max_last_tested_age, today)
    try:
        findings, read = lint_paths(paths, options)
    except NoSuchPath as exc:
        fail(str(exc), USAGE)
    if as_json:
        typer.echo(findings_json(findings))
    else:
        for finding in findings:
            typer.echo(str(finding))
        if read == 0:
            err.print(f"warning: no Markdown files (*.md) in {escape(', '.join(paths))}", soft_wrap=True)
        elif findings:
            err.print(
                f"{len(findings)} finding(s) in {len({f.path for f in findings})} of {read} runbook(s)",
                soft_wrap=True,
            )
        else:
            err.print(f"{read} runbook(s), no findings", soft_wrap=True)
    if findings:
        raise typer.Exit(1)


# ------------------------------------------------------------ action items

action_app = typer.Typer(
    help="Action items: follow-up work out of an incident, its owner reminded daily past the due date until done.",
    no_args_is_help=True,
)
app.add_typer(action_app, name="action")


@action_app.command("add")
@_command
def action_add(
    ident: IdArgument,
    text: Annotated[str, typer.Argument(metavar="TEXT", help="What is to be done, one line.")],
    owner: Annotated[
        str, typer.Option("--owner", "-o", help="Who does it: a Slack user id (U0BOB); reminders are DMs.")
    ],
    priority: Annotated[str, typer.Option("--priority", "-p", help="P1..P4 (default P3).")] = "",
    due: Annotated[
        str,
        typer.Option("--due", help="2026-12-10, or from today: 7d, 2w (default: the policy's due_within)."),
    ] = "",
    user: UserOption = "",
    wait: WaitOption = DEFAULT_WAIT,
) -> None:
    """Add an action item, during the incident or after it (review included)."""
    owner = owner.strip().removeprefix("@")
    if not SLACK_USER_ID.match(owner):
        fail(f"--owner: {owner!r} is not a Slack user id (U0BOB): the reminders are DMs to the owner", USAGE)
    if priority:
        try:
            action_priority(priority)
        except ValueError as exc:
            fail(f"--priority: {exc}", USAGE)
    if due:
        try:
            due_on = due_date(due, datetime.now(UTC).date(), timedelta(days=1))
        except ValueError as exc:
            fail(f"--due: {str(exc).removeprefix('due: ')}", USAGE)
        if due_on < datetime.now(UTC).date():
            fail(f"--due: {due_on.isoformat()} is in the past", USAGE)
    signal = _build(
        ActionItemSignal, user=user or default_user(), text=text, owner=owner, priority=priority, due=due
    )
    _action_and_report(ident, "add_action_item", signal, wait)


@action_app.command("done")
@_command
def action_done(
    ident: IdArgument,
    number: Annotated[int, typer.Argument(metavar="N", help="The action item's number.", min=1)],
    user: UserOption = "",
    wait: WaitOption = DEFAULT_WAIT,
) -> None:
    """Mark action item N done: its owner is reminded no more."""
    signal = _build(ActionItemDoneSignal, user=user or default_user(), number=number)
    _action_and_report(ident, "complete_action_item", signal, wait)


@action_app.command("list")
@_command
def action_list(
    ident: IdArgument,
    as_json: Annotated[bool, typer.Option("--json", help="The items as JSON.")] = False,
    wait: Annotated[float, typer.Option("--wait", help="Seconds to wait for a worker.", min=0.5)] = 5.0,
) -> None:
    """List the incident's action items: owner, priority, due date, status, ticket, reminders."""
    settings = _settings()

    async def go() -> tuple[IncidentState, bool]:
        return await action_items(await _client(settings), ident, wait)

    state, followed = _run(go)
    if as_json:
        print(json.dumps([i.model_dump(mode="json") for i in state.action_items], indent=2))
        return
    if not state.action_items:
        out.print(f"incident {escape(state.key)} has no action items")
        return
    today = datetime.now(UTC).date()
    table = Table(
        title=f"Action items of {escape(state.key)}"
        + (" (followed up after the incident)" if followed else "")
    )
    for column in ("#", "Status", "Priority", "Due", "Owner", "Ticket", "Reminders", "Text"):
        table.add_column(column)
    for item in state.action_items:
        status = item.status.value + (" (overdue)" if overdue(item, today) else "")
        table.add_row(
            str(item.number),
            status,
            item.priority,
            item.due.isoformat(),
            escape(item.owner),
            escape(item.ticket or item.ticket_problem or ("filing" if item.filing else "—")),
            str(item.reminders),
            escape(item.text),
        )
    out.print(table)


def _action_and_report(ident: str, name: str, signal: Signal, wait: float) -> None:
    """Like `_signal_and_report`, but to the follow-up workflow once the incident has completed."""
    settings = _settings()

    async def go() -> TimelineEntry | str:
        client = await _client(settings)
        try:
            return await send_action_command(
                client,
                ident,
                name,
                signal,
                wait=wait or DEFAULT_WAIT,
                task_queue=settings.temporal_task_queue,
            )
        except CommandPending as pending:
            return str(pending)

    outcome = _run(go)
    if isinstance(outcome, str):
        out.print(f"[yellow]{escape(outcome)}[/yellow]", soft_wrap=True)
        return
    out.print(
        f"[green]accepted: {escape(outcome.kind)}[/green] — {escape(_one_line(outcome.text))}", soft_wrap=True
    )


def main() -> None:
    """Console script entry point. Ends with os._exit: the interpreter was seen to crash at exit (139)."""
    code = run()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    os._exit(code)


if __name__ == "__main__":
    main()
