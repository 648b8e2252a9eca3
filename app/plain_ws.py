"""The ``/ws`` endpoint: plain WebSocket clients speaking the JSON envelope, as first-class
members of the same Socket.IO rooms.

How: each plain connection registers a :class:`PlainSocket` in the Engine.IO server's socket
table under a fresh Engine.IO sid and then goes through python-socketio's own connect,
event and disconnect paths. Every emit the server makes (to a room, a user, everyone, from this
node or, via Redis, from another) therefore reaches it with no special case in the caller; the
socket renders the Socket.IO packets it is handed as envelope JSON frames. One connection per
client, no loopback Socket.IO client.

python-socketio / python-engineio interfaces this relies on (pinned in pyproject.toml):

- ``engineio.AsyncServer.sockets`` (dict eio_sid -> socket) and ``generate_id()``; the server
  calls a socket's ``send(pkt)``, ``close(wait, abort, reason)``, ``check_ping_timeout()`` and
  reads ``closed``, ``closing``, ``upgraded``, ``session`` (see ``engineio/async_socket.py``).
- ``socketio.AsyncServer._handle_eio_connect(eio_sid, environ)``,
  ``_handle_connect(eio_sid, namespace, auth)`` and ``_handle_eio_disconnect(eio_sid, reason)``:
  the same calls Engine.IO makes for a Socket.IO client.
- ``socketio.packet.Packet(encoded_packet=...)`` to decode what ``send`` is handed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from engineio import packet as eio_packet
from socketio import packet as sio_packet

from .appkeys import EVENTS_KEY, SETTINGS_KEY
from .auth import AuthError, token_from_request
from .envelope import (
    BAD_REQUEST,
    ProtocolError,
    encode,
    error_envelope,
    event_as_envelope_text,
    make_envelope,
)
from .fanout import FrameWriter, plain_text, text_frame
from .handlers import IDENTITY_ENVIRON_KEY, TRANSPORT_ENVIRON_KEY, ClientEvents
from .jsoncodec import loads

log = logging.getLogger(__name__)

TRANSPORT = "websocket"


class PlainSocket:
    """Stands in for an Engine.IO socket so python-socketio can deliver to a plain client.

    All outbound frames go through one :class:`~app.fanout.FrameWriter`, which keeps
    per-connection order, coalesces writes, and disconnects a client that stops reading.
    """

    upgraded = True  # Engine.IO reports the transport as "websocket"
    renders_envelopes = True  # tells the fan-out path to send envelope frames, not Socket.IO packets

    def __init__(self, eio_sid: str, ws: web.WebSocketResponse, transport: asyncio.Transport, limit: int) -> None:
        self.sid = eio_sid
        self.ws = ws
        self.session: dict[str, Any] = {}
        self.closed = False
        self.closing = False
        self.frame_writer = FrameWriter(
            transport, lambda: self.shutdown(WSCloseCode.TRY_AGAIN_LATER, "client too slow"), limit
        )
        self._closer: asyncio.Task[None] | None = None

    async def check_ping_timeout(self) -> bool:
        return not self.closed  # heartbeats are handled by the adapter, not Engine.IO

    async def send(self, pkt: eio_packet.Packet) -> None:
        """Render a packet python-socketio hands us; only events become frames."""
        if self.closing or pkt.packet_type != eio_packet.MESSAGE or not isinstance(pkt.data, str):
            return
        decoded = sio_packet.Packet(encoded_packet=pkt.data)
        if decoded.packet_type == sio_packet.EVENT and decoded.data:
            event, args = decoded.data[0], decoded.data[1:]
            if decoded.id is None:  # cut from the packet text, byte for byte what the fast path sends
                self.push(plain_text(event, args, pkt.data, decoded.namespace or "/"))
            else:
                self.push(event_as_envelope_text(event, args))
        elif decoded.packet_type == sio_packet.DISCONNECT:
            self.shutdown(WSCloseCode.OK, "server disconnect")

    def push(self, frame: str) -> None:
        if not self.closing:
            self.frame_writer.push(text_frame(frame.encode()))

    def shutdown(self, code: int, reason: str) -> None:
        """Close after the frames already pushed have been written."""
        if not self.closing:
            self.closing = True
            self._closer = asyncio.ensure_future(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        self.frame_writer.flush()
        try:
            await self.ws.close(code=code, message=reason.encode())
        finally:
            self.closed = True

    async def close(self, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
        self.shutdown(WSCloseCode.GOING_AWAY, "server shutting down")
        if wait and self._closer is not None:
            await asyncio.shield(self._closer)

    async def closed_down(self) -> None:
        """Wait until the close frame has been sent (after :meth:`shutdown`)."""
        if self._closer is not None:
            with contextlib.suppress(Exception):
                await self._closer


def frame_to_event(text: str) -> tuple[str, Any, Any]:
    """Parse one inbound text frame into (type, content, ack id); ProtocolError when malformed."""
    try:
        frame = loads(text)
    except ValueError:
        raise ProtocolError(BAD_REQUEST, "frame is not valid JSON") from None
    if not isinstance(frame, dict):
        raise ProtocolError(BAD_REQUEST, "frame must be a JSON object with a 'type'")
    type_ = frame.get("type")
    if not isinstance(type_, str) or not type_:
        raise ProtocolError(BAD_REQUEST, "frame needs a non-empty string 'type'")
    content = frame.get("content")
    room = frame.get("room")
    if type_ == "room_message" and room is not None:
        # the legacy protocol also allowed the room beside the content
        if isinstance(content, dict):
            content = {"room": room, **content}
        elif isinstance(content, str):
            content = {"room": room, "text": content}
    return type_, content, frame.get("id")


async def handle_ws(request: web.Request) -> web.StreamResponse:
    """``GET /ws?token=JWT``: authenticate before the upgrade, then serve envelopes."""
    events = request.app[EVENTS_KEY]
    settings = request.app[SETTINGS_KEY]
    token = token_from_request(None, request.query_string, request.headers)
    try:
        identity = events.verifier.verify(token)
    except AuthError as error:
        return web.json_response({"error": error.message, "code": error.code}, status=401)

    # compression stays off here: frames are shared between recipients, pre-encoded
    ws = web.WebSocketResponse(max_msg_size=settings.max_message_bytes, autoping=False, compress=False)
    await ws.prepare(request)
    if request.transport is None:  # the client vanished during the handshake
        return ws
    sio = events.sio
    eio_sid = sio.eio.generate_id()
    socket = PlainSocket(eio_sid, ws, request.transport, settings.send_buffer_limit)
    sio.eio.sockets[eio_sid] = socket
    environ = {
        "QUERY_STRING": request.query_string,
        "REMOTE_ADDR": request.remote,
        "HTTP_USER_AGENT": request.headers.get("User-Agent", ""),
        "aiohttp.request": request,
        IDENTITY_ENVIRON_KEY: identity,
        TRANSPORT_ENVIRON_KEY: TRANSPORT,
    }
    reason: Any = sio.reason.CLIENT_DISCONNECT
    try:
        await sio._handle_eio_connect(eio_sid, environ)
        await sio._handle_connect(eio_sid, "/", None)
        sid = sio.manager.sid_from_eio_sid(eio_sid, "/")
        if sid is None or not sio.manager.is_connected(sid, "/"):
            socket.shutdown(WSCloseCode.POLICY_VIOLATION, "connection refused")
        else:
            reason = await _serve(ws, socket, events, sid, settings.ping_interval, settings.ws_heartbeat_timeout)
    finally:
        socket.shutdown(WSCloseCode.OK, "bye")
        await sio._handle_eio_disconnect(eio_sid, reason)
        sio.eio.sockets.pop(eio_sid, None)
        await socket.closed_down()
    return ws


async def _serve(
    ws: web.WebSocketResponse,
    socket: PlainSocket,
    events: ClientEvents,
    sid: str,
    ping_interval: float,
    silence_limit: float,
) -> Any:
    """Read frames until the client leaves or goes silent; return the disconnect reason."""
    last_seen = time.monotonic()
    reasons = events.sio.reason
    while not socket.closing:
        # wake up at least every ping interval to ping, and to notice silence
        try:
            msg = await ws.receive(timeout=ping_interval)
        except asyncio.TimeoutError:
            if time.monotonic() - last_seen > silence_limit:
                socket.shutdown(WSCloseCode.GOING_AWAY, "heartbeat timeout")
                return reasons.PING_TIMEOUT
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.ping()
            continue
        last_seen = time.monotonic()
        if msg.type == WSMsgType.TEXT:
            await _handle_text(events, socket, sid, msg.data)
        elif msg.type == WSMsgType.BINARY:
            error = ProtocolError(BAD_REQUEST, "binary frames are not supported; send JSON text")
            socket.push(encode(error_envelope(error)))
        elif msg.type == WSMsgType.PING:
            await ws.pong(msg.data)
        elif msg.type == WSMsgType.PONG:
            continue
        else:  # CLOSE, CLOSING, CLOSED, ERROR (aiohttp has already answered 1009 for oversize)
            if msg.type == WSMsgType.ERROR:
                log.info("plain-ws sid=%s closed: %s", sid, ws.exception())
            return reasons.CLIENT_DISCONNECT
    return reasons.SERVER_DISCONNECT


async def _handle_text(events: ClientEvents, socket: PlainSocket, sid: str, text: str) -> None:
    try:
        type_, content, ack_id = frame_to_event(text)
    except ProtocolError as error:
        socket.push(encode(error_envelope(error)))
        return
    result = await events.dispatch(sid, type_, content, ack_requested=ack_id is not None)
    if ack_id is not None and result is not None:
        socket.push(encode(make_envelope("ack", {**result, "id": ack_id})))
