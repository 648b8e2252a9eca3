"""The ``/ws`` endpoint: plain WebSocket clients speaking the JSON envelope, as first-class
members of the same Socket.IO rooms.

Each connection is a :class:`PlainSocket` (a :class:`~realtime_gateway.transport.ws_session.SessionSocket`): it is
registered with python-socketio under a fresh Engine.IO sid and goes through python-socketio's
own connect, event and disconnect paths. Every emit the server makes (to a room, a user,
everyone, from this node or via Redis from another) reaches it with no special case in the
caller; the socket renders the Socket.IO event packets it is handed as envelope JSON frames.
One connection per client, no loopback Socket.IO client. The interfaces this relies on are
listed in :mod:`realtime_gateway.transport.ws_session`.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import WSCloseCode, WSMessage, WSMsgType, web
from engineio import packet as eio_packet
from socketio import packet as sio_packet

from ..api.http_errors import error_response
from ..appkeys import EVENTS_KEY, SETTINGS_KEY
from ..auth import AuthError, token_from_request
from ..config import Settings
from ..envelope import (
    BAD_REQUEST,
    ProtocolError,
    encode,
    error_envelope,
    event_as_envelope_text,
    make_envelope,
)
from ..handlers import IDENTITY_ENVIRON_KEY, PLAIN_TRANSPORT, RESUME_ENVIRON_KEY, TRANSPORT_ENVIRON_KEY, ClientEvents
from ..jsoncodec import loads
from ..recovery import tagged_envelope
from .engine_io import origin_allowed
from .engine_ws import arm_connect_timeout
from .fanout import plain_text, text_frame
from .ws_session import SessionSocket, minimal_environ

log = logging.getLogger(__name__)


WS_PING = text_frame(b"", opcode=0x9)


class PlainSocket(SessionSocket):
    """A plain client: Socket.IO events out as envelope frames, JSON frames in as events."""

    __slots__ = ("connection_sid", "events")
    renders_envelopes = True  # tells the fan-out path to send envelope frames

    def __init__(self, *args: Any, events: ClientEvents) -> None:
        super().__init__(*args)
        self.events = events
        self.connection_sid: str | None = None

    @staticmethod
    def silence_limit(settings: Settings) -> float:
        return settings.ws_heartbeat_timeout

    def heartbeat_frame(self) -> bytes:
        return WS_PING

    async def send(self, pkt: eio_packet.Packet) -> None:
        """Render a packet python-socketio hands us; only events become frames."""
        if self.closing or pkt.packet_type != eio_packet.MESSAGE or not isinstance(pkt.data, str):
            return
        decoded = sio_packet.Packet(encoded_packet=pkt.data)
        if decoded.packet_type == sio_packet.EVENT and decoded.data:
            event, args = decoded.data[0], decoded.data[1:]
            journal = self.events.journal
            if decoded.id is None and len(args) == 2 and journal is not None and journal.parse(args[1]) is not None:
                # the packet ends with ',"<offset>"]': cut that off, and the envelope out of the rest
                untagged = pkt.data[: -len(args[1]) - 4] + "]"
                self.push_text(tagged_envelope(plain_text(event, args[:1], untagged, "/"), args[1]))
            elif decoded.id is None:  # cut from the packet text, byte for byte what the fast path sends
                self.push_text(plain_text(event, args, pkt.data, decoded.namespace or "/"))
            else:
                self.push_text(event_as_envelope_text(event, args))
        elif decoded.packet_type == sio_packet.DISCONNECT:
            self.shutdown(WSCloseCode.OK, "server disconnect")

    async def on_open(self, environ: dict[str, Any]) -> bool:
        sio = self.sio
        arm_connect_timeout(self)  # a connect that hangs (a stuck presence write) must end too
        await sio._handle_connect(self.sid, "/", None)
        sid = sio.manager.sid_from_eio_sid(self.sid, "/")
        if sid is None or not sio.manager.is_connected(sid, "/"):
            self.shutdown(WSCloseCode.POLICY_VIOLATION, "connection refused")
            return False
        self.connection_sid = sid
        return True

    async def on_message(self, msg: WSMessage) -> None:
        if msg.type == WSMsgType.BINARY:
            error = ProtocolError(BAD_REQUEST, "binary frames are not supported; send JSON text")
            self.push_text(encode(error_envelope(error)))
            return
        try:
            type_, content, ack_id = frame_to_event(msg.data)
        except ProtocolError as error:
            self.push_text(encode(error_envelope(error)))
            return
        assert self.connection_sid is not None
        result = await self.events.dispatch(self.connection_sid, type_, content, ack_requested=ack_id is not None)
        if ack_id is not None and result is not None:
            self.push_text(encode(make_envelope("ack", {**result, "id": ack_id})))


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
    """``GET /ws?token=JWT[&session=S&offset=O]``: check the origin, authenticate and admit
    before the upgrade, then serve envelopes; ``session`` and ``offset`` (from an earlier
    ``welcome`` and the last envelope received) resume that session when it can be recovered."""
    events = request.app[EVENTS_KEY]
    if not origin_allowed(request.headers.get("Origin"), request.app[SETTINGS_KEY].cors_origins):
        return error_response(403, "origin not allowed")
    token = token_from_request(None, request.query_string, request.headers)
    try:
        identity = events.verifier.verify(token)
    except AuthError as error:
        return error_response(error.code, error.message)

    extra: dict[str, Any] = {IDENTITY_ENVIRON_KEY: identity, TRANSPORT_ENVIRON_KEY: PLAIN_TRANSPORT}
    if request.query.get("session"):
        extra[RESUME_ENVIRON_KEY] = {"pid": request.query["session"], "offset": request.query.get("offset") or None}
    environ = minimal_environ(request, **extra)
    return await PlainSocket.accept(request, events.sio, environ, user=identity.user_id, events=events)
