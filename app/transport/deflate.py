"""permessage-deflate (RFC 7692) for the gateway's WebSocket sessions, when ``--ws-compression``
is on.

aiohttp negotiates the extension and decompresses what clients send; what the gateway sends
bypasses aiohttp's writer (:class:`~realtime_gateway.transport.fanout.FrameWriter` writes ready-made
frames), so it is compressed here, per connection: the fan-out path still encodes a frame once,
and :class:`DeflateFrameWriter` re-encodes its payload for its one recipient. That is the cost the
option's help warns about (CPU per recipient, zlib state per connection).
"""

from __future__ import annotations

import zlib
from typing import Any

from aiohttp import web

from .fanout import FrameWriter, text_frame

_SYNC_TAIL = b"\x00\x00\xff\xff"
_RSV1 = 0x40


class DeflateFrameWriter(FrameWriter):
    """A FrameWriter that compresses each data frame's payload with the negotiated parameters."""

    __slots__ = ("_compressor", "_takeover", "_wbits")

    def __init__(self, transport: Any, on_overflow: Any, limit: int, wbits: int, takeover: bool) -> None:
        super().__init__(transport, on_overflow, limit)
        self._wbits = wbits
        self._takeover = takeover
        self._compressor = zlib.compressobj(wbits=-wbits)

    def push(self, frame: bytes) -> None:
        opcode = frame[0] & 0x0F
        if opcode < 0x8:  # control frames are never compressed
            frame = self._deflate(frame, opcode)
        super().push(frame)

    def _deflate(self, frame: bytes, opcode: int) -> bytes:
        length = frame[1] & 0x7F
        payload = frame[2 if length < 126 else 4 if length == 126 else 10 :]
        compressor = self._compressor if self._takeover else zlib.compressobj(wbits=-self._wbits)
        data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
        if data.endswith(_SYNC_TAIL):
            data = data[:-4]
        compressed = text_frame(data, opcode)
        return bytes((compressed[0] | _RSV1,)) + compressed[1:]


def frame_writer_for(ws: Any, transport: Any, on_overflow: Any, limit: int) -> FrameWriter:
    """The writer for an upgraded connection: compressing when the client accepted the extension
    (only aiohttp's ``WebSocketResponse`` negotiates it; a detached connection never does)."""
    if not isinstance(ws, web.WebSocketResponse) or not ws.compress:
        return FrameWriter(transport, on_overflow, limit)
    takeover = "server_no_context_takeover" not in ws.headers.get("Sec-WebSocket-Extensions", "")
    return DeflateFrameWriter(transport, on_overflow, limit, int(ws.compress), takeover)
