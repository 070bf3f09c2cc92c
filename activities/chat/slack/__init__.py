"""Slack: the incident's messages, header, reactions and files through slack_sdk's AsyncWebClient.

- web_api.py: the calls, their idempotency keys, Slack's errors sorted into retry and give-up,
  and the declaration's blocks and buttons.
- pacing.py: posts to a channel Slack has rate-limited, queued most important first.

The names other code imports are re-exported here.
"""

from __future__ import annotations

from .web_api import CLAIM_ACTION as CLAIM_ACTION
from .web_api import METADATA_EVENT as METADATA_EVENT
from .web_api import RESOLVE_ACTION as RESOLVE_ACTION
from .web_api import ROLE_ACTION as ROLE_ACTION
from .web_api import UPDATE_ACTION as UPDATE_ACTION
from .web_api import SlackChat as SlackChat
