"""The sandbox as an ASGI app, served in the background or from the command line.

``create_app`` routes the Web API, the control API, the acting endpoints and
the page to one SlackSandbox; ``serve_in_background`` and ``run_sandbox``
serve it with uvicorn on the running event loop (tests, benchmarks);
``main`` is ``python -m sandbox.slack``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route

from .common import DEFAULT_CHANNELS, DEFAULT_PORT
from .control import (
    control_calls,
    control_channels,
    control_config,
    control_dnd,
    control_health,
    control_messages,
    control_reset,
    control_state,
    control_tokens,
)
from .events import (
    _act_endpoint,
    act_button,
    act_close,
    act_command,
    act_pin,
    act_reaction,
    act_submit,
    respond_endpoint,
)
from .faults import control_faults, control_rate_limit
from .page import index_page, permalink_page
from .state import SlackSandbox
from .web_api import api_endpoint, file_download, upload_endpoint


def create_app(
    state_file: str | Path | None = None,
    rate_limit_per_minute: int | None = None,
    channels: Iterable[str] = DEFAULT_CHANNELS,
    request_url: str | None = None,
    signing_secret: str | None = None,
    tokens: Iterable[str] | dict[str, Iterable[str] | str | None] | None = None,
    scopes: Iterable[str] | str | None = None,
) -> Starlette:
    """The sandbox as an ASGI app; ``app.state.sandbox`` is its SlackSandbox.

    With ``request_url`` (the app's Events API / interactivity / slash command
    URL) and ``signing_secret``, the ``/_sandbox/act/...`` endpoints deliver
    signed requests to the app as Slack does.

    ``tokens``: the bot tokens the Web API accepts (a list, or token -> its own
    scopes, None for the app's); default SLACK_SANDBOX_TOKENS or DEFAULT_TOKENS,
    plus SLACK_BOT_TOKEN. ``scopes``: the app's bot scopes; default
    SLACK_SANDBOX_SCOPES or DEFAULT_SCOPES.
    """
    sandbox = SlackSandbox(
        state_file=state_file,
        rate_limit_per_minute=rate_limit_per_minute,
        channels=channels,
        request_url=request_url,
        signing_secret=signing_secret,
        tokens=tokens,
        scopes=scopes,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            sandbox.flush()

    routes = [
        Route("/", index_page, methods=["GET"]),
        Route("/api/{method:str}", api_endpoint, methods=["GET", "POST"]),
        Route("/_upload/{file_id:str}", upload_endpoint, methods=["POST", "PUT"]),
        Route("/archives/{channel:str}/p{digits:str}", permalink_page, methods=["GET"]),
        Route("/_sandbox/health", control_health, methods=["GET"]),
        Route("/_sandbox/faults", control_faults, methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/rate-limit", control_rate_limit, methods=["GET", "POST"]),
        Route("/_sandbox/dnd", control_dnd, methods=["GET", "POST"]),
        Route("/_sandbox/state", control_state, methods=["GET"]),
        Route("/_sandbox/reset", control_reset, methods=["POST"]),
        Route("/_sandbox/calls", control_calls, methods=["GET", "DELETE"]),
        Route("/_sandbox/messages", control_messages, methods=["POST"]),
        Route("/_sandbox/files/{file_id:str}", file_download, methods=["GET"]),
        Route("/_sandbox/config", control_config, methods=["GET", "POST"]),
        Route("/_sandbox/tokens", control_tokens, methods=["GET", "POST"]),
        Route("/_sandbox/channels", control_channels, methods=["GET", "POST"]),
        Route("/_sandbox/act/reaction", _act_endpoint(act_reaction), methods=["POST"]),
        Route("/_sandbox/act/pin", _act_endpoint(act_pin), methods=["POST"]),
        Route("/_sandbox/act/button", _act_endpoint(act_button), methods=["POST"]),
        Route("/_sandbox/act/submit", _act_endpoint(act_submit), methods=["POST"]),
        Route("/_sandbox/act/close", _act_endpoint(act_close), methods=["POST"]),
        Route("/_sandbox/act/command", _act_endpoint(act_command), methods=["POST"]),
        Route("/_sandbox/respond/{response_id:str}", respond_endpoint, methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.sandbox = sandbox
    return app


class _BackgroundServer(uvicorn.Server):
    """A uvicorn server that leaves the process's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
        yield


@contextlib.asynccontextmanager
async def serve_in_background(app: Any, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on this event loop; yields 'http://host:port'.

    ``port=0`` picks a free port. Leaving the block shuts the server down
    cleanly (lifespan shutdown included, so the sandbox flushes its state file).
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="on",
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    server = _BackgroundServer(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                exc = task.exception() if not task.cancelled() else None
                raise RuntimeError(f"uvicorn did not start on {host}:{port}") from exc
            await asyncio.sleep(0.005)
        bound = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(task), timeout=5)
        if not task.done():
            task.cancel()


@contextlib.asynccontextmanager
async def run_sandbox(
    state_file: str | Path | None = None,
    rate_limit_per_minute: int | None = None,
    channels: Iterable[str] = DEFAULT_CHANNELS,
    host: str = "127.0.0.1",
    port: int = 0,
    tokens: Iterable[str] | dict[str, Iterable[str] | str | None] | None = None,
    scopes: Iterable[str] | str | None = None,
) -> AsyncIterator[str]:
    """A Slack sandbox on a free port for the length of the block; yields its base URL.

    Point slack_sdk at ``url + "/api/"`` with one of its tokens (DEFAULT_TOKENS unless given).
    """
    app = create_app(
        state_file=state_file,
        rate_limit_per_minute=rate_limit_per_minute,
        channels=channels,
        tokens=tokens,
        scopes=scopes,
    )
    async with serve_in_background(app, host=host, port=port) as url:
        yield url


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.slack", description="Local Slack Web API sandbox"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("SLACK_SANDBOX_PORT") or DEFAULT_PORT))
    parser.add_argument("--state", default=None, help="state file (JSON); no persistence if omitted")
    parser.add_argument("--rate-limit-per-minute", type=int, default=None, help="per channel; default off")
    parser.add_argument(
        "--request-url",
        default=os.environ.get("SLACK_REQUEST_URL") or None,
        help="the app's Request URL (events, interactivity, slash commands); env SLACK_REQUEST_URL",
    )
    parser.add_argument(
        "--signing-secret",
        default=os.environ.get("SLACK_SIGNING_SECRET") or None,
        help="the app's signing secret, to sign what is delivered; env SLACK_SIGNING_SECRET",
    )
    parser.add_argument(
        "--channel",
        dest="channels",
        action="extend",
        nargs="+",
        default=None,
        metavar="NAME",
        help=f"pre-created channels (replace the defaults: {', '.join(DEFAULT_CHANNELS)})",
    )
    opts = parser.parse_args(argv)
    app = create_app(
        state_file=opts.state,
        rate_limit_per_minute=opts.rate_limit_per_minute,
        channels=opts.channels or DEFAULT_CHANNELS,
        request_url=opts.request_url,
        signing_secret=opts.signing_secret,
    )
    print(
        f"Slack sandbox: http://{opts.host}:{opts.port}/  (API: http://{opts.host}:{opts.port}/api/)"
        + (f"; delivering to {opts.request_url}" if opts.request_url else ""),
        flush=True,
    )
    uvicorn.run(app, host=opts.host, port=opts.port, log_level="warning")
