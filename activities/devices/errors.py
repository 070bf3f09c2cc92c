"""How the device code fails: a device that cannot be used (a finding), a file a person must fix."""

from __future__ import annotations

from temporalio.exceptions import ApplicationError


class DeviceUnavailable(Exception):
    """The device could not be used: a finding, not a failure of the activity."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def _non_retryable(kind: str, message: str) -> ApplicationError:
    return ApplicationError(message, type=kind, non_retryable=True)
