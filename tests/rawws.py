"""A WebSocket client on a raw TCP socket, for tests that must misbehave.

aiohttp's client reads, answers pings and closes politely whatever the test does; this one does
only what it is told: it reads nothing unless asked (its receive window fills), can send half a
frame, and shows every frame the server wrote, in order, close frame included. It also reports
its TCP state as the kernel sees it, so a test can tell a reset connection from a live one
without reading.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from typing import Any

TCP_ESTABLISHED = 1
OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA


class Closed(Exception):
    """The server ended the TCP connection (EOF or reset)."""


def client_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """A complete masked frame (clients must mask)."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if length < 4096 else _mask_fast(payload, mask)
    return header + mask + masked


def _mask_fast(payload: bytes, mask: bytes) -> bytes:
    key = int.from_bytes(mask * (len(payload) // 4 + 1), "little")
    return (int.from_bytes(payload, "little") ^ (key & ((1 << (8 * len(payload))) - 1))).to_bytes(
        len(payload), "little"
    )


class RawWebSocket:
    def __init__(self, sock: socket.socket, status: int, headers: str, rest: bytes) -> None:
        self.sock = sock
        self.status = status
        self.headers = headers
        self._buffer = bytearray(rest)
        self._start = 0  # bytes of _buffer already consumed (compacted now and then)
        self.loop = asyncio.get_running_loop()

    @classmethod
    async def open(
        cls,
        port: int,
        path: str,
        headers: dict[str, str] | None = None,
        rcvbuf: int | None = None,
        early: bytes = b"",
    ) -> RawWebSocket:
        """Send the upgrade request (and ``early``, frames in the same write, before any
        answer) and read the response head (``status`` 101 or an HTTP error)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # before connect, so the advertised window is small from the start
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in (headers or {}).items()),
        ]
        await loop.sock_sendall(sock, ("\r\n".join(lines) + "\r\n\r\n").encode() + early)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), 10)
            if not chunk:
                raise Closed("closed during the handshake")
            data += chunk
        head, rest = data.split(b"\r\n\r\n", 1)
        text = head.decode()
        return cls(sock, int(text.split()[1]), text, rest)

    async def http_body(self) -> Any:
        """The JSON body of a refused upgrade."""
        fields = dict(line.lower().split(":", 1) for line in self.headers.split("\r\n")[1:])
        length = int(fields["content-length"])
        return json.loads(await self._take(length))

    # -- sending ------------------------------------------------------------------------------

    async def send(self, payload: str | bytes, opcode: int | None = None) -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        kind = opcode if opcode is not None else (OP_TEXT if isinstance(payload, str) else OP_BINARY)
        await self.loop.sock_sendall(self.sock, client_frame(data, kind))

    async def send_raw(self, data: bytes) -> None:
        await self.loop.sock_sendall(self.sock, data)

    # -- receiving ----------------------------------------------------------------------------

    async def _recv(self) -> bytes:
        try:
            chunk = await self.loop.sock_recv(self.sock, 1 << 20)
        except ConnectionError as exc:
            raise Closed(f"reset: {exc}") from None
        if not chunk:
            raise Closed("EOF")
        return chunk

    async def _take(self, n: int) -> bytes:
        while len(self._buffer) - self._start < n:
            if self._start:
                del self._buffer[: self._start]
                self._start = 0
            self._buffer += await self._recv()
        data = bytes(self._buffer[self._start : self._start + n])
        self._start += n
        return data

    async def frame(self, timeout: float = 10) -> tuple[int, bytes]:
        """The next frame the server wrote: (opcode, payload); Closed when the TCP connection ended."""

        async def read() -> tuple[int, bytes]:
            first, second = await self._take(2)
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await self._take(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", await self._take(8))
            return first & 0x0F, await self._take(length)

        return await asyncio.wait_for(read(), timeout)

    async def text(self, prefix: str = "", timeout: float = 10) -> str:
        """The next text frame starting with ``prefix`` (other frames skipped; no answer to pings)."""
        while True:
            opcode, payload = await self.frame(timeout)
            if opcode == OP_CLOSE:
                raise AssertionError(f"closed: {close_code(payload)}")
            if opcode == OP_TEXT and payload.decode().startswith(prefix):
                return payload.decode()

    async def envelope(self, type_: str, timeout: float = 10) -> dict[str, Any]:
        """The next plain-WS envelope of a type (others skipped)."""
        while True:
            envelope = json.loads(await self.text("{", timeout))
            if envelope.get("type") == type_:
                return envelope

    async def close_frame(self, timeout: float = 10) -> tuple[int | None, list[tuple[int, bytes]]]:
        """Read up to the close frame: (its code, the frames before it)."""
        before: list[tuple[int, bytes]] = []
        while True:
            opcode, payload = await self.frame(timeout)
            if opcode == OP_CLOSE:
                return close_code(payload), before
            before.append((opcode, payload))

    def tcp_state(self) -> int:
        """The kernel's TCP state of this socket (1 ESTABLISHED, 7 CLOSE after a reset, ...)."""
        return self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]

    def close(self) -> None:
        self.sock.close()


def close_code(payload: bytes) -> int | None:
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None


async def socketio_session(port: int, token: str | None, rcvbuf: int | None = None) -> RawWebSocket:
    """A WebSocket-only Engine.IO session, connected to ``/`` when a token is given (welcome read)."""
    ws = await RawWebSocket.open(port, "/socket.io/?EIO=4&transport=websocket", rcvbuf=rcvbuf)
    assert ws.status == 101, ws.headers
    assert (await ws.text()).startswith("0{")
    if token is not None:
        await ws.send("40" + json.dumps({"token": token}))
        assert (await ws.text("40")).startswith('40{"sid"')
        await ws.text('42["welcome"')
    return ws


async def plain_session(port: int, token: str, rcvbuf: int | None = None) -> RawWebSocket:
    """A ``/ws`` session, welcome read."""
    ws = await RawWebSocket.open(port, f"/ws?token={token}", rcvbuf=rcvbuf)
    assert ws.status == 101, ws.headers
    await ws.envelope("welcome")
    return ws


async def join(ws: RawWebSocket, room: str, socketio: bool) -> None:
    """Join a room and wait for the ack."""
    if socketio:
        await ws.send("421" + json.dumps(["join_room", room]))
        await ws.text("431")
    else:
        await ws.send(json.dumps({"type": "join_room", "content": room, "id": 1}))
        await ws.envelope("ack")
