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
  what may wait for a slow client and disconnects the client past that bound, and it owns the
  end of the connection: the close frame is the last frame written, then a FIN or a reset.

Ordering: every recipient is one of the gateway's own sockets (the Engine.IO transports of
:mod:`realtime_gateway.transport.engine_ws` and :mod:`realtime_gateway.transport.engine_polling`, the plain ``/ws``
sockets), and every write to one of them, fast path or python-socketio's ``send``, is a
synchronous append to its writer (WebSocket) or its poll buffer (long-polling, through
``push_text``): the order of the calls is the order on the wire. ``tests/test_fanout.py``
compares the fast path with python-socketio's ordinary one byte for byte.

Relies on ``socketio.AsyncManager.get_participants`` and ``pending_connect``; versions are
pinned in pyproject.toml.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import socketio

from ..envelope import event_as_envelope_text
from ..history import HistoryStore
from ..jsoncodec import dumps, loads
from ..recovery import Entry, Journal, tagged_envelope, tagged_packet

log = logging.getLogger(__name__)

Command = Callable[[dict[str, Any]], Awaitable[None]]
"""A cluster-wide command's handler, given the payload published with it."""

SLOW_CLIENT_GRACE = 5.0
HARD_LIMIT_FACTOR = 4
CLOSE_TIMEOUT = 3.0
"""Seconds a peer has to answer the close frame before its TCP connection is reset."""


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
    """Flushes every writer that received frames, once per event-loop iteration.

    One per event loop (:meth:`of_running_loop`): a loop that stops with a flush pending leaves
    its own scheduler marked, never the next loop's."""

    __slots__ = ("dirty", "scheduled")
    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _FlushScheduler] = weakref.WeakKeyDictionary()

    def __init__(self) -> None:
        self.dirty: list[FrameWriter] = []
        self.scheduled = False

    @classmethod
    def of_running_loop(cls) -> _FlushScheduler:
        loop = asyncio.get_running_loop()
        scheduler = cls._by_loop.get(loop)
        if scheduler is None:
            scheduler = cls._by_loop[loop] = cls()
        return scheduler

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


def close_frame(code: int, reason: str) -> bytes:
    """A WebSocket close frame; the reason is cut to fit the 125-byte control-frame payload."""
    return text_frame(struct.pack("!H", code) + reason.encode()[:123], opcode=0x8)


_RESET_ON_CLOSE = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST, drops the send queue


class FrameWriter:
    """Ordered, coalesced, bounded writes of ready-made WebSocket frames to one transport, and
    the end of that transport.

    The bound is on what the kernel did not take (the transport's user-space buffer). A burst
    may exceed ``limit`` for up to ``SLOW_CLIENT_GRACE`` seconds, so a client that is momentarily
    busy survives; one that stays behind, or exceeds ``HARD_LIMIT_FACTOR * limit`` at any time,
    is disconnected through ``on_overflow``.

    Closing (:meth:`close`) is one more frame in the same stream: the close frame leaves after
    everything pushed before it and nothing is written after it. The peer then has
    ``CLOSE_TIMEOUT`` seconds to answer; :meth:`finish` (called when it did) ends the TCP
    connection cleanly, otherwise it is reset (:meth:`abort`), whatever the peer does.
    """

    __slots__ = ("_limit", "_on_overflow", "_pending", "_scheduler", "_timer", "_transport", "closed")

    def __init__(self, transport: asyncio.Transport, on_overflow: Any, limit: int) -> None:
        self._transport = transport
        self._on_overflow = on_overflow
        self._limit = limit
        self._pending: list[bytes] = []
        self._scheduler = _FlushScheduler.of_running_loop()
        # the slow-client grace while open, the close deadline once closed
        self._timer: asyncio.TimerHandle | None = None
        self.closed = False

    def push(self, frame: bytes) -> None:
        if self.closed:
            return
        if not self._pending:
            self._scheduler.mark(self)
        self._pending.append(frame)

    def flush(self) -> None:
        pending = self._pending
        if not pending:
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
        elif backlog > self._limit and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(SLOW_CLIENT_GRACE, self._end_of_grace)

    def close(self, code: int, reason: str) -> None:
        """Write the close frame after what is pending, refuse every later frame, and reset the
        connection unless :meth:`finish` is called within ``CLOSE_TIMEOUT`` seconds."""
        if self.closed:
            return
        self._pending.append(close_frame(code, reason))
        self.closed = True
        self.flush()
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self.abort)

    def finish(self) -> None:
        """The peer answered the close (or left): end the TCP connection with a FIN. What the
        transport still buffers keeps the close deadline, so a peer that stopped reading is
        still reset in the end."""
        transport = self._transport
        if self._timer is not None and not transport.get_write_buffer_size():
            self._timer.cancel()
            self._timer = None
        transport.close()

    def abort(self) -> None:
        """Reset the connection now: no FIN queued behind data a stuck peer will never read,
        no kernel buffer held for it."""
        self.closed = True
        self._pending.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        transport = self._transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
        transport.abort()

    def _end_of_grace(self) -> None:
        self._timer = None
        backlog = self._transport.get_write_buffer_size()
        if not self.closed and backlog > self._limit:
            self._overflow(backlog)

    def _overflow(self, backlog: int) -> None:
        if self.closed:  # the close frame itself is still waiting: the close deadline handles it
            return
        self._pending.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        log.warning("disconnecting slow client: %d bytes waiting to be sent (limit %d)", backlog, self._limit)
        self._on_overflow()


class FanoutManager(socketio.AsyncManager):
    """python-socketio's in-memory manager with the encode-once, no-task-per-recipient emit.

    Emits with an ack callback (never used by the gateway for groups) and binary payloads take
    the inherited path. With a :class:`~realtime_gateway.recovery.Journal` attached, every message
    but a direct reply to one connection gets its offset (the last argument of the event, the
    ``offset`` field of the envelope) and is kept for recovery and, for rooms, in ``history``.

    Cluster-wide commands (:meth:`register`, :meth:`publish`) have the interface of
    :class:`~realtime_gateway.cluster.bus.StreamManager`'s; alone, a node is the whole cluster, so they
    run here only. Callers need no single-node case.
    """

    journal: Journal | None = None
    history: HistoryStore | None = None

    def __init__(self) -> None:
        super().__init__()
        self.commands: dict[str, Command] = {}

    def register(self, method: str, handler: Command) -> None:
        """Add a command: ``handler(payload)`` runs (on every node) for each :meth:`publish` of
        ``method``. Handlers must not raise for a payload they can ignore (on a cluster, a
        failure is logged and counted in ``gateway_bus_dropped_total{reason="failed"}``)."""
        if method in self.commands:
            raise ValueError(f"command {method!r} is already registered")
        self.commands[method] = handler

    async def publish(self, method: str, payload: dict[str, Any]) -> None:
        """Run a registered command on every node: on a single node, here and now."""
        await self.commands[method](payload)

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

        self._push(self.get_participants(namespace, room), skip, encoded, render_plain)

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
        self._push(((sid, eio_sid),), pending, encoded, lambda: plain_text(event, [data], encoded, "/"))

    async def send_packet(self, sid: str, eio_sid: str, encoded: str) -> None:
        """An encoded Socket.IO packet of the default namespace (an ACK) to one connection of
        this node. Plain-WS connections render only events: not for them."""
        self._push(((sid, eio_sid),), (), encoded, None)

    def _push(self, participants: Any, skip: Any, encoded: str, render_plain: Any) -> None:
        """Push ``"4" + encoded`` to every participant's writer (long-polling: its poll buffer),
        or, to plain-WS recipients, ``render_plain()`` (None: not for them, they render only
        events), without suspending."""
        sockets = self.server.eio.sockets
        sio_frame: bytes | None = None
        plain_frame: bytes | None = None
        polling_text = "4" + encoded
        for sid, eio_sid in participants:
            if sid in skip:
                continue
            sock = sockets.get(eio_sid)
            if sock is None:
                continue
            writer = sock.frame_writer
            if writer is None:  # long-polling: waits for the client's next poll
                sock.push_text(polling_text)
            elif sock.renders_envelopes:
                if render_plain is None:
                    continue
                if plain_frame is None:
                    plain_frame = text_frame(render_plain().encode())
                writer.push(plain_frame)
            else:
                if sio_frame is None:
                    sio_frame = text_frame(polling_text.encode())
                writer.push(sio_frame)

    async def replay(self, sid: str, entries: list[Entry]) -> None:
        """Deliver journal entries to one connection, in order, as :meth:`emit` delivered them to
        the others (not the hot path: each entry is decoded again)."""
        eio_sid = self.eio_sid_from_sid(sid, "/")
        sock = self.server.eio.sockets.get(eio_sid) if eio_sid is not None else None
        if sock is None:
            return
        writer = sock.frame_writer
        for entry in entries:
            if sock.renders_envelopes:
                event, *args = loads(entry.body)
                text = plain_text(event, args, "2" + entry.body, "/")
                writer.push(text_frame(tagged_envelope(text, entry.offset).encode()))
                continue
            packet = "4" + tagged_packet(entry.body, entry.offset)
            if writer is None:  # long-polling
                sock.push_text(packet)
            else:
                writer.push(text_frame(packet.encode()))


def plain_text(event: str, args: list[Any], encoded: str, namespace: str) -> str:
    """The plain-WS frame for an event, cut from its encoded Socket.IO packet when possible.

    For an envelope ``E`` of type ``event`` in the default namespace, the packet is
    ``2[<event JSON>,<E JSON>]`` and the frame is exactly ``<E JSON>`` (see realtime_gateway.jsoncodec).
    """
    if namespace == "/" and len(args) == 1 and isinstance(args[0], dict) and args[0].get("type") == event:
        return encoded[len(dumps(event)) + 3 : -1]
    return event_as_envelope_text(event, args)
