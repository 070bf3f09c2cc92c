"""`incident runbook lint`: Markdown runbooks checked against the runbook template.

The template (docs/runbooks/, after the incident-commander seed's) is a title
`# Runbook: <service or failure scenario>`, then Quick Reference (service, owner
team, on-call, dashboards, last tested), Detection, Diagnosis, Remediation and
Escalation. A runbook is parsed with markdown-it (CommonMark, plus tables), so a
`#` inside a code block is not a heading and a fence is found wherever it is.

Each finding is one line in the form linters use, `path:line: CODE message`,
with codes that stay the same from one release to the next (CODES).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

from markdown_it import MarkdownIt
from markdown_it.token import Token

# The codes, what each means; README's table is this one.
CODES = {
    "RB000": "the file cannot be read (not UTF-8, unreadable)",
    "RB001": "a required section is missing (Quick Reference, Detection, Diagnosis, Remediation, Escalation)",
    "RB002": "the Quick Reference lacks a field (Service, Owner Team, On-Call, Dashboards, Last Tested), "
    "or it is empty or still the template's [placeholder]",
    "RB003": "a code block without a language (```bash, ```text, ...)",
    "RB004": "a local link whose file does not exist",
    "RB005": "a local link whose #anchor is no heading of its Markdown file",
    "RB006": "Last Tested is older than the policy allows (runbooks.max_last_tested_age, or --max-age)",
    "RB007": "Last Tested is not a date (YYYY-MM-DD), or is in the future",
    "RB008": "no `# Runbook: <name>` title, or it is still the template's placeholder",
    "RB009": "a required section is empty",
}

# Required sections: (name as the template writes it, the ways people also write it). A heading
# matches when its words, lower-cased and without punctuation or numbering, contain one of these
# in order, each word a prefix of the heading's (`Escalation Path`, `3. Diagnostics`).
SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Quick Reference", ("quick reference", "quick ref", "at a glance")),
    ("Detection", ("detect", "alerting", "alerts")),
    ("Diagnosis", ("diagnos", "investigat", "troubleshoot", "triage")),
    ("Remediation", ("remediat", "mitigat", "recover", "resolution")),
    ("Escalation", ("escalat",)),
)
# Quick Reference fields: (name as the template writes it, labels that mean it, exactly).
FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Service", ("service", "service name", "services")),
    ("Owner Team", ("owner team", "owner", "owners", "owning team", "team", "owner teams")),
    ("On-Call", ("on call", "oncall", "on call schedule", "on call rotation", "pager")),
    ("Dashboards", ("dashboards", "dashboard")),
    ("Last Tested", ("last tested", "last tested on", "last drill", "last game day", "last verified")),
)
LAST_TESTED = "Last Tested"

_WORD = re.compile(r"[^\w]+", re.UNICODE)
_NUMBERING = re.compile(r"^\s*(?:\d+[.)]|[ivx]+\.)\s+", re.IGNORECASE)
_LABEL = re.compile(r"^\s*([^:]{1,40}?)\s*:\s*(.*)$")
_PLACEHOLDER = re.compile(r"^\[[^\]]*\]$")
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b")
_WORDY_DATE = re.compile(
    r"\b(?:\d{1,2}\s+[A-Za-z]{3,9}\.?,?\s+\d{4}|[A-Za-z]{3,9}\.?\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{4})\b"
)
_HTML_ANCHOR = re.compile(r"""<a\s[^>]*\b(?:name|id)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
_FRONT_MATTER = re.compile(r"\A---\r?\n.*?\r?\n(?:---|\.\.\.)\r?\n", re.DOTALL)
_SKIPPED_DIRS = {"node_modules", "__pycache__"}


@dataclass(frozen=True, order=True)
class Finding:
    path: str
    line: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.code} {self.message}"


@dataclass(frozen=True)
class LintOptions:
    max_age: timedelta  # a Last Tested older than this is RB006
    today: date
    max_age_source: str = "runbooks.max_last_tested_age"  # what the RB006 message names


class NoSuchPath(ValueError):
    """A PATH that is not there; str() names it."""


# ------------------------------------------------------------------ files


def runbook_files(paths: Sequence[str]) -> list[tuple[Path, str]]:
    """Each Markdown file to lint with the path it is shown as: files as given, directories
    searched for *.md (hidden directories skipped). NoSuchPath for the first that is not there."""
    found: list[tuple[Path, str]] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            for file in sorted(path.rglob("*.md")):
                parts = file.relative_to(path).parts
                if any(p.startswith(".") or p in _SKIPPED_DIRS for p in parts[:-1]) or not file.is_file():
                    continue
                found.append((file, str(file)))
        elif path.is_file():
            found.append((path, given))
        else:
            raise NoSuchPath(f"no such file or directory: {given}")
    unique: dict[Path, tuple[Path, str]] = {}
    for file, shown in found:
        unique.setdefault(file.resolve(), (file, shown))
    return list(unique.values())


def lint_paths(paths: Sequence[str], options: LintOptions) -> tuple[list[Finding], int]:
    """Every finding in the runbooks under `paths`, in order, and how many runbooks were read."""
    files = runbook_files(paths)
    _anchors_of.cache_clear()  # files may have changed since the last run in this process
    findings: list[Finding] = []
    for file, shown in files:
        findings.extend(lint_file(file, shown, options))
    return sorted(findings), len(files)


def findings_json(findings: Iterable[Finding]) -> str:
    return json.dumps([asdict(f) for f in findings], indent=2, ensure_ascii=False)


# ------------------------------------------------------------------ parsing


@cache
def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark").enable("table")


def _read(file: Path) -> str:
    text = file.read_bytes().decode("utf-8")
    # YAML front matter would read as a rule and a setext heading: keep its lines, blank.
    match = _FRONT_MATTER.match(text)
    if match:
        text = "\n" * match.group(0).count("\n") + text[match.end() :]
    return text


def _plain(tokens: Iterable[Token]) -> str:
    """The text a reader sees of inline tokens (markup dropped, code spans kept)."""
    parts = []
    for token in tokens:
        if token.type in ("text", "code_inline"):
            parts.append(token.content)
        elif token.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif token.type == "image":
            parts.append(_plain(token.children or []))
    return "".join(parts)


def _lines_of(inline: Token) -> Iterator[tuple[int, list[Token]]]:
    """An inline token's children cut at its line breaks, each with its 1-based line number."""
    first = (inline.map[0] if inline.map else 0) + 1
    current: list[Token] = []
    offset = 0
    for child in inline.children or []:
        if child.type in ("softbreak", "hardbreak"):
            yield first + offset, current
            current, offset = [], offset + 1
        else:
            current.append(child)
    yield first + offset, current


def _words(text: str) -> list[str]:
    text = _NUMBERING.sub("", text.lower().replace("&", " and "))
    return [w for w in _WORD.split(text) if w]


def _label(text: str) -> str:
    return " ".join(_words(text))


def _matches_section(heading: str, synonyms: tuple[str, ...]) -> bool:
    words = _words(heading)
    for synonym in synonyms:
        wanted = synonym.split()
        for start in range(len(words) - len(wanted) + 1):
            if all(words[start + i].startswith(w) for i, w in enumerate(wanted)):
                return True
    return False


def github_slug(text: str) -> str:
    """The anchor GitHub (and most renderers) give a heading: `Option A: Rollback` -> `option-a-rollback`."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower(), flags=re.UNICODE).replace(" ", "-")


@dataclass
class _Heading:
    level: int
    text: str
    line: int
    index: int  # of its heading_open token


@dataclass
class _Document:
    tokens: list[Token]
    headings: list[_Heading] = field(default_factory=list)

    def section(self, heading: _Heading) -> list[Token]:
        """The tokens under `heading`, up to the next heading of its level or higher."""
        end = len(self.tokens)
        for other in self.headings:
            if other.index > heading.index and other.level <= heading.level:
                end = other.index
                break
        return self.tokens[heading.index + 3 : end]

    def anchors(self) -> set[str]:
        seen: dict[str, int] = {}
        found = set()
        for heading in self.headings:
            slug = github_slug(heading.text)
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            found.add(slug if count == 0 else f"{slug}-{count}")
        for token in self.tokens:
            sources = [token] if token.type == "html_block" else list(token.children or [])
            for source in sources:
                if source.type in ("html_block", "html_inline"):
                    found.update(_HTML_ANCHOR.findall(source.content))
        return found


def _parse(text: str) -> _Document:
    tokens = _markdown().parse(text)
    document = _Document(tokens)
    for index, token in enumerate(tokens):
        if token.type == "heading_open":
            inline = tokens[index + 1]
            document.headings.append(
                _Heading(
                    level=int(token.tag[1:]),
                    text=_plain(inline.children or []).strip(),
                    line=(token.map[0] if token.map else 0) + 1,
                    index=index,
                )
            )
    return document


# ------------------------------------------------------------------ checks


def lint_file(file: Path, shown: str, options: LintOptions) -> list[Finding]:
    try:
        text = _read(file)
    except UnicodeDecodeError as exc:
        return [Finding(shown, 1, "RB000", f"not UTF-8 text (byte {exc.start}): cannot be read as Markdown")]
    except OSError as exc:
        return [Finding(shown, 1, "RB000", f"cannot be read: {exc.strerror or exc}")]
    document = _parse(text)
    checks = (_title, _sections, _quick_reference, _code_blocks)
    findings = [f for check in checks for f in check(document, shown, options)]
    findings.extend(_links(document, file, shown))
    return findings


def _title(document: _Document, shown: str, options: LintOptions) -> Iterator[Finding]:
    titles = [h for h in document.headings if h.level == 1]
    if not titles:
        yield Finding(shown, 1, "RB008", "no title: start with `# Runbook: <service or failure scenario>`")
        return
    name = titles[0].text.split(":", 1)[-1].strip()
    if not name or _PLACEHOLDER.match(name):
        yield Finding(
            shown, titles[0].line, "RB008", f"title {titles[0].text!r} still needs the runbook's name"
        )


def _find_section(document: _Document, synonyms: tuple[str, ...]) -> _Heading | None:
    for heading in document.headings:
        if heading.level > 1 and _matches_section(heading.text, synonyms):
            return heading
    return None


_CONTENT = {
    "paragraph_open",
    "bullet_list_open",
    "ordered_list_open",
    "fence",
    "code_block",
    "table_open",
    "blockquote_open",
    "html_block",
}


def _sections(document: _Document, shown: str, options: LintOptions) -> Iterator[Finding]:
    for name, synonyms in SECTIONS:
        heading = _find_section(document, synonyms)
        if heading is None:
            also = f" or `## {name} Path`" if name == "Escalation" else ""
            yield Finding(shown, 1, "RB001", f"missing section: {name} (a heading such as `## {name}`{also})")
        elif not any(t.type in _CONTENT for t in document.section(heading)):
            yield Finding(shown, heading.line, "RB009", f"section {heading.text!r} is empty")


def _field_rows(tokens: list[Token]) -> Iterator[tuple[int, str, list[Token]]]:
    """(line, label, value tokens) for each `Label: value` line and each two-cell table row."""
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token.type == "tr_open":
            cells = []
            index += 1
            while index < len(tokens) and tokens[index].type != "tr_close":
                if tokens[index].type == "inline":
                    cells.append(tokens[index])
                index += 1
            if len(cells) >= 2:
                line = (token.map[0] if token.map else 0) + 1
                yield line, _plain(cells[0].children or []), list(cells[1].children or [])
        elif token.type == "inline":
            for line, children in _lines_of(token):
                label, value = _split_label(children)
                if label is not None:
                    yield line, label, value
        index += 1


def _split_label(children: list[Token]) -> tuple[str | None, list[Token]]:
    """`**Service**: x`, `**Service:** x` and `Service: x` -> ("Service", tokens of "x")."""
    plain = _plain(children)
    match = _LABEL.match(plain)
    if not match:
        return None, []
    # The value's tokens: everything after the first colon of the line's text.
    consumed, value = 0, []
    colon_at = plain.index(":")
    for child in children:
        text = child.content if child.type in ("text", "code_inline") else ""
        if consumed > colon_at:
            value.append(child)
        elif consumed + len(text) > colon_at and child.type == "text":
            rest = text[colon_at - consumed + 1 :]
            if rest:
                value.append(Token("text", "", 0, content=rest))
        consumed += len(text)
    return match.group(1).strip("*_ "), value


def _quick_reference(document: _Document, shown: str, options: LintOptions) -> Iterator[Finding]:
    heading = _find_section(document, SECTIONS[0][1])
    if heading is None:
        return  # RB001 says so
    rows = {}
    for line, label, value in _field_rows(document.section(heading)):
        rows.setdefault(_label(label), (line, label, value))
    for name, labels in FIELDS:
        row = next((rows[label] for label in labels if label in rows), None)
        if row is None:
            yield Finding(
                shown, heading.line, "RB002", f"Quick Reference has no {name} (`- **{name}**: ...`)"
            )
            continue
        line, label, value = row
        text = _plain(value).strip()
        linked = any(t.type in ("link_open", "image") for t in value)
        if not text and not linked:
            yield Finding(shown, line, "RB002", f"Quick Reference {name} is empty")
        elif _PLACEHOLDER.match(text) and not linked:
            yield Finding(shown, line, "RB002", f"Quick Reference {name} is still the placeholder {text}")
        elif name == LAST_TESTED:
            yield from _last_tested(shown, line, text, options)


def parse_tested_date(text: str) -> date | None:
    """The date in a Last Tested value: `2026-11-18`, `2026-11-18 (game day)`, `18 Nov 2026`."""
    iso = _ISO_DATE.search(text)
    if iso:
        try:
            return date(*(int(g) for g in iso.groups()))
        except ValueError:
            return None
    wordy = _WORDY_DATE.search(text)
    if wordy:
        from dateutil import parser

        try:
            return parser.parse(wordy.group(0)).date()
        except (ValueError, OverflowError):
            return None
    return None


def _last_tested(shown: str, line: int, text: str, options: LintOptions) -> Iterator[Finding]:
    tested = parse_tested_date(text)
    if tested is None:
        yield Finding(shown, line, "RB007", f"Last Tested {text!r} is not a date: write it as YYYY-MM-DD")
        return
    age = options.today - tested
    if age < timedelta(0):
        yield Finding(shown, line, "RB007", f"Last Tested {tested.isoformat()} is in the future")
    elif age > options.max_age:
        yield Finding(
            shown,
            line,
            "RB006",
            f"Last Tested {tested.isoformat()} is {age.days} days ago; at most {options.max_age.days} days "
            f"allowed ({options.max_age_source}): run a drill and update it",
        )


def _code_blocks(document: _Document, shown: str, options: LintOptions) -> Iterator[Finding]:
    for token in document.tokens:
        line = (token.map[0] if token.map else 0) + 1
        if token.type == "fence" and not token.info.strip():
            yield Finding(shown, line, "RB003", "code block without a language (```bash, ```text, ...)")
        elif token.type == "code_block":
            yield Finding(
                shown, line, "RB003", "indented code block has no language: fence it (```bash, ```text, ...)"
            )


def _link_targets(document: _Document) -> Iterator[tuple[int, str]]:
    for token in document.tokens:
        if token.type != "inline":
            continue
        for line, children in _lines_of(token):
            for child in children:
                if child.type == "link_open":
                    yield line, str(child.attrs.get("href", ""))
                elif child.type == "image":
                    yield line, str(child.attrs.get("src", ""))


def _links(document: _Document, file: Path, shown: str) -> Iterator[Finding]:
    for line, href in _link_targets(document):
        if not href.strip():
            yield Finding(shown, line, "RB004", "link without a target")
            continue
        parts = urlsplit(href)
        if parts.scheme or parts.netloc or href.startswith("//"):
            continue  # a URL: not checked here (no network)
        target_text = unquote(parts.path)
        if not target_text:
            target = file
        elif target_text.startswith("/"):
            target = _repository_root(file) / target_text.lstrip("/")
        else:
            target = file.parent / target_text
        if not target.exists():
            yield Finding(shown, line, "RB004", f"link target not found: {target_text}")
            continue
        anchor = unquote(parts.fragment)
        if not anchor or target.is_dir() or target.suffix.lower() not in (".md", ".markdown"):
            continue
        anchors = document.anchors() if target.resolve() == file.resolve() else _anchors_of(target.resolve())
        if anchors is not None and anchor not in anchors and anchor.lower() not in anchors:
            where = "this file" if target.resolve() == file.resolve() else target_text
            yield Finding(shown, line, "RB005", f"anchor #{anchor} is no heading of {where}")


@cache
def _anchors_of(file: Path) -> set[str] | None:
    try:
        return _parse(_read(file)).anchors()
    except (OSError, UnicodeDecodeError):
        return None


def _repository_root(file: Path) -> Path:
    """Where a link starting with `/` points from: the enclosing git checkout, as GitHub reads it."""
    for parent in file.resolve().parents:
        if (parent / ".git").exists():
            return parent
    return Path(file.resolve().anchor)
