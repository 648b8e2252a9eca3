"""Ending a client's session from the server, transport included.

python-socketio's ``disconnect`` ends a namespace connection: the client is told (``41``) and
expected to hang up. One that does not would keep its Engine.IO session, its connection slot and
its heartbeat. So when the gateway ends a connection (token expiry or revocation, a back end's
disconnect, a refused binary packet) it ends the session's transport too: a WebSocket session
through its own close path (``shutdown(code, reason)``: close frame, then FIN or reset, see
:mod:`realtime_gateway.ws_session`), a long-polling one with its close packet.
"""

from __future__ import annotations

import socketio


async def disconnect_session(sio: socketio.AsyncServer, sid: str, code: int, reason: str) -> None:
    """Disconnect a Socket.IO connection of this node and end its transport with it."""
    eio_sid = sio.manager.eio_sid_from_sid(sid, "/")
    await sio.disconnect(sid, ignore_queue=True)
    if eio_sid is not None:
        await close_session(sio, eio_sid, code, reason)


async def close_session(sio: socketio.AsyncServer, eio_sid: str, code: int, reason: str) -> None:
    """End an Engine.IO session: a WebSocket one with ``code`` and ``reason``, a long-polling one
    with its close packet (``close(wait, abort, reason)``, the Engine.IO socket interface)."""
    session = sio.eio.sockets.get(eio_sid)
    shutdown = getattr(session, "shutdown", None)
    if shutdown is not None:
        shutdown(code, reason)
    elif session is not None:
        await session.close(wait=False, reason=sio.reason.SERVER_DISCONNECT)
