"""The incident's ticket: opened at declaration, updated as the incident goes, closed after review.

servicenow.py: ServiceNow's Table API through httpx.

The names other code imports are re-exported here.
"""

from __future__ import annotations

from .servicenow import TicketActivities as TicketActivities
from .servicenow import correlation_id_for as correlation_id_for
