"""ServiceNow behind the ticket interface: incidents through the Table API, over httpx.

Exactly once, on ServiceNow's side:

- The incident's correlation id goes in the incident table's `correlation_id`
  (a String(100): longer keys are shortened stably, `correlation_id_for`), and
  the look-up before a create asks for it among tickets not resolved or closed.
- Text from alerts and people is plain text here, but journal fields read
  `[code]...[/code]` as HTML and our work notes end with `[ref: ...]` tags:
  both are neutralised in what they wrote (activities/rendering.py).
- Every change writes one work note, in the same PATCH as its fields, and the
  note ends with `[ref: <idempotency key>]`. A retried change (attempt > 1)
  first reads the ticket's work notes and, if its tag is there, the PATCH
  went through before: nothing is written again.

Failures: 429 and 5xx (and timeouts, refused connections, a non-JSON answer)
are retryable, with `next_retry_delay` from Retry-After when ServiceNow sends
one; any other 4xx is non-retryable with a message a person can act on,
"ServiceNow rejected the update: 403 Operation Failed (ACL Exception ...)".
The workflow keeps the changes in order and waits out an outage; the
incident itself never waits on ServiceNow.
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator
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

# ServiceNow's scales are 1 (High) .. 3 (Low); the default priority lookup turns
# (impact, urgency) into priority 1 Critical .. 5 Planning. Each severity lands on
# the priority with its own number: P1 -> 1 Critical, P2 -> 2 High, P3 -> 3 Moderate,
# P4 -> 4 Low.
SEVERITY_LEVELS: dict[Severity, tuple[str, str]] = {  # severity -> (impact, urgency)
    Severity.P1: ("1", "1"),
    Severity.P2: ("2", "1"),
    Severity.P3: ("2", "2"),
    Severity.P4: ("2", "3"),
}
STATE_IN_PROGRESS = "2"
STATE_RESOLVED = "6"
STATE_CLOSED = "7"
DONE_STATES = ("6", "7", "8")  # Resolved, Closed, Canceled: a new incident does not reuse these
INCIDENT_TABLE = "/api/now/table/incident"
USER_TABLE = "/api/now/table/sys_user"
CORRELATION_DISPLAY = "durable-incident"
CORRELATION_ID_LENGTH = 100  # the incident table's correlation_id is a String(100)
SHORT_DESCRIPTION_LENGTH = 160


def correlation_id_for(incident_key: str) -> str:
    """The incident key, or, past 100 characters, a stable shortened form of it."""
    if len(incident_key) <= CORRELATION_ID_LENGTH:
        return incident_key
    digest = hashlib.sha256(incident_key.encode()).hexdigest()[:32]
    return incident_key[: CORRELATION_ID_LENGTH - 33] + "~" + digest


def note_tag(idempotency_key: str) -> str:
    return f"[ref: {idempotency_key}]"


class BearerToken(httpx.Auth):
    """OAuth: `Authorization: Bearer <access token>` on every request."""

    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request


class ServiceNowTickets:
    """Incidents in ServiceNow through the Table API, over one pooled httpx client."""

    system = "servicenow"
    display = "ServiceNow"

    def __init__(
        self,
        url: str,
        auth: httpx.Auth | tuple[str, str] | None = None,
        timeout: float = 10.0,
        *,
        assignment_group: str = "",
        people: People | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._assignment_group = assignment_group
        self._people = people or People()
        self._client = httpx.AsyncClient(
            base_url=self.url,
            auth=auth,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
            headers={"Accept": "application/json", "User-Agent": "durable-incident"},
            transport=transport,
        )

    @classmethod
    def from_settings(
        cls,
        url: str,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
        *,
        assignment_group: str = "",
        timeout: float = 10.0,
        people: People | None = None,
    ) -> ServiceNowTickets:
        """ServiceNow with an OAuth bearer token or basic auth."""
        auth: httpx.Auth
        if token:
            auth = BearerToken(token)
        elif user:
            auth = httpx.BasicAuth(user, password or "")
        else:
            raise ValueError(
                "SERVICENOW_URL is set but there are no credentials: "
                "set SERVICENOW_USER and SERVICENOW_PASSWORD, or SERVICENOW_TOKEN"
            )
        return cls(url, auth, timeout, assignment_group=assignment_group, people=people)

    async def aclose(self) -> None:
        await self._client.aclose()

    # ------------------------------------------------------------ backend

    async def open(self, ticket: TicketOpen) -> TicketRef:
        impact, urgency = SEVERITY_LEVELS[ticket.severity]
        body = {
            "short_description": render("servicenow/short_description.txt.j2", ticket=ticket)[
                :SHORT_DESCRIPTION_LENGTH
            ],
            "description": render("servicenow/description.txt.j2", ticket=ticket),
            "impact": impact,
            "urgency": urgency,
            "category": ticket.category,
            "correlation_id": correlation_id_for(ticket.correlation_id or ticket.incident_key),
            "correlation_display": CORRELATION_DISPLAY,
        }
        group = ticket.assignment_group or self._assignment_group
        if group:
            body["assignment_group"] = group
        result = await self._call(
            "POST", INCIDENT_TABLE, "new ticket", json=body, params=_params("sys_id,number")
        )
        return self._ref(result, created=True)

    async def find_by_correlation(self, correlation_id: str) -> TicketRef | None:
        fitted = correlation_id_for(correlation_id)
        query = f"correlation_id={fitted}^stateNOT IN{','.join(DONE_STATES)}^ORDERBYsys_created_on"
        params = {**_params("sys_id,number"), "sysparm_query": query, "sysparm_limit": "1"}
        result = await self._call("GET", INCIDENT_TABLE, "ticket lookup", params=params)
        return self._ref(result[0], created=False) if result else None

    async def apply_change(self, change: TicketChange, *, retried: bool) -> TicketChanged:
        sys_id = change.ticket.sys_id
        path = f"{INCIDENT_TABLE}/{sys_id}"
        tag = note_tag(change.idempotency_key)
        if retried:
            params = {**_params("sys_id,number,state,work_notes"), "sysparm_display_value": "all"}
            record = await self._call("GET", path, "update", params=params)
            if tag in _display(record.get("work_notes")):
                activity.logger.info("ticket change %s was already written", change.idempotency_key)
                return self._changed(change, record, duplicate=True)
        fields = self._fields_for(change)
        note, problem = self._work_note(change), ""
        if change.kind == TicketChangeKind.claim:
            # assigned_to is a reference to sys_user: the IC's sys_id, found by their email.
            assert change.assigned_to is not None
            who = await self._people.account(self.display, change.assigned_to, self._find_user)
            if who.account:
                fields["assigned_to"] = who.account
            else:
                del fields["assigned_to"]
                problem = f"{who.reason}: the ticket is not assigned"
                note += f"\n{problem}."
        fields["work_notes"] = f"{note}\n{tag}"
        result = await self._call("PATCH", path, "update", json=fields, params=_params("sys_id,number,state"))
        return self._changed(change, result, duplicate=False).model_copy(update={"problem": problem})

    async def file_action_item(self, item: ActionItemTicket) -> ActionItemFiled:
        raise ApplicationError(
            "ServiceNow files no action items yet: name jira as the policy's tickets.system to file them",
            type="ServiceNowRejected",
            non_retryable=True,
        )

    async def _find_user(self, email: str | None, person: str) -> str | None:
        """The sys_id of the active sys_user with this email, else with this user_name; None if none.

        `^` separates an encoded query's terms, so a value holding one is not asked for.
        """
        if email and "^" not in email:
            query = f"email={email}^active=true"
        elif not email and person and "^" not in person and "@" not in person:
            query = f"user_name={person}^active=true"
        else:
            return None
        params = {**_params("sys_id"), "sysparm_query": query, "sysparm_limit": "1"}
        result = await self._call("GET", USER_TABLE, "user lookup", params=params)
        return _value(result[0].get("sys_id")) or None if result else None

    # ------------------------------------------------------------ helpers

    def _fields_for(self, change: TicketChange) -> dict[str, str]:
        kind = change.kind
        if kind == TicketChangeKind.claim:
            assert change.assigned_to is not None
            return {"assigned_to": change.assigned_to, "state": STATE_IN_PROGRESS}
        if kind == TicketChangeKind.severity:
            assert change.severity is not None
            impact, urgency = SEVERITY_LEVELS[change.severity]
            return {"impact": impact, "urgency": urgency}
        if kind == TicketChangeKind.resolve:
            return self._close_fields(change, STATE_RESOLVED)
        if kind == TicketChangeKind.close:
            # Resolve set close code and notes; a close that comes without one sets them itself.
            return self._close_fields(change, STATE_CLOSED) if change.resolution else {"state": STATE_CLOSED}
        return {}

    @staticmethod
    def _close_fields(change: TicketChange, state: str) -> dict[str, str]:
        return {
            "state": state,
            "close_code": change.close_code,
            "close_notes": render("servicenow/close_notes.txt.j2", change=change),
        }

    @staticmethod
    def _work_note(change: TicketChange) -> str:
        extra: dict[str, Any] = {}
        if change.kind == TicketChangeKind.severity and change.severity is not None:
            extra["impact"], extra["urgency"] = SEVERITY_LEVELS[change.severity]
        return render(f"servicenow/{change.kind.value}.txt.j2", change=change, **extra)

    def _ref(self, record: dict[str, Any], *, created: bool) -> TicketRef:
        sys_id = _value(record.get("sys_id"))
        return TicketRef(
            system=self.system,
            sys_id=sys_id,
            number=_value(record.get("number")),
            url=f"{self.url}/incident.do?sys_id={sys_id}",
            created=created,
        )

    @staticmethod
    def _changed(change: TicketChange, record: dict[str, Any], *, duplicate: bool) -> TicketChanged:
        return TicketChanged(
            kind=change.kind,
            number=_value(record.get("number")) or change.ticket.number,
            sys_id=change.ticket.sys_id,
            state=_value(record.get("state")),
            duplicate=duplicate,
        )

    async def _call(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        """One Table API call; its failure sorted into retry-later and give-up."""
        response = await call_service(
            self._client, "ServiceNow", what, method, path, _as_application_error, **kwargs
        )
        try:
            return response.json()["result"]
        except (ValueError, KeyError, TypeError):
            # A hibernating developer instance answers 200 with a login page.
            raise ApplicationError(
                f"ServiceNow answered the {what} with {response.status_code} but no Table API result "
                f"({response.headers.get('content-type', 'no content type')})",
                type="ServiceNowBadResponse",
            ) from None


# ------------------------------------------------------------------ helpers


def _params(fields: str) -> dict[str, str]:
    return {
        "sysparm_fields": fields,
        "sysparm_display_value": "false",
        "sysparm_exclude_reference_link": "true",
    }


def _value(field: Any) -> str:
    """A field's value, whether it came back plain or as {"value", "display_value"}."""
    if isinstance(field, dict):
        return str(field.get("value") or "")
    return "" if field is None else str(field)


def _display(field: Any) -> str:
    if isinstance(field, dict):
        return str(field.get("display_value") or "")
    return "" if field is None else str(field)


def _as_application_error(response: httpx.Response, what: str) -> ApplicationError:
    return http_failure("ServiceNow", response, what, _error_reason(response))


def _error_reason(response: httpx.Response) -> str:
    """'Operation Failed (ACL Exception ...)' from ServiceNow's error body, else the status phrase."""
    try:
        error = response.json().get("error") or {}
        message, detail = error.get("message"), error.get("detail")
    except (ValueError, AttributeError):
        message = detail = None
    message = message or response.reason_phrase or "error"
    return f"{message} ({detail})" if detail else str(message)
