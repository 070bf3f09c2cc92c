"""`incident report --html FILE`: the report as one self-contained HTML page, its charts drawn by
matplotlib as inline SVG (no script, no outside asset: it opens offline, and in a mail client)."""

from __future__ import annotations

import io
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from starter.report import (
    DEFINITIONS,
    GROUP_COLUMNS,
    Report,
    fmt_seconds,
    group_row,
)

TEMPLATES = Path(__file__).parent / "templates"
SEVERITY_COLOURS = {"P1": "#c62828", "P2": "#ef6c00", "P3": "#f9a825", "P4": "#607d8b"}


def _svg(figure) -> Markup:  # type: ignore[no-untyped-def]
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    # The SVG's own XML prolog and DOCTYPE are not allowed inside HTML: the <svg> element only.
    return Markup(text[text.index("<svg") :])


def charts(report: Report) -> dict[str, Markup]:
    """The trends and the breakdowns, each an inline <svg>."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "svg.fonttype": "none", "figure.dpi": 100})
    drawn: dict[str, Markup] = {}
    weeks = [t.week for t in report.trends]

    fig, ax = plt.subplots(figsize=(6, 3))
    bottom = [0] * len(weeks)
    for sev, colour in SEVERITY_COLOURS.items():
        counts = [t.by_severity.get(sev, 0) for t in report.trends]
        if any(counts):
            ax.bar(weeks, counts, bottom=bottom, color=colour, label=sev)
            bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    ax.set_title("Incidents per week, by severity")
    ax.set_ylabel("incidents")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    drawn["incidents_per_week"] = _svg(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3))
    for name, values, style in (
        ("MTTA", [t.mtta.seconds for t in report.trends], "o-"),
        ("MTTR", [t.mttr.seconds for t in report.trends], "s-"),
    ):
        ax.plot(weeks, [None if v is None else v / 60 for v in values], style, label=name)
    ax.set_title("MTTA and MTTR per week")
    ax.set_ylabel("minutes")
    highest = max((t.mttr.seconds or 0 for t in report.trends), default=0) / 60
    ax.set_ylim(0, max(highest * 1.25, 1))
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    drawn["times_per_week"] = _svg(fig)
    plt.close(fig)

    severities = list(report.by_severity)
    fig, ax = plt.subplots(figsize=(6, 3))
    width = 0.2
    for offset, (name, attr) in enumerate(
        (("MTTA", "mtta"), ("MTTD", "mttd"), ("MTTM", "mttm"), ("MTTR", "mttr"))
    ):
        values = [getattr(report.by_severity[s], attr).seconds for s in severities]
        positions = [i + (offset - 1.5) * width for i in range(len(severities))]
        ax.bar(positions, [0 if v is None else v / 60 for v in values], width, label=name)
    ax.set_xticks(range(len(severities)), severities)
    ax.set_title("Mean times by severity")
    ax.set_ylabel("minutes")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    drawn["times_by_severity"] = _svg(fig)
    plt.close(fig)

    people = sorted({p.person for p in report.pages_per_person_week})
    fig, ax = plt.subplots(figsize=(6, 3))
    if people:
        busiest = [
            max((p.pages for p in report.pages_per_person_week if p.person == person), default=0)
            for person in people
        ]
        colours = ["#c62828" if n > report.max_pages_per_person_week else "#1565c0" for n in busiest]
        ax.bar(people, busiest, color=colours)
        ax.axhline(report.max_pages_per_person_week, color="#c62828", linestyle="--", linewidth=1)
        ax.text(
            -0.4,
            report.max_pages_per_person_week,
            f"limit {report.max_pages_per_person_week}/week",
            va="bottom",
            ha="left",
            fontsize=8,
            color="#c62828",
        )
        ax.tick_params(axis="x", labelrotation=30)
    ax.set_title("Pages per person in their busiest week")
    ax.set_ylabel("pages")
    drawn["pages_per_person"] = _svg(fig)
    plt.close(fig)
    return drawn


def render_html(report: Report) -> str:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    rows = [group_row("All", report.overall)]
    severity_rows = [group_row(name, g) for name, g in report.by_severity.items()]
    service_rows = [group_row(name, g) for name, g in report.by_service.items()]
    return env.get_template("report.html.j2").render(
        report=report,
        columns=GROUP_COLUMNS,
        overall=rows,
        severity_rows=severity_rows,
        service_rows=service_rows,
        definitions=DEFINITIONS,
        charts=charts(report),
        fmt_seconds=fmt_seconds,
    )


def write_html(report: Report, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report), encoding="utf-8")
    return path
