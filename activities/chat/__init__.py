"""The incident's conversation: its declaration, thread, reactions and files.

- backend.py: ChatBackend, what a chat tool must do (the interface).
- activities.py: ChatActivities, the activities the workflows call by name, over one backend.
- slack/: Slack through slack_sdk (SlackChat), the backend there is.

Another chat tool is a package beside slack/ and an entry in activities/backends.py.
"""

from __future__ import annotations

from .activities import ChatActivities as ChatActivities
from .backend import ChatBackend as ChatBackend
