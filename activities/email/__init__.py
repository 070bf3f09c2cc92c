"""Email: the `send_email` activity (activities.py) over one EmailBackend (backend.py), SMTP today (smtp.py).

The message itself (headers, the Message-ID every attempt shares) is message.py's; the
stakeholder texts are activities/stakeholder.py's.
"""

from .activities import EmailActivities
from .backend import Delivery, EmailBackend
from .smtp import SmtpEmail

__all__ = ["Delivery", "EmailActivities", "EmailBackend", "SmtpEmail"]
