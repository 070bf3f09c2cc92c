"""Masking secrets: the testbed's passwords and config secrets in device output, findings and errors."""

from __future__ import annotations

import re
from typing import Any

_CONFIG_SECRET = re.compile(
    r"(?P<key>\b(?:password|secret|community|key-string|key|pre-shared-key)\s+(?:\d\s+)?)(?P<value>\S+)",
    re.IGNORECASE,
)


class _Secrets:
    """Mask the testbed's passwords and config secrets in anything that leaves the activity."""

    def __init__(self, values: set[str]) -> None:
        self._values = sorted((v for v in values if v and len(v) >= 3), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, "********")
        return _CONFIG_SECRET.sub(lambda m: m["key"] + "<removed>", text)

    def tree(self, value: Any) -> Any:
        """The same for every string in parsed data (dicts, lists)."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {k: self.tree(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.tree(v) for v in value]
        return value


def _testbed_secrets(testbed: Any) -> set[str]:
    values: set[str] = set()

    def collect(credentials: Any) -> None:
        for cred in (credentials or {}).values():
            for key, value in dict(cred).items():
                if key != "username":
                    values.add(str(getattr(value, "plaintext", value)))

    collect(getattr(testbed, "credentials", None))
    for device in testbed.devices.values():
        collect(getattr(device, "credentials", None))
        for name in getattr(device, "connections", {}) or {}:
            connection = device.connections[name]
            if isinstance(connection, dict):
                collect(connection.get("credentials"))
    return values
