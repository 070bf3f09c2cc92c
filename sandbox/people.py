"""The people every sandbox knows: one directory, so a Slack user has the same email in each.

The Slack sandbox answers `users.info` for these ids with their name and email;
the ServiceNow sandbox seeds its `sys_user` table and the Jira sandbox its users
with the same emails, so that mapping a person across systems (Slack id ->
email -> ServiceNow sys_user / Jira accountId, activities/people.py) works
locally as it does against real instances. Anyone else is a Slack user
(`users.info` still answers, with `<id lowercased>@sandbox.example`) who has no
account in ServiceNow or Jira: the case the incident must say in its thread.

The first ten are config/oncall.yaml's people; the engineers are the README's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Person:
    slack_id: str
    name: str
    email: str
    user_name: str  # ServiceNow's user_name

    @property
    def sys_id(self) -> str:
        """A stable 32-hex ServiceNow sys_id, so tests and state files agree across restarts."""
        return hashlib.md5(f"sys_user:{self.email}".encode()).hexdigest()  # noqa: S324 - an id, not a secret

    @property
    def account_id(self) -> str:
        """A Jira Cloud accountId in its current shape (`712020:<uuid>`), stable per email."""
        digest = hashlib.sha256(f"jira:{self.email}".encode()).hexdigest()
        return f"712020:{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


PEOPLE: tuple[Person, ...] = (
    Person("U0ALICE", "Alice Schmidt", "alice@example.com", "alice"),
    Person("U0BOB", "Bob Meyer", "bob@example.com", "bob"),
    Person("U0CAROL", "Carol Weber", "carol@example.com", "carol"),
    Person("U0DAVE", "Dave Fischer", "dave@example.com", "dave"),
    Person("U0ERIN", "Erin Wagner", "erin@example.com", "erin"),
    Person("U0FRANK", "Frank Becker", "frank@example.com", "frank"),
    Person("U0GRACE", "Grace Hoffmann", "grace@example.com", "grace"),
    Person("U0HEIDI", "Heidi Koch", "heidi@example.com", "heidi"),
    Person("U0IVAN", "Ivan Richter", "ivan@example.com", "ivan"),
    Person("U0JUDY", "Judy Neumann", "judy@example.com", "judy"),
    Person("U0ENGINEER1", "Engineer One", "engineer1@example.com", "engineer1"),
    Person("U0ENGINEER2", "Engineer Two", "engineer2@example.com", "engineer2"),
    Person("U0ENGINEER3", "Engineer Three", "engineer3@example.com", "engineer3"),
)
BY_SLACK_ID = {p.slack_id: p for p in PEOPLE}


def person(slack_id: str) -> Person | None:
    return BY_SLACK_ID.get(slack_id)
