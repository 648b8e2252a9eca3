"""Engine.IO v4 over WebSocket, served by the gateway: the transport almost every Socket.IO
client uses (socket.io-client's default upgrade path ends here too when it is configured with
``transports: ["websocket"]``).

python-engineio's own WebSocket transport runs a writer task and an ``asyncio.Queue`` per client
and wraps every inbound message in a new task; at thousands of connections that is most of the
memory and much of the CPU of an idle or chatty connection. A WebSocket-only session needs none
of it: :class:`EngineSocket` speaks the Engine.IO v4 packets itself (``0`` open, ``2``/``3``
ping/pong, ``4`` message, ``1`` close) and hands Socket.IO packets to python-socketio exactly as
Engine.IO would. Sessions that start with long-polling (and may upgrade) stay with
python-engineio.

See :mod:`realtime_gateway.ws_session` for the python-socketio interfaces relied on.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import WSCloseCode, WSMessage, WSMsgType, web
from engineio import packet as eio_packet

from .appkeys import SETTINGS_KEY, SIO_KEY
from .fanout import text_frame
from .http_errors import error_response
from .jsoncodec import dumps
from .ws_session import SessionSocket, minimal_environ

log = logging.getLogger(__name__)

EIO_PING = text_frame(b"2")
_OPEN, _CLOSE, _PING, _PONG, _MESSAGE, _NOOP = "0", "1", "2", "3", "4", "6"


class EngineSocket(SessionSocket):
    """One Engine.IO v4 session on a WebSocket, registered with python-socketio."""

    __slots__ = ()

    def heartbeat_frame(self) -> bytes:
        return EIO_PING

    async def send(self, pkt: eio_packet.Packet) -> None:
        if self.closing:
            return
        if pkt.packet_type == eio_packet.MESSAGE and isinstance(pkt.data, str):
            self.push_text(_MESSAGE + pkt.data)
        elif pkt.packet_type == eio_packet.MESSAGE and isinstance(pkt.data, bytes):
            self.frame_writer.push(text_frame(pkt.data, opcode=0x2))  # v4: binary frames carry no prefix
        elif pkt.packet_type == eio_packet.CLOSE:
            self.shutdown(WSCloseCode.OK, "server disconnect")
        else:
            self.push_text(pkt.encode())

    async def on_open(self, environ: dict[str, Any]) -> bool:
        eio = self.sio.eio
        self.push_text(
            _OPEN
            + dumps(
                {
                    "sid": self.sid,
                    "upgrades": [],
                    "pingInterval": int(eio.ping_interval * 1000),
                    "pingTimeout": int(eio.ping_timeout * 1000),
                    "maxPayload": eio.max_http_buffer_size,
                }
            )
        )
        # authentication happens on the client's CONNECT packet; one that never sends it must
        # not hold a connection open forever (socket.io's own server has the same limit)
        asyncio.get_running_loop().call_later(self.settings.connect_timeout, self._require_namespace)
        return True

    def _require_namespace(self) -> None:
        if not self.closing and self.sio.manager.sid_from_eio_sid(self.sid, "/") is None:
            self.shutdown(WSCloseCode.POLICY_VIOLATION, "no Socket.IO connect in time")

    async def on_message(self, msg: WSMessage) -> None:
        if msg.type == WSMsgType.BINARY:
            await self.sio._handle_eio_message(self.sid, msg.data)
            return
        data: str = msg.data
        kind = data[:1]
        try:
            if kind == _MESSAGE:
                await self.sio._handle_eio_message(self.sid, data[1:])
            elif kind == _PING:  # a client may probe us too
                self.push_text(_PONG + data[1:])
            elif kind == _CLOSE:
                self.shutdown(WSCloseCode.OK, "client close")
            elif kind not in (_PONG, _NOOP):
                raise ValueError(f"unexpected Engine.IO packet type {kind!r}")
        except Exception as exc:
            # python-engineio does the same: a packet it cannot take ends the session
            log.info("closing Engine.IO session %s: %s", self.sid, exc)
            self.shutdown(WSCloseCode.UNSUPPORTED_DATA, "invalid packet")


def wants_engine_socket(request: web.Request) -> bool:
    """A new WebSocket-only Engine.IO v4 session (no ``sid``: not an upgrade of a polling one)."""
    query = request.query
    return (
        query.get("transport") == "websocket"
        and query.get("EIO") == "4"
        and "sid" not in query
        and request.headers.get("Upgrade", "").lower() == "websocket"
    )


def origin_allowed(request: web.Request, allowed: list[str] | str) -> bool:
    origin = request.headers.get("Origin")
    return allowed == "*" or origin is None or origin in allowed


async def handle_engine_websocket(request: web.Request) -> web.StreamResponse:
    """Serve a WebSocket-only Engine.IO session; anything else goes to python-engineio."""
    sio = request.app[SIO_KEY]
    settings = request.app[SETTINGS_KEY]
    if settings.ws_compression or not wants_engine_socket(request):
        return await sio.handle_request(request)
    if not origin_allowed(request, settings.cors_origins):
        return error_response(400, "origin not allowed")
    return await EngineSocket.accept(request, sio, minimal_environ(request))
