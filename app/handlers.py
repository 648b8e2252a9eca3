"""The client events and what they do, independent of the transport that carried them.

Socket.IO clients reach :meth:`ClientEvents.dispatch` from ``GatewayServer._handle_event``
(:mod:`realtime_gateway.server`); plain WebSocket clients from :mod:`realtime_gateway.transport.plain_ws`.
Both get the same answers: a result dict for an acknowledged event, or an ``error`` envelope when
the client did not ask for an ack.

Every connection is tracked in :attr:`ClientEvents.connections` (by Socket.IO sid) with its
verified identity; nothing a client sends can change who it is, so ``from``/``from_name`` on
outgoing messages always come from here. Who may join which room is decided by
:class:`~realtime_gateway.access.RoomAccess`.

This node's figures (connections per transport, members per room) are kept up to date as
connections come and go, so the operational endpoints never walk every connection.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import socketio

from .access import RoomAccess
from .auth import Identity, TokenVerifier, token_from_request, user_room
from .cluster.recovery_cluster import claim_elsewhere
from .config import Settings
from .connection import Connection, ConnectionListener, RoomCounts
from .envelope import (
    BAD_REQUEST,
    FORBIDDEN,
    NOT_FOUND,
    SID_ROOM_MESSAGE,
    TOO_MANY,
    USER_ROOM_PREFIX,
    ProtocolError,
    error_envelope,
    make_envelope,
    require_object,
    require_text,
    require_user_id,
    validate_room_name,
)
from .history import check_member, history_request
from .metrics import ERRORS, EVENT_LATENCY, MESSAGES_RECEIVED, sent_counter
from .ratelimit import TokenBucket
from .recovery import Resumption

log = logging.getLogger(__name__)

IDENTITY_ENVIRON_KEY = "gateway.identity"
"""Set by transports that authenticate before the Socket.IO connect (the plain-WS adapter)."""
TRANSPORT_ENVIRON_KEY = "gateway.transport"
PLAIN_TRANSPORT = "websocket"
"""The transport name of ``/ws`` connections (Socket.IO ones are ``socket.io``)."""
RESUME_ENVIRON_KEY = "gateway.resume"
"""``{"pid", "offset"}`` from a plain-WS reconnect (``?session=&offset=``); Socket.IO clients put
the same keys in their CONNECT ``auth``."""
BUCKET_ENVIRON_KEY = "gateway.bucket"
"""The rate-limit bucket of a transport that charges every inbound frame to it (a
:class:`~realtime_gateway.transport.ws_session.SessionSocket`); the connection's events share it."""
TICKET_ENVIRON_KEY = "gateway.ticket"
"""The :class:`~realtime_gateway.transport.limits.Ticket` a transport took for its session before it was accepted."""


Handler = Callable[[Connection, Any], Awaitable[dict[str, Any]]]


class ClientEvents:
    """Authenticates connections and answers the client events.

    ``dispatch`` is the single entry for inbound events from either transport.
    """

    def __init__(self, sio: socketio.AsyncServer, settings: Settings, verifier: TokenVerifier) -> None:
        self.sio = sio
        self.settings = settings
        self.verifier = verifier
        self.access = RoomAccess(settings.protected_rooms)
        self.connections: dict[str, Connection] = {}
        self._by_user: dict[str, dict[str, Connection]] = {}
        """user id -> sid -> connection, kept with :attr:`connections` (server-side membership,
        operator lookups: a user's connections without walking everyone's)."""
        self.transports: dict[str, int] = {}
        """Connections on this node per transport, kept with :attr:`connections`."""
        self.rooms = RoomCounts()
        self.listeners: list[ConnectionListener] = []
        self.handlers: dict[str, Handler] = {
            "join_room": self.join_room,
            "leave_room": self.leave_room,
            "room_message": self.room_message,
            "user_message": self.user_message,
            "chat": self.user_message,
            "ping": self.ping,
            "history": self.history,
        }
        manager = sio.manager
        self.journal = getattr(manager, "journal", None)
        self.history_store = getattr(manager, "history", None)
        self.resumable = self.journal is not None and settings.recovery_window > 0
        self._meters: dict[str, tuple[Any, Any]] = {}
        """event label -> (received counter, handling-time histogram), looked up once per event."""
        self.node = f"{socket.gethostname()}:{os.getpid()}"
        """Which process serves a connection (in its welcome): useful behind a load balancer."""
        self.session_store = getattr(manager, "session_store", None)
        """Cluster only: sessions in Redis, resumable on any node (realtime_gateway.cluster.recovery_cluster)."""

    # -- connection lifecycle -------------------------------------------------------------

    def authenticate(self, environ: dict[str, Any], auth: Any) -> Identity:
        """Return the identity for a Socket.IO connect, raising AuthError when refused."""
        identity = environ.get(IDENTITY_ENVIRON_KEY)
        if isinstance(identity, Identity):
            return identity
        token = token_from_request(auth, environ.get("QUERY_STRING", ""), environ)
        return self.verifier.verify(token)

    async def register(self, sid: str, identity: Identity, environ: dict[str, Any], resume: Any = None) -> Connection:
        """Track an authenticated connection and give it a session: the one named in ``resume``
        (``{"pid", "offset"}``) when it can be recovered exactly, else a new one. A transport
        that rate-limits its frames itself put its bucket in ``environ``."""
        bucket = environ.get(BUCKET_ENVIRON_KEY)
        transport = environ.get(TRANSPORT_ENVIRON_KEY, "socket.io")
        connection = Connection(
            sid=sid,
            identity=identity,
            transport=transport,
            bucket=bucket if isinstance(bucket, TokenBucket) else self.new_bucket(),
        )
        self.connections[sid] = connection
        self._by_user.setdefault(identity.user_id, {})[sid] = connection
        self.transports[transport] = self.transports.get(transport, 0) + 1
        if self.resumable:
            assert self.journal is not None
            resumed = None
            if isinstance(resume, dict) and resume.get("pid") is not None:
                pid, offset = resume.get("pid"), resume.get("offset")
                resumed = self.journal.claim(pid, identity.user_id, offset, sid)
                if resumed is None and self.session_store is not None:
                    resumed = await claim_elsewhere(
                        self.session_store, self.journal, pid, identity.user_id, offset, sid
                    )
            if resumed is None:
                connection.session = self.journal.open(identity.user_id, sid)
            else:
                connection.session, connection.resumed = resumed.session, resumed
                if resumed.previous_sid is not None and (
                    resumed.previous_sid in self.connections or resumed.remote is not None
                ):
                    # the old connection is dead but not yet noticed: it must not take more messages
                    await self.sio.disconnect(resumed.previous_sid)
            if self.session_store is not None and (resumed is None or resumed.remote is not None):
                remote = None if resumed is None else resumed.remote
                await self.session_store.opened(connection.session, identity.user_room, remote)
        return connection

    def new_bucket(self) -> TokenBucket:
        return TokenBucket(self.settings.rate_limit, self.settings.rate_burst)

    async def connected(self, sid: str) -> None:
        """Called once the Socket.IO handshake completed: join the user's room, say welcome."""
        connection = self.connections.get(sid)
        if connection is None:
            return
        identity = connection.identity
        resumed, connection.resumed = connection.resumed, None
        if resumed is None:
            await self.sio.enter_room(sid, identity.user_room)
            await self._track(connection, identity.user_room, joined=True)
        welcome: dict[str, Any] = {
            "sid": sid,
            "user_id": identity.user_id,
            "username": identity.username,
            "server_time": time.time(),
            "transport": connection.transport,
            "node": self.node,
        }
        if connection.session is not None:
            welcome["session"] = connection.session.pid
            welcome["recovered"] = resumed is not None
        await self.send(sid, make_envelope("welcome", welcome))
        if resumed is not None:
            await self._restore(connection, resumed)
        log.info("connected sid=%s user=%s transport=%s", sid, identity.user_id, connection.transport)
        for listener in self.listeners:
            await listener.connection_opened(connection)

    async def _restore(self, connection: Connection, resumed: Resumption) -> None:
        """Rooms back and the missed messages replayed, with no suspension in between: nothing
        emitted meanwhile can reach the connection out of order or be missed."""
        journal = self.journal
        assert journal is not None
        manager = self.sio.manager
        refused = []
        session = resumed.session
        for room in list(session.rooms):
            if room.startswith(USER_ROOM_PREFIX):
                manager.basic_enter_room(connection.sid, "/", room)
            elif room in connection.rooms:  # a back end's join that came during the handshake
                continue
            elif room in session.granted or self.access.may_join(connection.identity, room) is None:
                # the token may be a new one, with a narrower rooms claim than the session's;
                # what a back end granted is the back end's to take away
                manager.basic_enter_room(connection.sid, "/", room)
                connection.rooms.add(room)
                self.rooms.add(room)
            else:  # and none of what was sent to the room while away is replayed
                journal.left(resumed.session, connection.sid, room)
                refused.append(room)
        missed = journal.missed(resumed)
        await manager.replay(connection.sid, missed)
        if self.session_store is not None:  # only now: Redis must not come between rooms and replay
            for room in refused:
                await self.session_store.left(resumed.session, room)
        log.info(
            "recovered sid=%s user=%s: %d missed message(s)", connection.sid, connection.identity.user_id, len(missed)
        )

    async def _track(self, connection: Connection, room: str, joined: bool, granted: bool = False) -> None:
        """Keep the session's rooms in step with the connection's, for a later recovery (in a
        cluster also in Redis, before the client is answered: its node may die next)."""
        session = connection.session
        if session is None or session.sid != connection.sid:
            return
        assert self.journal is not None
        if joined:
            self.journal.joined(session, connection.sid, room, granted)
        else:
            self.journal.left(session, connection.sid, room)
        if self.session_store is not None and not room.startswith(USER_ROOM_PREFIX):
            if joined:
                await self.session_store.joined(session, room, granted)
            else:
                await self.session_store.left(session, room)

    def user_connections(self, user_id: str) -> list[Connection]:
        """The user's connections on this node (a copy: callers may await in between)."""
        return list(self._by_user.get(user_id, {}).values())

    async def disconnected(self, sid: str, reason: Any = None) -> None:
        connection = self.connections.pop(sid, None)
        if connection is None:
            return
        mine = self._by_user[connection.identity.user_id]
        del mine[sid]
        if not mine:
            del self._by_user[connection.identity.user_id]
        session = connection.session
        if session is not None:
            if self.session_store is not None and session.sid == sid:
                self.session_store.closed(session)
            self.journal.closed(session, sid)  # type: ignore[union-attr]
        self.transports[connection.transport] -= 1
        for room in connection.rooms:
            self.rooms.discard(room)
        log.info("disconnected sid=%s user=%s reason=%s", sid, connection.identity.user_id, reason)
        for listener in self.listeners:
            await listener.connection_closed(connection)

    # -- dispatch ---------------------------------------------------------------------------

    async def dispatch(self, sid: str, event: str, content: Any, ack_requested: bool) -> dict[str, Any] | None:
        """Run one client event; return the ack payload, or None when no ack was asked for.

        Errors never escape: they become ``{"ok": false, "error": ...}`` for an ack, or an
        ``error`` envelope sent to the connection, which stays open either way.
        """
        connection = self.connections.get(sid)
        if connection is None:
            return None
        handler = self.handlers.get(event)
        # unknown types share one label so clients cannot grow the metric's label set
        label = event if handler is not None else "unknown"
        meters = self._meters.get(label)
        if meters is None:
            meters = self._meters[label] = (MESSAGES_RECEIVED.labels(label), EVENT_LATENCY.labels(label))
        meters[0].inc()
        started = time.perf_counter()
        try:
            if handler is None:
                raise ProtocolError(BAD_REQUEST, f"unknown message type {event!r}")
            if not connection.bucket.allow():
                raise ProtocolError(TOO_MANY, "rate limit exceeded, slow down")
            result = await handler(connection, content)
        except ProtocolError as error:
            ERRORS.labels(error.code).inc()
            if ack_requested:
                return {"ok": False, "error": error.as_dict()}
            await self.send(sid, error_envelope(error))
            return None
        finally:
            meters[1].observe(time.perf_counter() - started)
        return result if ack_requested else None

    async def send(self, sid: str, envelope: dict[str, Any]) -> None:
        """Deliver to one connection of this node: never through Redis (nobody else has it), and
        straight to its writer (no broadcast machinery for one recipient)."""
        sent_counter(envelope["type"]).inc()
        await self.sio.manager.send_local(sid, envelope["type"], envelope)

    async def emit(self, envelope: dict[str, Any], to: str | None = None, local: bool = False) -> None:
        """Deliver an envelope to a connection sid, a room (``user:<id>`` for a user) or, with
        ``to=None``, everyone; cluster-wide when Redis is configured.

        Returning means the message was accepted: delivered here and in Redis or this node's
        outbox. When the cluster bus refuses it, this raises ``BusUnavailable`` (a 503
        :class:`ProtocolError`, so a client's ack says ``{ok: false, error: {code: 503}}``) and
        nothing was delivered anywhere.

        ``local=True`` delivers to this node's connections only, without the Redis round trip,
        so a message to a local sid is queued before a ``sio.disconnect`` that follows it."""
        await self.sio.emit(envelope["type"], envelope, to=to, ignore_queue=local)
        sent_counter(envelope["type"]).inc()

    # -- events -----------------------------------------------------------------------------

    async def join_room(self, connection: Connection, content: Any) -> dict[str, Any]:
        room = validate_room_name(content, joining=True)
        if room not in connection.rooms:
            refused = self.access.may_join(connection.identity, room)
            if refused is not None:
                raise ProtocolError(FORBIDDEN, refused)
            if len(connection.rooms) >= self.settings.max_rooms_per_connection:
                raise ProtocolError(
                    FORBIDDEN, f"room limit reached ({self.settings.max_rooms_per_connection} per connection)"
                )
            await self.enter_room(connection, room)
        return {"ok": True, "room": room}

    async def leave_room(self, connection: Connection, content: Any) -> dict[str, Any]:
        room = validate_room_name(content, joining=True)
        await self.exit_room(connection, room)
        return {"ok": True, "room": room}

    async def enter_room(self, connection: Connection, room: str, granted: bool = False) -> None:
        """Make a connection a member of a (client-visible, non-``user:``) room, with no checks:
        callers decide whether it may. ``granted``: a back end decided it (kept on recovery
        whatever the token says), also for a room the client had joined itself."""
        if room not in connection.rooms:
            try:
                await self.sio.enter_room(connection.sid, room)
            except ValueError:  # python-socketio: "cannot enter a sid room"
                # the same answer as for any sid-shaped name: nothing tells whether that sid exists
                raise ProtocolError(FORBIDDEN, SID_ROOM_MESSAGE) from None
            connection.rooms.add(room)
            self.rooms.add(room)
        elif not granted:
            return
        await self._track(connection, room, joined=True, granted=granted)

    async def exit_room(self, connection: Connection, room: str) -> None:
        if room in connection.rooms:
            await self.sio.leave_room(connection.sid, room)
            connection.rooms.discard(room)
            self.rooms.discard(room)
            await self._track(connection, room, joined=False)

    async def room_message(self, connection: Connection, content: Any) -> dict[str, Any]:
        body = require_object(content, "room_message")
        room = validate_room_name(body.get("room"))
        require_text(body, "room_message")
        if room not in connection.rooms:
            raise ProtocolError(FORBIDDEN, f"not a member of room {room!r}; join it first")
        identity = connection.identity
        envelope = make_envelope(
            "room_message",
            {**body, "from": identity.user_id, "from_name": identity.username},
            from_=identity.user_id,
            from_name=identity.username,
            room=room,
        )
        await self.emit(envelope, to=room)
        return {"ok": True, "message_id": envelope["id"]}

    async def user_message(self, connection: Connection, content: Any) -> dict[str, Any]:
        body = require_object(content, "user_message")
        to = require_user_id(body.get("to"), "user_message")
        require_text(body, "user_message")
        identity = connection.identity
        envelope = make_envelope(
            "user_message",
            {**body, "to": to, "from": identity.user_id, "from_name": identity.username},
            from_=identity.user_id,
            from_name=identity.username,
            to=to,
        )
        await self.emit(envelope, to=user_room(to))
        return {"ok": True, "message_id": envelope["id"]}

    async def history(self, connection: Connection, content: Any) -> dict[str, Any]:
        """A room's last messages, oldest first, each with its offset (members only)."""
        room, limit, before = history_request(content)
        check_member(room, connection.rooms, connection.identity.user_id)
        if self.history_store is None:
            raise ProtocolError(NOT_FOUND, "history is off on this gateway (--history-size 0)")
        messages = await self.history_store.read(room, limit, before)
        if connection.transport == PLAIN_TRANSPORT:
            # a plain client has no ack payload to read: the messages come as one envelope
            await self.send(connection.sid, make_envelope("history", {"room": room, "messages": messages}))
            return {"ok": True, "room": room, "count": len(messages)}
        return {"ok": True, "room": room, "messages": messages}

    async def ping(self, connection: Connection, content: Any) -> dict[str, Any]:
        await self.send(connection.sid, make_envelope("pong", {"server_time": time.time()}))
        return {"ok": True, "server_time": time.time()}


class Refusable(Protocol):
    """Why a connect is refused (an :class:`AuthError`, a connection-limit refusal)."""

    @property
    def message(self) -> str: ...

    def as_dict(self) -> dict[str, Any]: ...


def refuse(error: Refusable) -> socketio.exceptions.ConnectionRefusedError:
    """A Socket.IO connect refusal whose data carries ``{"code", "message"}``.

    python-socketio clients see the dict itself; socket.io-client (JS) exposes ``err.message``
    and ``err.data`` (the nested copy), so both find the code.
    """
    refusal = socketio.exceptions.ConnectionRefusedError(error.message)
    refusal.error_args = {**error.as_dict(), "data": error.as_dict()}
    return refusal
