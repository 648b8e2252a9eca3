"""The Socket.IO layer on top of the gateway's own Engine.IO transports.

:class:`SocketIOServer` is python-socketio's ``AsyncServer`` with what the transports and the
protocol need from it; the gateway's server (:class:`realtime_gateway.server.GatewayServer`) and
the conformance server (``tests/conformance/server.py``) both build on it.

- CONNECT to a namespace nobody serves is answered
  ``44/<nsp>,{"message":"Invalid namespace"}``, as the Socket.IO v5 protocol specifies
  (python-socketio answers ``"Unable to connect"``).
- A session that connects has its connect timeout cancelled (armed by the transports, see
  :func:`realtime_gateway.transport.engine_ws.arm_connect_timeout`), and armed again when it leaves its
  last namespace.
- :meth:`SocketIOServer.connected` runs once per namespace connection, after the CONNECT answer
  was sent, so what it emits reaches the client after it (python-socketio's connect handler
  runs before the answer); a repeated CONNECT on the same session does not run it again.

python-socketio interfaces relied on: ``_handle_connect(eio_sid, namespace, data)`` and
``_handle_disconnect(eio_sid, namespace, reason)`` (overridden, called by ``_handle_eio_message``
and ``_handle_eio_disconnect``), ``manager.get_namespaces``, ``_send_packet``, ``packet_class``, ``handlers``,
``namespace_handlers``, ``namespaces`` and ``manager.sid_from_eio_sid`` / ``is_connected``.
"""

from __future__ import annotations

from typing import Any

import socketio
from socketio import packet as sio_packet

from .transport.engine_ws import arm_connect_timeout

INVALID_NAMESPACE = {"message": "Invalid namespace"}


class SocketIOServer(socketio.AsyncServer):
    """python-socketio's AsyncServer served by the gateway's Engine.IO transports."""

    def serves(self, namespace: str) -> bool:
        """Whether a CONNECT to ``namespace`` can succeed (python-socketio's own test)."""
        return (
            namespace in self.handlers
            or namespace in self.namespace_handlers
            or self.namespaces == "*"
            or namespace in (self.namespaces or ())
        )

    async def _handle_connect(self, eio_sid, namespace, data):  # type: ignore[no-untyped-def]
        namespace = namespace or "/"
        if not self.serves(namespace):
            await self._send_packet(
                eio_sid, self.packet_class(sio_packet.CONNECT_ERROR, data=INVALID_NAMESPACE, namespace=namespace)
            )
            return
        manager = self.manager
        already = manager.sid_from_eio_sid(eio_sid, namespace) is not None
        await super()._handle_connect(eio_sid, namespace, data)
        sid = manager.sid_from_eio_sid(eio_sid, namespace)
        if already or sid is None or not manager.is_connected(sid, namespace):
            return
        sock = self.eio.sockets.get(eio_sid)
        timer = getattr(sock, "connect_timer", None)
        if timer is not None:
            timer.cancel()
            sock.connect_timer = None  # type: ignore[union-attr]
        await self.connected(sid, namespace, data)

    async def _handle_disconnect(self, eio_sid, namespace, reason=None):  # type: ignore[no-untyped-def]
        await super()._handle_disconnect(eio_sid, namespace, reason)
        sock = self.eio.sockets.get(eio_sid)
        if sock is None or sock.closing or sock.connect_timer is not None:
            return
        if not any(self.manager.sid_from_eio_sid(eio_sid, n) for n in self.manager.get_namespaces()):
            arm_connect_timeout(sock)  # it left its last namespace: it must connect again, or go

    async def connected(self, sid: str, namespace: str, auth: Any) -> None:
        """A client's CONNECT to ``namespace`` has been answered; ``auth`` is its payload."""
