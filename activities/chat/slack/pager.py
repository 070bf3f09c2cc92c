"""Slack as a paging service: a direct message to the person paged, and their Do Not Disturb.

The DM carries the incident's summary, why this person is paged, and Claim / Acknowledge
buttons (the Slack handler takes both). It is idempotent like every post (message metadata
with the page's idempotency key, looked for in the DM before a retry posts). Slack's API has no
way for a bot to break through a person's Do Not Disturb: a P1 page to someone in DND is still
sent (it waits in Slack) and the incident pages the same person through the paging services
the policy names, which ring through DND.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import activity

from activities.rendering import mrkdwn_escape
from workflows.paging_models import DndStatus, Page, PageDelivered, PagingService, PagingUpdate

from .web_api import CLAIM_ACTION, METADATA_EVENT, SlackChat

ACKNOWLEDGE_ACTION = "incident_acknowledge"
WORKSPACE_TIMEOUT = 1.0  # seconds for auth.test, asked once for the pages' thread links
WORKSPACE_RETRY = 60.0  # after a failed auth.test, pages link the Temporal UI this long


class SlackPager:
    """PagingBackend for Slack DMs, over the chat backend's client (activities/paging/backend.py)."""

    service = PagingService.slack

    def __init__(self, chat: SlackChat) -> None:
        self._chat = chat
        self._workspace: str | None = None  # https://<team>.slack.com/, from auth.test once
        self._workspace_failed_at = 0.0

    async def thread_link(self, channel: str, ts: str) -> str | None:
        """The thread's permalink, built as Slack builds it (workspace URL + archives/C/p<ts>), so
        a page costs no Slack call but the first (auth.test, cached); None when Slack cannot say
        (then the page links the Temporal UI: a page never waits on Slack for its link)."""
        if self._workspace is None:
            if time.monotonic() - self._workspace_failed_at < WORKSPACE_RETRY:
                return None
            try:
                answer = await asyncio.wait_for(self._chat._client.auth_test(), WORKSPACE_TIMEOUT)
                self._workspace = str(answer["url"])
            except Exception as exc:  # noqa: BLE001 - Slack down: the Temporal UI link instead
                self._workspace_failed_at = time.monotonic()
                activity.logger.warning("no Slack workspace URL for the page's link: %s", exc)
                return None
        base = self._workspace if self._workspace.endswith("/") else self._workspace + "/"
        return f"{base}archives/{channel}/p{ts.replace('.', '')}"

    async def page(self, page: Page) -> PageDelivered:
        client = self._chat._client
        if activity.info().attempt > 1:
            found = await self._find(page)
            if found is not None:
                return found
        text = page_text(page)
        response = await self._chat._call(
            client.chat_postMessage,
            channel=page.person.user_id,  # Slack opens the bot's DM with the person
            text=text,
            blocks=page_blocks(text, page),
            metadata={"event_type": METADATA_EVENT, "event_payload": {"key": page.idempotency_key}},
            unfurl_links=False,
        )
        return PageDelivered(
            service=self.service,
            reference=f"{response['channel']}:{response['ts']}",
            delivered_at=datetime.now(UTC),
        )

    async def update(self, update: PagingUpdate) -> None:
        """Nothing to do: the thread says it, and the DM's buttons answer that it is acknowledged."""

    async def do_not_disturb(self, user_id: str) -> DndStatus:
        response = await self._chat._call(self._chat._client.dnd_info, user=user_id)
        now = datetime.now(UTC).timestamp()
        snooze = bool(response.get("snooze_enabled")) and float(response.get("snooze_endtime") or 0) > now
        start, end = (
            float(response.get("next_dnd_start_ts") or 0),
            float(response.get("next_dnd_end_ts") or 0),
        )
        scheduled = bool(response.get("dnd_enabled")) and start <= now < end
        until = None
        if snooze:
            until = datetime.fromtimestamp(float(response["snooze_endtime"]), UTC)
        elif scheduled:
            until = datetime.fromtimestamp(end, UTC)
        return DndStatus(user_id=user_id, snoozed=snooze or scheduled, until=until)

    async def aclose(self) -> None:
        """The chat backend owns the client."""

    async def _find(self, page: Page) -> PageDelivered | None:
        client = self._chat._client
        opened = await self._chat._call(client.conversations_open, users=page.person.user_id)
        channel = opened["channel"]["id"]
        since = activity.info().scheduled_time - timedelta(minutes=5)
        async for message in self._chat._pages(
            client.conversations_history, channel=channel, oldest=f"{since.timestamp():.6f}"
        ):
            meta = message.get("metadata") or {}
            if (meta.get("event_payload") or {}).get("key") == page.idempotency_key:
                return PageDelivered(
                    service=self.service, reference=f"{channel}:{message['ts']}", duplicate=True
                )
        return None


def page_text(page: Page) -> str:
    title = mrkdwn_escape(page.title)
    why = mrkdwn_escape(page.reason)
    lines = [
        f":rotating_light: *You are paged: {page.severity.value} {title}*",
        f"Incident `{page.incident_key}` · {why}",
    ]
    if page.summary and page.summary != f"{page.severity.value} · {page.title}":
        lines.append(mrkdwn_escape(page.summary))
    if page.link:
        lines.append(f"<{page.link}|Open the incident's thread>")
    lines.append("_Acknowledge to stop the paging, or claim to take IC._")
    return "\n".join(lines)


def page_blocks(text: str, page: Page) -> list[dict[str, Any]]:
    buttons = [(ACKNOWLEDGE_ACTION, "Acknowledge", "primary"), (CLAIM_ACTION, "Claim (take IC)", None)]
    elements: list[dict[str, Any]] = []
    for action_id, label, style in buttons:
        button: dict[str, Any] = {
            "type": "button",
            "action_id": action_id,
            "text": {"type": "plain_text", "text": label},
            "value": page.incident_workflow_id,
        }
        if style:
            button["style"] = style
        elements.append(button)
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {"type": "actions", "block_id": "page_actions", "elements": elements},
    ]
