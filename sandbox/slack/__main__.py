"""``python -m sandbox.slack``: serve the Slack sandbox (its flags and environment: ``app.main``)."""

from __future__ import annotations

from .app import main

if __name__ == "__main__":
    main()
