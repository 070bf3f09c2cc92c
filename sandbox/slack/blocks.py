"""Block Kit as Slack checks it: message blocks, metadata and modals.

The checks Slack makes on ``blocks`` (``invalid_blocks``), on message
``metadata`` and on a modal's view (``views.open``), and ``view_state_values``:
what a person's submission of a modal reports in ``view.state.values``.
"""

from __future__ import annotations

import copy
import secrets
from typing import Any

from .common import SlackError, _json_arg, _str


def _validate_blocks(blocks: Any) -> list[dict[str, Any]]:
    """The checks Slack makes that our templates could trip over (sizes, shapes)."""
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        raise SlackError("invalid_blocks", errors=["blocks must be an array of objects"])
    if len(blocks) > 50:
        raise SlackError("invalid_blocks", errors=["no more than 50 items allowed [json-pointer:/blocks]"])
    errors: list[str] = []
    known = {
        "section",
        "header",
        "divider",
        "context",
        "actions",
        "image",
        "rich_text",
        "input",
        "file",
        "video",
        "markdown",
        "context_actions",
    }

    def text_len(obj: Any) -> int:
        return len(obj.get("text", "")) if isinstance(obj, dict) else 0

    for i, block in enumerate(blocks):
        kind = block.get("type")
        where = f"[json-pointer:/blocks/{i}]"
        if kind not in known:
            errors.append(f"unsupported type: {kind!r} {where}")
            continue
        if kind == "section":
            if "text" not in block and "fields" not in block:
                errors.append(f"must provide either text or fields {where}")
            if text_len(block.get("text")) > 3000:
                errors.append(f"must be less than 3001 characters [json-pointer:/blocks/{i}/text/text]")
            fields = block.get("fields") or []
            if len(fields) > 10:
                errors.append(f"must be less than 11 items [json-pointer:/blocks/{i}/fields]")
            for j, field in enumerate(fields):
                if text_len(field) > 2000:
                    errors.append(
                        f"must be less than 2001 characters [json-pointer:/blocks/{i}/fields/{j}/text]"
                    )
        elif kind == "header":
            text = block.get("text")
            if not isinstance(text, dict) or text.get("type") != "plain_text":
                errors.append(f"must be a plain_text object [json-pointer:/blocks/{i}/text]")
            elif text_len(text) > 150:
                errors.append(f"must be less than 151 characters [json-pointer:/blocks/{i}/text/text]")
        elif kind == "context":
            if len(block.get("elements") or []) > 10:
                errors.append(f"must be less than 11 items [json-pointer:/blocks/{i}/elements]")
        elif kind == "actions":
            if len(block.get("elements") or []) > 25:
                errors.append(f"must be less than 26 items [json-pointer:/blocks/{i}/elements]")
    if errors:
        raise SlackError("invalid_blocks", errors=errors)
    return blocks


def _validate_metadata(metadata: Any) -> dict[str, Any] | None:
    if metadata is None:
        return None
    if (
        not isinstance(metadata, dict)
        or not isinstance(metadata.get("event_type"), str)
        or not metadata["event_type"]
        or not isinstance(metadata.get("event_payload", {}), dict)
    ):
        raise SlackError("invalid_metadata_format")
    return {"event_type": metadata["event_type"], "event_payload": metadata.get("event_payload", {})}


def _plain_text(obj: Any, limit: int) -> bool:
    return (
        isinstance(obj, dict) and obj.get("type") == "plain_text" and 0 < len(_str(obj.get("text"))) <= limit
    )


def _validate_view(view: Any) -> dict[str, Any]:
    """The checks Slack makes on a modal, and its defaults: every block and element gets an id."""
    view = _json_arg(view, "invalid_arguments")
    errors: list[str] = []
    if not isinstance(view, dict):
        raise SlackError("invalid_arguments", response_metadata={"messages": ["[ERROR] view is required"]})
    if view.get("type") != "modal":
        errors.append("[ERROR] must be 'modal' [json-pointer:/view/type]")
    if not _plain_text(view.get("title"), 24):
        errors.append(
            "[ERROR] must be a plain_text object of at most 24 characters [json-pointer:/view/title]"
        )
    blocks = view.get("blocks")
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        errors.append("[ERROR] must be an array of blocks [json-pointer:/view/blocks]")
        blocks = []
    elif len(blocks) > 100:
        errors.append("[ERROR] no more than 100 items allowed [json-pointer:/view/blocks]")
    has_input = any(b.get("type") == "input" for b in blocks)
    if has_input and not _plain_text(view.get("submit"), 24):
        errors.append("[ERROR] submit is required when an input block is within the blocks array")
    if len(_str(view.get("private_metadata"))) > 3000:
        errors.append("[ERROR] must be at most 3000 characters [json-pointer:/view/private_metadata]")
    if len(_str(view.get("callback_id"))) > 255:
        errors.append("[ERROR] must be at most 255 characters [json-pointer:/view/callback_id]")
    for i, block in enumerate(blocks):
        if block.get("type") == "input":
            if not _plain_text(block.get("label"), 2000):
                errors.append(f"[ERROR] a label is required [json-pointer:/view/blocks/{i}/label]")
            if not isinstance(block.get("element"), dict):
                errors.append(f"[ERROR] an element is required [json-pointer:/view/blocks/{i}/element]")
    if errors:
        raise SlackError("invalid_arguments", response_metadata={"messages": errors})
    view = copy.deepcopy(view)
    for block in view["blocks"]:
        block.setdefault("block_id", secrets.token_urlsafe(4))
        element = block.get("element")
        if isinstance(element, dict):
            element.setdefault("action_id", secrets.token_urlsafe(4))
    return view


def _find_option(element: dict[str, Any], value: Any) -> dict[str, Any] | None:
    options = list(element.get("options") or [])
    for group in element.get("option_groups") or []:
        options.extend(group.get("options") or [])
    for option in options:
        if option.get("value") == value:
            return option
    return None


def view_state_values(view: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """What a person typed or chose, as Slack reports it in `view.state.values`.

    `values` is keyed by block_id or by the element's action_id; a select takes
    an option's value. SlackError("invalid_submission") names what Slack's own
    form would not have let through (a required field left empty, a choice
    that is not an option, a field the modal does not have).
    """
    out: dict[str, Any] = {}
    problems: list[str] = []
    used: set[str] = set()
    for block in view.get("blocks", []):
        element = block.get("element")
        if block.get("type") != "input" or not isinstance(element, dict):
            continue
        block_id, action_id, kind = block["block_id"], element["action_id"], element.get("type")
        key = block_id if block_id in values else action_id
        given = values.get(key)
        used.add(key)
        if isinstance(given, str):
            given = given.strip() or None
        if given in (None, [], "") and not block.get("optional"):
            problems.append(f"{block_id}: this field is required")
            continue
        entry: dict[str, Any] = {"type": kind}
        if kind in ("static_select", "radio_buttons"):
            option = _find_option(element, given) if given is not None else None
            if given is not None and option is None:
                problems.append(f"{block_id}: {given!r} is not one of the options")
            entry["selected_option"] = option
        elif kind in ("multi_static_select", "checkboxes"):
            chosen = given if isinstance(given, list) else ([given] if given is not None else [])
            options = [_find_option(element, v) for v in chosen]
            if any(o is None for o in options):
                problems.append(f"{block_id}: {chosen!r} are not all options")
            entry["selected_options"] = [o for o in options if o is not None]
        elif kind == "datepicker":
            entry["selected_date"] = given
        elif kind == "users_select":
            entry["selected_user"] = given
        elif kind == "conversations_select" or kind == "channels_select":
            entry["selected_conversation" if kind == "conversations_select" else "selected_channel"] = given
        else:
            entry["value"] = None if given is None else _str(given)
        out[block_id] = {action_id: entry}
    unknown = sorted(set(values) - used)
    if unknown:
        problems.append(f"the modal has no field {', '.join(unknown)}")
    if problems:
        raise SlackError("invalid_submission", errors=problems)
    return out
