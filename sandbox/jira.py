"""A local stand-in for Jira Cloud's REST API v3, the endpoints this project calls.

A Starlette app answering in Jira's own shapes, so that the project's httpx
client (activities/tickets/jira.py) works against it unchanged::

    python -m sandbox.jira --port 8906 --state .data/jira-sandbox.json
    curl -u sandbox@example.com:sandbox-jira-token 'http://127.0.0.1:8906/rest/api/3/search/jql?jql=project=OPS'

What it answers, as Jira Cloud does:

- ``POST /rest/api/3/issue`` (201 ``{"id", "key", "self"}``), ``GET`` and
  ``PUT /rest/api/3/issue/{idOrKey}`` (``{"fields": {...}}``, 204);
- ``GET``/``POST .../issue/{idOrKey}/comment`` (paged: ``startAt``,
  ``maxResults``, ``total``), ``GET``/``POST .../issue/{idOrKey}/transitions``;
- ``GET /rest/api/3/search/jql`` (``jql``, ``fields``, ``maxResults``,
  ``nextPageToken``; answers ``issues``, ``isLast``, ``nextPageToken``), with
  this JQL: clauses joined by ``AND`` of ``=``, ``!=``, ``in (...)``, ``not in
  (...)`` over ``project``, ``labels``, ``status``, ``statusCategory``,
  ``issuetype``, ``key``/``issuekey``, ``assignee``; ``ORDER BY created|key
  [ASC|DESC]``. Anything else is Jira's 400 "Error in the JQL Query";
- ``GET /rest/api/3/user/search?query=`` (users whose email or display name
  starts with the query), ``GET /rest/api/3/myself``;
- ``POST /rest/api/3/issueLink`` (201, empty), links shown in the issues'
  ``issuelinks``.

Checks as Jira makes them, each a 400 ``{"errorMessages": [...], "errors":
{field: message}}`` naming the field: project and issue type must exist, a
summary is required (one line, under 255 characters), descriptions and
comment bodies must be Atlassian Document Format (no empty text nodes),
labels have no spaces, a priority must be one of the scheme's, and an
assignee's ``accountId`` must be a user of the site (references are checked:
a Slack id is not an account). Fields Jira would not know are refused as it
refuses fields not on the screen. Basic auth ``email:api_token`` on every
call, 401 without.

One project (default ``OPS``) with Jira's simplified workflow: To Do (new),
In Progress (indeterminate), Done (done; sets ``resolution`` Done). Every
transition is available from every status, as in a simplified workflow.
Users: sandbox/people.py's people and the API user.

Not modelled: the eventual consistency of Jira Cloud's search (a new issue
can be missing from ``/search/jql`` for a moment there; here it is found at
once), permissions and screens per project, rich ADF validation beyond the
shape, rate limits other than the injected ones.

``/_sandbox/...`` (plain JSON) injects faults, takes the site down, dumps and
resets the state; ``GET /`` lists the issues for a person.
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
import shlex
import time
from collections import Counter, deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from .paging_common import FaultQueue, JsonStateFile
from .people import PEOPLE

log = logging.getLogger("sandbox.jira")

DEFAULT_PORT = 8906
DEFAULT_EMAIL = "sandbox@example.com"
DEFAULT_TOKEN = "sandbox-jira-token"
DEFAULT_PROJECT = "OPS"
STATE_VERSION = 1
CALL_LOG_SIZE = 10_000
MAX_RESULTS = 100
SUMMARY_LENGTH = 255
LABEL_LENGTH = 255
ISSUE_TYPES = {"10001": "Task", "10002": "Bug", "10003": "Story", "10004": "Epic", "10005": "Incident"}
PRIORITIES = {"1": "Highest", "2": "High", "3": "Medium", "4": "Low", "5": "Lowest"}
# The simplified workflow: status id -> (name, category key, category name), and its transitions.
STATUSES = {
    "10000": ("To Do", "new", "To Do"),
    "3": ("In Progress", "indeterminate", "In Progress"),
    "10001": ("Done", "done", "Done"),
}
TRANSITIONS = {"11": "10000", "21": "3", "31": "10001"}  # transition id -> target status id
LINK_TYPES = {
    "10000": ("Blocks", "is blocked by", "blocks"),
    "10003": ("Relates", "relates to", "relates to"),
    "10002": ("Duplicate", "is duplicated by", "duplicates"),
}
EDITABLE = {"summary", "description", "labels", "priority", "assignee", "duedate"}
CREATABLE = EDITABLE | {"project", "issuetype"}


class JiraError(Exception):
    def __init__(self, status: int, messages: list[str] | None = None, errors: dict[str, str] | None = None):
        super().__init__(status, messages, errors)
        self.status, self.messages, self.errors = status, messages or [], errors or {}

    def response(self, headers: dict[str, str] | None = None) -> Response:
        return JSONResponse(
            {"errorMessages": self.messages, "errors": self.errors}, status_code=self.status, headers=headers
        )


def _now() -> str:
    """Jira's timestamps: 2026-11-22T14:35:00.000+0000."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


def adf_problem(doc: Any) -> str | None:
    """Why `doc` is not an Atlassian Document Jira takes, or None."""
    if not isinstance(doc, dict) or doc.get("type") != "doc" or doc.get("version") != 1:
        return "Operation value must be an Atlassian Document (see the Atlassian Document Format)"
    if not isinstance(doc.get("content"), list):
        return "Operation value must be an Atlassian Document: 'content' must be a list"

    def walk(node: Any) -> str | None:
        if not isinstance(node, dict) or not isinstance(node.get("type"), str):
            return "INVALID_INPUT: every node needs a 'type'"
        if node["type"] == "text" and not (isinstance(node.get("text"), str) and node["text"]):
            return "INVALID_INPUT: a text node must have non-empty 'text'"
        for child in node.get("content") or []:
            if problem := walk(child):
                return problem
        return None

    for node in doc["content"]:
        if problem := walk(node):
            return problem
    return None


def adf_text(doc: Any) -> str:
    """The plain text of an ADF document (paragraphs on lines, hard breaks as newlines)."""
    if not isinstance(doc, dict):
        return ""
    out: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        kind = node.get("type")
        if kind == "text":
            out.append(str(node.get("text", "")))
        elif kind == "hardBreak":
            out.append("\n")
        for child in node.get("content") or []:
            if isinstance(child, dict):
                walk(child)
        if kind in ("paragraph", "heading", "listItem", "codeBlock"):
            out.append("\n")

    walk(doc)
    return "".join(out).strip("\n")


# ---------------------------------------------------------------------------- JQL


_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<op>!=|=|\(|\)|,)|(?P<word>[^\s=!(),"]+))')
JQL_FIELDS = {"project", "labels", "status", "statuscategory", "issuetype", "key", "issuekey", "assignee"}


def _jql_error(message: str) -> JiraError:
    return JiraError(400, [f"Error in the JQL Query: {message}"])


def _tokens(jql: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(jql):
        if not jql[pos:].strip():
            break
        match = _TOKEN.match(jql, pos)
        if not match or match.end() == pos:
            raise _jql_error(f"The character '{jql[pos:].strip()[:1]}' is a reserved JQL character.")
        kind = match.lastgroup or "word"
        value = match.group(kind)
        if kind == "str":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        out.append((kind, value))
        pos = match.end()
    return out


def parse_jql(jql: str) -> tuple[list[tuple[str, str, list[str]]], tuple[str, bool] | None]:
    """[(field, op, values)], and (order field, descending) if ORDER BY."""
    tokens = _tokens(jql)
    clauses: list[tuple[str, str, list[str]]] = []
    order: tuple[str, bool] | None = None
    i = 0

    def take() -> tuple[str, str]:
        nonlocal i
        if i >= len(tokens):
            raise _jql_error("Expecting more of the query at the end.")
        i += 1
        return tokens[i - 1]

    while i < len(tokens):
        kind, word = take()
        if kind == "word" and word.lower() == "order":
            if take()[1].lower() != "by":
                raise _jql_error("Expecting 'BY' after 'ORDER'.")
            _, field = take()
            descending = False
            if i < len(tokens):
                direction = take()[1].lower()
                if direction not in ("asc", "desc"):
                    raise _jql_error(f"Expecting 'ASC' or 'DESC' but got '{direction}'.")
                descending = direction == "desc"
            if field.lower() not in ("created", "key", "updated"):
                raise _jql_error(f"Field '{field}' does not support sorting here.")
            order = (field.lower(), descending)
            if i < len(tokens):
                raise _jql_error("Expecting the end of the query after ORDER BY.")
            break
        if kind != "word" and kind != "str":
            raise _jql_error(f"Expecting a field name but got '{word}'.")
        field = word.lower()
        if field not in JQL_FIELDS:
            raise JiraError(400, [f"Field '{word}' does not exist or you do not have permission to view it."])
        op_kind, op = take()
        if op_kind == "word" and op.lower() == "not":
            if take()[1].lower() != "in":
                raise _jql_error("Expecting 'IN' after 'NOT'.")
            op = "not in"
        elif op_kind == "word" and op.lower() == "in":
            op = "in"
        elif op not in ("=", "!="):
            raise _jql_error(f"Expecting operator but got '{op}'.")
        if op in ("in", "not in"):
            if take()[1] != "(":
                raise _jql_error("Expecting '(' after IN.")
            values = []
            while True:
                vk, value = take()
                if vk not in ("str", "word"):
                    raise _jql_error(f"Expecting a value but got '{value}'.")
                values.append(value)
                sep = take()[1]
                if sep == ")":
                    break
                if sep != ",":
                    raise _jql_error(f"Expecting ',' or ')' but got '{sep}'.")
        else:
            vk, value = take()
            if vk not in ("str", "word"):
                raise _jql_error(f"Expecting a value but got '{value}'.")
            values = [value]
        clauses.append((field, op, values))
        if i < len(tokens):
            kind, word = tokens[i]
            if kind == "word" and word.lower() == "and":
                i += 1
                if i >= len(tokens):
                    raise _jql_error("Expecting a field name at the end of the query.")
            elif not (kind == "word" and word.lower() == "order"):
                raise _jql_error(f"Expecting 'AND' or 'ORDER BY' but got '{word}' (OR is not modelled).")
    return clauses, order


# ---------------------------------------------------------------------------- the site


class JiraSandbox:
    """All state of one Jira site. Only touched from the event loop, so no locking."""

    def __init__(self, state_file: str | Path | None = None, project: str = DEFAULT_PROJECT) -> None:
        self.state = JsonStateFile(state_file, "jira sandbox")
        self.project = project
        self.fault_queue = FaultQueue()
        self.down = False
        self.calls: deque[dict[str, Any]] = deque(maxlen=CALL_LOG_SIZE)
        self.call_counts: Counter[str] = Counter()
        self._clear()
        self._load()

    def _clear(self) -> None:
        self.issues: dict[str, dict[str, Any]] = {}  # id -> {"id", "key", "created", "updated", "fields"}
        self.comments: dict[str, list[dict[str, Any]]] = {}  # issue id -> comments, oldest first
        self.links: list[dict[str, str]] = []  # {"id", "type", "inward", "outward"} (issue ids)
        self.next_id = 10000
        self.next_number = 1
        self.users: dict[str, dict[str, Any]] = {}
        for p in PEOPLE:
            self.add_user(p.account_id, p.name, p.email)
        self.add_user("712020:00000000-0000-0000-0000-00000000api0", "Incident Bot", DEFAULT_EMAIL)

    def add_user(self, account_id: str, name: str, email: str) -> dict[str, Any]:
        user = {
            "accountId": account_id,
            "accountType": "atlassian",
            "emailAddress": email,
            "displayName": name,
            "active": True,
            "timeZone": "UTC",
        }
        self.users[account_id] = user
        return user

    def reset(self) -> None:
        self._clear()
        self.fault_queue.clear()
        self.down = False
        self.calls.clear()
        self.call_counts.clear()
        self.changed()

    # -- issues --------------------------------------------------------------------

    def find(self, id_or_key: str) -> dict[str, Any]:
        issue = self.issues.get(id_or_key) or next(
            (i for i in self.issues.values() if i["key"] == id_or_key.upper()), None
        )
        if issue is None:
            raise JiraError(404, ["Issue does not exist or you do not have permission to see it."])
        return issue

    def create(self, body: Any, author: str) -> dict[str, Any]:
        fields = self._fields_of(body)
        errors: dict[str, str] = {}
        unknown = sorted(set(fields) - CREATABLE)
        for name in unknown:
            errors[name] = f"Field '{name}' cannot be set. It is not on the appropriate screen, or unknown."
        project = fields.get("project")
        if not isinstance(project, dict) or self.project not in (project.get("key"), project.get("id")):
            errors["project"] = "valid project is required"
        issuetype = fields.get("issuetype")
        type_name = None
        if isinstance(issuetype, dict):
            type_name = ISSUE_TYPES.get(str(issuetype.get("id"))) or (
                issuetype.get("name") if issuetype.get("name") in ISSUE_TYPES.values() else None
            )
        if type_name is None:
            errors["issuetype"] = "valid issue type is required"
        if not fields.get("summary"):
            errors["summary"] = "You must specify a summary of the issue."
        stored: dict[str, Any] = {}
        self._check_editable(fields, stored, errors)
        if errors:
            raise JiraError(400, [], errors)
        now = _now()
        issue_id = str(self.next_id)
        key = f"{self.project}-{self.next_number}"
        self.next_id += 1
        self.next_number += 1
        issue = {
            "id": issue_id,
            "key": key,
            "created": now,
            "updated": now,
            "creator": author,
            "fields": {
                "summary": "",
                "description": None,
                "labels": [],
                "priority": {"id": "3", "name": "Medium"},
                "assignee": None,
                "duedate": None,
                "issuetype": type_name,
                "status": "10000",
                "resolution": None,
                "resolutiondate": None,
                **stored,
            },
        }
        self.issues[issue_id] = issue
        self.changed()
        return issue

    def edit(self, issue: dict[str, Any], body: Any) -> None:
        fields = self._fields_of(body)
        errors: dict[str, str] = {}
        for name in sorted(set(fields) - EDITABLE):
            errors[name] = f"Field '{name}' cannot be set. It is not on the appropriate screen, or unknown."
        stored: dict[str, Any] = {}
        self._check_editable(fields, stored, errors)
        if errors:
            raise JiraError(400, [], errors)
        issue["fields"].update(stored)
        issue["updated"] = _now()
        self.changed()

    @staticmethod
    def _fields_of(body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise JiraError(400, ["The request body must be a JSON object."])
        fields = body.get("fields", {})
        if not isinstance(fields, dict):
            raise JiraError(400, ["'fields' must be an object."])
        return fields

    def _check_editable(self, fields: dict[str, Any], stored: dict[str, Any], errors: dict[str, str]) -> None:
        if "summary" in fields:
            summary = fields["summary"]
            if not isinstance(summary, str) or not summary.strip():
                errors["summary"] = "You must specify a summary of the issue."
            elif "\n" in summary or "\r" in summary:
                errors["summary"] = "The summary is invalid because it contains newline characters."
            elif len(summary) > SUMMARY_LENGTH:
                errors["summary"] = "Summary must be less than 255 characters."
            else:
                stored["summary"] = summary
        if "description" in fields:
            if fields["description"] is not None and (problem := adf_problem(fields["description"])):
                errors["description"] = problem
            else:
                stored["description"] = fields["description"]
        if "labels" in fields:
            labels = fields["labels"]
            if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
                errors["labels"] = "Labels must be a list of strings."
            elif bad := [x for x in labels if not x or re.search(r"\s", x)]:
                errors["labels"] = f"The label '{bad[0]}' contains spaces which is invalid."
            elif long := [x for x in labels if len(x) > LABEL_LENGTH]:
                errors["labels"] = f"The label '{long[0][:40]}...' is more than 255 characters."
            else:
                stored["labels"] = list(dict.fromkeys(labels))
        if "priority" in fields:
            priority = fields["priority"]
            pid = None
            if isinstance(priority, dict):
                pid = str(priority["id"]) if priority.get("id") is not None else None
                if pid is None:
                    pid = next((k for k, v in PRIORITIES.items() if v == priority.get("name")), None)
            if pid not in PRIORITIES:
                errors["priority"] = "Specify a valid 'id' or 'name' for Priority"
            else:
                stored["priority"] = {"id": pid, "name": PRIORITIES[pid]}
        if "assignee" in fields:
            assignee = fields["assignee"]
            if assignee is None:
                stored["assignee"] = None
            else:
                account = assignee.get("accountId") if isinstance(assignee, dict) else None
                if not isinstance(account, str) or account not in self.users:
                    errors["assignee"] = (
                        f"User '{account}' cannot be assigned issues."
                        if isinstance(account, str)
                        else "Specify the user's 'accountId'."
                    )
                else:
                    stored["assignee"] = account
        if "duedate" in fields:
            due = fields["duedate"]
            if due is not None and not (isinstance(due, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", due)):
                errors["duedate"] = "Error parsing date string: " + str(due)
            else:
                stored["duedate"] = due

    def transition(self, issue: dict[str, Any], body: Any) -> None:
        transition = body.get("transition") if isinstance(body, dict) else None
        tid = str(transition.get("id")) if isinstance(transition, dict) else ""
        if tid not in TRANSITIONS:
            raise JiraError(400, [f"Transition id '{tid}' is not valid for this issue."])
        if isinstance(body, dict) and body.get("fields"):
            self.edit(issue, {"fields": body["fields"]})
        status = TRANSITIONS[tid]
        f = issue["fields"]
        f["status"] = status
        if STATUSES[status][1] == "done":
            if f.get("resolution") is None:
                f["resolution"], f["resolutiondate"] = "Done", _now()
        else:
            f["resolution"] = f["resolutiondate"] = None
        issue["updated"] = _now()
        self.changed()

    def add_comment(self, issue: dict[str, Any], body: Any, author: str) -> dict[str, Any]:
        doc = body.get("body") if isinstance(body, dict) else None
        if doc is None:
            raise JiraError(400, [], {"comment": "Comment body can not be empty!"})
        if problem := adf_problem(doc):
            raise JiraError(400, [], {"comment": problem})
        now = _now()
        comment = {"id": str(self.next_id), "author": author, "body": doc, "created": now, "updated": now}
        self.next_id += 1
        self.comments.setdefault(issue["id"], []).append(comment)
        issue["updated"] = now
        self.changed()
        return comment

    def link(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise JiraError(400, ["The request body must be a JSON object."])
        wanted = body.get("type") or {}
        type_id = next(
            (
                k
                for k, (name, _, _) in LINK_TYPES.items()
                if isinstance(wanted, dict) and (wanted.get("name") == name or str(wanted.get("id")) == k)
            ),
            None,
        )
        if type_id is None:
            name = wanted.get("name") if isinstance(wanted, dict) else wanted
            raise JiraError(404, [f"No issue link type with name '{name}' found."])
        ends = []
        for end in ("inwardIssue", "outwardIssue"):
            ref = body.get(end)
            ref = (ref.get("key") or ref.get("id")) if isinstance(ref, dict) else None
            if not ref:
                raise JiraError(400, [f"'{end}' needs the issue's key or id."])
            try:
                ends.append(self.find(str(ref))["id"])
            except JiraError:
                raise JiraError(404, [f"Issue Does Not Exist: {ref}"]) from None
        self.links.append({"id": str(self.next_id), "type": type_id, "inward": ends[0], "outward": ends[1]})
        self.next_id += 1
        self.changed()

    # -- views ---------------------------------------------------------------------

    def user_view(self, account_id: str | None) -> dict[str, Any] | None:
        if account_id is None:
            return None
        user = self.users.get(account_id) or {"accountId": account_id, "displayName": account_id}
        return dict(user)

    def issue_view(self, issue: dict[str, Any], base: str, wanted: list[str] | None = None) -> dict[str, Any]:
        f = issue["fields"]
        name, cat_key, cat_name = STATUSES[f["status"]]
        links = []
        for link in self.links:
            if issue["id"] not in (link["inward"], link["outward"]):
                continue
            type_name, inward, outward = LINK_TYPES[link["type"]]
            other = link["outward"] if link["inward"] == issue["id"] else link["inward"]
            other_issue = self.issues.get(other)
            if other_issue is None:
                continue
            side = "outwardIssue" if link["inward"] == issue["id"] else "inwardIssue"
            links.append(
                {
                    "id": link["id"],
                    "type": {"id": link["type"], "name": type_name, "inward": inward, "outward": outward},
                    side: {"id": other_issue["id"], "key": other_issue["key"]},
                }
            )
        full = {
            "summary": f["summary"],
            "description": f["description"],
            "labels": f["labels"],
            "priority": f["priority"],
            "assignee": self.user_view(f["assignee"]),
            "duedate": f["duedate"],
            "issuetype": {
                "id": next(k for k, v in ISSUE_TYPES.items() if v == f["issuetype"]),
                "name": f["issuetype"],
            },
            "project": {"key": self.project, "name": f"{self.project} project"},
            "status": {
                "id": f["status"],
                "name": name,
                "statusCategory": {"key": cat_key, "name": cat_name},
            },
            "resolution": {"name": f["resolution"]} if f["resolution"] else None,
            "resolutiondate": f["resolutiondate"],
            "created": issue["created"],
            "updated": issue["updated"],
            "issuelinks": links,
            "comment": {"comments": [self.comment_view(c) for c in self.comments.get(issue["id"], [])]},
        }
        if wanted is not None and "*all" not in wanted:
            full = {k: v for k, v in full.items() if k in wanted}
        return {
            "id": issue["id"],
            "key": issue["key"],
            "self": f"{base}rest/api/3/issue/{issue['id']}",
            "fields": full,
        }

    def comment_view(self, comment: dict[str, Any]) -> dict[str, Any]:
        author = self.user_view(comment["author"])
        return {**comment, "author": author, "updateAuthor": author}

    def search(self, jql: str) -> list[dict[str, Any]]:
        clauses, order = parse_jql(jql)
        found = [i for i in self.issues.values() if all(self._matches(i, c) for c in clauses)]
        field, descending = order or ("created", True)  # Jira's default order is newest first
        if field == "key":
            found.sort(key=lambda i: int(i["id"]), reverse=descending)
        else:
            found.sort(key=lambda i: (i[field], int(i["id"])), reverse=descending)
        return found

    def _matches(self, issue: dict[str, Any], clause: tuple[str, str, list[str]]) -> bool:
        field, op, values = clause
        f = issue["fields"]
        if field == "project":
            have = [self.project]
        elif field == "labels":
            have = f["labels"]
        elif field == "status":
            have = [STATUSES[f["status"]][0].lower(), f["status"]]
            values = [v.lower() for v in values]
        elif field == "statuscategory":
            _, key, name = STATUSES[f["status"]]
            have = [key, name.lower()]
            values = [v.lower() for v in values]
        elif field == "issuetype":
            have = [f["issuetype"].lower()]
            values = [v.lower() for v in values]
        elif field in ("key", "issuekey"):
            have = [issue["key"], issue["id"]]
            values = [v.upper() for v in values]
        else:  # assignee
            have = [f["assignee"]] if f["assignee"] else []
        hit = any(v in have for v in values)
        return hit if op in ("=", "in") else not hit

    # -- persistence, faults, calls ------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "project": self.project,
            "issues": copy.deepcopy(self.issues),
            "comments": copy.deepcopy(self.comments),
            "links": copy.deepcopy(self.links),
            "next_id": self.next_id,
            "next_number": self.next_number,
        }

    def _load(self) -> None:
        data = self.state.load()
        if data is None:
            return
        try:
            issues = dict(data["issues"])
            comments = dict(data.get("comments", {}))
            links = list(data.get("links", []))
            next_id, next_number = int(data["next_id"]), int(data["next_number"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self.state.move_aside(exc)
            return
        self.issues, self.comments, self.links = issues, comments, links
        self.next_id, self.next_number = next_id, next_number

    def changed(self) -> None:
        """Write the state file now (atomically: a temp file, then os.replace)."""
        self.state.save(self.snapshot())

    def log_call(self, method: str, path: str, status: int) -> None:
        self.calls.append({"method": method, "path": path, "status": status, "at": time.time()})
        self.call_counts[f"{method} {status}"] += 1


# ---------------------------------------------------------------------------- the REST API


def _authenticate(request: Request) -> str | None:
    """The accountId the call is made as (basic auth email:api_token), or None."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        email, _, token = base64.b64decode(credentials.strip()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    accepted: dict[str, str] = request.app.state.credentials
    if email not in accepted or not secrets.compare_digest(accepted[email], token):
        return None
    sb: JiraSandbox = request.app.state.sandbox
    return next((a for a, u in sb.users.items() if u["emailAddress"] == email), None) or email


async def _json(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        raise JiraError(400, ["Unexpected character in the request body: it is not valid JSON."]) from None


def _int(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        return max(0, int(raw))
    except ValueError:
        raise JiraError(400, [f"'{name}' must be a number."]) from None


def _fields_param(request: Request) -> list[str] | None:
    raw = request.query_params.get("fields")
    return [f.strip() for f in raw.split(",") if f.strip()] if raw else None


async def _call(request: Request, sb: JiraSandbox, user: str) -> Response:
    method, path = request.method, request.url.path
    base = str(request.base_url)
    rest = path.removeprefix("/rest/api/3/").rstrip("/")
    parts = rest.split("/")
    if rest == "myself" and method == "GET":
        return JSONResponse(sb.user_view(user))
    if rest == "user/search" and method == "GET":
        query = (request.query_params.get("query") or "").strip().lower()
        if not query and not request.query_params.get("accountId"):
            raise JiraError(400, ["One of 'query' or 'accountId' is required."])
        wanted = request.query_params.get("accountId")
        users = [
            u
            for u in sb.users.values()
            if (wanted and u["accountId"] == wanted)
            or (
                query
                and (
                    u["emailAddress"].lower().startswith(query) or u["displayName"].lower().startswith(query)
                )
            )
        ]
        return JSONResponse(users[: _int(request, "maxResults", 50) or 50])
    if rest == "search/jql" and method in ("GET", "POST"):
        params: Any = await _json(request) if method == "POST" else request.query_params
        jql = str(params.get("jql") or "")
        limit = min(int(params.get("maxResults") or 50), MAX_RESULTS) or 50
        start = int(params.get("nextPageToken") or 0)
        fields = params.get("fields")
        if isinstance(fields, str):
            fields = [f.strip() for f in fields.split(",") if f.strip()]
        found = sb.search(jql)
        page = found[start : start + limit]
        body: dict[str, Any] = {
            "issues": [sb.issue_view(i, base, fields or ["id"]) for i in page],
            "isLast": start + limit >= len(found),
        }
        if not body["isLast"]:
            body["nextPageToken"] = str(start + limit)
        return JSONResponse(body)
    if rest == "issueLink" and method == "POST":
        sb.link(await _json(request))
        return Response(status_code=201)
    if rest == "issue" and method == "POST":
        issue = sb.create(await _json(request), user)
        return JSONResponse(
            {"id": issue["id"], "key": issue["key"], "self": f"{base}rest/api/3/issue/{issue['id']}"},
            status_code=201,
        )
    if parts[0] == "issue" and len(parts) >= 2:
        issue = sb.find(parts[1])
        tail = parts[2] if len(parts) > 2 else ""
        if not tail and method == "GET":
            return JSONResponse(sb.issue_view(issue, base, _fields_param(request)))
        if not tail and method == "PUT":
            sb.edit(issue, await _json(request))
            return Response(status_code=204)
        if tail == "assignee" and method == "PUT":
            body = await _json(request)
            sb.edit(issue, {"fields": {"assignee": body if body.get("accountId") is not None else None}})
            return Response(status_code=204)
        if tail == "comment" and method == "GET":
            comments = sb.comments.get(issue["id"], [])
            start, limit = _int(request, "startAt", 0), min(_int(request, "maxResults", 50) or 50, 5000)
            return JSONResponse(
                {
                    "startAt": start,
                    "maxResults": limit,
                    "total": len(comments),
                    "comments": [sb.comment_view(c) for c in comments[start : start + limit]],
                }
            )
        if tail == "comment" and method == "POST":
            comment = sb.add_comment(issue, await _json(request), user)
            return JSONResponse(sb.comment_view(comment), status_code=201)
        if tail == "transitions" and method == "GET":
            return JSONResponse(
                {
                    "transitions": [
                        {
                            "id": tid,
                            "name": STATUSES[target][0],
                            "to": {
                                "id": target,
                                "name": STATUSES[target][0],
                                "statusCategory": {"key": STATUSES[target][1], "name": STATUSES[target][2]},
                            },
                        }
                        for tid, target in TRANSITIONS.items()
                    ]
                }
            )
        if tail == "transitions" and method == "POST":
            sb.transition(issue, await _json(request))
            return Response(status_code=204)
    raise JiraError(404, [f"No resource at {method} {path} in this sandbox."])


async def api_endpoint(request: Request) -> Response:
    sb: JiraSandbox = request.app.state.sandbox
    method, path = request.method, request.url.path
    if sb.down:
        sb.log_call(method, path, 503)
        return JiraError(503, ["Jira is unavailable (sandbox down)."]).response({"Retry-After": "5"})
    user = _authenticate(request)
    if user is None:
        sb.log_call(method, path, 401)
        return JiraError(
            401, ["You are not authenticated. Authentication required to perform this operation."]
        ).response({"WWW-Authenticate": 'Basic realm="protected-by-api-token"'})
    fault = sb.fault_queue.take(method, path)
    response: Response | None = None
    if fault is None or fault["perform"]:
        try:
            response = await _call(request, sb, user)
        except JiraError as exc:
            response = exc.response()
    if fault is not None:
        if fault["delay"] > 0:
            await asyncio.sleep(fault["delay"])  # the write is done; the answer comes too late
        if fault["status"] is not None:
            headers = {"Retry-After": str(fault["retry_after"] or 1)} if fault["status"] in (429, 503) else {}
            response = JiraError(fault["status"], [f"sandbox fault: {fault['status']}"]).response(headers)
    assert response is not None
    sb.log_call(method, path, response.status_code)
    return response


# ---------------------------------------------------------------------------- control API


async def control_faults(request: Request) -> Response:
    sb: JiraSandbox = request.app.state.sandbox
    if request.method == "DELETE":
        sb.fault_queue.clear()
    elif request.method == "POST":
        try:
            raw = await request.body()
            spec = json.loads(raw) if raw.strip() else {}
            for item in spec if isinstance(spec, list) else [spec]:
                sb.fault_queue.add(item)
        except (ValueError, TypeError) as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
    return JSONResponse({"ok": True, "faults": sb.fault_queue.faults})


async def control_down(request: Request) -> Response:
    sb: JiraSandbox = request.app.state.sandbox
    if request.method == "POST":
        raw = await request.body()
        spec = json.loads(raw) if raw.strip() else {}
        sb.down = bool(spec.get("down", True)) if isinstance(spec, dict) else True
    return JSONResponse({"ok": True, "down": sb.down})


async def control_state(request: Request) -> Response:
    """Everything, as stored, plus each issue's comments as plain text: for tests and people."""
    sb: JiraSandbox = request.app.state.sandbox
    state = sb.snapshot()
    state["users"] = list(sb.users.values())
    state["down"], state["faults"], state["calls"] = sb.down, sb.fault_queue.faults, dict(sb.call_counts)
    state["issue_list"] = [
        {
            **sb.issue_view(i, str(request.base_url)),
            "comment_texts": [adf_text(c["body"]) for c in sb.comments.get(i["id"], [])],
            "description_text": adf_text(i["fields"]["description"]),
        }
        for i in sb.issues.values()
    ]
    return JSONResponse(state)


async def control_reset(request: Request) -> Response:
    request.app.state.sandbox.reset()
    return JSONResponse({"ok": True})


async def control_calls(request: Request) -> Response:
    sb: JiraSandbox = request.app.state.sandbox
    if request.method == "DELETE":
        sb.calls.clear()
        sb.call_counts.clear()
    wanted = request.query_params.get("method")
    return JSONResponse([c for c in sb.calls if wanted is None or c["method"] == wanted.upper()])


async def control_health(request: Request) -> Response:
    return JSONResponse({"ok": True})


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">{refresh}<title>Jira sandbox</title>
<style>
 body {{ font: 14px/1.4 -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 0; color: #172b4d; }}
 header {{ background: #0052cc; color: #fff; padding: 10px 20px; font-size: 17px; }}
 main {{ padding: 10px 20px 40px; }} table {{ border-collapse: collapse; width: 100%; }}
 th, td {{ border-bottom: 1px solid #dfe1e6; padding: 6px 8px; text-align: left; vertical-align: top; }}
 th {{ background: #f4f5f7; font-size: 12px; text-transform: uppercase; }} tr:target {{ background: #fffae6; }}
 .muted {{ color: #6b778c; font-size: 12px; }} pre {{ white-space: pre-wrap; margin: 0; font: 12px/1.35 ui-monospace, monospace; }}
 .down {{ background: #de350b; color: #fff; padding: 6px 20px; }}
</style></head><body><header>Jira sandbox &middot; project {project} &middot; {count} issue(s)
<small>(<a style="color:#fff" href="/_sandbox/state">JSON</a>)</small></header>{banner}<main><table>
<tr><th>Key</th><th>Status</th><th>Priority</th><th>Summary</th><th>Assignee</th><th>Links</th><th>Comments</th></tr>
{rows}</table></main></body></html>"""


async def index_page(request: Request) -> Response:
    sb: JiraSandbox = request.app.state.sandbox
    e = html.escape
    rows = []
    for issue in reversed(list(sb.issues.values())):
        view = sb.issue_view(issue, str(request.base_url))
        f = view["fields"]
        links = ", ".join(
            f"{link['type']['outward'] if 'outwardIssue' in link else link['type']['inward']} "
            f"{(link.get('outwardIssue') or link.get('inwardIssue'))['key']}"
            for link in f["issuelinks"]
        )
        comments = "\n---\n".join(adf_text(c["body"]) for c in sb.comments.get(issue["id"], []))
        rows.append(
            f'<tr id="{e(issue["key"])}"><td><b>{e(issue["key"])}</b>'
            f'<div class="muted">{e(" ".join(f["labels"]))}</div></td>'
            f"<td>{e(f['status']['name'])}{' / ' + e(f['resolution']['name']) if f['resolution'] else ''}</td>"
            f"<td>{e(f['priority']['name'])}</td><td>{e(f['summary'])}"
            f'<pre class="muted">{e(adf_text(f["description"]))}</pre></td>'
            f"<td>{e((f['assignee'] or {}).get('displayName', 'Unassigned'))}</td><td>{e(links)}</td>"
            f"<td><pre>{e(comments)}</pre></td></tr>"
        )
    refresh = request.query_params.get("refresh", "5")
    return HTMLResponse(
        _PAGE.format(
            refresh=f'<meta http-equiv="refresh" content="{e(refresh)}">' if refresh != "0" else "",
            project=e(sb.project),
            count=len(sb.issues),
            banner='<div class="down">The site is DOWN: the REST API answers 503</div>' if sb.down else "",
            rows="\n".join(rows) or '<tr><td colspan="7" class="muted">No issues yet.</td></tr>',
        )
    )


async def browse(request: Request) -> Response:
    """``/browse/OPS-1``, the address an issue link points to, shows that issue."""
    key = request.path_params["key"]
    return RedirectResponse(f"/#{key}")


def create_app(
    state_file: str | Path | None = None,
    credentials: dict[str, str] | None = None,
    project: str = DEFAULT_PROJECT,
) -> Starlette:
    """The sandbox as an ASGI app; ``app.state.sandbox`` is its JiraSandbox.

    ``credentials``: email -> API token accepted with basic auth (default
    sandbox@example.com:sandbox-jira-token).
    """
    methods = ["GET", "POST", "PUT", "DELETE"]
    routes = [
        Route("/", index_page, methods=["GET"]),
        Route("/browse/{key:str}", browse, methods=["GET"]),
        Route("/rest/api/3/{rest:path}", api_endpoint, methods=methods),
        Route("/_sandbox/health", control_health, methods=["GET"]),
        Route("/_sandbox/faults", control_faults, methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/down", control_down, methods=["GET", "POST"]),
        Route("/_sandbox/state", control_state, methods=["GET"]),
        Route("/_sandbox/reset", control_reset, methods=["POST"]),
        Route("/_sandbox/calls", control_calls, methods=["GET", "DELETE"]),
    ]
    app = Starlette(routes=routes)
    app.state.sandbox = JiraSandbox(state_file=state_file, project=project)
    app.state.credentials = dict(credentials or {DEFAULT_EMAIL: DEFAULT_TOKEN})
    return app


@contextlib.asynccontextmanager
async def run_sandbox(
    state_file: str | Path | None = None,
    credentials: dict[str, str] | None = None,
    project: str = DEFAULT_PROJECT,
    host: str = "127.0.0.1",
    port: int = 0,
) -> AsyncIterator[str]:
    """A Jira sandbox on a free port for the length of the block; yields its base URL."""
    from .slack import serve_in_background

    async with serve_in_background(
        create_app(state_file=state_file, credentials=credentials, project=project), host=host, port=port
    ) as url:
        yield url


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.jira", description="Local Jira Cloud REST v3 sandbox"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("JIRA_SANDBOX_PORT") or DEFAULT_PORT))
    parser.add_argument("--state", default=None, help="state file (JSON); no persistence if omitted")
    parser.add_argument("--project", default=os.environ.get("JIRA_PROJECT") or DEFAULT_PROJECT)
    opts = parser.parse_args(argv)
    # EMAIL:TOKEN from the environment only: a command line is visible to everyone in `ps`.
    given = os.environ.get("JIRA_SANDBOX_USER", "")
    email, _, token = given.partition(":")
    if given and not (email and token):
        raise SystemExit("bad JIRA_SANDBOX_USER: expected EMAIL:API_TOKEN")
    app = create_app(
        state_file=opts.state, credentials={email: token} if given else None, project=opts.project
    )
    print(
        f"Jira sandbox: http://{opts.host}:{opts.port}/  (REST v3: http://{opts.host}:{opts.port}/rest/api/3/, "
        f"project {shlex.quote(opts.project)})",
        flush=True,
    )
    uvicorn.run(app, host=opts.host, port=opts.port, log_level="warning", timeout_graceful_shutdown=2)


if __name__ == "__main__":
    main()
