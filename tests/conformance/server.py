"""The reference server of the official Socket.IO / Engine.IO compliance suites, built from the
gateway's own transports (:mod:`realtime_gateway.transport.engine_io`) and its Socket.IO layer
(:class:`realtime_gateway.sio_server.SocketIOServer`).

    python tests/conformance/server.py sio   # for socket.io-protocol/test-suite
    python tests/conformance/server.py eio   # for engine.io-protocol/test-suite

Listens on 127.0.0.1:3000 with the configuration the suites' READMEs give: pingInterval 300 ms,
pingTimeout 200 ms, maxPayload 1e6, connectTimeout 1000 ms, CORS ``*``. ``sio``: ``message`` is
echoed as ``message-back``, ``message-with-ack`` is acked with its arguments, every namespace
connection (``/`` and ``/custom``) gets ``auth`` with the handshake's auth payload. ``eio``: on
``/engine.io/``, every message is sent back.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from aiohttp import web
from realtime_gateway.appkeys import SETTINGS_KEY, SIO_KEY
from realtime_gateway.config import Settings
from realtime_gateway.sio_server import SocketIOServer
from realtime_gateway.transport.engine_io import install_engineio
from realtime_gateway.transport.fanout import FanoutManager

PORT = 3000
AUTH_DELAY = 0.02
NAMESPACES = ("/", "/custom")


class ReferenceServer(SocketIOServer):
    """The socket.io-protocol suite's server: ``auth`` on connection."""

    async def connected(self, sid: str, namespace: str, auth: Any) -> None:
        # The suite's client starts listening for its next message only after it handled the
        # previous one, so two frames that reach it in one TCP read lose the second. The
        # gateway writes what one loop iteration produced in one write (CONNECT answer and
        # this event together); Node's server writes each frame separately. Sending ``auth`` a
        # moment later gives the suite what it can read; the protocol allows either.
        await asyncio.sleep(AUTH_DELAY)
        await self.emit("auth", auth if auth is not None else {}, to=sid, namespace=namespace)


class EchoServer(SocketIOServer):
    """The engine.io-protocol suite's server: no Socket.IO, every Engine.IO message sent back."""

    async def _handle_eio_message(self, eio_sid: str, data: str | bytes) -> None:
        await self.eio.send(eio_sid, data)


def reference_sio() -> ReferenceServer:
    sio = ReferenceServer(async_mode="aiohttp", client_manager=FanoutManager(), async_handlers=False)
    for namespace in NAMESPACES:

        async def message(sid: str, *args: Any, namespace: str = namespace) -> None:
            await sio.emit("message-back", args, to=sid, namespace=namespace)

        async def message_with_ack(sid: str, *args: Any) -> tuple[Any, ...]:
            return args

        sio.on("message", message, namespace=namespace)
        sio.on("message-with-ack", message_with_ack, namespace=namespace)
    return sio


def create_app(suite: str) -> web.Application:
    settings = Settings(
        ping_interval=0.3,
        ping_timeout=0.2,
        max_message_bytes=1_000_000,
        # the Engine.IO suite has no Socket.IO CONNECT: its sessions must not time out
        connect_timeout=1.0 if suite == "sio" else 3600.0,
        cors_origins="*",
        jwt_secret="unused",
    )
    settings.validate()
    app = web.Application(client_max_size=settings.max_message_bytes)
    app[SETTINGS_KEY] = settings
    app[SIO_KEY] = reference_sio() if suite == "sio" else EchoServer(async_mode="aiohttp")
    install_engineio(app, "/socket.io/" if suite == "sio" else "/engine.io/")
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suite", choices=("sio", "eio"))
    parser.add_argument("--port", type=int, default=PORT)
    args = parser.parse_args()
    web.run_app(create_app(args.suite), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
