"""Engine.IO v4 over HTTP long-polling, served by the gateway (no python-engineio on the path).

A :class:`PollingSocket` stands in for an Engine.IO socket in ``eio.sockets`` exactly like the
WebSocket sessions of :mod:`realtime_gateway.transport.ws_session`, so python-socketio's connect, event,
emit and disconnect paths reach it unchanged. What the server sends waits in a list of encoded
packets; a ``GET`` takes up to :data:`MAX_PACKETS_PER_POLL` of them at once (joined by the
record separator ``\\x1e``, binary as ``b<base64>``), or waits for the next packet when there is
none. A ``POST`` carries the client's packets the same way and is answered ``ok``. There is no
writer task and no queue: sending appends to a list and wakes the waiting ``GET``.

The protocol's rules, as the official Engine.IO test suite checks them:

- the server pings every ``ping_interval``; no pong within ``ping_timeout`` ends the session;
- a second concurrent ``GET``, a second concurrent ``POST``, a malformed payload or a payload
  over ``max_message_bytes`` ends the session (the waiting ``GET`` gets ``1``, later requests
  400);
- a client's ``1`` ends the session and the waiting ``GET`` gets ``6`` (noop);
- while a WebSocket upgrade is being probed (:mod:`realtime_gateway.transport.engine_ws`), a ``GET`` is
  answered at once, with ``6`` when there is nothing to send, so the client can pause polling
  and send ``5``; then the buffered packets move, in order, to the WebSocket's writer
  (:meth:`PollingSocket.hand_over`) and the session continues there.

A session the server ends keeps its last packets (``41``, ``1``) for the client's next ``GET``
for at most :data:`CLOSE_LINGER` seconds; python-socketio is told at once either way.

python-socketio / python-engineio interfaces relied on: those listed in
:mod:`realtime_gateway.transport.ws_session` (``eio.sockets``, ``eio.generate_id()``, ``eio.reason``,
``_handle_eio_connect`` / ``_handle_eio_message`` / ``_handle_eio_disconnect``, and the
attributes python-socketio reads on a socket: ``send``, ``close``, ``closed``, ``upgraded``,
``session``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from typing import TYPE_CHECKING, Any

import socketio
from aiohttp import web
from engineio import packet as eio_packet

from ..api.http_errors import error_response
from ..config import Settings
from ..handlers import BUCKET_ENVIRON_KEY
from ..jsoncodec import dumps
from ..ratelimit import TokenBucket
from .fanout import HARD_LIMIT_FACTOR

if TYPE_CHECKING:
    from .engine_ws import EngineSocket

log = logging.getLogger(__name__)

SEPARATOR = "\x1e"
CLOSE_LINGER = 5.0
"""Seconds a session the server closed waits for the client's next poll to take its last packets."""
MAX_PACKETS_PER_POLL = 16
"""Packets per poll answer: python-engineio's client refuses a payload of more (the rest waits
for the next poll, which the client sends at once)."""
NOOP, CLOSE, PING, PONG, MESSAGE = "6", "1", "2", "3", "4"


class PayloadError(ValueError):
    """A polling request the protocol says must end the session."""


def handshake(sid: str, settings: Settings, upgrades: list[str]) -> str:
    """The Engine.IO open packet; intervals in whole milliseconds, as the protocol reports them."""
    return "0" + dumps(
        {
            "sid": sid,
            "upgrades": upgrades,
            "pingInterval": round(settings.ping_interval * 1000),
            "pingTimeout": round(settings.ping_timeout * 1000),
            "maxPayload": settings.max_message_bytes,
        }
    )


class PollingSocket:
    """One Engine.IO v4 session on HTTP long-polling, registered with python-socketio."""

    __slots__ = (
        "_buffer",
        "_buffered",
        "_ending",
        "_linger",
        "_ping_timer",
        "_pong_deadline",
        "_pong_timer",
        "_posting",
        "_waiter",
        "bucket",
        "closed",
        "closing",
        "connect_timer",
        "probing",
        "session",
        "settings",
        "sid",
        "sio",
        "upgrading",
    )
    upgraded = False  # python-engineio's transport(): "polling"
    frame_writer = None  # what the fan-out path checks: no WebSocket, use push_text
    renders_envelopes = False

    def __init__(self, sio: socketio.AsyncServer, settings: Settings) -> None:
        self.sio = sio
        self.settings = settings
        self.sid: str = sio.eio.generate_id()
        self.session: dict[str, Any] = {}
        self.closed = False
        self.closing = False
        self.upgrading = False
        """A WebSocket has asked to take this session over (a second one is refused)."""
        self.probing = False
        """That WebSocket answered the probe: polls are answered at once, so the client can pause."""
        self.connect_timer: asyncio.TimerHandle | None = None
        self.bucket = TokenBucket(settings.rate_limit, settings.rate_burst)
        self._buffer: list[str | bytes] = []
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._posting = False
        self._ping_timer: asyncio.TimerHandle | None = None
        self._pong_timer: asyncio.TimerHandle | None = None
        self._pong_deadline: float | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._ending: asyncio.Task[None] | None = None

    # -- what python-socketio calls -----------------------------------------------------------

    async def send(self, pkt: eio_packet.Packet) -> None:
        if isinstance(pkt.data, bytes):
            self._push(pkt.data, len(pkt.data))
        else:
            self.push_text(pkt.encode())

    async def close(self, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
        self.end(reason or self.sio.reason.SERVER_DISCONNECT, CLOSE, linger=not abort)
        if wait and self._ending is not None:
            await asyncio.shield(self._ending)

    # -- writing ------------------------------------------------------------------------------

    def push_text(self, text: str) -> None:
        """Queue one encoded packet for the next poll (the fan-out path calls this directly)."""
        self._push(text, len(text))

    def _push(self, item: str | bytes, size: int) -> None:
        if self.closing:
            return
        self._buffer.append(item)
        self._buffered += size
        if self._buffered > self.settings.send_buffer_limit * HARD_LIMIT_FACTOR:
            # a client that stopped polling: the same bound as a WebSocket that stopped reading
            log.warning("disconnecting slow polling client: %d bytes waiting to be sent", self._buffered)
            self.end(self.sio.reason.SERVER_DISCONNECT, CLOSE, linger=False)
        else:
            self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _take(self) -> str:
        items = self._buffer[:MAX_PACKETS_PER_POLL]
        del self._buffer[:MAX_PACKETS_PER_POLL]
        self._buffered -= sum(len(item) for item in items)
        return SEPARATOR.join(
            item if isinstance(item, str) else "b" + base64.b64encode(item).decode() for item in items
        )

    # -- the session's life -------------------------------------------------------------------

    async def open(self, environ: dict[str, Any], upgrades: list[str]) -> web.Response:
        """Register with python-socketio and answer the handshake ``GET``."""
        self.sio.eio.sockets[self.sid] = self
        environ[BUCKET_ENVIRON_KEY] = self.bucket  # the connection's events share it
        await self.sio._handle_eio_connect(self.sid, environ)
        self._schedule_ping()
        return text_response(handshake(self.sid, self.settings, upgrades))

    def end(self, reason: Any, final: str, linger: bool) -> None:
        """End the session: python-socketio learns it now; ``final`` (``1`` or ``6``) goes to
        the waiting poll, or, with ``linger``, to the next one if it comes in time."""
        if self.closing:
            return
        self.closing = True
        self._stop_timers()
        if self.connect_timer is not None:
            self.connect_timer.cancel()
        self._buffer.append(final)
        self._ending = asyncio.ensure_future(self._disconnect(reason))
        if linger:
            self._linger = asyncio.get_running_loop().call_later(CLOSE_LINGER, self._release)
        if self._waiter is not None:
            self._wake()  # the poll returns the buffer, then releases the session
        elif not linger:
            self._release()

    async def _disconnect(self, reason: Any) -> None:
        try:
            await self.sio._handle_eio_disconnect(self.sid, reason)
        except Exception:
            log.exception("disconnect handler failed for Engine.IO session %s", self.sid)

    def _release(self) -> None:
        self.closed = True
        if self._linger is not None:
            self._linger.cancel()
        sockets = self.sio.eio.sockets
        if sockets.get(self.sid) is self:
            del sockets[self.sid]

    # -- heartbeat ----------------------------------------------------------------------------

    def _schedule_ping(self) -> None:
        loop = asyncio.get_running_loop()
        self._ping_timer = loop.call_later(self.settings.ping_interval, self._ping)
        # from when the ping is due, not from when a busy loop gets to it: the client's time to
        # answer is ping_interval + ping_timeout since its last pong, whatever the timers do
        self._pong_deadline = loop.time() + self.settings.ping_interval + self.settings.ping_timeout

    def _ping(self) -> None:
        self._ping_timer = None
        self.push_text(PING)
        if self._pong_deadline is not None:
            self._pong_timer = asyncio.get_running_loop().call_at(self._pong_deadline, self._pong_missed)

    def _pong_missed(self) -> None:
        self.end(self.sio.reason.PING_TIMEOUT, CLOSE, linger=False)

    def _stop_timers(self) -> None:
        for timer in (self._ping_timer, self._pong_timer):
            if timer is not None:
                timer.cancel()
        self._ping_timer = self._pong_timer = self._pong_deadline = None

    def close_unconnected(self) -> None:
        """The connect timeout: no Socket.IO CONNECT in time."""
        self.end(self.sio.reason.SERVER_DISCONNECT, CLOSE, linger=True)

    def check_deadline(self) -> None:
        """End the session now if its pong is overdue, even if the timers have not run yet (a
        loaded event loop must not let a request see a session the protocol calls dead)."""
        deadline = self._pong_deadline
        if deadline is not None and asyncio.get_running_loop().time() >= deadline:
            self._pong_missed()

    # -- requests -----------------------------------------------------------------------------

    async def poll(self, request: web.Request) -> web.StreamResponse:
        """``GET``: everything queued, or wait until something is."""
        if self._waiter is not None:
            self.end(self.sio.reason.TRANSPORT_ERROR, CLOSE, linger=False)
            return error_response(400, "overlapping poll requests")
        if not self._buffer:
            if self.probing:
                return text_response(NOOP)
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            except asyncio.CancelledError:  # aiohttp gave up the request: the client left
                self._waiter = None
                self.end(self.sio.reason.TRANSPORT_CLOSE, CLOSE, linger=False)
                raise
            finally:
                self._waiter = None
        payload = self._take() or NOOP
        if self.closing and not (self._buffer and self._linger is not None):
            self._release()  # unless lingering with more to deliver than one poll carries
        elif request.transport is None or request.transport.is_closing():
            # the client left while we waited: what we took is lost, and so is the session
            self.end(self.sio.reason.TRANSPORT_CLOSE, CLOSE, linger=False)
        return text_response(payload)

    async def post(self, request: web.Request) -> web.StreamResponse:
        """``POST``: the client's packets, handled in order; ``ok`` when all were taken."""
        if self._posting:
            self.end(self.sio.reason.TRANSPORT_ERROR, CLOSE, linger=False)
            return error_response(400, "overlapping send requests")
        self._posting = True
        try:
            body = await read_bounded(request, self.settings.max_message_bytes)
            try:
                text = body.decode()
            except UnicodeDecodeError as exc:
                raise PayloadError(f"payload is not UTF-8: {exc}") from None
            for packet in text.split(SEPARATOR):
                await self._receive(packet)
                if self.closing:
                    break
        except PayloadError as exc:
            log.info("closing Engine.IO session %s: %s", self.sid, exc)
            self.end(self.sio.reason.TRANSPORT_ERROR, CLOSE, linger=False)
            return error_response(413 if isinstance(exc, PayloadTooLarge) else 400, str(exc))
        finally:
            self._posting = False
        return text_response("ok")

    async def _receive(self, packet: str) -> None:
        kind = packet[:1]
        if self.closing:
            return
        # every packet costs a token, as every frame does on a WebSocket (ratelimit.TokenBucket)
        self.bucket.charge()
        await self._handle(packet, kind)
        if self.bucket.settle():
            raise PayloadError("rate limit exceeded")

    async def _handle(self, packet: str, kind: str) -> None:
        try:
            if kind == MESSAGE:
                await self.sio._handle_eio_message(self.sid, packet[1:])
            elif kind == "b":
                await self.sio._handle_eio_message(self.sid, base64.b64decode(packet[1:], validate=True))
            elif kind == PONG:
                if self._pong_timer is not None:
                    self._pong_timer.cancel()
                    self._pong_timer = None
                    self._schedule_ping()
            elif kind == PING:
                self.push_text(PONG + packet[1:])
            elif kind == CLOSE:
                self.end(self.sio.reason.CLIENT_DISCONNECT, NOOP, linger=True)
            elif kind != NOOP:
                raise PayloadError(f"invalid Engine.IO packet {packet[:16]!r}")
        except binascii.Error as exc:
            raise PayloadError(f"invalid base64 payload: {exc}") from None
        except PayloadError:
            raise
        except Exception as exc:  # python-socketio refused the packet: it ends the session
            raise PayloadError(f"invalid Socket.IO packet: {exc}") from None

    # -- upgrade ------------------------------------------------------------------------------

    def pause(self) -> None:
        """The probe succeeded: answer the waiting poll (noop when there is nothing to send)."""
        self.probing = True
        if self._waiter is not None and not self._buffer:
            self._buffer.append(NOOP)
            self._wake()

    def resume(self) -> None:
        """The upgrade failed: polling goes on as before."""
        self.upgrading = self.probing = False

    def hand_over(self, successor: EngineSocket) -> None:
        """The client sent ``5``: the WebSocket carries the session from now on, starting with
        what was still waiting here, in order."""
        self._stop_timers()
        self.closing = self.closed = True
        self.sio.eio.sockets[self.sid] = successor
        successor.session = self.session
        successor.bucket = self.bucket  # the one the connection's events are charged to
        successor.connect_timer, self.connect_timer = self.connect_timer, None
        for item in self._buffer:
            if isinstance(item, str):
                successor.push_text(item)
            else:
                successor.push_binary(item)
        self._buffer.clear()
        self._wake()  # a poll still waiting (it should not be) ends with nothing


class PayloadTooLarge(PayloadError):
    pass


async def read_bounded(request: web.Request, limit: int) -> bytes:
    """The request body, refusing it past ``limit`` bytes without reading further."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"payload over {limit} bytes")
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"payload over {limit} bytes")
    return bytes(body)


def text_response(text: str) -> web.Response:
    return web.Response(text=text, content_type="text/plain")
