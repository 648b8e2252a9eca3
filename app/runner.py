"""Runs the gateway: listen, print how to connect, serve until SIGTERM/SIGINT, shut down cleanly."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys

from aiohttp import web

from .auth import mint_token
from .config import ConfigError, Settings
from .server import create_app

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT = 10.0
MIN_SECRET_BYTES = 32  # RFC 7518 3.2: an HS256 key at least as long as the hash
HANDLER_GRACE = 2.0
"""Seconds aiohttp waits for open requests once every client was told to go: a client that keeps
its socket open after the disconnect must not hold the shutdown for the whole budget."""


async def serve(settings: Settings, reuse_port: bool = False, announce: bool = True) -> None:
    app = create_app(settings)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=HANDLER_GRACE)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, reuse_port=reuse_port or None)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}") from None

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if announce:
        _announce(settings, runner)
    gc.freeze()  # what exists now lives as long as the process: keep it out of every collection
    await stop.wait()
    log.info("shutting down")
    started = loop.time()
    try:
        await asyncio.wait_for(runner.cleanup(), SHUTDOWN_TIMEOUT)
    except asyncio.TimeoutError:
        log.warning("shutdown took longer than %.0f s; exiting anyway", SHUTDOWN_TIMEOUT)
    else:
        log.info("shut down in %.2f s", loop.time() - started)


def _announce(settings: Settings, runner: web.AppRunner) -> None:
    port = settings.port
    for address in runner.addresses:
        if isinstance(address, tuple):
            port = address[1]
            break
    host = "localhost" if settings.host in ("0.0.0.0", "::", "") else settings.host
    mode = f"cluster via {settings.redis_url}" if settings.redis_url else "single node (in-memory)"
    log.info("realtime-gateway listening on %s:%s, %s", settings.host, port, mode)
    if not settings.dev_secret and settings.jwt_secret and len(settings.jwt_secret.encode()) < MIN_SECRET_BYTES:
        log.warning("JWT_SECRET is shorter than %d bytes: it can be brute-forced; use a longer one", MIN_SECRET_BYTES)
    lines = [
        f"realtime-gateway is up on port {port} ({mode})",
        f"  Socket.IO:      http://{host}:{port}/  (path /socket.io/)",
        f"  WebSocket:      ws://{host}:{port}/ws?token=<JWT>",
        f"  Health:         http://{host}:{port}/healthz",
        f"  Console:        http://{host}:{port}/console",
    ]
    if settings.dev_secret:
        assert settings.jwt_secret is not None
        token = mint_token(settings.jwt_secret, "demo", "Demo User", ttl=3600)
        lines[:0] = [
            "!" * 78,
            "WARNING: no JWT_SECRET configured. A random secret was generated for this process:",
            "tokens stop working when it restarts. Set JWT_SECRET (or --jwt-secret) in production.",
            "!" * 78,
        ]
        lines += [
            f"  Demo token (user 'demo', valid 1 hour): {token}",
            f"  Try it:         ws://{host}:{port}/ws?token={token}",
        ]
    print("\n".join(lines), file=sys.stderr, flush=True)
