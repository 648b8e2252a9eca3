"""A WebSocket connection served by the gateway itself and registered with python-socketio.

Both WebSocket protocols the gateway serves directly — plain JSON envelopes on ``/ws``
(:mod:`realtime_gateway.plain_ws`) and Engine.IO v4 on ``/socket.io/?transport=websocket``
(:mod:`realtime_gateway.engine_ws`) — are a :class:`SessionSocket`. It stands in for an Engine.IO socket in
``eio.sockets``, so python-socketio's connect, event, emit and disconnect paths treat it like
any other client and every emit reaches it with no special case in the caller.

Per connection it costs one aiohttp handler task and two timer handles: no writer task, no
queue, no task per inbound message. Outbound frames go through a :class:`~realtime_gateway.fanout.FrameWriter`
(ordered, coalesced, bounded). A heartbeat timer sends the protocol's ping every
``ping_interval`` and closes the connection after ``silence_limit`` seconds without a frame.

python-socketio / python-engineio interfaces the gateway's Engine.IO layer relies on (pinned in
pyproject.toml; this is the list for :mod:`~realtime_gateway.engine_ws`,
:mod:`~realtime_gateway.engine_polling`, :mod:`~realtime_gateway.engine_io` and this module, each
exercised by ``tests/test_engine_ws.py``, ``tests/test_engine_polling.py`` and the conformance
suites):

- ``socketio.AsyncServer._handle_eio_connect(eio_sid, environ)``,
  ``_handle_eio_message(eio_sid, data)`` and ``_handle_eio_disconnect(eio_sid, reason)``: the
  calls Engine.IO itself makes into python-socketio (private).
- ``AsyncServer.eio``, the ``engineio.AsyncServer`` python-socketio creates, used only as the
  session registry: ``eio.sockets`` (eio_sid -> our socket), ``eio.generate_id()`` and
  ``eio.reason``. It serves no request. python-socketio reaches our sockets through it:
  ``eio.send``/``send_packet`` (-> ``_get_socket``, which reads ``closed``, then ``send(pkt)``),
  ``get_session``/``save_session`` (``session``) and ``transport()`` (``upgraded``); the gateway's
  shutdown calls ``close(wait, abort, reason)``.
- ``engineio.packet.Packet`` (``packet_type``, ``data``, ``encode()``): what ``send`` receives.

The Socket.IO layer's own (``_handle_connect``, ``_send_packet``, ``_handle_event``) are listed in
:mod:`realtime_gateway.sio_server` and :mod:`realtime_gateway.server`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, TypeVar

import socketio
from aiohttp import WSCloseCode, WSMessage, WSMsgType, web
from engineio import packet as eio_packet

from .appkeys import SETTINGS_KEY
from .config import Settings
from .deflate import frame_writer_for
from .fanout import text_frame

log = logging.getLogger(__name__)
_S = TypeVar("_S", bound="SessionSocket")


class SessionSocket:
    """Base class: registration, ordered writes, heartbeat, close. Subclasses say how packets
    render (:meth:`send`) and how frames are read (:meth:`on_message`)."""

    # one per connection: slots keep each a few hundred bytes smaller than a __dict__ would
    __slots__ = (
        "_closer",
        "_heartbeat",
        "_last_seen",
        "_ping_interval",
        "_silence_limit",
        "closed",
        "closing",
        "connect_timer",
        "disconnect_reason",
        "frame_writer",
        "session",
        "settings",
        "sid",
        "sio",
        "ws",
    )
    upgraded = True  # Engine.IO reports the transport as "websocket"
    renders_envelopes = False
    transport_name = "websocket"

    autoping = True
    """Let aiohttp answer WebSocket pings (a subclass that counts pongs as activity turns it off)."""

    @staticmethod
    def silence_limit(settings: Settings) -> float:
        """Seconds without any frame after which the client is considered gone."""
        return settings.ping_interval + settings.ping_timeout

    @classmethod
    async def accept(
        cls, request: web.Request, sio: socketio.AsyncServer, environ: dict[str, Any], **kwargs: Any
    ) -> web.WebSocketResponse:
        """Upgrade the request and serve the connection until it ends."""
        ws, sock = await cls.prepare(request, sio, **kwargs)
        if sock is not None:
            await sock.serve(environ)
        return ws

    @classmethod
    async def prepare(
        cls: type[_S], request: web.Request, sio: socketio.AsyncServer, **kwargs: Any
    ) -> tuple[web.WebSocketResponse, _S | None]:
        """Complete the WebSocket handshake; the socket is None when the client vanished during it."""
        settings = request.app[SETTINGS_KEY]
        # compression is off unless configured: frames are encoded once and shared between recipients
        ws = web.WebSocketResponse(
            max_msg_size=settings.max_message_bytes, autoping=cls.autoping, compress=settings.ws_compression
        )
        await ws.prepare(request)
        if request.transport is None:
            return ws, None
        return ws, cls(sio, ws, request.transport, settings, **kwargs)

    def __init__(
        self,
        sio: socketio.AsyncServer,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport,
        settings: Settings,
        sid: str | None = None,
    ) -> None:
        self.sio = sio
        self.settings = settings
        self.sid = sid or sio.eio.generate_id()  # given: the session of an upgrading long-polling client
        self.ws = ws
        self.session: dict[str, Any] = {}
        self.closed = False
        self.closing = False
        self.disconnect_reason: Any = sio.reason.CLIENT_DISCONNECT
        self.frame_writer = frame_writer_for(
            ws,
            transport,
            lambda: self.shutdown(WSCloseCode.TRY_AGAIN_LATER, "client too slow"),
            settings.send_buffer_limit,
        )
        self._ping_interval = settings.ping_interval
        self._silence_limit = self.silence_limit(settings)
        self._last_seen = time.monotonic()
        self._heartbeat: asyncio.TimerHandle | None = None
        self._closer: asyncio.Task[None] | None = None
        self.connect_timer: asyncio.TimerHandle | None = None

    # -- what python-socketio / Engine.IO call ----------------------------------------------

    async def send(self, pkt: eio_packet.Packet) -> None:
        raise NotImplementedError

    async def close(self, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
        self.shutdown(WSCloseCode.GOING_AWAY, "server shutting down")
        if wait and self._closer is not None:
            await asyncio.shield(self._closer)

    # -- writing ----------------------------------------------------------------------------

    def push_text(self, text: str) -> None:
        if not self.closing:
            self.frame_writer.push(text_frame(text.encode()))

    def push_binary(self, data: bytes) -> None:
        if not self.closing:
            self.frame_writer.push(text_frame(data, opcode=0x2))

    def shutdown(self, code: int, reason: str) -> None:
        """Close after the frames already pushed have been written."""
        if not self.closing:
            self.closing = True
            if self._heartbeat is not None:
                self._heartbeat.cancel()
            if self.connect_timer is not None:
                self.connect_timer.cancel()
            self._closer = asyncio.ensure_future(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        self.frame_writer.flush()
        try:
            await self.ws.close(code=code, message=reason.encode())
        finally:
            self.closed = True

    # -- heartbeat --------------------------------------------------------------------------

    def heartbeat_frame(self) -> bytes:
        raise NotImplementedError

    def _tick(self) -> None:
        if self.closing:
            return
        if time.monotonic() - self._last_seen > self._silence_limit:
            self.disconnect_reason = self.sio.reason.PING_TIMEOUT
            self.shutdown(WSCloseCode.GOING_AWAY, "heartbeat timeout")
            return
        self.frame_writer.push(self.heartbeat_frame())
        self._heartbeat = asyncio.get_running_loop().call_later(self._ping_interval, self._tick)

    # -- the connection's life ----------------------------------------------------------------

    async def on_open(self, environ: dict[str, Any]) -> bool:
        """Register with python-socketio; False refuses the connection."""
        raise NotImplementedError

    async def on_message(self, msg: WSMessage) -> None:
        raise NotImplementedError

    async def serve(self, environ: dict[str, Any]) -> None:
        """Run the connection until the client leaves, goes silent or is disconnected."""
        self.sio.eio.sockets[self.sid] = self
        try:
            await self.sio._handle_eio_connect(self.sid, environ)
            if await self.on_open(environ):
                await self.run()
        finally:
            await self.end()

    async def run(self) -> None:
        """Heartbeat and read until the connection ends (the session is registered)."""
        self._last_seen = time.monotonic()
        self._heartbeat = asyncio.get_running_loop().call_later(self._ping_interval, self._tick)
        await self._read()

    async def end(self) -> None:
        """Close, tell python-socketio, unregister."""
        self.shutdown(WSCloseCode.OK, "bye")
        await self.sio._handle_eio_disconnect(self.sid, self.disconnect_reason)
        if self.sio.eio.sockets.get(self.sid) is self:
            del self.sio.eio.sockets[self.sid]
        if self._closer is not None:
            await self._closer

    async def _read(self) -> None:
        ws = self.ws
        while not self.closing:
            msg = await ws.receive()
            self._last_seen = time.monotonic()
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                await self.on_message(msg)
            elif msg.type == WSMsgType.PING:
                await ws.pong(msg.data)
            elif msg.type != WSMsgType.PONG:  # CLOSE, CLOSING, CLOSED, ERROR
                if msg.type == WSMsgType.ERROR:  # aiohttp has already answered 1009 for oversize
                    log.info("websocket eio_sid=%s closed: %s", self.sid, ws.exception())
                return
        if self.disconnect_reason == self.sio.reason.CLIENT_DISCONNECT:
            self.disconnect_reason = self.sio.reason.SERVER_DISCONNECT


def minimal_environ(request: web.Request, **extra: Any) -> dict[str, Any]:
    """The part of a WSGI environ the gateway's connect handler reads (kept per connection,
    so it is small; ``aiohttp.request`` gives embedders everything else)."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "QUERY_STRING": request.query_string,
        "REMOTE_ADDR": request.remote,
        "aiohttp.request": request,
        **extra,
    }
    authorization = request.headers.get("Authorization")
    if authorization:
        environ["HTTP_AUTHORIZATION"] = authorization
    return environ
