"""Which implementation stands behind each outside system: a setting names an entry here.

CHAT_BACKEND, TICKET_BACKEND and DEVICE_BACKEND (activities/settings.py) each choose
one factory below, and the worker registers its activities over what they build
(worker.py). Another chat tool, ticket system or device library is one module behind
its package's interface (chat/backend.py, tickets/backend.py, devices/backend.py) and
one entry here; the activity names the workflows call stay the same whichever
backend answers them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from .chat import ChatBackend
from .chat.slack import SlackChat
from .devices import DeviceActivities, DeviceBackend
from .settings import Settings
from .tickets import ServiceNowTickets, TicketBackend

TICKETS_OFF = "off"


class BackendError(ValueError):
    """A backend setting the worker cannot use: it stops at start and says which and why."""


def slack(settings: Settings) -> ChatBackend:
    return SlackChat.from_settings(settings.slack_api_url, settings.slack_bot_token)


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
    )


def pyats(settings: Settings) -> DeviceBackend:
    return DeviceActivities(
        settings.pyats_testbed,
        settings.pyats_plans_dir,
        connect_timeout=settings.pyats_connect_timeout,
        command_timeout=settings.pyats_command_timeout,
    )


CHAT_BACKENDS: dict[str, Callable[[Settings], ChatBackend]] = {"slack": slack}
TICKET_BACKENDS: dict[str, Callable[[Settings], TicketBackend]] = {"servicenow": servicenow}
DEVICE_BACKENDS: dict[str, Callable[[Settings], DeviceBackend]] = {"pyats": pyats}

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
    tickets: TicketBackend | None  # None: tickets are off
    tickets_off_because: str | None
    devices: DeviceBackend
    names: str  # "chat slack, tickets off, devices pyats", for the worker's log

    @classmethod
    def from_settings(cls, settings: Settings) -> Backends:
        chat_name, device_name = _name(settings.chat_backend), _name(settings.device_backend)
        ticket_name, off_because = _name(settings.ticket_backend), "tickets are off: TICKET_BACKEND is off"
        if not ticket_name:  # unset: ServiceNow when it has a URL, as before TICKET_BACKEND existed
            ticket_name = "servicenow" if settings.servicenow_url else TICKETS_OFF
            off_because = "tickets are off: SERVICENOW_URL is not set"
        # Every name is checked before anything is built: a typo costs no connection.
        chat = chosen(CHAT_BACKENDS, "CHAT_BACKEND", chat_name)
        devices = chosen(DEVICE_BACKENDS, "DEVICE_BACKEND", device_name)
        tickets = None
        if ticket_name != TICKETS_OFF:
            tickets = chosen(TICKET_BACKENDS, "TICKET_BACKEND", ticket_name, also=(TICKETS_OFF,))
        return cls(
            chat=chat(settings),
            tickets=tickets(settings) if tickets else None,
            tickets_off_because=None if tickets else off_because,
            devices=devices(settings),
            names=f"chat {chat_name}, tickets {ticket_name}, devices {device_name}",
        )


def _name(setting: str) -> str:
    return setting.strip().lower()
