"""Engine.IO v4 over WebSocket, served by the gateway: new WebSocket-only sessions, and the
WebSocket a long-polling session upgrades to.

python-engineio's own WebSocket transport runs a writer task and an ``asyncio.Queue`` per client
and wraps every inbound message in a new task; at thousands of connections that is most of the
memory and much of the CPU of an idle or chatty connection. :class:`EngineSocket` needs none of
it: it speaks the Engine.IO v4 packets itself (``0`` open, ``2``/``3`` ping/pong, ``4`` message,
``1`` close) and hands Socket.IO packets to python-socketio exactly as Engine.IO would.

Upgrade (a client that started with long-polling, :mod:`realtime_gateway.transport.engine_polling`):
the WebSocket opens with the session's ``sid``; the client sends ``2probe``, we answer
``3probe`` on the WebSocket only and let the client's pending poll return (``6`` if nothing is
waiting) so it can pause polling; the client sends ``5``; the packets still waiting for a poll
move to this socket's writer in order and the session continues here, on the same
:class:`~realtime_gateway.transport.fanout.FrameWriter` path as any WebSocket session. Nothing is written to
the new WebSocket before ``3probe``, and no noop after it. A second WebSocket for a session
that is upgrading or upgraded is accepted and closed at once, as the protocol requires.

Every session that has not sent a Socket.IO CONNECT within ``--connect-timeout`` is closed
(:func:`arm_connect_timeout`); the Socket.IO layer (:mod:`realtime_gateway.sio_server`)
cancels the timer when the session connects, the socket when it closes.

See :mod:`realtime_gateway.transport.ws_session` for the python-socketio interfaces relied on.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import WSCloseCode, WSMessage, WSMsgType, web
from engineio import packet as eio_packet

from .engine_polling import PollingSocket, handshake
from .fanout import text_frame
from .ws_session import SessionSocket

log = logging.getLogger(__name__)

EIO_PING = text_frame(b"2")
_CLOSE, _PING, _PONG, _MESSAGE, _UPGRADE, _NOOP = "1", "2", "3", "4", "5", "6"
UPGRADE_TIMEOUT = 10.0
"""Seconds an upgrading WebSocket has to send ``2probe`` and then ``5`` (engine.io's default)."""


class EngineSocket(SessionSocket):
    """One Engine.IO v4 session on a WebSocket, registered with python-socketio."""

    __slots__ = ()

    def heartbeat_frame(self) -> bytes:
        return EIO_PING

    async def send(self, pkt: eio_packet.Packet) -> None:
        if self.closing:
            return
        if pkt.packet_type == eio_packet.MESSAGE and isinstance(pkt.data, str):
            self.push_text(_MESSAGE + pkt.data)
        elif pkt.packet_type == eio_packet.MESSAGE and isinstance(pkt.data, bytes):
            self.push_binary(pkt.data)  # v4: binary frames carry no prefix
        elif pkt.packet_type == eio_packet.CLOSE:
            self.shutdown(WSCloseCode.OK, "server disconnect")
        else:
            self.push_text(pkt.encode())

    async def on_open(self, environ: dict[str, Any]) -> bool:
        self.push_text(handshake(self.sid, self.settings, []))
        arm_connect_timeout(self)
        return True

    async def on_message(self, msg: WSMessage) -> None:
        data: str | bytes = msg.data
        kind = data[:1]
        try:
            if msg.type == WSMsgType.BINARY:  # refused by the gateway's server: its events are JSON
                await self.sio._handle_eio_message(self.sid, data)
            elif kind == _MESSAGE:
                await self.sio._handle_eio_message(self.sid, data[1:])
            elif kind == _PING:  # a client may probe us too
                self.push_text(_PONG + data[1:])
            elif kind == _CLOSE:
                self.shutdown(WSCloseCode.OK, "client close")
            elif kind not in (_PONG, _NOOP):
                raise ValueError(f"unexpected Engine.IO packet type {kind!r}")
        except Exception as exc:
            # python-engineio does the same: a packet it cannot take ends the session
            log.info("closing Engine.IO session %s: %s", self.sid, exc)
            self.shutdown(WSCloseCode.UNSUPPORTED_DATA, "invalid packet")

    # -- upgrade from long-polling ------------------------------------------------------------

    async def take_over(self, polling: PollingSocket) -> None:
        """Serve the WebSocket a long-polling session upgrades to, until it ends."""
        try:
            upgraded = await self._probe(polling)
        except asyncio.TimeoutError as exc:
            log.info("upgrade of Engine.IO session %s failed: %s", self.sid, exc or "timeout")
            upgraded = False
        if not upgraded or polling.closing:
            polling.resume()
            self.shutdown(WSCloseCode.POLICY_VIOLATION, "upgrade failed")
            if self._closer is not None:
                await self._closer
            return
        polling.hand_over(self)
        await self.run()

    async def _probe(self, polling: PollingSocket) -> bool:
        """``2probe`` -> ``3probe``, pause the polling side, then ``5``; anything else fails."""
        msg = await self.ws.receive(timeout=UPGRADE_TIMEOUT)
        if msg.type != WSMsgType.TEXT or msg.data != _PING + "probe" or polling.closing:
            return False
        self.push_text(_PONG + "probe")
        polling.pause()
        msg = await self.ws.receive(timeout=UPGRADE_TIMEOUT)
        return msg.type == WSMsgType.TEXT and msg.data == _UPGRADE


def arm_connect_timeout(sock: SessionSocket | PollingSocket) -> None:
    """Close the session if no Socket.IO CONNECT arrives within ``--connect-timeout``."""
    sockets = sock.sio.eio.sockets
    sock.connect_timer = asyncio.get_running_loop().call_later(
        sock.settings.connect_timeout, _connect_timed_out, sockets, sock.sid
    )


def _connect_timed_out(sockets: dict[str, Any], sid: str) -> None:
    # looked up by sid: after an upgrade the session is another object
    sock = sockets.get(sid)
    if sock is not None and not sock.closing:
        sock.connect_timer = None
        sock.close_unconnected()


async def refuse_websocket(request: web.Request) -> web.WebSocketResponse:
    """Accept and close at once: a WebSocket for a session that is already upgrading or
    upgraded (the protocol's answer; an HTTP error would look like a network failure)."""
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"session already upgraded")
    return ws
