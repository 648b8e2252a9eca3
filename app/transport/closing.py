"""Ending a client's session from the server, transport included.

python-socketio's ``disconnect`` ends a namespace connection: the client is told (``41``) and
expected to hang up. One that does not would keep its Engine.IO session, its connection slot and
its heartbeat. So when the gateway ends a connection (token expiry or revocation, a back end's
disconnect, a refused binary packet) it ends the session's transport too: a WebSocket session
through its own close path (``shutdown(code, reason)``: close frame, then FIN or reset, see
:mod:`realtime_gateway.transport.ws_session`), a long-polling one with its close packet.
"""

from __future__ import annotations

import asyncio
from typing import Any

import socketio

from .fanout import CLOSE_TIMEOUT

_closing: set[asyncio.Task[None]] = set()  # the loop holds tasks weakly


async def disconnect_session(sio: socketio.AsyncServer, sid: str, code: int, reason: str) -> None:
    """Disconnect a Socket.IO connection of this node and end its transport with it.

    On long-polling the close packet waits ``CLOSE_TIMEOUT`` seconds: sent in the same poll
    answer as the ``41``, it would reach socket.io-client first (the client defers Socket.IO
    packets to the next tick), which would then report "transport close" and reconnect instead
    of "io server disconnect". A client that takes the ``41`` hangs up by itself before that."""
    eio_sid = sio.manager.eio_sid_from_sid(sid, "/")
    await sio.disconnect(sid, ignore_queue=True)
    session = sio.eio.sockets.get(eio_sid) if eio_sid is not None else None
    if session is None:
        return
    if hasattr(session, "shutdown"):  # a WebSocket: the close frame follows the 41 in order
        session.shutdown(code, reason)
    else:
        asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, _close_if_still_open, sio, eio_sid, session)


async def close_session(sio: socketio.AsyncServer, eio_sid: str, code: int, reason: str) -> None:
    """End an Engine.IO session now: a WebSocket one with ``code`` and ``reason``, a long-polling
    one with its close packet (``close(wait, abort, reason)``, the Engine.IO socket interface)."""
    session = sio.eio.sockets.get(eio_sid)
    shutdown = getattr(session, "shutdown", None)
    if shutdown is not None:
        shutdown(code, reason)
    elif session is not None:
        await session.close(wait=False, reason=sio.reason.SERVER_DISCONNECT)


def _close_if_still_open(sio: socketio.AsyncServer, eio_sid: str, session: Any) -> None:
    if sio.eio.sockets.get(eio_sid) is session and not session.closing:
        task = asyncio.ensure_future(session.close(wait=False, reason=sio.reason.SERVER_DISCONNECT))
        _closing.add(task)
        task.add_done_callback(_closing.discard)
