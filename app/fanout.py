"""The broadcast fast path: encode a message once, hand the same frame bytes to every recipient.

python-socketio's manager builds one Engine.IO packet per broadcast but then starts one asyncio
task per recipient, and each recipient's Engine.IO writer re-encodes the packet, builds its own
WebSocket frame (compressing it again when permessage-deflate is on) and makes one socket write
per message. Here, instead:

- :class:`FanoutManager` encodes the Socket.IO packet once, derives the WebSocket frame for
  Socket.IO recipients and the envelope frame for plain-WS recipients from it, and pushes those
  bytes to each recipient's :class:`FrameWriter` synchronously: no task per recipient.
- :class:`FrameWriter` owns the writes to one connection's transport. Frames pushed during one
  event-loop iteration leave in one ``transport.write`` (coalescing), in push order. It bounds
  what may wait for a slow client and disconnects the client past that bound.
- :class:`FastWebSocket` is the Engine.IO aiohttp driver with a FrameWriter attached, so Engine.IO's
  own writes (pings, acks, handshake) and the fast path share one ordered byte stream.

Ordering: a Socket.IO socket is only fed directly once its upgrade to WebSocket is complete and
while its Engine.IO queue is empty; otherwise
the packet joins that queue behind what is already waiting. (Engine.IO's writer drains its queue
without yielding, because ``FastWebSocket.send`` never suspends, so an empty queue means nothing
is in flight.) Recipients without a writer (long-polling, compression on) take python-socketio's
ordinary path. ``tests/test_fanout.py`` compares both paths byte for byte.

Relies on: ``engineio.async_drivers.aiohttp.WebSocket`` (the driver class, selected through the
engine's ``_async["websocket"]``), ``AsyncSocket._websocket_handler`` and ``AsyncSocket.queue``,
and ``socketio.AsyncManager.get_participants``; versions are pinned in pyproject.toml.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any

import socketio
from aiohttp import WSCloseCode, web
from engineio import packet as eio_packet
from engineio.async_drivers import aiohttp as eio_aiohttp

from .envelope import event_as_envelope_text
from .history import History
from .jsoncodec import dumps, loads
from .recovery import Entry, Journal, tagged_envelope, tagged_packet

log = logging.getLogger(__name__)

DEFAULT_SEND_BUFFER_LIMIT = 1 << 20
SLOW_CLIENT_GRACE = 5.0
HARD_LIMIT_FACTOR = 4


def text_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A complete, unmasked (server-to-client), uncompressed WebSocket frame."""
    length = len(payload)
    if length < 126:
        header = bytes((0x80 | opcode, length))
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, length)
    return header + payload


class _FlushScheduler:
    """Flushes every writer that received frames, once per event-loop iteration."""

    def __init__(self) -> None:
        self.dirty: list[FrameWriter] = []
        self.scheduled = False

    def mark(self, writer: FrameWriter) -> None:
        self.dirty.append(writer)
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self.flush_all)

    def flush_all(self) -> None:
        self.scheduled = False
        dirty, self.dirty = self.dirty, []
        for writer in dirty:
            writer.flush()


_scheduler = _FlushScheduler()


class FrameWriter:
    """Ordered, coalesced, bounded writes of ready-made WebSocket frames to one transport.

    The bound is on what the kernel did not take (the transport's user-space buffer). A burst
    may exceed ``limit`` for up to ``SLOW_CLIENT_GRACE`` seconds, so a client that is momentarily
    busy survives; one that stays behind, or exceeds ``HARD_LIMIT_FACTOR * limit`` at any time,
    is disconnected through ``on_overflow``.
    """

    __slots__ = ("_grace", "_limit", "_on_overflow", "_pending", "_transport", "closed")

    def __init__(self, transport: asyncio.Transport, on_overflow: Any, limit: int) -> None:
        self._transport = transport
        self._on_overflow = on_overflow
        self._limit = limit
        self._pending: list[bytes] = []
        self._grace: asyncio.TimerHandle | None = None
        self.closed = False

    def push(self, frame: bytes) -> None:
        if self.closed:
            return
        if not self._pending:
            _scheduler.mark(self)
        self._pending.append(frame)

    def flush(self) -> None:
        pending = self._pending
        if not pending or self.closed:
            return
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        transport = self._transport
        if transport.is_closing():
            return
        transport.write(data)
        backlog = transport.get_write_buffer_size()
        if backlog > self._limit * HARD_LIMIT_FACTOR:
            self._overflow(backlog)
        elif backlog > self._limit and self._grace is None:
            self._grace = asyncio.get_running_loop().call_later(SLOW_CLIENT_GRACE, self._end_of_grace)

    def _end_of_grace(self) -> None:
        self._grace = None
        backlog = self._transport.get_write_buffer_size()
        if not self.closed and backlog > self._limit:
            self._overflow(backlog)

    def _overflow(self, backlog: int) -> None:
        self.closed = True
        self._pending.clear()
        if self._grace is not None:
            self._grace.cancel()
        log.warning("disconnecting slow client: %d bytes waiting to be sent (limit %d)", backlog, self._limit)
        self._on_overflow()


class FastWebSocket(eio_aiohttp.WebSocket):
    """Engine.IO's aiohttp WebSocket driver, writing through a :class:`FrameWriter`.

    The writer is attached to the Engine.IO socket (``socket.frame_writer``) for the lifetime of
    the WebSocket, which is how :class:`FanoutManager` finds it.
    """

    compress = False
    send_buffer_limit = DEFAULT_SEND_BUFFER_LIMIT

    async def __call__(self, environ: dict[str, Any]) -> web.WebSocketResponse:
        request = environ["aiohttp.request"]
        self._sock = web.WebSocketResponse(max_msg_size=self.server.max_http_buffer_size, compress=self.compress)
        await self._sock.prepare(request)
        self.environ = environ
        engine_socket = self.handler.__self__
        self.writer = None
        if not self.compress and request.transport is not None:
            self.writer = FrameWriter(request.transport, self._overflow, self.send_buffer_limit)
            engine_socket.frame_writer = self.writer
        try:
            await self.handler(self)
        finally:
            engine_socket.frame_writer = None
        return self._sock

    def _overflow(self) -> None:
        # keep a reference until done: the loop only holds tasks weakly
        self._closing = asyncio.ensure_future(
            self._sock.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"client too slow")
        )

    async def send(self, message: str | bytes) -> None:
        if self.writer is None:
            await super().send(message)
        elif isinstance(message, bytes):
            self.writer.push(text_frame(message, opcode=0x2))
        else:
            self.writer.push(text_frame(message.encode()))

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
        await super().close()


def install_fast_websocket(eio: Any, compress: bool, send_buffer_limit: int) -> None:
    """Make this Engine.IO server use :class:`FastWebSocket` (configured) for its WebSockets."""
    driver = type(
        "ConfiguredFastWebSocket", (FastWebSocket,), {"compress": compress, "send_buffer_limit": send_buffer_limit}
    )
    eio._async = {**eio._async, "websocket": driver}  # a copy: the driver table is module-wide


class FanoutManager(socketio.AsyncManager):
    """python-socketio's in-memory manager with the encode-once, no-task-per-recipient emit.

    Emits with an ack callback (never used by the gateway for groups) and binary payloads take
    the inherited path. With a :class:`~realtime_gateway.recovery.Journal` attached, every message
    but a direct reply to one connection gets its offset (the last argument of the event, the
    ``offset`` field of the envelope) and is kept for recovery and, for rooms, in ``history``.
    """

    journal: Journal | None = None
    history: History | None = None

    async def emit(  # type: ignore[override]
        self,
        event: str,
        data: Any,
        namespace: str,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> None:
        room = to or room
        if callback is not None or namespace != "/":
            return await super().emit(event, data, namespace, room=room, skip_sid=skip_sid, callback=callback)
        args = list(data) if isinstance(data, tuple) else ([] if data is None else [data])
        try:
            # what Packet(EVENT, data).encode() gives in "/" without an ack id, minus its
            # recursive scan for binary data: bytes make the encoder raise instead
            body = dumps([event, *args])
        except TypeError:  # binary attachments: several Engine.IO packets, the inherited way
            return await super().emit(event, data, namespace, room=room, skip_sid=skip_sid)
        encoded = "2" + body
        offset: str | None = None
        journal = self.journal
        connected = self.rooms.get(namespace)
        # direct replies to one connection (welcome, pong, error) are not part of the stream; the
        # rest is kept even when nobody here receives it (history, another node's session)
        if journal is not None and not (isinstance(room, str) and room in (connected or {}).get(None, ())):
            offset = journal.record(room, skip_sid, body)
            if self.history is not None and isinstance(room, str) and len(args) == 1 and isinstance(args[0], dict):
                self.history.add(room, offset, args[0])
            if journal.tag_frames:
                encoded = tagged_packet(body, offset)
            else:
                offset = None
        if connected is None:
            return
        skip = set(skip_sid) if isinstance(skip_sid, list) else {skip_sid}
        # clients whose connect handler is still running have not been told they are connected:
        # an event now would arrive before the CONNECT answer (python-socketio sends it anyway)
        skip.update(self.pending_connect.get(namespace, ()))

        def render_plain() -> str:
            text = plain_text(event, args, "2" + body, namespace)
            return text if offset is None else tagged_envelope(text, offset)

        slow = self._push(self.get_participants(namespace, room), skip, encoded, render_plain)
        if slow:
            await _send_slow(slow, encoded)

    async def send_local(self, sid: str, event: str, data: Any) -> None:
        """One event to one connection of this node, in the default namespace: no Redis, no
        participant scan, no python-socketio packet objects (replies, welcome, errors)."""
        eio_sid = self.eio_sid_from_sid(sid, "/")
        if eio_sid is None:
            return
        try:
            encoded = "2" + dumps([event, data])
        except TypeError:  # binary attachments: the inherited way, this node only
            return await FanoutManager.emit(self, event, data, "/", to=sid)
        pending = self.pending_connect.get("/", ())
        slow = self._push(((sid, eio_sid),), pending, encoded, lambda: plain_text(event, [data], encoded, "/"))
        if slow:
            await _send_slow(slow, encoded)

    async def send_packet(self, sid: str, eio_sid: str, encoded: str) -> None:
        """An encoded Socket.IO packet of the default namespace (an ACK) to one connection of
        this node. Plain-WS connections render only events, so they get it through their
        ``send``, as from python-socketio."""
        slow = self._push(((sid, eio_sid),), (), encoded, None)
        if slow:
            await _send_slow(slow, encoded)

    def _push(self, participants: Any, skip: Any, encoded: str, render_plain: Any) -> list[Any]:
        """Push ``"4" + encoded`` (or, to plain-WS recipients, ``render_plain()``; None: their
        own ``send``) to every participant's writer, without suspending. Returns the sockets
        that must take Engine.IO's path instead (:func:`_send_slow`), in order behind what is
        queued there."""
        sockets = self.server.eio.sockets
        sio_frame: bytes | None = None
        plain_frame: bytes | None = None
        slow: list[Any] = []
        for sid, eio_sid in participants:
            if sid in skip:
                continue
            sock = sockets.get(eio_sid)
            if sock is None:
                continue
            writer = getattr(sock, "frame_writer", None)
            if writer is None:
                slow.append(sock)
            elif getattr(sock, "renders_envelopes", False):
                if render_plain is None:
                    slow.append(sock)
                    continue
                if plain_frame is None:
                    plain_frame = text_frame(render_plain().encode())
                writer.push(plain_frame)
            elif not sock.upgraded or sock.queue.qsize():
                # mid-upgrade (the client has not switched yet), or earlier packets still queued
                slow.append(sock)
            else:
                if sio_frame is None:
                    sio_frame = text_frame(("4" + encoded).encode())
                writer.push(sio_frame)
        return slow

    async def replay(self, sid: str, entries: list[Entry]) -> None:
        """Deliver journal entries to one connection, in order, as :meth:`emit` delivered them to
        the others (not the hot path: each entry is decoded again)."""
        eio_sid = self.eio_sid_from_sid(sid, "/")
        sock = self.server.eio.sockets.get(eio_sid) if eio_sid is not None else None
        if sock is None:
            return
        writer = getattr(sock, "frame_writer", None)
        for entry in entries:
            if getattr(sock, "renders_envelopes", False):
                event, *args = loads(entry.body)
                text = plain_text(event, args, "2" + entry.body, "/")
                writer.push(text_frame(tagged_envelope(text, entry.offset).encode()))
                continue
            encoded = tagged_packet(entry.body, entry.offset)
            if writer is not None and sock.upgraded and not sock.queue.qsize():
                writer.push(text_frame(("4" + encoded).encode()))
            else:  # python-engineio's queue: put without waiting, so the order holds
                await sock.send(eio_packet.Packet(eio_packet.MESSAGE, encoded))


async def _send_slow(sockets: list[Any], encoded: str) -> None:
    pkt = eio_packet.Packet(eio_packet.MESSAGE, encoded)
    await asyncio.gather(*(sock.send(pkt) for sock in sockets), return_exceptions=True)


def plain_text(event: str, args: list[Any], encoded: str, namespace: str) -> str:
    """The plain-WS frame for an event, cut from its encoded Socket.IO packet when possible.

    For an envelope ``E`` of type ``event`` in the default namespace, the packet is
    ``2[<event JSON>,<E JSON>]`` and the frame is exactly ``<E JSON>`` (see realtime_gateway.jsoncodec).
    """
    if namespace == "/" and len(args) == 1 and isinstance(args[0], dict) and args[0].get("type") == event:
        return encoded[len(dumps(event)) + 3 : -1]
    return event_as_envelope_text(event, args)
