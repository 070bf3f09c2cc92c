"""What every workflow here shares about failing calls and long histories.

Pure helpers, imported once by the worker (passed through the sandbox).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, FailureError
from temporalio.exceptions import TimeoutError as ActivityTimeout


def unlimited_retries(
    maximum_interval: timedelta, initial_interval: timedelta = timedelta(seconds=1)
) -> RetryPolicy:
    """Retry as long as it takes: an outage delays a message or a ticket change, it never drops it.

    Rejections a retry cannot fix (a bad token, an unknown channel, a 403) are raised
    non-retryable by the activities; Retry-After is honoured over the backoff.
    """
    return RetryPolicy(
        initial_interval=initial_interval, backoff_coefficient=2.0, maximum_interval=maximum_interval
    )


def failure_reason(err: ActivityError) -> str:
    """One line saying why an activity failed for good: its error's message, or which timeout."""
    cause = err.cause
    if isinstance(cause, ActivityTimeout):
        return f"timed out ({cause.type.name.lower().replace('_', '-') if cause.type else 'timeout'})"
    if isinstance(cause, FailureError):
        return cause.message
    return str(cause or err)


def history_too_long(max_events: int) -> bool:
    """Time to continue as new: Temporal suggests it, or the history passed the policy's limit."""
    info = workflow.info()
    return info.is_continue_as_new_suggested() or info.get_current_history_length() > max_events
