"""Builds the aiohttp application and the Socket.IO server, and wires every part together.

The package is grouped by the layers a message crosses; one message's path, in order:

1. ``transport/``: aiohttp -> ``/socket.io/`` (:mod:`~realtime_gateway.transport.engine_io`:
   WebSocket sessions and upgrades in :mod:`~realtime_gateway.transport.engine_ws`, long-polling in
   :mod:`~realtime_gateway.transport.engine_polling`) or ``/ws``
   (:mod:`~realtime_gateway.transport.plain_ws`);
2. the core (top level): :class:`GatewayServer` (the Socket.IO layer,
   :mod:`~realtime_gateway.sio_server`) -> :class:`~realtime_gateway.handlers.ClientEvents`
   (auth, access rules, envelope, presence, recovery, history);
3. the client manager: :mod:`~realtime_gateway.transport.fanout` delivers to this node's members and,
   when clustered, ``cluster/`` (:mod:`~realtime_gateway.cluster.bus`) carries it to the other nodes;
4. ``api/`` (HTTP endpoints) and ``emit/`` (other processes) enter at step 2 or 3.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import WSCloseCode, web
from socketio import packet as sio_packet

from . import jsoncodec
from .api.console import install_console
from .api.http_errors import error_middleware
from .api.membership_api import routes as membership_routes
from .api.openapi import PATH as OPENAPI_PATH
from .api.openapi import openapi_document
from .api.publish_api import history as history_api
from .api.publish_api import publish
from .appkeys import EMITTER_KEY, EVENTS_KEY, LIMITS_KEY, SETTINGS_KEY, SIO_KEY
from .auth import AuthError, TokenVerifier
from .cluster.bridge import legacy_bridge
from .cluster.bus import StreamManager
from .cluster.history_redis import RedisHistory
from .cluster.recovery_cluster import ClusterJournal, RecoveringStreamManager
from .cluster.session_store import SessionStore
from .config import Settings
from .emit.emitter import InProcessEmitter
from .handlers import RESUME_ENVIRON_KEY, TICKET_ENVIRON_KEY, ClientEvents, refuse
from .history import History
from .jsoncodec import dumps, loads
from .membership import Membership
from .operations import Operations
from .recovery import Journal
from .sio_server import SocketIOServer
from .transport.closing import close_session
from .transport.engine_io import install_engineio
from .transport.fanout import FanoutManager
from .transport.limits import ConnectionLimits, Refusal, Ticket
from .transport.plain_ws import handle_ws

log = logging.getLogger(__name__)

MANAGER_DRAIN_TIMEOUT = 2.0
_BINARY_PACKETS = (str(sio_packet.BINARY_EVENT), str(sio_packet.BINARY_ACK))


class GatewayServer(SocketIOServer):
    """The Socket.IO layer with the hooks the gateway needs.

    - Client events go straight to :meth:`ClientEvents.dispatch`, which must know whether the
      client asked for an ack (errors then travel in the ack, otherwise as an ``error``
      envelope). Only ``_handle_event`` knows that, so the gateway takes over there; it also
      skips python-socketio's generic handler lookup on the per-message path.
    - The request/response path has no packet objects: an EVENT packet of the default namespace
      (``2[...]`` or ``2<id>[...]``) is decoded here in one step, and the ACK is encoded once
      and pushed to the connection's writer (:meth:`FanoutManager.send_packet`).
    - The ``welcome`` envelope must follow the CONNECT packet, so it is sent from
      :meth:`connected` rather than from the connect handler.
    - Binary Socket.IO packets (``BINARY_EVENT``/``BINARY_ACK`` and their attachments) end the
      session, on every transport: the gateway's events are JSON.
    - A session's connection-limit ticket (:mod:`realtime_gateway.transport.limits`, taken by its transport
      and kept in its environ) is released when python-socketio learns the session ended,
      whichever transport carried it.

    Private interfaces of python-socketio relied on: ``_handle_eio_message``, ``_handle_event``,
    ``_handle_eio_disconnect``, ``environ``, ``_send_packet`` and ``_binary_packet`` (see
    ``socketio/async_server.py``), and those of
    :class:`~realtime_gateway.sio_server.SocketIOServer`.
    """

    events: ClientEvents
    limits: ConnectionLimits
    manager: FanoutManager

    async def _handle_eio_message(self, eio_sid, data):  # type: ignore[no-untyped-def]
        if type(data) is str and data[:1] == "2" and eio_sid not in self._binary_packet:
            body = data.find("[", 1)
            ack_id = data[1:body]
            if body > 0 and (not ack_id or (len(ack_id) <= 15 and ack_id.isascii() and ack_id.isdigit())):
                # what Packet(encoded_packet=data) decodes, without the object: no namespace,
                # no attachments, an optional numeric id, then the JSON arguments
                return await self._handle_event(eio_sid, "/", int(ack_id) if ack_id else None, loads(data[body:]))
        if type(data) is not str or data[:1] in _BINARY_PACKETS:
            # python-socketio would collect attachments without bound (and swallow every later
            # packet as one)
            log.info("closing Engine.IO session %s: binary Socket.IO packet", eio_sid)
            return await close_session(self, eio_sid, WSCloseCode.UNSUPPORTED_DATA, "binary packets are not accepted")
        return await super()._handle_eio_message(eio_sid, data)

    async def _handle_event(self, eio_sid, namespace, id, data):  # type: ignore[no-untyped-def]
        namespace = namespace or "/"
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
        if namespace != "/" or not self.manager.is_connected(sid, namespace):
            return await super()._handle_event(eio_sid, namespace, id, data)
        if not isinstance(data, list):
            raise ValueError("an EVENT packet carries a JSON array")  # the transport ends the session
        if not data or not isinstance(data[0], str):
            return  # not an event python-socketio's client could have sent
        result = await self.events.dispatch(sid, data[0], data[1] if len(data) > 1 else None, id is not None)
        if id is not None:
            try:
                encoded = f"3{id}{dumps([result])}"
            except TypeError:  # binary data in the answer: python-socketio's encoder splits it out
                pkt = self.packet_class(sio_packet.ACK, namespace=namespace, id=id, data=[result])
                return await self._send_packet(eio_sid, pkt)
            await self.manager.send_packet(sid, eio_sid, encoded)

    async def _send_packet(self, eio_sid, pkt):  # type: ignore[no-untyped-def]
        """The CONNECT answer carries the session id as ``pid``, which is how socket.io-client
        (>= 4.6) knows the server recovers connection state, and what it sends back to resume."""
        if pkt.packet_type == sio_packet.CONNECT and isinstance(pkt.data, dict):
            connection = self.events.connections.get(pkt.data.get("sid"))
            if connection is not None and connection.session is not None:
                pkt.data = {**pkt.data, "pid": connection.session.pid}
        await super()._send_packet(eio_sid, pkt)

    async def connected(self, sid: str, namespace: str, auth: Any) -> None:
        await self.events.connected(sid)

    async def _handle_eio_disconnect(self, eio_sid, reason):  # type: ignore[no-untyped-def]
        ticket = self.environ.get(eio_sid, {}).get(TICKET_ENVIRON_KEY)
        try:
            await super()._handle_eio_disconnect(eio_sid, reason)
        finally:
            if isinstance(ticket, Ticket):
                self.limits.release(ticket)


def create_manager(settings: Settings) -> FanoutManager:
    """The client manager, with the recovery journal and history attached when they are on."""
    manager: FanoutManager
    recovering = settings.recovery_window > 0
    if settings.redis_url:
        bus = RecoveringStreamManager if recovering else StreamManager
        manager = bus(
            settings.redis_url,
            max_len=settings.bus_max_len,
            max_age=settings.bus_max_age,
            outbox_max_bytes=settings.outbox_max_bytes,
            outbox_max_age=settings.outbox_max_age,
        )
    else:
        manager = FanoutManager()
    if isinstance(manager, RecoveringStreamManager):
        journal = ClusterJournal(settings.recovery_window, manager)
        manager.journal = journal
        manager.session_store = SessionStore(settings.redis_url or "", settings.recovery_window, journal)
    elif recovering or settings.history_size > 0:
        manager.journal = Journal(settings.recovery_window, tag_frames=recovering)
    if settings.history_size > 0 and isinstance(manager, RecoveringStreamManager):
        manager.history = RedisHistory(settings.redis_url or "", settings.history_size, settings.history_ttl, manager)
    elif settings.history_size > 0:
        manager.history = History(settings.history_size, settings.history_ttl)
    return manager


def create_sio(settings: Settings) -> GatewayServer:
    sio = GatewayServer(
        async_mode="aiohttp",
        client_manager=create_manager(settings),
        json=jsoncodec,
        # one client's events are handled in order, one at a time: a join_room is complete
        # before the room_message sent after it, and a flooding client is slowed at the socket
        async_handlers=False,
        # transports, CORS, heartbeat and sizes are the gateway's Engine.IO layer's (engine_io.py),
        # configured from Settings; python-engineio serves no request
        logger=False,
        engineio_logger=False,
    )
    return sio


def create_app(settings: Settings) -> web.Application:
    """The whole gateway as one aiohttp application (used by the CLI and by embedders)."""
    verifier = TokenVerifier(
        settings.jwt_algorithms,
        secret=settings.jwt_secret,
        public_key=settings.jwt_public_key,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
        leeway=settings.jwt_leeway,
    )
    sio = create_sio(settings)
    events = ClientEvents(sio, settings, verifier)
    sio.events = events
    Membership(events)  # the cluster-wide join/leave/disconnect commands, on the manager
    sio.limits = limits = ConnectionLimits(settings)
    operations = Operations(settings, events)

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> bool | None:
        try:
            identity = events.authenticate(environ, auth)
            await operations.admit(identity)
        except AuthError as error:
            log.info("connection refused: %s", error.message)
            raise refuse(error) from None
        ticket = environ.get(TICKET_ENVIRON_KEY)
        refusal = limits.claim_user(ticket, identity.user_id) if isinstance(ticket, Ticket) else None
        if isinstance(refusal, Refusal):
            log.info("connection refused: %s", refusal.message)
            raise refuse(refusal)
        resume = environ.get(RESUME_ENVIRON_KEY, auth)
        await events.register(sid, identity, environ, resume)
        if sio.manager.eio_sid_from_sid(sid, "/") is None:
            # the session ended while this ran (transports tell python-socketio at once)
            await events.disconnected(sid, sio.reason.SERVER_DISCONNECT)
            return False
        return None

    @sio.event
    async def disconnect(sid: str, reason: Any = None) -> None:
        await events.disconnected(sid, reason)

    app = web.Application(client_max_size=settings.max_message_bytes, middlewares=[error_middleware])
    app[SETTINGS_KEY] = settings
    app[SIO_KEY] = sio
    app[EVENTS_KEY] = events
    app[EMITTER_KEY] = InProcessEmitter(events)
    app[LIMITS_KEY] = limits
    install_engineio(app)  # /socket.io/, every transport and method
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/ws", handle_ws)
    app.router.add_get(OPENAPI_PATH, openapi_document)
    if settings.api_key:
        app.router.add_post("/api/publish", publish)
        app.router.add_routes(membership_routes())
        app.router.add_get("/api/history", history_api)
    install_console(app, settings)  # GET /console, and POST /console/dev-token in dev mode
    if settings.redis_url and settings.legacy_channels:
        app.cleanup_ctx.append(legacy_bridge)
    app.on_startup.append(_start_manager)
    app.on_cleanup.append(_drain_manager)
    app.on_shutdown.append(_disconnect_everyone)
    operations.install(app)  # after _disconnect_everyone: presence is cleaned up once clients are gone
    return app


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _start_manager(app: web.Application) -> None:
    """Start the client manager now, not at the first connection, so a cluster node listens
    to Redis (and back-end emits reach it) from the moment it is up."""
    sio = app[SIO_KEY]
    if not sio.manager_initialized:
        sio.manager_initialized = True
        sio.manager.initialize()


async def _drain_manager(app: web.Application) -> None:
    manager = app[SIO_KEY].manager
    if isinstance(manager, StreamManager):
        await manager.drain(MANAGER_DRAIN_TIMEOUT)
        await manager.close()
    if isinstance(manager, RecoveringStreamManager):
        await manager.session_store.close()
    if isinstance(manager.history, RedisHistory):
        await manager.history.close()


async def _disconnect_everyone(app: web.Application) -> None:
    """Tell every client (Socket.IO DISCONNECT / close frame), then close the transports
    ourselves: a client that does not hang up must not hold the shutdown."""
    sio = app[SIO_KEY]
    sockets = list(sio.eio.sockets.values())  # before the disconnects: closing ones leave the table
    for sid in list(app[EVENTS_KEY].connections):
        try:
            await sio.disconnect(sid)
        except Exception:  # a connection that is already gone must not stop the shutdown
            log.debug("disconnect of %s during shutdown failed", sid, exc_info=True)
    for socket in sockets:
        # no waiting for a client to read what is queued for it: shutdown is bounded
        await socket.close(wait=False, reason=sio.eio.reason.SERVER_DISCONNECT)
