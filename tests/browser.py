"""A real headless browser for the tests: Debian's Chromium, driven from its command line.

`scripts/test` installs it (`apt-get install chromium`) when it is missing and it runs as root;
`find_chromium()` does the same for a test run alone, and says why when it cannot.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

NAMES = ("chromium", "chromium-browser", "google-chrome")
# Nothing in the background: this machine has no outside network, and a browser that tries to
# reach one (updates, sync, QUIC probes) only waits.
FLAGS = (
    "--headless",
    "--no-sandbox",  # as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
TIMEOUT = 60.0


def find_chromium() -> tuple[str | None, str]:
    """(the browser's path, "") or (None, why there is none and none could be installed)."""
    for name in NAMES:
        if found := shutil.which(name):
            return found, ""
    if not shutil.which("apt-get") or os.geteuid() != 0:
        return (
            None,
            "chromium is not installed and cannot be (no apt-get, or not root): apt-get install chromium",
        )
    for command in (
        "apt-get install -y -qq chromium",
        "apt-get update -qq && apt-get install -y -qq chromium",
    ):
        done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=600)
        if done.returncode == 0 and (found := shutil.which("chromium")):
            return found, ""
    return None, f"chromium is not installed and `apt-get install chromium` failed: {done.stderr[-300:]}"


class Browser:
    """One page load per call, each in a fresh profile, as a person opening the URL would.

    Async, the browser in a thread: the server it loads may run on the test's own event loop.
    """

    def __init__(self, executable: str) -> None:
        self.executable = executable

    def _run(self, *args: str) -> str:
        with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
            done = subprocess.run(
                [self.executable, *FLAGS, f"--user-data-dir={profile}", *args],
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
            )
        if done.returncode != 0:
            raise AssertionError(f"chromium exited {done.returncode}: {done.stderr[-2000:]}")
        return done.stdout

    async def dom(self, url: str) -> str:
        """The page's DOM once loaded, serialised as HTML."""
        return await asyncio.to_thread(self._run, "--dump-dom", url)

    async def screenshot(self, url: str, path: Path, width: int = 1000, height: int = 900) -> Path:
        """A PNG of the page in a `width` x `height` window."""
        path.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self._run, f"--window-size={width},{height}", f"--screenshot={path}", url)
        assert path.stat().st_size > 0, f"no screenshot at {path}"
        return path
