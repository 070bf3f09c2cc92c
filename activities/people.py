"""One person across systems: a Slack user id -> their email -> their account in the ticket system.

The incident knows people by who gave a command: a Slack user id (`U0ALICE`)
from Slack, or whatever `--user` the CLI was given. A ticket system knows them
by its own reference: ServiceNow by a `sys_user` sys_id, Jira by an
`accountId`. The bridge is the email address: Slack's `users.info` (scope
`users:read.email`) gives it (first, without asking Slack: the on-call file's
`people:`, which list Slack ids with their emails), ServiceNow's `sys_user` table and Jira's user
search find the account by it. A person given as an email is taken as it is;
anyone else (`alice` from the CLI) has no email, and each backend may still
try what it can (ServiceNow: `alice` as a `user_name`).

When no account is found, `Account.account` is None and `Account.reason` says
why in words a person can act on ("no ServiceNow account for
alice@example.com (U0ALICE)"); the backend writes the rest of the change and
the incident says it in the thread.

Cached in this process only (each worker has its own): found accounts for an
hour, misses for five minutes, so a person given an account meanwhile is
found on the next claim. A failure of the lookup itself (Slack or the ticket
system down) is not cached: it is raised and the activity retries.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from temporalio.exceptions import ApplicationError

from workflows.models import SLACK_USER_ID

FOUND_FOR = 3600.0  # seconds a found account is kept
MISSED_FOR = 300.0  # seconds a miss is kept


class EmailLookup(Protocol):
    async def email_of(self, user: str) -> str | None:
        """The person's email, or None when the chat tool has none for them."""
        ...


class SlackEmails:
    """Emails from Slack's `users.info` (needs `users:read` and `users:read.email`)."""

    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client

    @classmethod
    def from_settings(cls, api_url: str, token: str) -> SlackEmails:
        base_url = api_url if api_url.endswith("/") else api_url + "/"
        return cls(AsyncWebClient(token=token, base_url=base_url, timeout=10))

    async def email_of(self, user: str) -> str | None:
        if not SLACK_USER_ID.match(user):
            return None
        try:
            response = await self._client.users_info(user=user)
        except SlackApiError as err:
            error = err.response.get("error") if err.response is not None else None
            if error in ("user_not_found", "users_not_found", "account_inactive"):
                return None
            if error in ("missing_scope", "not_authed", "invalid_auth", "token_revoked"):
                # Retrying cannot fix it; the claim is still written, unassigned, and says why.
                raise LookupRefused(
                    f"Slack refused users.info: {error} (the app needs users:read.email)"
                ) from None
            raise ApplicationError(f"Slack users.info failed: {error}", type="SlackUnavailable") from None
        profile = (response.get("user") or {}).get("profile") or {}
        email = profile.get("email")
        return str(email) if email else None


class LookupRefused(Exception):
    """The lookup cannot work as configured: say so, do not retry."""


@dataclass(frozen=True)
class Account:
    person: str  # as the incident knows them: U0ALICE, alice, alice@example.com
    account: str | None  # the system's reference (sys_id, accountId); None: none found
    email: str | None = None
    reason: str = ""  # why there is no account, when there is none


class People:
    """Finds (and caches) a person's account in a ticket system, through their email."""

    def __init__(
        self,
        emails: EmailLookup | None = None,
        *,
        known: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._emails = emails
        self._known = dict(known or {})  # Slack user id -> email, from config/oncall.yaml
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, Account]] = {}

    async def account(
        self,
        system: str,
        person: str,
        find: Callable[[str | None, str], Awaitable[str | None]],
    ) -> Account:
        """`person`'s account in `system` (its display name, "ServiceNow"); `find(email, person)` asks it."""
        key = (system, person)
        cached = self._cache.get(key)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        email: str | None = person if "@" in person else self._known.get(person)
        refused = ""
        if email is None and self._emails is not None:
            try:
                email = await self._emails.email_of(person)
            except LookupRefused as exc:
                refused = str(exc)
        account = await find(email, person)
        if account:
            found = Account(person, account, email)
            self._cache[key] = (self._clock() + FOUND_FOR, found)
            return found
        who = f"{email} ({person})" if email and email != person else person
        if refused:
            reason = f"no {system} account found for {person}: {refused}"
        elif email is None and SLACK_USER_ID.match(person):
            reason = f"no {system} account found for {person}: Slack shows no email for them (the app needs users:read.email)"
        else:
            reason = f"no {system} account for {who}"
        missed = Account(person, None, email, reason)
        if not refused:
            self._cache[key] = (self._clock() + MISSED_FOR, missed)
        return missed
