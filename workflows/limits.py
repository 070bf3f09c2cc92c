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

Pure constants and one helper: imported by workflows/, activities/ and starter/.
"""

from __future__ import annotations

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
MAX_DEVICE_NAME = 100  # a device name, as in a pyATS testbed
MAX_LINK = 2000  # a URL
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
