"""A WebSocket connection that leaves aiohttp's request machinery behind once it is upgraded.

aiohttp serves a WebSocket inside the request handler that upgraded it: for the life of the
connection its ``RequestHandler`` (HTTP parser, message queue, handler task, keep-alive state),
the request (headers, URL, payload), the ``WebSocketResponse`` and the handler's coroutine frames
stay alive — about 14 KB of the 20 KB an idle connection cost (measured with tracemalloc,
docs/benchmarks.md). :func:`detach` answers the upgrade itself and moves the transport to a
:class:`WsProtocol` of ours: the handler returns at once and everything of aiohttp's is freed.
What stays per connection is this protocol, aiohttp's own C frame parser and its message queue
(masks, fragmentation, control frames, UTF-8 and the 1009 size limit behave exactly as before)
and the session (:mod:`realtime_gateway.transport.ws_session`), which writes its frames itself through a
:class:`~realtime_gateway.transport.fanout.FrameWriter`.

Compressed connections (``--ws-compression`` and a client offering permessage-deflate) keep
aiohttp's ``WebSocketResponse``: its parser inflates what they send. So does any request aiohttp
would not upgrade (``WebSocketResponse.can_prepare``): its ``prepare`` gives the HTTP error.

aiohttp interfaces relied on (pinned in pyproject.toml; exercised by tests/test_ws_transport.py,
tests/test_hostile.py, tests/test_engine_ws.py, tests/test_plain_ws.py and the conformance suites):

- ``aiohttp._websocket.reader.WebSocketReader(queue, max_msg_size, compress=, decode_text=)``
  and ``WebSocketDataQueue(protocol, limit, loop=)`` (private module): the parser and queue
  ``WebSocketResponse.prepare`` builds; the queue calls the protocol's ``pause_reading()`` /
  ``resume_reading()`` and reads its ``_reading_paused``, and ``read()`` raises ``EofStream``
  at the end and ``WebSocketError`` (with the close code) for a bad frame.
- ``RequestHandler._message_tail`` (private): bytes that arrived after the upgrade request.
- Letting go of a connection: ``RequestHandler.transport = None`` then its ``connection_lost(None)``
  (the asyncio protocol method): aiohttp forgets the connection (its server's list, timers)
  without closing the transport, and the response the handler returns fails to write, which
  aiohttp takes as a client that left.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import sys
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
uses 256 KiB; the gateway reads every message at once, so this bounds only bursts)."""

_CLOSED = WSMessage(WSMsgType.CLOSED, None, None)


def wants_aiohttp(request: web.Request, compress: bool) -> bool:
    """True when the connection must stay on aiohttp's ``WebSocketResponse``: a compressed
    one, or a request aiohttp would refuse (it answers with the right HTTP error)."""
    if compress and "permessage-deflate" in request.headers.get("Sec-WebSocket-Extensions", ""):
        return True
    return not web.WebSocketResponse().can_prepare(request).ok


class WsProtocol(asyncio.Protocol):
    """The transport's protocol after the upgrade: bytes in go to aiohttp's frame parser, the
    session reads the parsed messages with :meth:`receive` (the interface of
    ``WebSocketResponse.receive`` with autoclose and autoping off)."""

    __slots__ = ("_parser", "_queue", "_reading_paused", "_transport", "on_close")

    def __init__(self, transport: asyncio.Transport, max_msg_size: int) -> None:
        self._transport = transport
        self._reading_paused = False
        self._queue = WebSocketDataQueue(self, QUEUE_LIMIT, loop=asyncio.get_running_loop())
        self._parser = WebSocketReader(self._queue, max_msg_size, compress=False, decode_text=True)
        self.on_close: Any = None
        """``(code, reason)``: how the session closes (``SessionSocket.shutdown``)."""

    # -- asyncio.Protocol -------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._parser.feed_data(data)  # a bad frame is queued as an exception, read in turn

    def eof_received(self) -> None:
        return None  # the transport closes; connection_lost follows

    def connection_lost(self, exc: BaseException | None) -> None:
        self._parser.feed_eof()

    # -- flow control, called by the queue --------------------------------------------------

    def pause_reading(self) -> None:
        if not self._reading_paused and not self._transport.is_closing():
            self._transport.pause_reading()
            self._reading_paused = True

    def resume_reading(self) -> None:
        if self._reading_paused and not self._transport.is_closing():
            self._transport.resume_reading()
        self._reading_paused = False

    # -- what the session calls -------------------------------------------------------------

    async def receive(self, timeout: float | None = None) -> WSMessage:
        """The next message; CLOSED at the end of the stream and ERROR (the exception as
        ``data``) for a frame the protocol refuses, each after ``on_close`` was called with the
        close code, as aiohttp's ``receive`` does."""
        try:
            if timeout is None:
                return await self._queue.read()
            # not wait_for: its task would cost the reader two more loop iterations (the
            # upgrade's "5" must be read before a poll that follows it on another connection)
            async with _timeout(timeout):
                return await self._queue.read()
        except EofStream:
            self.on_close(WSCloseCode.OK, "")
            return _CLOSED
        except WebSocketError as exc:
            self.on_close(exc.code, "")
            return WSMessage(WSMsgType.ERROR, exc, None)


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
