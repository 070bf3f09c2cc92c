"""The incident's ticket: opened at declaration, updated as the incident goes, closed after review.

- backend.py: TicketBackend, what a ticket system must do (the interface).
- activities.py: TicketActivities, the activities the workflows call by name, over one
  backend or none (tickets off).
- servicenow.py: ServiceNow's Table API through httpx (ServiceNowTickets).
- jira.py: Jira Cloud's REST API v3 through httpx (JiraTickets).

Another ticket system is a module beside servicenow.py and an entry in activities/backends.py.
The names other code imports are re-exported here.
"""

from __future__ import annotations

from .activities import TicketActivities as TicketActivities
from .backend import TicketBackend as TicketBackend
from .jira import JiraTickets as JiraTickets
from .servicenow import ServiceNowTickets as ServiceNowTickets
from .servicenow import correlation_id_for as correlation_id_for
