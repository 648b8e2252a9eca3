"""A WebSocket connection served by the gateway itself and registered with python-socketio.

Both WebSocket protocols the gateway serves directly — plain JSON envelopes on ``/ws``
(:mod:`realtime_gateway.transport.plain_ws`) and Engine.IO v4 on ``/socket.io/?transport=websocket``
(:mod:`realtime_gateway.transport.engine_ws`) — are a :class:`SessionSocket`. It stands in for an Engine.IO socket in
``eio.sockets``, so python-socketio's connect, event, emit and disconnect paths treat it like
any other client and every emit reaches it with no special case in the caller.

An idle connection costs no task and no timer handle of its own. Once upgraded, it no longer
belongs to aiohttp's request handler (:mod:`realtime_gateway.transport.ws_transport`), except a
compressed one. Inbound messages are handled as they arrive: the first one into an empty inbox
starts a task that handles it and whatever arrives meanwhile, in order, and ends when the
inbox is empty (:meth:`SessionSocket.wake`); a connection that is idle between messages holds
nothing while it waits. The connect deadline is one timer handle until the client connects. Outbound frames go
through a :class:`~realtime_gateway.transport.fanout.FrameWriter` (ordered, coalesced, bounded).
The heartbeat (one timer wheel for every session, :mod:`realtime_gateway.transport.heartbeat`)
sends the protocol's ping every ``ping_interval`` and closes the connection after
``silence_limit`` seconds without a frame. Every inbound frame is charged to the connection's
rate-limit bucket.

Closing is ours, not aiohttp's (:meth:`SessionSocket.shutdown`): the close frame goes through
the FrameWriter behind what is already queued, nothing follows it, the session leaves
python-socketio (rooms, presence) at once, and the TCP connection ends when the peer answers, or
is reset ``CLOSE_TIMEOUT`` seconds later if it does not (aiohttp's ``ws.close()`` would wait for
a drain that a client which stopped reading never allows). :class:`OwnedWebSocketResponse`
routes the closes aiohttp starts itself (oversized message, protocol error, end of the handler)
into the same path.

python-socketio / python-engineio interfaces the gateway's Engine.IO layer relies on (pinned in
pyproject.toml; this is the list for :mod:`~realtime_gateway.transport.engine_ws`,
:mod:`~realtime_gateway.transport.engine_polling`, :mod:`~realtime_gateway.transport.engine_io` and this module, each
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
- aiohttp (compressed connections): ``WebSocketResponse.receive()`` calls the public ``close()``
  for the closes it starts (overridden by :class:`OwnedWebSocketResponse`); with ``autoclose``
  and ``autoping`` off it writes nothing else by itself. The others: see
  :mod:`realtime_gateway.transport.ws_transport`.

The Socket.IO layer's own (``_handle_connect``, ``_send_packet``, ``_handle_event``) are listed in
:mod:`realtime_gateway.sio_server` and :mod:`realtime_gateway.server`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import socketio
from aiohttp import WSCloseCode, WSMessage, WSMsgType, web
from engineio import packet as eio_packet

from ..api.http_errors import error_response
from ..appkeys import LIMITS_KEY, SETTINGS_KEY
from ..config import Settings
from ..handlers import BUCKET_ENVIRON_KEY, TICKET_ENVIRON_KEY
from ..ratelimit import TokenBucket
from .deflate import frame_writer_for
from .fanout import text_frame
from .heartbeat import Heartbeats
from .limits import ConnectionLimits, Refusal, Ticket
from .ws_transport import WsProtocol, detach, detached_response, wants_aiohttp

log = logging.getLogger(__name__)
_S = TypeVar("_S", bound="SessionSocket")
_FRAMES = (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.PING, WSMsgType.PONG)
_PONG_OPCODE = 0xA
_STARTING: set[asyncio.Task[None]] = set()
"""The tasks opening detached connections (the loop keeps only weak references to tasks)."""


class OwnedWebSocketResponse(web.WebSocketResponse):
    """aiohttp's WebSocket response whose ``close()`` is the session's own close path.

    aiohttp calls ``close()`` itself when a message is too big (1009), on a protocol error, at
    the end of the stream and when the handler returns; each would otherwise write a close
    frame past the FrameWriter and wait for a drain."""

    on_close: Any = None
    """``SessionSocket.shutdown``, set as soon as the session exists."""

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"", drain: bool = True) -> bool:
        if self.on_close is None:
            return await super().close(code=code, message=message, drain=drain)
        self.on_close(code, message.decode(errors="replace"))
        return True


def admit(request: web.Request, environ: dict[str, Any], user: str | None = None) -> web.Response | None:
    """Count a new session against the connection limits before it is accepted: None when it
    is admitted (its ticket is then in ``environ``), else the HTTP refusal to answer with."""
    limits = request.app.get(LIMITS_KEY)
    if limits is None:  # an application without limits (the conformance server)
        return None
    ticket = limits.admit(request.remote, user)
    if isinstance(ticket, Refusal):
        log.info("connection from %s refused: %s", request.remote, ticket.message)
        return error_response(ticket.status, ticket.message)
    environ[TICKET_ENVIRON_KEY] = ticket
    return None


def release(limits: ConnectionLimits | None, environ: dict[str, Any]) -> None:
    """Give the session's ticket back (idempotent: the Socket.IO server releases it too when the
    session ends; this covers a session that never started)."""
    ticket = environ.get(TICKET_ENVIRON_KEY)
    if limits is not None and isinstance(ticket, Ticket):
        limits.release(ticket)


class SessionSocket:
    """Base class: registration, ordered writes, heartbeat, close. Subclasses say how packets
    render (:meth:`send`) and how frames are read (:meth:`on_message`)."""

    # one per connection: slots keep each a few hundred bytes smaller than a __dict__ would
    __slots__ = (
        "_closer",
        "_environ",
        "_handling",
        "_heartbeats",
        "_last_seen",
        "_limits",
        "_reading",
        "_silence_limit",
        "bucket",
        "closed",
        "closing",
        "connect_timer",
        "disconnect_reason",
        "frame_writer",
        "heartbeat_slot",
        "session",
        "settings",
        "sid",
        "sio",
        "ws",
    )
    upgraded = True  # Engine.IO reports the transport as "websocket"
    renders_envelopes = False
    transport_name = "websocket"

    @staticmethod
    def silence_limit(settings: Settings) -> float:
        """Seconds without any frame after which the client is considered gone."""
        return settings.ping_interval + settings.ping_timeout

    @classmethod
    async def accept(
        cls,
        request: web.Request,
        sio: socketio.AsyncServer,
        environ: dict[str, Any],
        user: str | None = None,
        **kwargs: Any,
    ) -> web.StreamResponse:
        """Admit (connection limits), upgrade the request and serve the connection until it ends."""
        refusal = admit(request, environ, user)
        if refusal is not None:
            return refusal
        limits = request.app.get(LIMITS_KEY)
        try:
            ws, sock = await cls.prepare(request, sio, **kwargs)
        except BaseException:
            release(limits, environ)
            raise
        if sock is None:
            release(limits, environ)
            return ws if isinstance(ws, web.StreamResponse) else detached_response()
        return await sock.keep(ws, sock.serve(environ, limits))

    @classmethod
    async def prepare(
        cls: type[_S], request: web.Request, sio: socketio.AsyncServer, **kwargs: Any
    ) -> tuple[web.WebSocketResponse | WsProtocol | None, _S | None]:
        """Complete the WebSocket handshake; the socket is None when the client vanished during it."""
        settings = request.app[SETTINGS_KEY]
        if not wants_aiohttp(request, settings.ws_compression):
            detached = detach(request, settings.max_message_bytes)
            if detached is None:
                return None, None
            transport, protocol = detached
            return protocol, cls(sio, protocol, transport, settings, **kwargs)
        # compression is off unless configured: frames are encoded once and shared between
        # recipients. autoclose/autoping off: every frame we send goes through the FrameWriter
        ws = OwnedWebSocketResponse(
            max_msg_size=settings.max_message_bytes,
            autoclose=False,
            autoping=False,
            compress=settings.ws_compression,
        )
        await ws.prepare(request)
        if request.transport is None:
            return ws, None
        return ws, cls(sio, ws, request.transport, settings, **kwargs)

    async def keep(self, ws: web.WebSocketResponse | WsProtocol, work: Coroutine[Any, Any, None]) -> web.StreamResponse:
        """Run ``work`` (the connection's opening, then its life) and answer aiohttp: inside its
        handler for aiohttp's own WebSocket; in a task of its own for a detached connection,
        whose handler returns now (the task ends once the session runs: see :meth:`run`)."""
        if isinstance(ws, web.WebSocketResponse):
            await work
            return ws
        task = asyncio.ensure_future(work)
        _STARTING.add(task)
        task.add_done_callback(_STARTING.discard)
        return detached_response()

    def __init__(
        self,
        sio: socketio.AsyncServer,
        ws: OwnedWebSocketResponse | WsProtocol,
        transport: asyncio.Transport,
        settings: Settings,
        sid: str | None = None,
    ) -> None:
        self.sio = sio
        self.settings = settings
        self.sid = sid or sio.eio.generate_id()  # given: the session of an upgrading long-polling client
        self.ws = ws
        ws.on_close = self.shutdown
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
        self.bucket = TokenBucket(settings.rate_limit, settings.rate_burst)
        self._heartbeats = Heartbeats.of_running_loop(settings.ping_interval)
        self.heartbeat_slot: int | None = None
        self._silence_limit = self.silence_limit(settings)
        self._last_seen = time.monotonic()
        self._closer: asyncio.Task[None] | None = None
        self.connect_timer: asyncio.TimerHandle | None = None
        self._reading = False
        self._handling: asyncio.Task[None] | None = None
        self._environ: dict[str, Any] | None = None
        self._limits: ConnectionLimits | None = None

    # -- what python-socketio / Engine.IO call ----------------------------------------------

    async def send(self, pkt: eio_packet.Packet) -> None:
        raise NotImplementedError

    async def close(self, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
        self.shutdown(WSCloseCode.GOING_AWAY, "server shutting down")
        if not wait:  # server shutdown: no waiting for the peer's answer (see FrameWriter.finish)
            self.frame_writer.finish()
        elif self._closer is not None:
            await asyncio.shield(self._closer)

    def close_unconnected(self) -> None:
        """The connect timeout: no Socket.IO CONNECT in time."""
        self.shutdown(WSCloseCode.POLICY_VIOLATION, "no Socket.IO connect in time")

    # -- writing ----------------------------------------------------------------------------

    def push_text(self, text: str) -> None:
        self.frame_writer.push(text_frame(text.encode()))  # refused once closing

    def push_binary(self, data: bytes) -> None:
        self.frame_writer.push(text_frame(data, opcode=0x2))

    def shutdown(self, code: int, reason: str) -> None:
        """Close: the close frame follows the frames already pushed, nothing follows it, and
        the session leaves python-socketio (rooms, presence) now, not when the peer answers."""
        if self.closing:
            return
        self.closing = True
        if self._reading and self.disconnect_reason == self.sio.reason.CLIENT_DISCONNECT:
            self.disconnect_reason = self.sio.reason.SERVER_DISCONNECT  # we hang up, not the client
        self._heartbeats.disarm(self)
        if self.connect_timer is not None:
            self.connect_timer.cancel()
            self.connect_timer = None
        self.frame_writer.close(code, reason)
        if not self._reading:  # nobody will read the peer's answer: end the connection now
            self.frame_writer.finish()
        sockets = self.sio.eio.sockets
        if sockets.get(self.sid) is self:  # not an upgrade that never took over its session
            del sockets[self.sid]  # no emit finds it any more
            self._closer = asyncio.ensure_future(self._leave())

    async def _leave(self) -> None:
        try:
            await self.sio._handle_eio_disconnect(self.sid, self.disconnect_reason)
        except Exception:  # a failing listener must not keep the session registered
            log.exception("disconnect handling of Engine.IO session %s failed", self.sid)

    # -- heartbeat --------------------------------------------------------------------------

    def heartbeat_frame(self) -> bytes:
        raise NotImplementedError

    def beat(self) -> None:
        if self.closing:
            return
        if time.monotonic() - self._last_seen > self._silence_limit:
            self.disconnect_reason = self.sio.reason.PING_TIMEOUT
            self.shutdown(WSCloseCode.GOING_AWAY, "heartbeat timeout")
            return
        self.frame_writer.push(self.heartbeat_frame())
        self._heartbeats.arm(self)

    # -- the connection's life ----------------------------------------------------------------

    async def on_open(self, environ: dict[str, Any]) -> bool:
        """Register with python-socketio; False refuses the connection."""
        raise NotImplementedError

    async def on_message(self, msg: WSMessage) -> None:
        raise NotImplementedError

    async def serve(self, environ: dict[str, Any], limits: ConnectionLimits | None) -> None:
        """Register and open the session, then :meth:`run` it; when it ends, its
        connection-limit ticket goes back."""
        self._environ, self._limits = environ, limits
        self.sio.eio.sockets[self.sid] = self
        environ[BUCKET_ENVIRON_KEY] = self.bucket
        self._reading = True
        try:
            await self.sio._handle_eio_connect(self.sid, environ)
            opened = await self.on_open(environ)
        except BaseException:
            await self.end()
            raise
        if opened:
            await self.run()
        else:
            await self.end()

    async def run(self) -> None:
        """Heartbeat and read until the connection ends (the session is registered). For a
        detached connection this returns at once: its messages are handled as they arrive."""
        self._last_seen = time.monotonic()
        self._reading = True
        self._heartbeats.arm(self)
        ws = self.ws
        if isinstance(ws, WsProtocol):
            ws.on_readable = self.wake
            if ws.has_pending():  # what arrived while the session was opening
                self.wake()
            return
        try:
            while await self.take(await ws.receive()):
                pass
        finally:
            await self.end()

    def wake(self) -> None:
        """A message arrived in an empty inbox (or the stream ended): handle what is there, in a
        task, unless one is handling messages already."""
        if self._handling is None:
            self._handling = asyncio.get_running_loop().create_task(self._handle_inbox())

    async def _handle_inbox(self) -> None:
        ws: WsProtocol = self.ws  # type: ignore[assignment]
        try:
            while (msg := ws.next_message()) is not None:
                if not await self.take(msg):
                    break
            else:
                return  # all handled: the next message starts a new task
        except Exception:
            log.exception("websocket eio_sid=%s: handling a message failed", self.sid)
        finally:
            self._handling = None
        ws.on_readable = None  # the stream is over
        await self.end()

    async def end(self) -> None:
        """The reader is done (the peer answered the close, closed, or vanished): close if that
        has not happened yet, end the TCP connection, wait until python-socketio knows, give the
        connection-limit ticket back."""
        self._reading = False
        self.shutdown(WSCloseCode.OK, "bye")
        self.frame_writer.finish()
        try:
            if self._closer is not None:
                # shielded: aiohttp cancels the handler once the connection is gone, which must
                # not cancel python-socketio's disconnect handling with it
                await asyncio.shield(self._closer)
        finally:
            self.closed = True
            if self._environ is not None:
                release(self._limits, self._environ)

    async def take(self, msg: WSMessage) -> bool:
        """Act on one inbound message; False at the end of the stream (the peer closed, or
        answered our close, or the transport ended). Once closing, frames are read but not acted
        on."""
        kind = msg.type
        if kind not in _FRAMES:  # CLOSE, CLOSING, CLOSED, ERROR
            if kind == WSMsgType.ERROR:  # already closed with 1009/1002, through us
                log.info("websocket eio_sid=%s closed: %s", self.sid, msg.data)
            return False
        if self.closing:
            return True
        self._last_seen = time.monotonic()
        bucket = self.bucket
        bucket.charge()
        if kind == WSMsgType.PING:
            self.frame_writer.push(text_frame(msg.data, opcode=_PONG_OPCODE))
        elif kind != WSMsgType.PONG:
            await self.on_message(msg)
        if bucket.settle():  # over the limit, and no event was refused for it
            self.shutdown(WSCloseCode.POLICY_VIOLATION, "rate limit exceeded")
        return True


def minimal_environ(request: web.Request, **extra: Any) -> dict[str, Any]:
    """The part of a WSGI environ the gateway's connect handler reads (kept per connection,
    so it is small; no reference to the request, which would keep all of it alive)."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "QUERY_STRING": request.query_string,
        "REMOTE_ADDR": request.remote,
        **extra,
    }
    authorization = request.headers.get("Authorization")
    if authorization:
        environ["HTTP_AUTHORIZATION"] = authorization
    return environ
