"""The readable page (``GET /``): the conversation as a person would see it in Slack.

Slack mrkdwn and Block Kit rendered to safe HTML (emoji, mentions, links,
code), each channel's messages with their threads, reactions, files and the
ephemeral messages only one person saw, and open modals as forms; rendered
with ``sandbox/templates/slack.html``. ``/archives/...`` permalinks lead to
the message on the page.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from .auth import bot_is_member
from .common import BOT_NAME, _str, _ts_micros
from .events import DEFAULT_ACTING_USER, DEFAULT_COMMAND
from .state import SlackSandbox
from .web_api import user_object

EMOJI = {
    "rotating_light": "\U0001f6a8",
    "raised_hand": "\u270b",
    "mag": "\U0001f50d",
    "wrench": "\U0001f527",
    "hourglass": "\u231b",
    "hourglass_flowing_sand": "\u23f3",
    "white_check_mark": "\u2705",
    "heavy_check_mark": "\u2714\ufe0f",
    "bookmark": "\U0001f516",
    "busts_in_silhouette": "\U0001f465",
    "arrow_up": "\u2b06\ufe0f",
    "arrow_down": "\u2b07\ufe0f",
    "alarm_clock": "\u23f0",
    "eyes": "\U0001f440",
    "fire": "\U0001f525",
    "warning": "\u26a0\ufe0f",
    "x": "\u274c",
    "red_circle": "\U0001f534",
    "large_orange_circle": "\U0001f7e0",
    "large_yellow_circle": "\U0001f7e1",
    "large_green_circle": "\U0001f7e2",
    "large_blue_circle": "\U0001f535",
    "memo": "\U0001f4dd",
    "pager": "\U0001f4df",
    "ticket": "\U0001f3ab",
    "+1": "\U0001f44d",
    "thumbsup": "\U0001f44d",
    "tada": "\U0001f389",
    "clipboard": "\U0001f4cb",
    "bell": "\U0001f514",
    "sos": "\U0001f198",
    "stopwatch": "\u23f1\ufe0f",
    "hammer_and_wrench": "\U0001f6e0\ufe0f",
    "speech_balloon": "\U0001f4ac",
    "link": "\U0001f517",
    "information_source": "\u2139\ufe0f",
    "rocket": "\U0001f680",
    "construction": "\U0001f6a7",
    "chart_with_upwards_trend": "\U0001f4c8",
    "point_right": "\U0001f449",
}
_EMOJI_RE = re.compile(":(" + "|".join(re.escape(k) for k in sorted(EMOJI, key=len, reverse=True)) + "):")
_CODE_BLOCK_RE = re.compile(r"```\n?(.*?)```", re.S)
_INLINE_CODE_RE = re.compile(r"`([^`\n]+)`")
_CONTROL_RE = re.compile(r"<([^<>\n]+)>")
_BOLD_RE = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]*?\S)\*(?![\w*])")
_ITALIC_RE = re.compile(r"(?<![\w_])_(?=\S)([^_\n]*?\S)_(?![\w_])")
_STRIKE_RE = re.compile(r"(?<![\w~])~(?=\S)([^~\n]*?\S)~(?![\w~])")


def emojize(name: str) -> str:
    return EMOJI.get(name, f":{name}:")


def _slack_unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def render_mrkdwn(text: str, channels: dict[str, dict[str, Any]] | None = None) -> Markup:
    """Slack mrkdwn -> safe HTML: *bold*, _italic_, ~strike~, `code`, ```blocks```,
    <links|label>, <@U…> and <#C…> mentions, > quotes, :emoji: and newlines."""
    channels = channels or {}
    stash: list[str] = []

    def keep(fragment: str) -> str:
        stash.append(fragment)
        return f"\x00{len(stash) - 1}\x00"

    def esc(raw: str) -> str:
        return html.escape(_slack_unescape(raw), quote=True)

    def control(m: re.Match[str]) -> str:
        inner = m.group(1)
        target, _, label = inner.partition("|")
        if target.startswith("@"):
            user = target[1:]
            return keep(f'<span class="mention">@{esc(label or user_object(user)["name"])}</span>')
        if target.startswith("#"):
            ch = channels.get(target[1:])
            return keep(f'<span class="mention">#{esc(label or (ch or {}).get("name", target[1:]))}</span>')
        if target.startswith("!"):
            word = target[1:].split("^")[0]
            return keep(f'<span class="mention">{esc(label or "@" + word)}</span>')
        url = _slack_unescape(target)
        if re.match(r"^(https?://|mailto:)", url):
            href = html.escape(url, quote=True)
            return keep(f'<a href="{href}" target="_blank" rel="noopener">{esc(label or target)}</a>')
        return m.group(0)  # not a control sequence: leave for escaping

    text = text.replace("\x00", "")
    text = _CODE_BLOCK_RE.sub(lambda m: keep(f"<pre>{esc(m.group(1))}</pre>"), text)
    text = _INLINE_CODE_RE.sub(lambda m: keep(f"<code>{esc(m.group(1))}</code>"), text)
    text = _CONTROL_RE.sub(control, text)
    lines = []
    for line in text.split("\n"):
        quote = False
        if line.startswith("&gt;") or line.startswith(">"):
            quote = True
            line = re.sub(r"^(&gt;|>) ?", "", line)
        line = esc(line)
        line = _BOLD_RE.sub(r"<b>\1</b>", line)
        line = _ITALIC_RE.sub(r"<i>\1</i>", line)
        line = _STRIKE_RE.sub(r"<s>\1</s>", line)
        line = _EMOJI_RE.sub(lambda m: EMOJI[m.group(1)], line)
        lines.append(f'<span class="quote">{line}</span>' if quote else line)
    out = "<br>".join(lines)
    out = re.sub("\x00(\\d+)\x00", lambda m: stash[int(m.group(1))], out)
    return Markup(out)


def _text_obj(obj: Any, channels: dict[str, dict[str, Any]]) -> Markup:
    if not isinstance(obj, dict):
        return Markup("")
    text = _str(obj.get("text"))
    if obj.get("type") == "mrkdwn":
        return render_mrkdwn(text, channels)
    rendered = html.escape(text).replace("\n", "<br>")
    if obj.get("emoji", True):
        rendered = _EMOJI_RE.sub(lambda m: EMOJI[m.group(1)], rendered)
    return Markup(rendered)


def _element_html(el: Any, channels: dict[str, dict[str, Any]]) -> str:
    if not isinstance(el, dict):
        return ""
    kind = el.get("type")
    if kind == "button":
        # Clickable: the page's script sends it to /_sandbox/act/button as the person in "Acting as".
        style = html.escape(_str(el.get("style")))
        action_id = html.escape(_str(el.get("action_id")), quote=True)
        return (
            f'<button type="button" class="btn {style}" data-act="button" data-action-id="{action_id}">'
            f"{_text_obj(el.get('text'), channels)}</button>"
        )
    if kind == "image":
        return f'<span class="muted">[{html.escape(_str(el.get("alt_text")))}]</span>'
    if kind in ("mrkdwn", "plain_text"):
        return str(_text_obj(el, channels))
    if kind and kind.endswith("select"):
        placeholder = _text_obj(el.get("placeholder"), channels) or html.escape(kind)
        return f'<span class="btn">{placeholder} &#9662;</span>'
    return f'<span class="muted">[{html.escape(_str(kind))}]</span>'


def render_blocks(blocks: list[dict[str, Any]], fallback: str, channels: dict[str, dict[str, Any]]) -> Markup:
    parts: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            parts.append(f'<div class="b-header">{_text_obj(block.get("text"), channels)}</div>')
        elif kind == "section":
            inner = f"<div>{_text_obj(block.get('text'), channels)}</div>" if block.get("text") else ""
            if block.get("fields"):
                cells = "".join(f"<div>{_text_obj(f, channels)}</div>" for f in block["fields"])
                inner += f'<div class="b-fields">{cells}</div>'
            if block.get("accessory"):
                inner += f'<div class="b-accessory">{_element_html(block["accessory"], channels)}</div>'
            parts.append(f'<div class="b-section">{inner}</div>')
        elif kind == "divider":
            parts.append("<hr>")
        elif kind == "context":
            items = " ".join(_element_html(e, channels) for e in block.get("elements", []))
            parts.append(f'<div class="b-context">{items}</div>')
        elif kind == "actions":
            items = " ".join(_element_html(e, channels) for e in block.get("elements", []))
            parts.append(f'<div class="b-actions">{items}</div>')
        elif kind == "image":
            parts.append(f'<div class="muted">[image: {html.escape(_str(block.get("alt_text")))}]</div>')
        elif kind == "markdown":
            parts.append(f"<div>{render_mrkdwn(_str(block.get('text')), channels)}</div>")
        elif kind == "rich_text":
            parts.append(f"<div>{render_mrkdwn(fallback, channels)}</div>")
        else:
            parts.append(f'<div class="muted">[{html.escape(_str(kind))} block]</div>')
    return Markup("".join(parts))


def _hms(ts: str) -> str:
    return datetime.fromtimestamp(_ts_micros(ts) / 1e6, tz=UTC).strftime("%H:%M:%S")


def _message_view(sb: SlackSandbox, cid: str, msg: dict[str, Any]) -> dict[str, Any]:
    user = msg.get("user", "")
    author = msg.get("username") or (user_object(user)["name"] if user else "?")
    body = (
        render_blocks(msg["blocks"], msg.get("text", ""), sb.channels)
        if msg.get("blocks")
        else render_mrkdwn(msg.get("text", ""), sb.channels)
    )
    replies = [
        _message_view(sb, cid, sb.messages[cid][ts])
        for ts in sb.replies.get((cid, msg["ts"]), [])
        if msg.get("thread_ts") in (None, msg["ts"])
    ]
    return {
        "ts": msg["ts"],
        "channel": cid,
        "anchor": "m" + msg["ts"].replace(".", ""),
        "author": author,
        "is_bot": "bot_id" in msg,
        "pinned": cid in msg.get("pinned_to", []),
        "ephemeral_for": None,
        "time": _hms(msg["ts"]),
        "edited": "edited" in msg,
        "broadcast": msg.get("subtype") == "thread_broadcast",
        "event_type": (msg.get("metadata") or {}).get("event_type"),
        "body": body,
        "files": msg.get("files", []),
        "reactions": [
            {"emoji": emojize(r["name"]), "name": r["name"], "count": r["count"]}
            for r in msg.get("reactions", [])
        ],
        "replies": replies,
    }


def _ephemeral_view(sb: SlackSandbox, msg: dict[str, Any]) -> dict[str, Any]:
    body = (
        render_blocks(msg["blocks"], msg.get("text", ""), sb.channels)
        if msg.get("blocks")
        else render_mrkdwn(msg.get("text", ""), sb.channels)
    )
    return {
        "ts": msg["ts"],
        "channel": msg["channel"],
        "anchor": "e" + msg["ts"].replace(".", ""),
        "author": BOT_NAME,
        "is_bot": True,
        "pinned": False,
        "ephemeral_for": user_object(msg["for_user"])["name"],
        "time": _hms(msg["ts"]),
        "edited": False,
        "broadcast": False,
        "event_type": None,
        "body": body,
        "files": [],
        "reactions": [],
        "replies": [],
    }


def _channel_view_for_page(sb: SlackSandbox, channel: dict[str, Any]) -> dict[str, Any]:
    cid = channel["id"]
    msgs = [m for m in sb.messages.get(cid, {}).values() if m.get("thread_ts") in (None, m["ts"])]
    title = f"@{channel['user']}" if channel.get("is_im") else _channel_title(channel)
    views = [_message_view(sb, cid, m) for m in msgs]
    # Ephemeral messages and response_url answers, where the person saw them ("only visible to you").
    by_ts = {v["ts"]: v for v in views}
    for msg in sb.ephemeral:
        if msg["channel"] != cid:
            continue
        parent = by_ts.get(msg.get("thread_ts") or "")
        if parent is not None:
            parent["replies"].append(_ephemeral_view(sb, msg))
            parent["replies"].sort(key=lambda r: _ts_micros(r["ts"]))
        else:
            views.append(_ephemeral_view(sb, msg))
    views.sort(key=lambda v: _ts_micros(v["ts"]))
    return {
        "id": cid,
        "name": channel["name"],
        "title": title,
        "topic": (channel.get("topic") or {}).get("value", ""),
        "bookmarks": sb.bookmarks.get(cid, []),
        "messages": views,
        "count": len(msgs),
    }


def _channel_title(channel: dict[str, Any]) -> str:
    """#name, and what the bot's access to it is when that is not the usual (public, invited)."""
    notes = (["private"] if channel.get("is_private") else []) + (
        [] if bot_is_member(channel) else ["bot not in channel"]
    )
    return f"#{channel['name']}" + (f" ({', '.join(notes)})" if notes else "")


def _modal_for_page(view: dict[str, Any], channels: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """An open modal as a plain HTML form: one field per input block."""
    fields = []
    texts = []
    for block in view.get("blocks", []):
        element = block.get("element") or {}
        if block.get("type") != "input":
            if block.get("type") in ("section", "context", "header"):
                texts.append(render_blocks([block], "", channels))
            continue
        kind = element.get("type")
        options = [
            {"value": o.get("value"), "label": _str((o.get("text") or {}).get("text"))}
            for o in (element.get("options") or [])
        ]
        initial = element.get("initial_value") or (element.get("initial_option") or {}).get("value") or ""
        fields.append(
            {
                "name": block["block_id"],
                "label": _str((block.get("label") or {}).get("text")),
                "optional": bool(block.get("optional")),
                "kind": "select" if options else ("textarea" if element.get("multiline") else "text"),
                "input_type": kind,
                "options": options,
                "initial": initial,
                "placeholder": _str((element.get("placeholder") or {}).get("text")),
                "error": view.get("errors", {}).get(block["block_id"], ""),
            }
        )
    return {
        "id": view["id"],
        "user": view["user"],
        "user_name": user_object(view["user"])["name"],
        "title": _str((view.get("title") or {}).get("text")),
        "submit": _str((view.get("submit") or {}).get("text")) or "Submit",
        "close": _str((view.get("close") or {}).get("text")) or "Cancel",
        "texts": texts,
        "fields": fields,
    }


_templates = Environment(
    loader=FileSystemLoader(str(Path(__file__).parent.parent / "templates")),  # sandbox/templates
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


async def index_page(request: Request) -> Response:
    sb: SlackSandbox = request.app.state.sandbox
    wanted = request.query_params.get("channel")
    all_channels = list(sb.channels.values())
    if wanted:
        key = wanted.lstrip("#")
        shown = [c for c in all_channels if key in (c["id"], c["name"])][:1]
        if not shown:
            return HTMLResponse(f"<h1>No channel {html.escape(wanted)}</h1>", status_code=404)
    else:
        shown = all_channels
    page = _templates.get_template("slack.html").render(
        nav=[
            {"name": c["name"], "title": _channel_title(c) if not c.get("is_im") else c["name"]}
            for c in all_channels
        ],
        channels=[_channel_view_for_page(sb, c) for c in shown],
        selected=wanted,
        refresh=request.query_params.get("refresh", "3"),
        modals=[_modal_for_page(v, sb.channels) for v in sb.views.values() if v["status"] == "open"],
        request_url=sb.request_url,
        default_user=DEFAULT_ACTING_USER,
        command=DEFAULT_COMMAND,
    )
    return HTMLResponse(page)


async def permalink_page(request: Request) -> Response:
    sb: SlackSandbox = request.app.state.sandbox
    channel = sb.channels.get(request.path_params["channel"])
    if channel is None:
        return HTMLResponse("<h1>No such channel</h1>", status_code=404)
    return RedirectResponse(f"/?channel={channel['name']}#m{request.path_params['digits']}")
