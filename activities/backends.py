"""Which implementation stands behind each outside system: a setting names an entry here.

CHAT_BACKEND, TICKET_BACKEND and DEVICE_BACKEND (activities/settings.py) each choose
one factory below, PAGING_BACKENDS several (one per paging service), SMTP_HOST turns email on,
and the worker registers its activities over what they build
(worker.py). Another chat tool, ticket system or device library is one module behind
its package's interface (chat/backend.py, tickets/backend.py, devices/backend.py) and
one entry here; the activity names the workflows call stay the same whichever
backend answers them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from workflows.paging_models import PagingService

from .chat import ChatBackend
from .chat.slack import SlackChat
from .devices import DeviceActivities, DeviceBackend
from .email import EmailBackend, SmtpEmail
from .email.activities import EMAIL_OFF
from .email.message import SenderError
from .paging.backend import PagingBackend
from .paging.opsgenie import OpsgeniePaging
from .paging.pagerduty import PagerDutyPaging
from .paging.schedule import OnCallError, load_oncall_file
from .people import People, SlackEmails
from .settings import Settings
from .tickets import JiraTickets, ServiceNowTickets, TicketBackend

TICKETS_OFF = "off"


class BackendError(ValueError):
    """A backend setting the worker cannot use: it stops at start and says which and why."""


def slack(settings: Settings) -> ChatBackend:
    chat = SlackChat.from_settings(settings.slack_api_url, settings.slack_bot_token)
    chat.ui_url = settings.incident_ui_url
    return chat


def people(settings: Settings) -> People:
    """Who is who across systems: Slack ids to emails from the on-call file's people, else
    through users.info when the chat is Slack (activities/people.py)."""
    try:
        oncall = load_oncall_file(settings.incident_oncall)
        known = {user: p.email for user, p in oncall.people.items() if p.email}
    except (OnCallError, OSError, ValueError):
        known = {}  # paging says what is wrong with the file; people are then asked of Slack
    if _name(settings.chat_backend) == "slack":
        return People(
            SlackEmails.from_settings(settings.slack_api_url, settings.slack_bot_token), known=known
        )
    return People(known=known)


def servicenow(settings: Settings) -> TicketBackend:
    if not settings.servicenow_url:
        raise BackendError("TICKET_BACKEND is servicenow but SERVICENOW_URL is not set")
    return ServiceNowTickets.from_settings(
        settings.servicenow_url,
        settings.servicenow_user,
        settings.servicenow_password,
        settings.servicenow_token,
        assignment_group=settings.servicenow_assignment_group,
        timeout=settings.servicenow_timeout,
        people=people(settings),
    )


def jira(settings: Settings) -> TicketBackend:
    if not settings.jira_url:
        raise BackendError("TICKET_BACKEND names jira but JIRA_URL is not set")
    try:
        return JiraTickets(
            settings.jira_url,
            settings.jira_email or "",
            settings.jira_api_token or "",
            settings.jira_project.strip(),
            issue_type=settings.jira_issue_type,
            action_item_type=settings.jira_action_item_type,
            link_type=settings.jira_link_type,
            timeout=settings.jira_timeout,
            people=people(settings),
        )
    except ValueError as exc:
        raise BackendError(str(exc)) from None


def pyats(settings: Settings) -> DeviceBackend:
    return DeviceActivities(
        settings.pyats_testbed,
        settings.pyats_plans_dir,
        connect_timeout=settings.pyats_connect_timeout,
        command_timeout=settings.pyats_command_timeout,
    )


def pagerduty(settings: Settings) -> PagingBackend:
    if not settings.pagerduty_routing_key:
        raise BackendError("PAGING_BACKENDS names pagerduty but PAGERDUTY_ROUTING_KEY is empty")
    return PagerDutyPaging(
        settings.pagerduty_events_url, settings.pagerduty_routing_key, timeout=settings.pagerduty_timeout
    )


def opsgenie(settings: Settings) -> PagingBackend:
    if not settings.opsgenie_api_key:
        raise BackendError("PAGING_BACKENDS names opsgenie but OPSGENIE_API_KEY is empty")
    return OpsgeniePaging(
        settings.opsgenie_api_url, settings.opsgenie_api_key, timeout=settings.opsgenie_timeout
    )


def smtp_email(settings: Settings) -> EmailBackend:
    try:
        return SmtpEmail.from_settings(settings)
    except SenderError as exc:
        raise BackendError(str(exc)) from None


CHAT_BACKENDS: dict[str, Callable[[Settings], ChatBackend]] = {"slack": slack}
TICKET_BACKENDS: dict[str, Callable[[Settings], TicketBackend]] = {"servicenow": servicenow, "jira": jira}
DEVICE_BACKENDS: dict[str, Callable[[Settings], DeviceBackend]] = {"pyats": pyats}
# One entry per PagingService. "slack" (direct messages and Do Not Disturb) is not built here: it
# speaks through the chat backend's client, so worker.py builds it over that when the chat backend
# is Slack (activities/chat/slack/pager.py).
PAGING_BACKENDS: dict[str, Callable[[Settings], PagingBackend]] = {
    PagingService.pagerduty.value: pagerduty,
    PagingService.opsgenie.value: opsgenie,
}
PAGING_NOT_YET_BUILT = (PagingService.slack.value,)

B = TypeVar("B")


def chosen(
    registry: Mapping[str, Callable[[Settings], B]], variable: str, name: str, also: tuple[str, ...] = ()
) -> Callable[[Settings], B]:
    """The registry's entry for `name`, or a BackendError naming the variable and the choices."""
    if name not in registry:
        choices = ", ".join([*registry, *also])
        raise BackendError(
            f"{variable}={name!r} is not a backend this worker knows; choose one of: {choices}"
        )
    return registry[name]


@dataclass(frozen=True)
class Backends:
    """The implementations the settings chose, built once when the worker starts."""

    chat: ChatBackend
    tickets: TicketBackend | None  # None: tickets are off; else the default system's
    tickets_off_because: str | None
    devices: DeviceBackend
    names: str  # "chat slack, tickets off, devices pyats, paging slack+pagerduty", for the worker's log
    paging: dict[PagingService, PagingBackend] = field(default_factory=dict)
    email: EmailBackend | None = None  # None: email is off
    email_off_because: str | None = EMAIL_OFF
    # Every ticket system the worker has, the default included, by name (a policy's tickets.system).
    all_tickets: dict[str, TicketBackend] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> Backends:
        chat_name, device_name = _name(settings.chat_backend), _name(settings.device_backend)
        ticket_names, off_because = ticket_backend_names(settings)
        ticket_name = "+".join(ticket_names) or TICKETS_OFF
        # Every name is checked before anything is built: a typo costs no connection.
        chat = chosen(CHAT_BACKENDS, "CHAT_BACKEND", chat_name)
        devices = chosen(DEVICE_BACKENDS, "DEVICE_BACKEND", device_name)
        ticket_builders = {
            name: chosen(TICKET_BACKENDS, "TICKET_BACKEND", name, also=(TICKETS_OFF,))
            for name in ticket_names
        }
        paging_names = paging_backend_names(settings)
        paging = {
            PagingService(name): PAGING_BACKENDS[name] for name in paging_names if name in PAGING_BACKENDS
        }
        all_tickets = {name: build(settings) for name, build in ticket_builders.items()}
        return cls(
            chat=chat(settings),
            tickets=all_tickets[ticket_names[0]] if ticket_names else None,
            tickets_off_because=None if ticket_names else off_because,
            all_tickets=all_tickets,
            devices=devices(settings),
            names=f"chat {chat_name}, tickets {ticket_name}, devices {device_name}, "
            f"paging {'+'.join(paging_names) or 'off'}",
            paging={service: build(settings) for service, build in paging.items()},
            email=smtp_email(settings) if settings.smtp_host.strip() else None,
            email_off_because=None if settings.smtp_host.strip() else EMAIL_OFF,
        )


def ticket_backend_names(settings: Settings) -> tuple[list[str], str]:
    """TICKET_BACKEND as names, the default first, and why tickets are off when there are none."""
    given = [_name(part) for part in settings.ticket_backend.split(",") if part.strip()]
    if given == [TICKETS_OFF]:
        return [], "tickets are off: TICKET_BACKEND is off"
    if not given:  # unset: each system that has a URL, ServiceNow first (as before TICKET_BACKEND)
        given = [
            name
            for name, url in (("servicenow", settings.servicenow_url), ("jira", settings.jira_url))
            if url
        ]
    return list(dict.fromkeys(given)), "tickets are off: SERVICENOW_URL is not set"


def paging_backend_names(settings: Settings) -> list[str]:
    """PAGING_BACKENDS as names, in order; unset: slack, and each service whose URL is set.

    A name no registry knows is a BackendError naming the variable and the choices.
    """
    given = [_name(part) for part in settings.paging_backends.split(",") if part.strip()]
    if not given:
        given = [PagingService.slack.value]
        # Set and not empty (docker-compose passes an unset variable as ""): that service too.
        if settings.pagerduty_events_url and "pagerduty_events_url" in settings.model_fields_set:
            given.append(PagingService.pagerduty.value)
        if settings.opsgenie_api_url and "opsgenie_api_url" in settings.model_fields_set:
            given.append(PagingService.opsgenie.value)
    for name in given:
        if name not in PAGING_NOT_YET_BUILT:
            chosen(PAGING_BACKENDS, "PAGING_BACKENDS", name, also=PAGING_NOT_YET_BUILT)
    return list(dict.fromkeys(given))


def _name(setting: str) -> str:
    return setting.strip().lower()
