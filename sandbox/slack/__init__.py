"""A local stand-in for the Slack Web API.

A Starlette app that answers the Slack Web API methods this project uses, in
Slack's own shapes, so that the real ``slack_sdk`` ``AsyncWebClient`` works
against it unchanged::

    client = AsyncWebClient(token="xoxb-sandbox-token", base_url="http://127.0.0.1:8901/api/")

Run it with ``python -m sandbox.slack --port 8901 --state .data/slack-sandbox.json``.
``GET /`` shows the conversation as a person would read it in Slack; the
``/_sandbox/...`` endpoints (plain JSON, not Slack-shaped) inject faults,
change the rate limit, set Do Not Disturb, dump and reset the state.

Who may call, as in Slack: the sandbox knows the bot tokens it accepts
(DEFAULT_TOKENS, or ``SLACK_SANDBOX_TOKENS``; ``SLACK_BOT_TOKEN`` too): no token
is ``not_authed``, another ``invalid_auth``, a revoked one ``token_revoked``.
The app is installed with bot scopes (DEFAULT_SCOPES, the README's list, or
``SLACK_SANDBOX_SCOPES``; a token may have its own): a method called without
its scope answers ``missing_scope`` with ``needed`` and ``provided``, and every
answer carries ``x-oauth-scopes`` / ``x-accepted-oauth-scopes``. The bot is in
the default channels (as if invited) and in those it creates; a channel made
without it (``POST /_sandbox/channels {"name", "member": false}``) gives
``not_in_channel`` to history, replies, reactions, ephemeral messages and file
shares, and to posts unless the app has ``chat:write.public``; a private
channel the bot is not in is ``channel_not_found``. Events reach the app only
with their scope (``reaction_added``: reactions:read, ``pin_added``:
pins:read) from channels the bot is in, and slash commands only with
``commands``. ``/_sandbox/calls`` lists, for each call, the scopes it was
checked for; ``/_sandbox/tokens`` and ``/_sandbox/channels`` change the grants
and the membership.

Channel arguments: ``chat.postMessage`` (and ``chat.postEphemeral``) accept a
channel ID, a name with or without ``#``, or a user ID (a DM); every other
method wants the channel ID, as Slack does.

Acting as Slack toward an app: with a request URL (``--request-url`` /
``SLACK_REQUEST_URL``, or ``POST /_sandbox/config``) and the app's signing
secret (``--signing-secret`` / ``SLACK_SIGNING_SECRET``), the
``/_sandbox/act/...`` endpoints play a person: they change the state as the
person's click would (a reaction, a pin) and deliver what Slack would send
the app - an Events API ``event_callback`` as JSON, ``block_actions`` and
``view_submission`` as a form with ``payload=<json>``, a slash command as a
form - signed with ``X-Slack-Signature`` v0 and ``X-Slack-Request-Timestamp``.
Each answers with what the app answered (``status``, ``body``). Ephemeral
messages and ``response_url`` posts are kept per user (``/_sandbox/state``
and the page), and ``views.open`` stores the modal for ``act/submit``.

The package, part by part: ``common`` (the workspace's identity, SlackError,
IDs, timestamps, argument parsing), ``auth`` (tokens, scopes, membership),
``blocks`` (Block Kit and modal checks), ``state`` (SlackSandbox: the state,
its file, faults, rate limits, delivery), ``web_api`` (the methods and
``/api/{method}``), ``faults`` and ``control`` (the ``/_sandbox/...``
control API), ``events`` (acting as Slack toward the app), ``page`` (``GET
/``), ``app`` (create_app, serving, the command line) and ``__main__``.
"""

from __future__ import annotations

from .app import create_app, main, run_sandbox, serve_in_background
from .auth import (
    ACCEPTED_SCOPES,
    ADMIN_TOKEN,
    COMMAND_SCOPE,
    DEFAULT_SCOPES,
    DEFAULT_TOKENS,
    EVENT_SCOPES,
    EVERY_SCOPE,
    Grant,
    bot_is_member,
    conversation_kind,
    parse_scopes,
    scopes_from_env,
    tokens_from_env,
)
from .blocks import view_state_values
from .common import (
    APP_ID,
    BOT_ID,
    BOT_NAME,
    BOT_USER_ID,
    DEFAULT_CHANNELS,
    DEFAULT_PORT,
    MAX_TEXT,
    RATE_LIMITED_METHODS,
    TEAM_ID,
    TEAM_NAME,
    SlackError,
    channel_id_for,
    dm_channel_id_for,
)
from .events import (
    DEFAULT_ACTING_USER,
    DEFAULT_COMMAND,
    RESPONSE_URL_TTL,
    RESPONSE_URL_USES,
    VERIFICATION_TOKEN,
)
from .page import EMOJI, emojize, render_blocks, render_mrkdwn
from .state import (
    CALL_LOG_SIZE,
    DELIVERY_LOG_SIZE,
    DELIVERY_TIMEOUT,
    STATE_VERSION,
    TRIGGER_TTL,
    WRITE_INTERVAL,
    SlackSandbox,
)
from .web_api import MAX_UPLOAD, METHODS, Handler, method, public_view, user_object

__all__ = [
    "ACCEPTED_SCOPES",
    "ADMIN_TOKEN",
    "APP_ID",
    "BOT_ID",
    "bot_is_member",
    "BOT_NAME",
    "BOT_USER_ID",
    "CALL_LOG_SIZE",
    "channel_id_for",
    "COMMAND_SCOPE",
    "conversation_kind",
    "create_app",
    "DEFAULT_ACTING_USER",
    "DEFAULT_CHANNELS",
    "DEFAULT_COMMAND",
    "DEFAULT_PORT",
    "DEFAULT_SCOPES",
    "DEFAULT_TOKENS",
    "DELIVERY_LOG_SIZE",
    "DELIVERY_TIMEOUT",
    "dm_channel_id_for",
    "EMOJI",
    "emojize",
    "EVENT_SCOPES",
    "EVERY_SCOPE",
    "Grant",
    "Handler",
    "main",
    "MAX_TEXT",
    "MAX_UPLOAD",
    "method",
    "METHODS",
    "parse_scopes",
    "public_view",
    "RATE_LIMITED_METHODS",
    "render_blocks",
    "render_mrkdwn",
    "RESPONSE_URL_TTL",
    "RESPONSE_URL_USES",
    "run_sandbox",
    "scopes_from_env",
    "serve_in_background",
    "SlackError",
    "SlackSandbox",
    "STATE_VERSION",
    "TEAM_ID",
    "TEAM_NAME",
    "tokens_from_env",
    "TRIGGER_TTL",
    "user_object",
    "VERIFICATION_TOKEN",
    "view_state_values",
    "WRITE_INTERVAL",
]
