"""A local stand-in for ServiceNow's Table API (``/api/now/table/<table>``).

A Starlette app that answers the Table API in ServiceNow's own shapes, so
that ServiceNow's Python client (``pysnc``) and this project's httpx client
work against it unchanged::

    python -m sandbox.servicenow --port 8902 --state .data/servicenow-sandbox.json
    curl -u admin:admin 'http://127.0.0.1:8902/api/now/table/incident?sysparm_query=active=true&sysparm_limit=5'

What it does, as the real instance does:

- ``GET /api/now/table/<table>`` with ``sysparm_query`` (encoded queries:
  ``a=b^c!=d``, ``^OR``, ``^NQ``, ``LIKE``, ``STARTSWITH``, ``ENDSWITH``,
  ``IN``, ``NOT IN``, ``ISEMPTY``, ``ISNOTEMPTY``, ``<``/``>``, ``ORDERBY``
  and ``ORDERBYDESC``), ``sysparm_limit``, ``sysparm_offset``,
  ``sysparm_fields`` and ``sysparm_display_value`` (``false``, ``true`` or
  ``all``, where each field is ``{"value", "display_value"}``); the
  ``X-Total-Count`` header; every answer wrapped in ``{"result": ...}``.
- ``GET``/``PATCH``/``PUT``/``DELETE .../<table>/<sys_id>``, ``POST
  .../<table>`` (201, a 32-hex ``sys_id``, a ``number`` such as
  ``INC0010001``, ``sys_created_on`` ... and every incident field present).
- Journal fields: ``work_notes`` and ``comments`` are write-only inputs that
  append an entry to the record's journal. They read back empty as values
  and, as display values, as the whole journal, newest first::

      2026-11-22 14:35:00 - System Administrator (Work notes)
      <text>

  The entries themselves are the ``sys_journal_field`` table (read-only here).
- Incidents: ``priority`` follows ``impact`` x ``urgency`` (the default
  lookup: 1/1 -> 1 Critical ... 3/3 -> 5 Planning); ``state`` 6 (Resolved)
  stamps ``resolved_at``/``resolved_by``, 7 (Closed) ``closed_at``/``closed_by``
  and makes the incident inactive; fields the table does not have are
  ignored; long strings are cut to the field's length.
- Basic auth, or ``Authorization: Bearer <token>`` (an OAuth access token),
  with ServiceNow's 401 body; 404 and 400 in ServiceNow's error shape.

- ``sys_user`` holds sandbox/people.py's people (stable sys_ids, their
  ``user_name``, ``name`` and ``email``) and admin. ``assigned_to`` is a
  reference to it, checked: a sys_user's sys_id is stored, a user's display
  value (``name``) is resolved to their sys_id, anything else (a Slack id such
  as ``U0ALICE``) is not stored: the field stays as it was and the call is
  counted in ``/_sandbox/state``'s ``unresolved_references``. (A choice made for
  the tests: a real instance may keep an unresolvable value, shown with an
  empty display value; either way no user is assigned.) With
  ``sysparm_display_value`` it shows the user's name.

Not modelled: other reference fields are plain strings (``assignment_group``
keeps what was written, no ``link``), ACLs, business rules beyond the ones
above, the Import Set and Attachment APIs.

The ``/_sandbox/...`` endpoints (plain JSON, not ServiceNow-shaped) inject
faults, take the instance down, dump and reset the state; ``GET /`` lists
the incidents for a person.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import copy
import html
import json
import logging
import os
import re
import secrets
import tempfile
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from .people import PEOPLE

log = logging.getLogger("sandbox.servicenow")

DEFAULT_PORT = 8902
DEFAULT_USERS: dict[str, str] = {"admin": "admin"}
DEFAULT_TOKENS: dict[str, str] = {"sandbox-oauth-token": "admin"}  # bearer token -> user
USER_NAMES = {"admin": "System Administrator"}  # user_name -> display name, as journals show them
STATE_VERSION = 1
CALL_LOG_SIZE = 10_000
MAX_LIMIT = 10_000  # the instance's default glide.json.return_limit-ish ceiling

# Tables the sandbox knows; number prefixes as on a fresh instance.
NUMBER_PREFIX = {"incident": "INC", "problem": "PRB", "change_request": "CHG", "sc_task": "SCTASK"}
TASK_TABLES = frozenset(NUMBER_PREFIX)  # tables with journal fields
JOURNAL_TABLE = "sys_journal_field"
KNOWN_TABLES = TASK_TABLES | {"sys_user", "sys_user_group", JOURNAL_TABLE}
FIRST_NUMBER = 10001
JOURNAL_FIELDS = {"work_notes": "Work notes", "comments": "Additional comments"}
USER_REFERENCES = frozenset({"opened_by", "resolved_by", "closed_by"})  # display value: the user's name
CHECKED_USER_REFERENCES = frozenset({"assigned_to"})  # references to sys_user a client writes: checked
ADMIN_SYS_ID = "6816f79cc0a8016401c5a33be04be441"  # admin's sys_id on every instance
SYSTEM_FIELDS = frozenset(
    {
        "sys_id",
        "number",
        "sys_created_on",
        "sys_created_by",
        "sys_updated_on",
        "sys_updated_by",
        "sys_mod_count",
    }
)

# Every field an incident has, with its value on a new record ("" unless set).
INCIDENT_FIELDS: dict[str, str] = {
    "active": "true",
    "activity_due": "",
    "approval": "not requested",
    "assigned_to": "",
    "assignment_group": "",
    "business_service": "",
    "caller_id": "",
    "category": "inquiry",
    "close_code": "",
    "close_notes": "",
    "closed_at": "",
    "closed_by": "",
    "cmdb_ci": "",
    "comments": "",
    "company": "",
    "contact_type": "",
    "correlation_display": "",
    "correlation_id": "",
    "description": "",
    "due_date": "",
    "escalation": "0",
    "impact": "3",
    "incident_state": "1",
    "location": "",
    "made_sla": "true",
    "number": "",
    "opened_at": "",
    "opened_by": "",
    "parent_incident": "",
    "priority": "5",
    "problem_id": "",
    "reassignment_count": "0",
    "reopen_count": "0",
    "resolved_at": "",
    "resolved_by": "",
    "severity": "3",
    "short_description": "",
    "state": "1",
    "subcategory": "",
    "sys_class_name": "incident",
    "sys_created_by": "",
    "sys_created_on": "",
    "sys_domain": "global",
    "sys_id": "",
    "sys_mod_count": "0",
    "sys_updated_by": "",
    "sys_updated_on": "",
    "urgency": "3",
    "work_notes": "",
}
MAX_LENGTH = {
    "short_description": 160,
    "correlation_id": 100,
    "correlation_display": 100,
    "close_code": 40,
    "category": 40,
    "subcategory": 40,
}
STATE_LABELS = {
    "1": "New",
    "2": "In Progress",
    "3": "On Hold",
    "6": "Resolved",
    "7": "Closed",
    "8": "Canceled",
}
LEVEL_LABELS = {"1": "1 - High", "2": "2 - Medium", "3": "3 - Low"}
CHOICES: dict[str, dict[str, str]] = {
    "state": STATE_LABELS,
    "incident_state": STATE_LABELS,
    "impact": LEVEL_LABELS,
    "urgency": LEVEL_LABELS,
    "severity": LEVEL_LABELS,
    "priority": {
        "1": "1 - Critical",
        "2": "2 - High",
        "3": "3 - Moderate",
        "4": "4 - Low",
        "5": "5 - Planning",
    },
    "escalation": {"0": "Normal", "1": "Moderate", "2": "High", "3": "Overdue"},
    "category": {
        "inquiry": "Inquiry / Help",
        "software": "Software",
        "hardware": "Hardware",
        "network": "Network",
        "database": "Database",
    },
    "active": {"true": "true", "false": "false"},
}
# The default priority lookup (dl_u_priority): (impact, urgency) -> priority.
PRIORITY = {
    ("1", "1"): "1",
    ("1", "2"): "2",
    ("2", "1"): "2",
    ("1", "3"): "3",
    ("2", "2"): "3",
    ("3", "1"): "3",
    ("2", "3"): "4",
    ("3", "2"): "4",
    ("3", "3"): "5",
}
RESOLVED, CLOSED, CANCELED = "6", "7", "8"

_FAULT_BODIES = {
    400: ("Invalid request", "The request was rejected by the sandbox's fault switch"),
    401: ("User Not Authenticated", "Required to provide Auth information"),
    403: ("Operation Failed", "ACL Exception Update Failed due to security constraints"),
    404: ("No Record found", "Record doesn't exist or ACL restricts the record retrieval"),
    429: ("Too Many Requests", "Rate limit exceeded for the resource"),
    500: ("Internal Server Error", "The server encountered an unexpected condition"),
    502: ("Bad Gateway", None),
    503: ("Service Unavailable", "The instance is unavailable"),
    504: ("Gateway Timeout", None),
}


def _user(sys_id: str, user_name: str, name: str, email: str) -> dict[str, str]:
    return {
        "sys_id": sys_id,
        "user_name": user_name,
        "name": name,
        "email": email,
        "active": "true",
        "sys_created_on": "2026-01-01 00:00:00",
        "sys_created_by": "admin",
        "sys_updated_on": "2026-01-01 00:00:00",
        "sys_updated_by": "admin",
        "sys_mod_count": "0",
    }


class TableError(Exception):
    """A ServiceNow-shaped failure: ``{"error": {"message", "detail"}, "status": "failure"}``."""

    def __init__(self, status: int, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail


def _error_response(status: int, message: str, detail: str | None, headers: dict[str, str] | None = None):
    body = {"error": {"message": message, "detail": detail}, "status": "failure"}
    return JSONResponse(body, status_code=status, headers=headers)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _text(value: Any) -> str:
    """Table API values are strings: true/false, numbers as digits, null as empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):  # {"value": ..., "display_value": ...} as pysnc may echo it back
        return _text(value.get("value", value.get("display_value")))
    return str(value)


def _bool(value: Any, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


# ---------------------------------------------------------------------------
# encoded queries


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: str

    def matches(self, record: dict[str, Any]) -> bool:
        actual = _text(record.get(self.field, "")).lower()
        wanted = self.value.lower()
        op = self.op
        if op == "=":
            return actual == wanted
        if op == "!=":
            return actual != wanted
        if op == "LIKE":
            return wanted in actual
        if op == "NOT LIKE":
            return wanted not in actual
        if op == "STARTSWITH":
            return actual.startswith(wanted)
        if op == "ENDSWITH":
            return actual.endswith(wanted)
        if op == "IN":
            return actual in {v.strip().lower() for v in self.value.split(",")}
        if op == "NOT IN":
            return actual not in {v.strip().lower() for v in self.value.split(",")}
        if op == "ISEMPTY":
            return actual == ""
        if op == "ISNOTEMPTY":
            return actual != ""
        if op == "ANYTHING":
            return True
        left, right = _comparable(actual), _comparable(wanted)
        if type(left) is not type(right):
            left, right = str(left), str(right)
        return {
            ">": left > right,  # type: ignore[operator]
            ">=": left >= right,  # type: ignore[operator]
            "<": left < right,  # type: ignore[operator]
            "<=": left <= right,  # type: ignore[operator]
        }[op]


def _comparable(value: str) -> float | str:
    try:
        return float(value)
    except ValueError:
        return value


_CONDITION = re.compile(
    r"^(?P<field>[a-z0-9_.]+?)"
    r"(?P<op>ISNOTEMPTY|ISEMPTY|ANYTHING|NOT LIKE|NOT IN|STARTSWITH|ENDSWITH|LIKE|IN|!=|>=|<=|=|>|<)"
    r"(?P<value>.*)$",
    re.S,
)
_CARET = "\x00"


@dataclass
class Query:
    """An encoded query: groups (``^NQ``) of clauses (``^``) of alternatives (``^OR``), and an order."""

    groups: list[list[list[Condition]]]
    order: list[tuple[str, bool]]  # (field, descending)

    @classmethod
    def parse(cls, text: str | None) -> Query:
        groups: list[list[list[Condition]]] = [[]]
        order: list[tuple[str, bool]] = []
        for raw in (text or "").replace("^^", _CARET).split("^"):
            token = raw.replace(_CARET, "^")
            if not token.strip():
                continue
            if token.startswith("NQ"):  # ^NQ starts a new query, OR-ed with the ones before
                groups.append([])
                token = token[2:]
                if not token:
                    continue
            if token.startswith("ORDERBYDESC"):
                order.append((token[len("ORDERBYDESC") :], True))
            elif token.startswith("ORDERBY"):
                order.append((token[len("ORDERBY") :], False))
            elif token.startswith("GROUPBY"):
                continue
            elif token.startswith("OR") and groups[-1] and _CONDITION.match(token[2:]):
                groups[-1][-1].append(_condition(token[2:]))
            else:
                groups[-1].append([_condition(token)])
        return cls([g for g in groups if g] or [[]], order)

    def matches(self, record: dict[str, Any]) -> bool:
        return any(all(any(c.matches(record) for c in clause) for clause in group) for group in self.groups)

    def sort(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for field, descending in reversed(self.order):
            records = sorted(records, key=lambda r: _comparable(_text(r.get(field, ""))), reverse=descending)
        return records


def _condition(token: str) -> Condition:
    match = _CONDITION.match(token)
    if match is None:
        raise TableError(400, "Invalid query", f"cannot read the condition {token!r}")
    return Condition(match["field"], match["op"], match["value"])


# ---------------------------------------------------------------------------
# the instance: tables, journal, faults, persistence


class ServiceNowSandbox:
    """All state of one sandbox instance. Only touched from the event loop, so no locking."""

    def __init__(self, state_file: str | Path | None = None) -> None:
        self.state_file = Path(state_file) if state_file else None
        self.faults: list[dict[str, Any]] = []
        self.down = False
        self.down_retry_after: int | None = None
        self.calls: deque[dict[str, Any]] = deque(maxlen=CALL_LOG_SIZE)
        self.call_counts: Counter[str] = Counter()
        self._clear()
        if self.state_file and self.state_file.exists():
            self._load()

    def _clear(self) -> None:
        self.tables: dict[str, dict[str, dict[str, str]]] = {}  # table -> sys_id -> record
        self.journal: list[dict[str, str]] = []  # sys_journal_field rows, oldest first
        self.counters: dict[str, int] = {}  # table -> next number
        self.unresolved_references: list[dict[str, str]] = []  # values a reference field refused
        self.tables["sys_user"] = {
            p.sys_id: _user(p.sys_id, p.user_name, p.name, p.email) for p in PEOPLE
        } | {ADMIN_SYS_ID: _user(ADMIN_SYS_ID, "admin", "System Administrator", "admin@example.com")}

    def reset(self) -> None:
        self._clear()
        self.faults.clear()
        self.down = False
        self.down_retry_after = None
        self.calls.clear()
        self.call_counts.clear()
        self.changed()

    # -- records ------------------------------------------------------------

    def insert(self, table: str, body: dict[str, Any], user: str) -> dict[str, str]:
        rows = self.tables.setdefault(table, {})
        now = _now()
        sys_id = _text(body.get("sys_id"))
        if not re.fullmatch(r"[0-9a-f]{32}", sys_id) or sys_id in rows:
            sys_id = secrets.token_hex(16)
        record: dict[str, str] = dict(INCIDENT_FIELDS) if table == "incident" else {}
        if table in TASK_TABLES:
            record.setdefault("comments", "")
            record.setdefault("work_notes", "")
        record.update(
            sys_id=sys_id,
            sys_created_on=now,
            sys_created_by=user,
            sys_updated_on=now,
            sys_updated_by=user,
            sys_mod_count="0",
        )
        if table in NUMBER_PREFIX:
            number = self.counters.get(table, FIRST_NUMBER)
            self.counters[table] = number + 1
            record["number"] = f"{NUMBER_PREFIX[table]}{number:07d}"
        if table == "incident":
            record.update(opened_at=now, opened_by=user)
        self._write_fields(table, record, body, user, now)
        rows[sys_id] = record
        self.changed()
        return record

    def update(self, table: str, sys_id: str, body: dict[str, Any], user: str) -> dict[str, str]:
        record = self.find(table, sys_id)
        now = _now()
        self._write_fields(table, record, body, user, now)
        record["sys_updated_on"] = now
        record["sys_updated_by"] = user
        record["sys_mod_count"] = str(int(record.get("sys_mod_count") or 0) + 1)
        self.changed()
        return record

    def delete(self, table: str, sys_id: str) -> None:
        self.find(table, sys_id)
        del self.tables[table][sys_id]
        self.journal = [j for j in self.journal if j["element_id"] != sys_id]
        self.changed()

    def find(self, table: str, sys_id: str) -> dict[str, str]:
        record = self.tables.get(table, {}).get(sys_id)
        if record is None:
            raise TableError(
                404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval"
            )
        return record

    def rows(self, table: str) -> list[dict[str, str]]:
        if table == JOURNAL_TABLE:
            return list(self.journal)
        return list(self.tables.get(table, {}).values())

    def _write_fields(
        self, table: str, record: dict[str, str], body: dict[str, Any], user: str, now: str
    ) -> None:
        notes: list[tuple[str, str]] = []
        for field, raw in body.items():
            value = _text(raw)
            if field in SYSTEM_FIELDS:
                continue
            if table in TASK_TABLES and field in JOURNAL_FIELDS:
                if value.strip():
                    notes.append((field, value))
                continue
            if table == "incident" and field not in INCIDENT_FIELDS:
                continue  # like the instance: a field the table does not have is ignored
            if field in MAX_LENGTH:
                value = value[: MAX_LENGTH[field]]
            if table == "incident" and field in CHECKED_USER_REFERENCES and value:
                resolved = self._user_reference(value)
                if resolved is None:
                    self.unresolved_references.append({"table": table, "field": field, "value": value})
                    continue
                value = resolved
            record[field] = value
        if table == "incident":
            self._incident_rules(record, user, now)
        for field, value in notes:
            self.journal.append(
                {
                    "sys_id": secrets.token_hex(16),
                    "name": table,
                    "element": field,
                    "element_id": record["sys_id"],
                    "value": value,
                    "sys_created_on": now,
                    "sys_created_by": user,
                }
            )

    def _user_reference(self, value: str) -> str | None:
        """A sys_user's sys_id for `value`: its sys_id, or its display value (name); None if neither."""
        users = self.tables.get("sys_user", {})
        if value in users:
            return value
        return next((sys_id for sys_id, u in users.items() if u.get("name") == value), None)

    @staticmethod
    def _incident_rules(record: dict[str, str], user: str, now: str) -> None:
        record["priority"] = PRIORITY.get((record.get("impact", "3"), record.get("urgency", "3")), "5")
        state = record.get("state", "1")
        record["incident_state"] = state
        if state in (RESOLVED, CLOSED):
            if not record.get("resolved_at"):
                record["resolved_at"], record["resolved_by"] = now, user
        else:
            record["resolved_at"] = record["resolved_by"] = ""
        if state == CLOSED:
            if not record.get("closed_at"):
                record["closed_at"], record["closed_by"] = now, user
        else:
            record["closed_at"] = record["closed_by"] = ""
        record["active"] = "false" if state in (CLOSED, CANCELED) else "true"

    def journal_text(self, sys_id: str, field: str) -> str:
        """The journal as a field's display value shows it: newest entry first."""
        label = JOURNAL_FIELDS[field]
        entries = [j for j in self.journal if j["element_id"] == sys_id and j["element"] == field]
        return "".join(
            f"{j['sys_created_on']} - {USER_NAMES.get(j['sys_created_by'], j['sys_created_by'])} ({label})\n"
            f"{j['value']}\n\n"
            for j in reversed(entries)
        )

    def view(
        self, table: str, record: dict[str, str], display: str, fields: list[str] | None
    ) -> dict[str, Any]:
        """A record as the Table API returns it, for sysparm_display_value false / true / all."""
        names = fields if fields else list(record)
        out: dict[str, Any] = {}
        for name in names:
            if name not in record:
                continue
            value = record[name]
            shown = value
            if table in TASK_TABLES and name in JOURNAL_FIELDS:
                value, shown = "", self.journal_text(record["sys_id"], name)
            elif name in CHOICES and table != JOURNAL_TABLE:
                shown = CHOICES[name].get(value, value)
            elif name in USER_REFERENCES:
                shown = USER_NAMES.get(value, value)
            elif name in CHECKED_USER_REFERENCES and table == "incident":
                shown = self.tables.get("sys_user", {}).get(value, {}).get("name", "")
            if display == "all":
                out[name] = {"display_value": shown, "value": value}
            elif display == "true":
                out[name] = shown
            else:
                out[name] = value
        return out

    # -- persistence ----------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "tables": copy.deepcopy(self.tables),
            "journal": copy.deepcopy(self.journal),
            "counters": dict(self.counters),
        }

    def _load(self) -> None:
        assert self.state_file is not None
        try:
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
            seeded = self.tables["sys_user"]  # state files from before sys_user was seeded lack it
            self.tables = {"sys_user": seeded} | {t: dict(rows) for t, rows in data["tables"].items()}
            self.journal = list(data.get("journal", []))
            self.counters = {t: int(n) for t, n in data.get("counters", {}).items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            aside = self.state_file.with_name(f"{self.state_file.name}.corrupt-{int(time.time())}")
            log.warning(
                "servicenow sandbox: cannot load %s (%s); moved aside to %s", self.state_file, exc, aside
            )
            with contextlib.suppress(OSError):
                os.replace(self.state_file, aside)
            self._clear()

    def changed(self) -> None:
        """Write the state file now (atomically: a temp file, then os.replace); writes are few."""
        if self.state_file is None:
            return
        path = self.state_file
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(self.snapshot(), fh, separators=(",", ":"))
                os.chmod(tmp, 0o644)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError:
            log.exception("servicenow sandbox: cannot write %s", path)

    # -- faults and the call log ------------------------------------------------

    def add_fault(self, spec: Any) -> dict[str, Any]:
        if not isinstance(spec, dict):
            raise ValueError("a fault is a JSON object")
        status, delay = spec.get("status"), spec.get("delay")
        if status is None and delay is None:
            raise ValueError("a fault needs 'status' or 'delay'")
        method = str(spec.get("method") or "*").upper()
        if method not in ("*", "GET", "POST", "PATCH", "PUT", "DELETE"):
            raise ValueError("'method' is one of GET, POST, PATCH, PUT, DELETE or *")
        fault: dict[str, Any] = {
            "method": method,
            "status": int(status) if status is not None else None,
            "count": int(spec.get("count", 1)),
            "retry_after": int(spec["retry_after"]) if spec.get("retry_after") is not None else None,
            "delay": float(delay) if delay is not None else 0.0,
            # do the call, then answer late or with the fault: the answer is lost, the write is not
            "perform": _bool(spec.get("perform"), default=status is None),
        }
        if fault["count"] == 0:
            raise ValueError("'count' must be >= 1 (or -1: until cleared)")
        if fault["status"] is not None and not 400 <= fault["status"] <= 599:
            raise ValueError("'status' must be an HTTP error status (400-599)")
        self.faults.append(fault)
        return fault

    def take_fault(self, method: str) -> dict[str, Any] | None:
        for i, fault in enumerate(self.faults):
            if fault["method"] in ("*", method) or (fault["method"] == "PATCH" and method == "PUT"):
                if fault["count"] > 0:
                    fault["count"] -= 1
                    if fault["count"] == 0:
                        del self.faults[i]
                return dict(fault)
        return None

    def log_call(self, method: str, path: str, status: int) -> None:
        self.calls.append({"method": method, "path": path, "status": status, "at": time.time()})
        self.call_counts[f"{method} {status}"] += 1


# ---------------------------------------------------------------------------
# the Table API


def _authenticate(request: Request) -> str | None:
    """The user the request is made as, or None."""
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(credentials.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        users: dict[str, str] = request.app.state.users
        return user if user in users and secrets.compare_digest(users[user], password) else None
    if scheme.lower() == "bearer":
        tokens: dict[str, str] = request.app.state.tokens
        return tokens.get(credentials.strip())
    return None


def _fault_response(fault: dict[str, Any], table: str) -> Response:
    status = fault["status"]
    message, detail = _FAULT_BODIES.get(status, (f"HTTP {status}", None))
    if status == 429:
        detail = f"Rate limit exceeded for the resource: api/now/table/{table}"
    headers = {}
    if status == 429 or (status == 503 and fault["retry_after"] is not None):
        headers["Retry-After"] = str(fault["retry_after"] or 1)
    return _error_response(status, message, detail, headers)


def _params(request: Request) -> tuple[str, list[str] | None]:
    display = (request.query_params.get("sysparm_display_value") or "false").lower()
    if display not in ("true", "false", "all"):
        display = "false"
    fields_param = request.query_params.get("sysparm_fields")
    fields = [f.strip() for f in fields_param.split(",") if f.strip()] if fields_param else None
    return display, fields


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        return max(0, int(raw))
    except ValueError:
        raise TableError(400, f"Invalid value for {name}", raw) from None


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise TableError(400, "Exception while reading request", "The payload is not valid JSON.") from None
    if not isinstance(body, dict):
        raise TableError(400, "Exception while reading request", "The payload must be a JSON object.")
    return body


def _table_call(
    sb: ServiceNowSandbox, request: Request, table: str, sys_id: str | None, user: str, body: dict[str, Any]
) -> Response:
    method = request.method
    display, fields = _params(request)
    if table not in KNOWN_TABLES:
        raise TableError(400, f"Invalid table {table}", None)
    if table == JOURNAL_TABLE and method != "GET":
        raise TableError(403, "Operation Failed", "ACL Exception Insert Failed due to security constraints")
    if method == "GET" and sys_id is None:
        query = Query.parse(request.query_params.get("sysparm_query"))
        limit = _int_param(request, "sysparm_limit", MAX_LIMIT) or MAX_LIMIT
        offset = _int_param(request, "sysparm_offset", 0)
        matched = query.sort([r for r in sb.rows(table) if query.matches(r)])
        page = matched[offset : offset + min(limit, MAX_LIMIT)]
        result = [sb.view(table, r, display, fields) for r in page]
        headers = {"X-Total-Count": str(len(matched))}
        if not _bool(request.query_params.get("sysparm_suppress_pagination_header")):
            links = [f'<{request.url.remove_query_params("sysparm_offset")}>;rel="first"']
            if offset + len(page) < len(matched):
                nxt = request.url.include_query_params(sysparm_offset=offset + len(page))
                links.append(f'<{nxt}>;rel="next"')
            headers["Link"] = ",".join(links)
        return JSONResponse({"result": result}, headers=headers)
    if method == "GET":
        assert sys_id is not None
        record = next((r for r in sb.rows(table) if r["sys_id"] == sys_id), None)
        if record is None:
            raise TableError(
                404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval"
            )
        return JSONResponse({"result": sb.view(table, record, display, fields)})
    if method == "POST":
        if sys_id is not None:
            raise TableError(
                405, "Method not Supported", "POST is not supported on a record; use PATCH or PUT"
            )
        record = sb.insert(table, body, user)
        location = f"{request.base_url}api/now/table/{table}/{record['sys_id']}"
        return JSONResponse(
            {"result": sb.view(table, record, display, fields)},
            status_code=201,
            headers={"Location": location},
        )
    if sys_id is None:
        raise TableError(405, "Method not Supported", f"{method} needs a sys_id")
    if method in ("PATCH", "PUT"):
        record = sb.update(table, sys_id, body, user)
        return JSONResponse({"result": sb.view(table, record, display, fields)})
    sb.delete(table, sys_id)
    return Response(status_code=204)


async def table_endpoint(request: Request) -> Response:
    sb: ServiceNowSandbox = request.app.state.sandbox
    table = request.path_params["table"]
    sys_id = request.path_params.get("sys_id")
    method = request.method
    path = request.url.path

    if sb.down:
        headers = {"Retry-After": str(sb.down_retry_after)} if sb.down_retry_after else None
        sb.log_call(method, path, 503)
        return _error_response(503, "Service Unavailable", "The instance is unavailable", headers)
    user = _authenticate(request)
    if user is None:
        sb.log_call(method, path, 401)
        return _error_response(
            401,
            "User Not Authenticated",
            "Required to provide Auth information",
            {"WWW-Authenticate": 'BASIC realm="Service-now"'},
        )
    fault = sb.take_fault(method)
    response: Response | None = None
    if fault is None or fault["perform"]:
        try:
            body = await _body(request) if method in ("POST", "PATCH", "PUT") else {}
            response = _table_call(sb, request, table, sys_id, user, body)
        except TableError as exc:
            response = _error_response(exc.status, exc.message, exc.detail)
    if fault is not None:
        if fault["delay"] > 0:
            # The write (if any) is done; the answer comes late: a client that gave up
            # never learns that it worked. The worst case for "exactly once".
            await asyncio.sleep(fault["delay"])
        if fault["status"] is not None:
            response = _fault_response(fault, table)
    assert response is not None
    sb.log_call(method, path, response.status_code)
    return response


# -- control API (/_sandbox) --------------------------------------------------------


async def _control_json(request: Request) -> Any:
    raw = await request.body()
    return json.loads(raw) if raw.strip() else {}


def _bad_request(message: str) -> Response:
    return JSONResponse({"ok": False, "error": message}, status_code=400)


async def control_faults(request: Request) -> Response:
    """POST {"method", "status", "count", "retry_after", "delay", "perform"} (or a list); DELETE clears."""
    sb: ServiceNowSandbox = request.app.state.sandbox
    if request.method == "DELETE":
        sb.faults.clear()
    elif request.method == "POST":
        try:
            spec = await _control_json(request)
            for item in spec if isinstance(spec, list) else [spec]:
                sb.add_fault(item)
        except (ValueError, TypeError) as exc:
            return _bad_request(str(exc))
    return JSONResponse({"ok": True, "faults": sb.faults})


async def control_down(request: Request) -> Response:
    """POST {"down": true, "retry_after"?: S}: every Table API call answers 503 until {"down": false}."""
    sb: ServiceNowSandbox = request.app.state.sandbox
    if request.method == "POST":
        try:
            spec = await _control_json(request)
            if not isinstance(spec, dict):
                raise ValueError("expected {'down': bool, 'retry_after'?: seconds}")
            sb.down = _bool(spec.get("down", True))
            retry_after = spec.get("retry_after")
            sb.down_retry_after = int(retry_after) if retry_after is not None and sb.down else None
        except (ValueError, TypeError) as exc:
            return _bad_request(str(exc))
    return JSONResponse({"ok": True, "down": sb.down, "retry_after": sb.down_retry_after})


async def control_state(request: Request) -> Response:
    sb: ServiceNowSandbox = request.app.state.sandbox
    state = sb.snapshot()
    state.update(
        down=sb.down,
        faults=sb.faults,
        calls=dict(sb.call_counts),
        unresolved_references=sb.unresolved_references,
    )
    return JSONResponse(state)


async def control_records(request: Request) -> Response:
    """A table's records, oldest first, each with its journal entries (oldest first) under "journal"."""
    sb: ServiceNowSandbox = request.app.state.sandbox
    table = request.path_params["table"]
    out = []
    for record in sb.tables.get(table, {}).values():
        entries = [j for j in sb.journal if j["element_id"] == record["sys_id"]]
        out.append({**record, "journal": entries})
    return JSONResponse(out)


async def control_reset(request: Request) -> Response:
    request.app.state.sandbox.reset()
    return JSONResponse({"ok": True})


async def control_calls(request: Request) -> Response:
    """The last 10,000 Table API calls, oldest first: [{method, path, status, at}]; ?method= filters."""
    sb: ServiceNowSandbox = request.app.state.sandbox
    if request.method == "DELETE":
        sb.calls.clear()
        sb.call_counts.clear()
        return JSONResponse([])
    wanted = request.query_params.get("method")
    return JSONResponse([c for c in sb.calls if wanted is None or c["method"] == wanted.upper()])


async def control_health(request: Request) -> Response:
    return JSONResponse({"ok": True})


# -- the human view -------------------------------------------------------------------

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">{refresh}
<title>ServiceNow sandbox</title>
<style>
 body {{ font: 14px/1.4 -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 0; color: #1d1d1d; }}
 header {{ background: #293e40; color: #fff; padding: 10px 20px; font-size: 17px; }}
 header small {{ color: #b8c4c5; font-size: 12px; margin-left: 10px; }}
 main {{ padding: 10px 20px 40px; }}
 table {{ border-collapse: collapse; width: 100%; }}
 th, td {{ border-bottom: 1px solid #ddd; padding: 6px 8px; text-align: left; vertical-align: top; }}
 th {{ background: #f2f4f4; font-size: 12px; text-transform: uppercase; color: #555; }}
 tr:target {{ background: #fff8e0; }}
 .state {{ font-weight: 600; }} .muted {{ color: #777; font-size: 12px; }}
 pre {{ white-space: pre-wrap; margin: 0; font: 12px/1.35 ui-monospace, Menlo, monospace; }}
 .down {{ background: #c83c36; color: #fff; padding: 6px 20px; }}
</style></head><body>
<header>ServiceNow sandbox <small>incident table &middot; {count} ticket(s)</small></header>
{banner}<main><table>
<tr><th>Number</th><th>State</th><th>Priority</th><th>Short description</th><th>Assigned to</th>
<th>Close notes</th><th>Work notes (newest first)</th></tr>
{rows}
</table></main></body></html>"""


def _incident_row(sb: ServiceNowSandbox, record: dict[str, str]) -> str:
    view = sb.view("incident", record, "true", None)
    e = html.escape
    return (
        f'<tr id="{e(record["sys_id"])}"><td><b>{e(record.get("number", ""))}</b>'
        f'<div class="muted">{e(record.get("correlation_id", ""))}</div></td>'
        f'<td class="state">{e(view.get("state", ""))}</td><td>{e(view.get("priority", ""))}</td>'
        f"<td>{e(record.get('short_description', ''))}"
        f'<div class="muted">{e(record.get("assignment_group", ""))}</div></td>'
        f"<td>{e(view.get('assigned_to', ''))}</td>"
        f"<td><pre>{e(record.get('close_code', ''))}\n{e(record.get('close_notes', ''))}</pre></td>"
        f"<td><pre>{e(view.get('work_notes', ''))}</pre></td></tr>"
    )


async def index_page(request: Request) -> Response:
    sb: ServiceNowSandbox = request.app.state.sandbox
    records = list(reversed(list(sb.tables.get("incident", {}).values())))
    wanted = request.query_params.get("sys_id")
    if wanted:
        records = [r for r in records if r["sys_id"] == wanted]
    refresh = request.query_params.get("refresh", "5")
    page = _PAGE.format(
        refresh=f'<meta http-equiv="refresh" content="{html.escape(refresh)}">' if refresh != "0" else "",
        count=len(records),
        banner='<div class="down">The instance is DOWN: the Table API answers 503</div>' if sb.down else "",
        rows="\n".join(_incident_row(sb, r) for r in records)
        or '<tr><td colspan="7" class="muted">No incidents yet.</td></tr>',
    )
    return HTMLResponse(page)


async def incident_form(request: Request) -> Response:
    """``/incident.do?sys_id=...``, the address a ticket link points to, shows that ticket."""
    sys_id = request.query_params.get("sys_id", "")
    return RedirectResponse(f"/?sys_id={sys_id}#{sys_id}")


# -- the app ------------------------------------------------------------------------


def create_app(
    state_file: str | Path | None = None,
    users: dict[str, str] | None = None,
    tokens: dict[str, str] | None = None,
) -> Starlette:
    """The sandbox as an ASGI app; ``app.state.sandbox`` is its ServiceNowSandbox.

    ``users`` (user name -> password) are accepted with basic auth, ``tokens``
    (bearer token -> user name) as OAuth access tokens.
    """
    sandbox = ServiceNowSandbox(state_file=state_file)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield

    table_methods = ["GET", "POST", "PATCH", "PUT", "DELETE"]
    routes = [
        Route("/", index_page, methods=["GET"]),
        Route("/incident.do", incident_form, methods=["GET"]),
        Route("/api/now/table/{table:str}", table_endpoint, methods=table_methods),
        Route("/api/now/table/{table:str}/{sys_id:str}", table_endpoint, methods=table_methods),
        Route("/api/now/v2/table/{table:str}", table_endpoint, methods=table_methods),
        Route("/api/now/v2/table/{table:str}/{sys_id:str}", table_endpoint, methods=table_methods),
        Route("/_sandbox/health", control_health, methods=["GET"]),
        Route("/_sandbox/faults", control_faults, methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/down", control_down, methods=["GET", "POST"]),
        Route("/_sandbox/state", control_state, methods=["GET"]),
        Route("/_sandbox/records/{table:str}", control_records, methods=["GET"]),
        Route("/_sandbox/reset", control_reset, methods=["POST"]),
        Route("/_sandbox/calls", control_calls, methods=["GET", "DELETE"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.sandbox = sandbox
    app.state.users = dict(DEFAULT_USERS if users is None else users)
    app.state.tokens = dict(DEFAULT_TOKENS if tokens is None else tokens)
    return app


@contextlib.asynccontextmanager
async def run_sandbox(
    state_file: str | Path | None = None,
    users: dict[str, str] | None = None,
    tokens: dict[str, str] | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> AsyncIterator[str]:
    """A ServiceNow sandbox on a free port for the length of the block; yields its base URL."""
    from .slack import serve_in_background

    app = create_app(state_file=state_file, users=users, tokens=tokens)
    async with serve_in_background(app, host=host, port=port) as url:
        yield url


def _pairs(values: list[str] | None, what: str, parse: Callable[[str], tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values or []:
        key, item = parse(value)
        if not key:
            raise SystemExit(f"bad {what}: {value!r}")
        out[key] = item
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.servicenow", description="Local ServiceNow Table API sandbox"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("SERVICENOW_SANDBOX_PORT") or DEFAULT_PORT)
    )
    parser.add_argument("--state", default=None, help="state file (JSON); no persistence if omitted")
    parser.add_argument(
        "--user",
        action="append",
        metavar="NAME:PASSWORD",
        help="basic-auth user (repeatable; default: env SERVICENOW_SANDBOX_USER, else admin:admin); "
        "prefer the environment variable, a command line is visible to everyone in `ps`",
    )
    parser.add_argument(
        "--token",
        action="append",
        metavar="TOKEN[:USER]",
        help="accepted OAuth bearer token, acting as USER (default admin); default sandbox-oauth-token",
    )
    parser.add_argument("--ssl-certfile", default=None, help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--ssl-keyfile", default=None, help="the certificate's private key (PEM)")
    opts = parser.parse_args(argv)
    from_env = os.environ.get("SERVICENOW_SANDBOX_USER", "")
    if from_env and not opts.user and not from_env.partition(":")[0]:
        raise SystemExit("bad SERVICENOW_SANDBOX_USER: expected NAME:PASSWORD")  # the value is a secret
    given = opts.user or ([from_env] if from_env else [])
    users = _pairs(given, "--user", lambda v: (v.partition(":")[0], v.partition(":")[2])) or None
    tokens = (
        _pairs(opts.token, "--token", lambda v: (v.partition(":")[0], v.partition(":")[2] or "admin")) or None
    )
    app = create_app(state_file=opts.state, users=users, tokens=tokens)
    scheme = "https" if opts.ssl_certfile else "http"
    print(
        f"ServiceNow sandbox: {scheme}://{opts.host}:{opts.port}/  "
        f"(Table API: {scheme}://{opts.host}:{opts.port}/api/now/table/incident)",
        flush=True,
    )
    uvicorn.run(
        app,
        host=opts.host,
        port=opts.port,
        log_level="warning",
        timeout_graceful_shutdown=2,  # an idle keep-alive (TLS) connection must not hold up Ctrl-C
        ssl_certfile=opts.ssl_certfile,
        ssl_keyfile=opts.ssl_keyfile,
    )


if __name__ == "__main__":
    main()
