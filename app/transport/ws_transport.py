"""A WebSocket connection that leaves aiohttp's request machinery behind once it is upgraded.

aiohttp serves a WebSocket inside the request handler that upgraded it: for the life of the
connection its ``RequestHandler`` (HTTP parser, message queue, handler task, keep-alive state),
the request (headers, URL, payload), the ``WebSocketResponse`` and the handler's coroutine frames
stay alive — about 14 KB of the 20 KB an idle connection cost (measured with tracemalloc,
docs/benchmarks.md). :func:`detach` answers the upgrade itself and moves the transport to a
:class:`WsProtocol` of ours: the handler returns at once and everything of aiohttp's is freed.
What stays per connection is this protocol, aiohttp's own C frame parser (masks, fragmentation,
control frames, UTF-8 and the 1009 size limit behave exactly as before) and the session
(:mod:`realtime_gateway.transport.ws_session`), which writes its frames itself through a
:class:`~realtime_gateway.transport.fanout.FrameWriter`. No task, future or buffer waits for the
next message: the parser hands each message to the protocol, which wakes the session.

Compressed connections (``--ws-compression`` and a client offering permessage-deflate) keep
aiohttp's ``WebSocketResponse``: its parser inflates what they send. So does any request aiohttp
would not upgrade (:func:`upgradable` mirrors ``WebSocketResponse.can_prepare``): its
``prepare`` gives the HTTP error.

aiohttp interfaces relied on (pinned in pyproject.toml; exercised by tests/test_ws_transport.py,
tests/test_hostile.py, tests/test_engine_ws.py, tests/test_plain_ws.py and the conformance suites):

- ``aiohttp._websocket.reader.WebSocketReader(queue, max_msg_size, compress=, decode_text=)``
  (private module): the parser ``WebSocketResponse.prepare`` builds. It takes only a
  ``WebSocketDataQueue`` (the compiled parser types it), calls its ``feed_data(message, size)``,
  ``feed_eof()`` and ``set_exception(exc)`` (``WebSocketError`` with the close code for a bad
  frame), and reads its ``_size`` and ``_limit`` to stall itself; :class:`WsProtocol` is that
  queue, overriding the three methods and leaving both numbers at 0.
- ``RequestHandler._message_tail`` (private): bytes that arrived after the upgrade request.
- Letting go of a connection: ``RequestHandler.transport = None`` then its ``connection_lost(None)``
  (the asyncio protocol method): aiohttp forgets the connection (its server's list, timers)
  without closing the transport, and the response the handler returns fails to write, which
  aiohttp takes as a client that left.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import sys
from collections.abc import Mapping
from typing import Any

from aiohttp import WSCloseCode, WSMessage, WSMsgType, web
from aiohttp._websocket.reader import WebSocketDataQueue, WebSocketReader
from aiohttp.http import WS_KEY, WebSocketError
from aiohttp.streams import EofStream

if sys.version_info >= (3, 11):
    from asyncio import timeout as _timeout
else:  # aiohttp's own dependency there
    from async_timeout import timeout as _timeout

QUEUE_LIMIT = 2**16
"""Bytes of parsed messages a connection may hold before its transport stops reading (aiohttp
uses 256 KiB; messages are handled as they arrive, so this bounds only what piles up behind a
handler that waits)."""

MESSAGE_OVERHEAD = 128
"""Bytes each waiting message counts for beyond its payload (aiohttp's figure), so that a flood
of empty frames is bounded too."""

_CLOSED = WSMessage(WSMsgType.CLOSED, None, None)


def wants_aiohttp(request: web.Request, compress: bool) -> bool:
    """True when the connection must stay on aiohttp's ``WebSocketResponse``: a compressed
    one, or a request aiohttp would refuse (it answers with the right HTTP error)."""
    headers = request.headers
    if compress and "permessage-deflate" in headers.get("Sec-WebSocket-Extensions", ""):
        return True
    return not upgradable(headers)


def upgradable(headers: Mapping[str, str]) -> bool:
    """The checks of aiohttp's ``WebSocketResponse.can_prepare`` (RFC 6455 4.2.1), without
    building a response to make them: a fifth of the cost on every connect."""
    if headers.get("Upgrade", "").lower().strip() != "websocket":
        return False
    if "upgrade" not in headers.get("Connection", "").lower():
        return False
    if headers.get("Sec-WebSocket-Version", "") not in ("13", "8", "7"):
        return False
    try:
        return len(base64.b64decode(headers.get("Sec-WebSocket-Key", ""))) == 16
    except binascii.Error:
        return False


class WsProtocol(WebSocketDataQueue, asyncio.Protocol):
    """The transport's protocol after the upgrade, and the inbox aiohttp's frame parser fills.

    Bytes in go to the parser, which hands each complete message to :meth:`feed_data`. An idle
    connection holds no task, no future and no buffer: messages wait in a list only while the
    session has not taken them yet. The session takes them either as they arrive (it sets
    :attr:`on_readable`, called when a message lands in an empty inbox or the stream ends,
    and then calls :meth:`next_message` until it gets None) or, before it runs, by awaiting
    :meth:`receive` (the upgrade's ``2probe`` / ``5``).

    It is a ``WebSocketDataQueue`` because the compiled parser accepts no other type; none of
    that class's state is used (its ``__init__`` is not called, so it allocates nothing): the
    parser calls the three methods overridden here and reads ``_size`` and ``_limit``, which stay
    0, so it never stalls itself. Flow control is ours: past ``QUEUE_LIMIT`` waiting bytes the
    transport stops reading until the session has taken them all."""

    __slots__ = (
        "_ended",
        "_inbox",
        "_inbox_bytes",
        "_inbox_next",
        "_parser",
        "_paused",
        "_transport",
        "_waiter",
        "on_close",
        "on_readable",
    )

    def __init__(self, transport: asyncio.Transport, max_msg_size: int) -> None:
        with contextlib.suppress(AttributeError):  # read-only (and 0) in the compiled queue
            self._size = self._limit = 0  # the pure-Python one (AIOHTTP_NO_EXTENSIONS) has no defaults
        self._transport = transport
        self._parser = WebSocketReader(self, max_msg_size, compress=False, decode_text=True)
        self._inbox: list[WSMessage] | None = None
        self._inbox_next = 0
        self._inbox_bytes = 0
        self._paused = False
        self._ended: BaseException | None = None
        """Why the stream ended, once it has: ``EofStream()`` or the parser's ``WebSocketError``."""
        self._waiter: asyncio.Future[None] | None = None
        self.on_close: Any = None
        """``(code, reason)``: how the session closes (``SessionSocket.shutdown``)."""
        self.on_readable: Any = None
        """Called with no argument when there is something to take: set by a running session."""

    # -- asyncio.Protocol -------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._parser.feed_data(data)  # a bad frame ends the stream with its error, taken in turn

    def eof_received(self) -> None:
        return None  # the transport closes; connection_lost follows

    def connection_lost(self, exc: BaseException | None) -> None:
        self._parser.feed_eof()

    # -- what the parser calls ----------------------------------------------------------------

    def feed_data(self, data: WSMessage, size: int) -> None:  # type: ignore[override]
        if self._ended is not None:
            return
        inbox = self._inbox
        if inbox is None:
            self._inbox = [data]
        else:
            inbox.append(data)
        self._inbox_bytes += size + MESSAGE_OVERHEAD
        if self._inbox_bytes > QUEUE_LIMIT and not self._paused and not self._transport.is_closing():
            self._transport.pause_reading()
            self._paused = True
        if inbox is None:
            self._readable()

    def feed_eof(self) -> None:
        self._end(EofStream())

    def set_exception(self, exc: BaseException, exc_cause: Any = None) -> None:  # type: ignore[override]
        self._end(exc)

    def _end(self, why: BaseException) -> None:
        if self._ended is None:
            self._ended = why
            self._readable()

    def _readable(self) -> None:
        if self.on_readable is not None:
            self.on_readable()
        elif self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # -- what the session calls -------------------------------------------------------------

    def has_pending(self) -> bool:
        """Whether :meth:`next_message` has something to give (a message, or the end)."""
        return self._inbox is not None or self._ended is not None

    def next_message(self) -> WSMessage | None:
        """The next message, or None when none is waiting. At the end of the stream: CLOSED
        (peer gone) or ERROR (a frame the protocol refuses, the exception as ``data``), each
        after ``on_close`` was called with the close code, as aiohttp's ``receive`` does."""
        inbox = self._inbox
        if inbox is not None:
            msg = inbox[self._inbox_next]
            self._inbox_next += 1
            if self._inbox_next == len(inbox):
                self._inbox = None
                self._inbox_next = self._inbox_bytes = 0
                if self._paused:
                    self._paused = False
                    if not self._transport.is_closing():
                        self._transport.resume_reading()
            return msg
        why = self._ended
        if why is None:
            return None
        if isinstance(why, WebSocketError):
            self.on_close(why.code, "")
            return WSMessage(WSMsgType.ERROR, why, None)
        self.on_close(WSCloseCode.OK, "")
        return _CLOSED

    async def receive(self, timeout: float | None = None) -> WSMessage:
        """Wait for :meth:`next_message` (before the session runs: the upgrade's messages)."""
        while (msg := self.next_message()) is None:
            self._waiter = waiter = asyncio.get_running_loop().create_future()
            try:
                if timeout is None:
                    await waiter
                else:
                    # not wait_for: its task would cost the reader two more loop iterations (the
                    # upgrade's "5" must be read before a poll that follows it on another connection)
                    async with _timeout(timeout):
                        await waiter
            finally:
                self._waiter = None
        return msg


def detach(request: web.Request, max_msg_size: int) -> tuple[asyncio.Transport, WsProtocol] | None:
    """Answer the upgrade (101) and take the transport from aiohttp; None when the client has
    already gone. The handler must then return :func:`detached_response`."""
    handler = request.protocol
    transport = request.transport
    if transport is None or transport.is_closing():
        return None
    accept = base64.b64encode(hashlib.sha1(request.headers["Sec-WebSocket-Key"].encode() + WS_KEY).digest())
    protocol = WsProtocol(transport, max_msg_size)  # type: ignore[arg-type]
    tail: bytes = handler._message_tail
    handler._message_tail = b""
    handler.transport = None
    transport.set_protocol(protocol)
    handler.connection_lost(None)
    transport.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    if tail:
        protocol.data_received(tail)
    return transport, protocol  # type: ignore[return-value]


def detached_response() -> web.StreamResponse:
    """What the handler of a detached connection returns: aiohttp cannot write it (it has let
    go of the transport) and logs the 101."""
    return web.Response(status=101)
