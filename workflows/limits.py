"""Input limits: what the edges (alert receivers, Slack handler, CLI) accept, and why.

Every limit here is enforced where input enters (over it: 413 for a body,
422 naming the field and the limit), so nothing accepted can make a workflow
task fail later. They are chosen from the limits of the systems behind us:

- Temporal: a payload (workflow input, signal) is at most 2 MiB, a gRPC
  message 4 MiB, a Keyword search attribute 2,048 bytes;
- Slack: a section block holds 3,000 characters, a message 40,000.

A text within its limit can still be too long for one Slack block (a
3,000-character symptom in a header with ten others): the templates shorten
it with an ellipsis and say where the full text is (the timeline, the
ticket), so the header always shows the IC, the phase, the ticket and how to
claim.

Pure constants and small helpers: imported by workflows/, activities/ and starter/.
"""

from __future__ import annotations

import re

KIB = 1024
MIB = 1024 * KIB

# An HTTP request to the alert receivers or the Slack handler (413 over it).
# Temporal's own limit is 2 MiB per payload; one alert group's JSON under 1 MiB
# leaves room for the workflow's input and the batch signal beside it.
MAX_BODY_BYTES = 1 * MIB
# Alerts in one Alertmanager/Grafana group (Alertmanager: `max_alerts` in the webhook config).
MAX_ALERTS_PER_REQUEST = 1000
# One signal of alerts to an incident stays under this many bytes of JSON; a larger
# batch (a storm gathered for one key) goes as several signals, in order.
MAX_SIGNAL_BYTES = 256 * KIB

MAX_KEY = 200  # an incident key (workflow id incident-<key>)
MAX_TITLE = 200  # an incident's title: one line
# A symptom, an impact, an annotation (summary, description), an update's message,
# a resolution, a root cause: one Slack section.
MAX_TEXT = 3000
MAX_ITEMS = 25  # symptoms, impacts, links or devices in one declaration
# The affected service: a Keyword search attribute (2,048 bytes), so at most
# 200 characters (800 bytes even in 4-byte UTF-8).
MAX_SERVICE = 200
MAX_DEVICE_NAME = 255  # a device name, as in a pyATS testbed (a host name: 253 at most)
MAX_LINK = 2000  # a URL (a link, a runbook)
MAX_LABELS = 64  # labels (or annotations) on one alert
MAX_LABEL_NAME = 128
MAX_LABEL_VALUE = 1024
MAX_USER = 100  # who did something: a Slack user id, a login name
MAX_FINGERPRINT = 64  # an alert's identity inside its incident; longer ones are hashed to fit

# What a Slack header shows of long text: each symptom or impact at most this
# many characters, and at most this many of them (the rest: "and N more").
HEADER_ITEM_CHARS = 300
HEADER_ITEMS = 8
# What the workflow keeps of an alert's label (its name and summary) per firing alert.
KEPT_ALERT_LABEL = 200
# Alerts of one incident listed one by one in its timeline and tracked for clearing;
# past these, they are counted (alerts_received) but not listed, so the incident's
# state stays far under Temporal's 2 MiB however long a storm lasts.
TIMELINE_ALERTS = 500
TRACKED_ALERTS = 1000


def shorten(text: str, limit: int, marker: str = "…") -> str:
    """`text` cut to at most `limit` characters, ending with `marker` when cut."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(marker))] + marker


def http_url_problem(url: str) -> str | None:
    """Why `url` cannot be a link people click (a runbook): None when it is an http(s) URL."""
    if len(url) > MAX_LINK:
        return f"{len(url):,} characters; a URL is at most {MAX_LINK:,}"
    scheme, _, rest = url.partition("://")
    if scheme.lower() not in ("http", "https") or not rest or rest[0] in "/?#":
        return "not an http(s) URL (want https://...)"
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return "a URL cannot hold spaces or control characters (percent-encode them)"
    return None


# Per field of a declaration or a command, by its name: what `over_limits` checks.
FIELD_LIMITS = {
    "key": MAX_KEY,
    "title": MAX_TITLE,
    "service": MAX_SERVICE,
    "reporter": MAX_USER,
    "user": MAX_USER,
    "message": MAX_TEXT,
    "resolution": MAX_TEXT,
    "root_cause": MAX_TEXT,
    "notes": MAX_TEXT,
    "reason": MAX_TEXT,
    "text": MAX_TEXT,
    "eta": MAX_TITLE,
    "status": MAX_TITLE,
    "severity": MAX_TITLE,
    "runbook": MAX_LINK,
}
LIST_LIMITS = {"symptoms": MAX_TEXT, "impact": MAX_TEXT, "links": MAX_LINK, "devices": MAX_DEVICE_NAME}


def over_limits(fields: dict[str, object]) -> list[str]:
    """What in `fields` (a declaration's or a command's, as a dict) is over its limit, one line each."""
    problems = []
    for name, value in fields.items():
        if isinstance(value, str) and name in FIELD_LIMITS and len(value) > FIELD_LIMITS[name]:
            problems.append(f"{name}: {len(value):,} characters; at most {FIELD_LIMITS[name]:,}")
        elif isinstance(value, list) and name in LIST_LIMITS:
            if len(value) > MAX_ITEMS:
                problems.append(f"{name}: {len(value):,} items; at most {MAX_ITEMS}")
            for index, item in enumerate(value):
                if isinstance(item, str) and len(item) > LIST_LIMITS[name]:
                    problems.append(
                        f"{name}[{index}]: {len(item):,} characters; at most {LIST_LIMITS[name]:,}"
                    )
        elif isinstance(value, dict) and name == "upstream":
            if len(value) > MAX_ITEMS:
                problems.append(f"upstream: {len(value):,} devices; at most {MAX_ITEMS}")
            for device, neighbour in value.items():
                if max(len(str(device)), len(str(neighbour))) > MAX_DEVICE_NAME:
                    problems.append(
                        f"upstream[{str(device)[:40]!r}]: a device name is at most {MAX_DEVICE_NAME}"
                    )
    return problems


# A bare address as SMTP carries it (RFC 5321 Mailbox, ASCII: no SMTPUTF8): dot-atom local part
# and a host name. No display names, comments or quoted local parts; nothing that could close
# the RCPT TO:<...> line or add a header.
_ADDRESS = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


def email_address(value: str) -> str:
    """`value` if it is a bare address SMTP can carry (at most 254 characters), else ValueError."""
    address = value.strip()
    if len(address) > 254 or len(address.split("@", 1)[0]) > 64 or not _ADDRESS.match(address):
        raise ValueError(f"{value!r} is not an email address (user@example.com, ASCII, no name or <>)")
    return address
