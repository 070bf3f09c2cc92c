"""Who may call: the tokens the sandbox accepts, the app's scopes, and membership.

The default bot tokens and scopes (and those from SLACK_SANDBOX_TOKENS,
SLACK_SANDBOX_SCOPES, SLACK_BOT_TOKEN), the scopes Slack accepts for each
method and for each kind of conversation, the scopes an event or a slash
command needs, and Grant: a caller's scopes, checked requirement by
requirement (``missing_scope``). Whether the bot is in a channel is
``bot_is_member``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

from .common import BOT_USER_ID, SlackError

# -- who may call: tokens and the app's scopes ------------------------------------------
#
# The bot tokens the sandbox accepts (an unknown `xox...` token gets `invalid_auth`): the
# project's default (activities/settings.py), the tests' and the benchmarks'. Override with
# create_app(tokens=...) or SLACK_SANDBOX_TOKENS; SLACK_BOT_TOKEN, when set, is accepted too.
DEFAULT_TOKENS: tuple[str, ...] = ("xoxb-sandbox-token", "xoxb-test-token", "xoxb-quickstart", "xoxb-bench")
# The bot scopes the app is installed with: exactly what the project calls needs (the
# README's list, "Running against real Slack"; tests/test_slack_scopes.py proves each one is
# needed and none is missing). Override with create_app(scopes=...) or SLACK_SANDBOX_SCOPES.
DEFAULT_SCOPES: tuple[str, ...] = (
    "chat:write",  # chat.postMessage, chat.update, chat.postEphemeral
    "reactions:write",  # reactions.add
    "reactions:read",  # the reaction_added event (claim by :raised_hand:, :stopwatch:)
    "pins:read",  # the pin_added event
    "channels:read",  # conversations.list (public channels): a channel's ID from its name
    "groups:read",  # conversations.list asks for private_channel too: without it Slack refuses the call
    "channels:history",  # conversations.history/replies in public channels
    "groups:history",  # ... in private channels
    "files:write",  # files.getUploadURLExternal, files.completeUploadExternal (long device output)
    "commands",  # the /incident slash command
    "im:write",  # conversations.open: a page's DM, looked in before a retried page is sent again
    "im:history",  # conversations.history in that DM
    "dnd:read",  # dnd.info: whether a person paged is in Do Not Disturb
    "channels:manage",  # a war room: conversations.create, setPurpose, invite, archive
    "pins:write",  # pins.add: the war room's summary
    "bookmarks:read",  # bookmarks.list: a retried war room is not bookmarked twice
    "bookmarks:write",  # bookmarks.add: the Temporal UI, the ticket, the runbook
    "users:read",  # users.info: who claimed, to find their account in the ticket system
    "users:read.email",  # ... by their email (users.info leaves profile.email out without it)
)
# A token with every scope the sandbox knows, for tests and people looking around (creating a
# channel, users.info): what the project itself may do is decided by DEFAULT_SCOPES, never by this.
ADMIN_TOKEN = "xoxb-sandbox-admin"
# Slack's bot-token scopes for each method (docs.slack.dev, "Scopes"), sent back in the
# `x-accepted-oauth-scopes` header. A method with one scope needs it; where there are several,
# the conversation's type picks the one needed (`_CONVERSATION_SCOPES`).
ACCEPTED_SCOPES: dict[str, tuple[str, ...]] = {
    "api.test": (),
    "auth.test": (),
    "chat.getPermalink": (),
    "views.open": (),
    "chat.postMessage": ("chat:write",),  # + chat:write.public in a public channel the bot is not in
    "chat.postEphemeral": ("chat:write",),
    "chat.update": ("chat:write",),
    "reactions.add": ("reactions:write",),
    "reactions.remove": ("reactions:write",),
    "reactions.get": ("reactions:read",),
    "conversations.create": ("channels:manage", "groups:write", "im:write", "mpim:write"),
    "conversations.join": ("channels:join",),
    "conversations.invite": (
        "channels:manage",
        "channels:write.invites",
        "groups:write",
        "groups:write.invites",
        "im:write",
        "mpim:write",
    ),
    "conversations.open": ("channels:manage", "groups:write", "im:write", "mpim:write"),
    "conversations.info": ("channels:read", "groups:read", "im:read", "mpim:read"),
    "conversations.members": ("channels:read", "groups:read", "im:read", "mpim:read"),
    "conversations.list": ("channels:read", "groups:read", "im:read", "mpim:read"),
    "conversations.setTopic": (
        "channels:manage",
        "channels:write.topic",
        "groups:write",
        "groups:write.topic",
        "im:write",
        "im:write.topic",
        "mpim:write",
        "mpim:write.topic",
    ),
    "conversations.history": ("channels:history", "groups:history", "im:history", "mpim:history"),
    "conversations.replies": ("channels:history", "groups:history", "im:history", "mpim:history"),
    "users.info": ("users:read",),
    "dnd.info": ("dnd:read",),
    "bookmarks.add": ("bookmarks:write",),
    "pins.add": ("pins:write",),
    "pins.list": ("pins:read",),
    "conversations.archive": ("channels:manage", "groups:write", "im:write", "mpim:write"),
    "bookmarks.list": ("bookmarks:read",),
    "files.getUploadURLExternal": ("files:write",),
    "files.completeUploadExternal": ("files:write",),
}
ACCEPTED_SCOPES["conversations.setPurpose"] = ACCEPTED_SCOPES["conversations.setTopic"]
# What a method needs for one kind of conversation (public `channels`, private `groups`, `im`,
# `mpim`): any one of the scopes listed; Slack's `needed` names the first.
_CONVERSATION_SCOPES: dict[str, dict[str, tuple[str, ...]]] = {
    "read": {k: (f"{k}:read",) for k in ("channels", "groups", "im", "mpim")},
    "history": {k: (f"{k}:history",) for k in ("channels", "groups", "im", "mpim")},
    "create": {"channels": ("channels:manage",), "groups": ("groups:write",)},
    "archive": {"channels": ("channels:manage",), "groups": ("groups:write",)},
    "open": {
        "channels": ("channels:manage",),
        "groups": ("groups:write",),
        "im": ("im:write",),
        "mpim": ("mpim:write",),
    },
    "invite": {
        "channels": ("channels:manage", "channels:write.invites"),
        "groups": ("groups:write", "groups:write.invites"),
        "im": ("im:write",),
        "mpim": ("mpim:write",),
    },
    "topic": {
        "channels": ("channels:manage", "channels:write.topic"),
        "groups": ("groups:write", "groups:write.topic"),
        "im": ("im:write", "im:write.topic"),
        "mpim": ("mpim:write", "mpim:write.topic"),
    },
}
EVERY_SCOPE: tuple[str, ...] = tuple(
    sorted(
        {s for scopes in ACCEPTED_SCOPES.values() for s in scopes}
        | {"chat:write.public", "commands", "users:read.email"}
    )
)
_LIST_TYPES = {"public_channel": "channels", "private_channel": "groups", "mpim": "mpim", "im": "im"}
# What the app must be granted for Slack to send it an event or a slash command at all.
EVENT_SCOPES: dict[str, str] = {"reaction_added": "reactions:read", "pin_added": "pins:read"}
COMMAND_SCOPE = "commands"


# ---------------------------------------------------------------------------
# tokens and scopes


def parse_scopes(value: Any) -> tuple[str, ...]:
    """'chat:write,reactions:write' (commas or spaces) or a list -> ('chat:write', 'reactions:write')."""
    if value is None:
        return ()
    items = re.split(r"[\s,]+", value) if isinstance(value, str) else [str(v) for v in value]
    out: list[str] = []
    for item in (i.strip() for i in items):
        if item and item not in out:
            out.append(item)
    return tuple(out)


def tokens_from_env() -> dict[str, tuple[str, ...] | None]:
    """The accepted tokens: SLACK_SANDBOX_TOKENS (comma-separated) or DEFAULT_TOKENS, and SLACK_BOT_TOKEN.

    Each gets the app's scopes (None). SLACK_BOT_TOKEN is accepted so that `incident dev`
    with a token of your own, but no SLACK_API_URL, still has a worker the sandbox lets in.
    ADMIN_TOKEN is accepted too, with EVERY_SCOPE.
    """
    listed = parse_scopes(os.environ.get("SLACK_SANDBOX_TOKENS") or "") or DEFAULT_TOKENS
    tokens: dict[str, tuple[str, ...] | None] = dict.fromkeys(listed)
    tokens.setdefault(ADMIN_TOKEN, EVERY_SCOPE)
    bot_token = (os.environ.get("SLACK_BOT_TOKEN") or "").strip()
    if bot_token:
        tokens.setdefault(bot_token, None)
    return tokens


def scopes_from_env() -> tuple[str, ...]:
    """The app's scopes: SLACK_SANDBOX_SCOPES (comma-separated) or DEFAULT_SCOPES."""
    return parse_scopes(os.environ.get("SLACK_SANDBOX_SCOPES") or "") or DEFAULT_SCOPES


def _mask(token: str) -> str:
    """A token as the control API shows it: enough to tell which, never the whole of a real one."""
    return token if len(token) <= 18 else token[:10] + "…" + token[-4:]


class Grant:
    """Who is calling: the token's scopes, and each scope requirement checked for this call."""

    def __init__(self, token: str, scopes: Iterable[str]) -> None:
        self.token = token
        self.scopes = tuple(scopes)
        self.checked: list[list[str]] = []  # each: the scopes any one of which satisfied a requirement

    def require(self, *alternatives: str) -> None:
        """Slack's `missing_scope` unless the token has one of `alternatives` (the first is `needed`)."""
        if not any(scope in self.scopes for scope in alternatives):
            raise SlackError("missing_scope", needed=alternatives[0], provided=",".join(self.scopes))
        self.checked.append(list(alternatives))


def conversation_kind(channel: dict[str, Any]) -> str:
    """`channels` (public), `groups` (private), `im` or `mpim`: the prefix of the scopes it needs."""
    if channel.get("is_im"):
        return "im"
    if channel.get("is_mpim"):
        return "mpim"
    return "groups" if channel.get("is_private") else "channels"


def bot_is_member(channel: dict[str, Any]) -> bool:
    return BOT_USER_ID in channel.get("members", [])
