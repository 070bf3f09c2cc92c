"""Jira behind the ticket interface: the incident's ticket as a Jira issue, through Jira Cloud's REST API v3.

Authentication is basic auth with an Atlassian account's email and an API
token (JIRA_EMAIL, JIRA_API_TOKEN); text goes in Atlassian Document Format.

Exactly once, on Jira's side:

- The issue carries the label `incident-<correlation id>` (`label_for`), and
  the look-up before a create asks JQL for it among issues not done
  (`/rest/api/3/search/jql`). Jira Cloud's search is eventually consistent: an
  issue created a moment ago may be missing from it. A retry comes after the
  activity's timeout and backoff (seconds), which in practice is enough; it is
  not a guarantee Jira gives.
- Every change ends with one comment whose last line is `[ref: <idempotency
  key>]`, written after its fields and transition. A retried change (attempt >
  1) first reads the issue's comments and, if its tag is there, the whole
  change went through before: nothing is written again. Without it the fields
  are set again (the same values) and the transition is skipped when the
  issue is already in that status category, then the comment is written.
- An action item is an issue labelled `incident-<correlation id>-action-<n>`,
  found by that label before it is created, and linked ("Relates") to the
  incident's issue unless the link is there already.

Statuses are found by category, not by name (`new`, `indeterminate`, `done`):
a claim moves the issue to the first transition into In Progress's category,
a resolution into Done's; a workflow without one is a rejection that says which
transitions there are.

People: the claim's assignee is the Jira account of the Incident Commander,
found by email (activities/people.py). A person with no account leaves the
issue unassigned; the comment and `TicketChanged.problem` say so.

Failures: 429 and 5xx (and timeouts, refused connections, a non-JSON answer)
are retryable, with `next_retry_delay` from Retry-After; any other 4xx is
non-retryable with Jira's own words, "Jira rejected the update: 400 assignee:
User '...' cannot be assigned issues."
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.people import People
from activities.rendering import render
from activities.retry_after import call_service, http_failure
from workflows.models import Severity
from workflows.ticket_models import (
    ActionItemFiled,
    ActionItemTicket,
    TicketChange,
    TicketChanged,
    TicketChangeKind,
    TicketOpen,
    TicketRef,
)

from .servicenow import note_tag

API = "/rest/api/3"
PRIORITIES: dict[Severity, str] = {
    Severity.P1: "Highest",
    Severity.P2: "High",
    Severity.P3: "Medium",
    Severity.P4: "Low",
}
IN_PROGRESS, DONE = "indeterminate", "done"  # status categories
LABEL_LENGTH = 255
LABEL_PREFIX = "incident-"
MARKER_LABEL = "durable-incident"  # every issue this project files, for a person's JQL
SUMMARY_LENGTH = 255
COMMENT_PAGE = 100


def label_for(correlation_id: str) -> str:
    """`incident-<correlation id>`: no whitespace (Jira labels have none), at most 255 characters."""
    label = LABEL_PREFIX + re.sub(r"\s", "_", correlation_id)
    if len(label) <= LABEL_LENGTH - 20:  # room for "-action-<n>"
        return label
    digest = hashlib.sha256(correlation_id.encode()).hexdigest()[:32]
    return label[: LABEL_LENGTH - 20 - 33] + "~" + digest


def jql_string(value: str) -> str:
    """A JQL string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def adf(text: str) -> dict[str, Any]:
    """Plain text as an Atlassian Document: paragraphs at blank lines, line breaks as hardBreak."""
    content = []
    for block in re.split(r"\n\s*\n", text.strip()):
        nodes: list[dict[str, Any]] = []
        for line in block.split("\n"):
            if nodes:
                nodes.append({"type": "hardBreak"})
            if line:
                nodes.append({"type": "text", "text": line})  # Jira refuses an empty text node
        if any(n["type"] == "text" for n in nodes):
            content.append({"type": "paragraph", "content": nodes})
    return {"type": "doc", "version": 1, "content": content}


def adf_text(doc: Any) -> str:
    """The text of an Atlassian Document (enough to find our [ref: ...] tag in a comment)."""
    if not isinstance(doc, dict):
        return ""
    parts: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        if node.get("type") == "text":
            parts.append(str(node.get("text", "")))
        elif node.get("type") == "hardBreak":
            parts.append("\n")
        for child in node.get("content") or []:
            if isinstance(child, dict):
                walk(child)
        if node.get("type") == "paragraph":
            parts.append("\n")

    walk(doc)
    return "".join(parts)


class JiraTickets:
    """Incidents as issues of one Jira project, over one pooled httpx client."""

    system = "jira"
    display = "Jira"

    def __init__(
        self,
        url: str,
        email: str,
        api_token: str,
        project: str,
        *,
        issue_type: str = "Task",
        action_item_type: str = "Task",
        link_type: str = "Relates",
        timeout: float = 10.0,
        people: People | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not (email and api_token):
            raise ValueError(
                "JIRA_URL is set but there are no credentials: set JIRA_EMAIL and JIRA_API_TOKEN"
            )
        if not project:
            raise ValueError("JIRA_URL is set but JIRA_PROJECT (the project key, e.g. OPS) is not")
        self.url = url.rstrip("/")
        self.project = project
        self._issue_type = issue_type
        self._action_item_type = action_item_type
        self._link_type = link_type
        self._people = people or People()
        self._client = httpx.AsyncClient(
            base_url=self.url,
            auth=httpx.BasicAuth(email, api_token),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
            headers={"Accept": "application/json", "User-Agent": "durable-incident"},
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    # ------------------------------------------------------------ backend

    async def open(self, ticket: TicketOpen) -> TicketRef:
        correlation = ticket.correlation_id or ticket.incident_key
        labels = [MARKER_LABEL, label_for(correlation)]
        if ticket.category.strip():
            labels.append(re.sub(r"\s+", "-", ticket.category.strip()))
        fields = {
            "project": {"key": self.project},
            "issuetype": {"name": self._issue_type},
            "summary": _one_line(render("jira/short_description.txt.j2", ticket=ticket)),
            "description": adf(render("jira/description.txt.j2", ticket=ticket)),
            "labels": labels,
            "priority": {"name": PRIORITIES[ticket.severity]},
        }
        created = await self._call("POST", f"{API}/issue", "new ticket", json={"fields": fields})
        return self._ref(created, created=True)

    async def find_by_correlation(self, correlation_id: str) -> TicketRef | None:
        jql = (
            f"project = {jql_string(self.project)} AND labels = {jql_string(label_for(correlation_id))} "
            "AND statusCategory != Done ORDER BY created ASC"
        )
        issues = await self._search(jql, "ticket lookup")
        return self._ref(issues[0], created=False) if issues else None

    async def apply_change(self, change: TicketChange, *, retried: bool) -> TicketChanged:
        issue = change.ticket.sys_id
        tag = note_tag(change.idempotency_key)
        if retried and await self._has_comment_with(issue, tag):
            activity.logger.info("ticket change %s was already written", change.idempotency_key)
            return await self._changed(change, duplicate=True)
        problem = ""
        kind = change.kind
        if kind == TicketChangeKind.claim:
            assert change.assigned_to is not None
            who = await self._people.account(self.display, change.assigned_to, self._find_account)
            if who.account:
                await self._edit(issue, {"assignee": {"accountId": who.account}})
            else:
                problem = f"{who.reason}: the issue is not assigned"
            await self._move_to(issue, IN_PROGRESS)
        elif kind == TicketChangeKind.severity:
            assert change.severity is not None
            await self._edit(issue, {"priority": {"name": PRIORITIES[change.severity]}})
        elif kind in (TicketChangeKind.resolve, TicketChangeKind.close):
            await self._move_to(issue, DONE)
        extra = {"priority": PRIORITIES[change.severity]} if change.severity is not None else {}
        note = render(f"jira/{kind.value}.txt.j2", change=change, **extra)
        if kind == TicketChangeKind.resolve:
            note += "\n\n" + render("jira/close_notes.txt.j2", change=change)
        if problem:
            note += f"\n\n{problem}."
        await self._call(
            "POST", f"{API}/issue/{issue}/comment", "update", json={"body": adf(f"{note}\n\n{tag}")}
        )
        changed = await self._changed(change, duplicate=False)
        return changed.model_copy(update={"problem": problem})

    async def file_action_item(self, item: ActionItemTicket) -> ActionItemFiled:
        label = f"{label_for(item.correlation_id or item.incident_key)}-action-{item.number}"
        found = await self._search(
            f"project = {jql_string(self.project)} AND labels = {jql_string(label)} ORDER BY created ASC",
            "action item lookup",
        )
        problem = ""
        if found:
            ref = self._ref(found[0], created=False)
        else:
            fields: dict[str, Any] = {
                "project": {"key": self.project},
                "issuetype": {"name": self._action_item_type},
                "summary": _one_line(item.text),
                "description": adf(
                    f"{item.text}\n\nAction item {item.number} of incident {item.incident_key} "
                    f"({item.incident.number})."
                ),
                "labels": [MARKER_LABEL, "incident-action-item", label],
                "priority": {"name": PRIORITIES[item.priority]},
            }
            if item.due is not None:
                fields["duedate"] = item.due.isoformat()
            if item.owner:
                who = await self._people.account(self.display, item.owner, self._find_account)
                if who.account:
                    fields["assignee"] = {"accountId": who.account}
                else:
                    problem = f"{who.reason}: the action item is not assigned"
            ref = self._ref(
                await self._call("POST", f"{API}/issue", "action item", json={"fields": fields}), True
            )
        await self._link_once(ref, item.incident)
        return ActionItemFiled(ticket=ref, linked_to=item.incident.number, problem=problem)

    # ------------------------------------------------------------ helpers

    async def _find_account(self, email: str | None, person: str) -> str | None:
        """The accountId of the active user with this email; None without an email or a match."""
        if not email:
            return None
        users = await self._call("GET", f"{API}/user/search", "user lookup", params={"query": email})
        users = [u for u in users if isinstance(u, dict) and u.get("active", True)]
        # Jira hides emailAddress by the user's privacy settings: an exact match when it shows,
        # else the search's one answer (it matches email exactly, names by prefix).
        exact = [u for u in users if str(u.get("emailAddress", "")).lower() == email.lower()]
        chosen = exact or (users if len(users) == 1 and "emailAddress" not in users[0] else [])
        return str(chosen[0]["accountId"]) if chosen else None

    async def _search(self, jql: str, what: str) -> list[dict[str, Any]]:
        params = {"jql": jql, "maxResults": "1", "fields": "summary,status"}
        result = await self._call("GET", f"{API}/search/jql", what, params=params)
        return list(result.get("issues") or [])

    async def _edit(self, issue: str, fields: dict[str, Any]) -> None:
        await self._call("PUT", f"{API}/issue/{issue}", "update", json={"fields": fields})

    async def _status(self, issue: str) -> dict[str, Any]:
        result = await self._call("GET", f"{API}/issue/{issue}", "update", params={"fields": "status"})
        return dict(result.get("fields", {}).get("status") or {})

    async def _move_to(self, issue: str, category: str) -> None:
        """Transition into `category` unless the issue is in it already."""
        status = await self._status(issue)
        if (status.get("statusCategory") or {}).get("key") == category:
            return
        result = await self._call("GET", f"{API}/issue/{issue}/transitions", "update")
        transitions = result.get("transitions") or []
        chosen = next(
            (
                t
                for t in transitions
                if ((t.get("to") or {}).get("statusCategory") or {}).get("key") == category
            ),
            None,
        )
        if chosen is None:
            names = ", ".join(str(t.get("name")) for t in transitions) or "none"
            raise ApplicationError(
                f"Jira rejected the update: no transition from {status.get('name', '?')} into a "
                f"{category!r} status (available: {names})",
                type="JiraRejected",
                non_retryable=True,
            )
        await self._call(
            "POST", f"{API}/issue/{issue}/transitions", "update", json={"transition": {"id": chosen["id"]}}
        )

    async def _has_comment_with(self, issue: str, tag: str) -> bool:
        start = 0
        while True:
            params = {"startAt": str(start), "maxResults": str(COMMENT_PAGE)}
            page = await self._call("GET", f"{API}/issue/{issue}/comment", "update", params=params)
            comments = page.get("comments") or []
            if any(tag in adf_text(c.get("body")) for c in comments):
                return True
            start += len(comments)
            if not comments or start >= int(page.get("total") or 0):
                return False

    async def _link_once(self, item: TicketRef, incident: TicketRef) -> None:
        result = await self._call(
            "GET", f"{API}/issue/{item.sys_id}", "link", params={"fields": "issuelinks"}
        )
        for link in result.get("fields", {}).get("issuelinks") or []:
            other = link.get("outwardIssue") or link.get("inwardIssue") or {}
            if other.get("key") == incident.number or other.get("id") == incident.sys_id:
                return
        body = {
            "type": {"name": self._link_type},
            "inwardIssue": {"key": item.number},
            "outwardIssue": {"key": incident.number},
        }
        await self._call("POST", f"{API}/issueLink", "link", json=body)

    def _ref(self, issue: dict[str, Any], created: bool) -> TicketRef:
        key = str(issue.get("key") or "")
        return TicketRef(
            system=self.system,
            sys_id=str(issue.get("id") or ""),
            number=key,
            url=f"{self.url}/browse/{key}",
            created=created,
        )

    async def _changed(self, change: TicketChange, *, duplicate: bool) -> TicketChanged:
        status = await self._status(change.ticket.sys_id)
        return TicketChanged(
            kind=change.kind,
            number=change.ticket.number,
            sys_id=change.ticket.sys_id,
            state=str(status.get("name") or ""),
            duplicate=duplicate,
        )

    async def _call(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        """One REST call; its failure sorted into retry-later and give-up."""
        response = await call_service(
            self._client, "Jira", what, method, path, _as_application_error, **kwargs
        )
        if response.status_code == 204 or not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise ApplicationError(
                f"Jira answered the {what} with {response.status_code} but not JSON "
                f"({response.headers.get('content-type', 'no content type')})",
                type="JiraBadResponse",
            ) from None


def _one_line(text: str) -> str:
    """A summary Jira takes: one line, under 255 characters."""
    line = " ".join(text.split())
    return line if len(line) <= SUMMARY_LENGTH else line[: SUMMARY_LENGTH - 1] + "…"


def _as_application_error(response: httpx.Response, what: str) -> ApplicationError:
    return http_failure("Jira", response, what, _error_reason(response))


def _error_reason(response: httpx.Response) -> str:
    """Jira's `errorMessages` and `errors` (field: message) in one line, else the status phrase."""
    try:
        body = response.json()
        messages = [str(m) for m in body.get("errorMessages") or []]
        messages += [f"{field}: {message}" for field, message in (body.get("errors") or {}).items()]
    except (ValueError, AttributeError):
        messages = []
    return "; ".join(messages) or response.reason_phrase or "error"
