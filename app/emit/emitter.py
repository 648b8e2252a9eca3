"""Send messages to connected clients from back-end code: other processes and the server itself.

Three emitters share one set of operations (:class:`MessageApi`) and differ only in how an
envelope leaves:

- :class:`Emitter` (asyncio) and :class:`SyncEmitter` (blocking: Django, Flask, Celery) run in
  *other* processes. They append to the cluster bus stream every gateway node reads
  (:mod:`realtime_gateway.cluster.bus_wire`), in the gateway's own codec, so a message reaches its
  clients on every node — and values the nodes could not read back (NaN, infinities,
  integers beyond 64 bits) raise ``ValueError`` before anything is sent.
- :class:`InProcessEmitter` runs inside the gateway (``app[EMITTER_KEY]``) and emits through the
  node's own Socket.IO server, which delivers locally and, when clustered, through Redis.

Every operation builds a complete envelope (``type``, ``content``, ``timestamp``, a fresh ``id``),
emits it as the event named after its type with the envelope as the single argument, and returns
the envelope id. A user is addressed as the room ``user:<id>`` every connection of theirs joins.

They also share :class:`MembershipApi`: put a user's connections in a room, take them out, or
disconnect them, on every node (:mod:`realtime_gateway.membership`). Those travel the same way
as messages, so through one emitter a join is applied before any message it sends next.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
from collections.abc import Awaitable
from typing import Any, Generic, TypeVar
from urllib.parse import urlparse

from ..auth import user_room
from ..cluster.bus import WRITE_TIMEOUT
from ..cluster.bus_outbox import BusUnavailable
from ..cluster.bus_wire import EMIT, STREAM, encode_emit, entry, new_origin, redis_client, sync_redis_client
from ..config import REDIS_SCHEMES
from ..envelope import Envelope, ProtocolError, make_envelope, validate_room_name
from ..handlers import ClientEvents
from ..jsoncodec import dumps
from ..membership import DISCONNECT, JOIN, LEAVE, joinable_room

__all__ = ["EmitError", "Emitter", "InProcessEmitter", "MembershipApi", "MessageApi", "SyncEmitter"]

R = TypeVar("R")
N = TypeVar("N")

MAX_IN_FLIGHT = 50
"""Publishes one emitter has in flight at once. redis-py's pool (100 connections) refuses a
connection beyond its size rather than waiting for one, so a burst (``asyncio.gather`` over a
thousand emits, a Celery worker with a thousand greenlets) would fail instead of queueing."""


class EmitError(Exception):
    """The message was not confirmed: Redis was unreachable, refused it or the credentials are
    wrong, or the node's bus refused it (:class:`InProcessEmitter`) — then it went nowhere. When
    the write timed out or the connection broke mid-write, Redis may have taken it: the outcome
    is unknown, and sending again makes a second message."""


RESERVED_TYPES = frozenset({"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"})
"""Event names Socket.IO clients keep for their own life cycle: socket.io-client would run its
``connect`` listeners for a message of type ``connect``."""


def check_type(type_: Any) -> str:
    """An envelope type: a non-empty string, not a reserved Socket.IO event (it is the event name)."""
    if not isinstance(type_, str) or not type_:
        raise ValueError("type must be a non-empty string")
    if type_ in RESERVED_TYPES:
        raise ValueError(f"type {type_!r} is reserved by Socket.IO")
    return type_


def check_user_id(user_id: Any) -> str:
    """A user id as tokens carry it: a non-empty string or an integer (sent as its string)."""
    if isinstance(user_id, bool) or not isinstance(user_id, (str, int)) or user_id == "":
        raise ValueError("user id must be a non-empty string or an integer")
    return str(user_id)


def check_sid(sid: Any) -> str:
    """A connection's sid, as its ``welcome`` gave it."""
    if not isinstance(sid, str) or not sid:
        raise ValueError("sid must be a non-empty string")
    return sid


def check_room(room: Any) -> str:
    """A room name under the same rules clients join by (``user:`` rooms may be addressed)."""
    try:
        return validate_room_name(room)
    except ProtocolError as error:
        raise ValueError(error.message) from None


class MessageApi(Generic[R]):
    """The operations every emitter offers; a subclass only implements :meth:`_deliver`.

    Three address a message (everyone, a room, a user); the other three build the typed contents
    the front end knows (``system``, ``notification``, ``data_update``) on top of them.

    ``R`` is what an operation returns: the envelope id for :class:`SyncEmitter`, an awaitable of
    it for the asyncio emitters. Arguments are checked here, before anything is sent, and a bad
    one raises ``ValueError`` naming it.
    """

    def broadcast(self, type: str, content: Any) -> R:
        """Any message type to every connection."""
        return self._deliver(make_envelope(check_type(type), content), None)

    def broadcast_to_room(self, room: str, type: str, content: Any) -> R:
        """Any message type to every member of a room."""
        room = check_room(room)
        return self._deliver(make_envelope(check_type(type), content, room=room), room)

    def send_to_user(self, user_id: str | int, type: str, content: Any) -> R:
        """Any message type to every connection of one user, on whichever node they are."""
        user = check_user_id(user_id)
        return self._deliver(make_envelope(check_type(type), content, to=user), user_room(user))

    def send_system(self, message: str, level: str = "info", code: int = 0) -> R:
        """A ``system`` message (``{message, level, code}``) to every connection."""
        return self.broadcast("system", {"message": message, "level": level, "code": code})

    def send_notification(
        self,
        title: str,
        body: str,
        icon: str | None = None,
        link: str | None = None,
        user_id: str | int | None = None,
    ) -> R:
        """A ``notification`` (``{title, body, icon?, link?}``) to one user's connections, or to
        everyone when ``user_id`` is None."""
        content: dict[str, Any] = {"title": title, "body": body}
        if icon is not None:
            content["icon"] = icon
        if link is not None:
            content["link"] = link
        if user_id is None:
            return self.broadcast("notification", content)
        return self.send_to_user(user_id, "notification", content)

    def send_data_update(
        self,
        entity: str,
        action: str,
        id: str | int | None = None,
        data: Any = None,
        room: str | None = None,
    ) -> R:
        """A ``data_update`` (``{entity, action, id, data}``) to a room's members, or to everyone
        when ``room`` is None, so open views can refresh what changed."""
        content = {"entity": entity, "action": action, "id": id, "data": data}
        if room is None:
            return self.broadcast("data_update", content)
        return self.broadcast_to_room(room, "data_update", content)

    def _deliver(self, envelope: Envelope, room: str | None) -> R:
        """Send ``envelope`` to ``room`` (None: everyone) and return its id (or an awaitable of it)."""
        raise NotImplementedError


class MembershipApi(Generic[N]):
    """Server-side membership, on every node; a subclass only implements :meth:`_command`.

    ``N`` is None for :class:`SyncEmitter`, an awaitable of None for the asyncio emitters.
    Arguments are checked before anything is sent (``ValueError`` naming the bad one).
    """

    def join_room(self, user_id: str | int, room: str) -> N:
        """Every current connection of the user, on every node, joins ``room``, protected or not
        (the room rule is for clients; this is the back end's decision). Connections the user
        opens later do not inherit it."""
        return self._command(JOIN, {"user": _checked("user", check_user_id, user_id), "room": _room(room)})

    def leave_room(self, user_id: str | int, room: str) -> N:
        """Every current connection of the user, on every node, leaves ``room``."""
        return self._command(LEAVE, {"user": _checked("user", check_user_id, user_id), "room": _room(room)})

    def disconnect_user(self, user_id: str | int) -> N:
        """Close every connection of the user on every node (they cannot resume their sessions)."""
        return self._command(DISCONNECT, {"user": _checked("user", check_user_id, user_id)})

    def disconnect_sid(self, sid: str) -> N:
        """Close one connection, by its ``sid`` (``welcome.content.sid``), on whichever node it is."""
        return self._command(DISCONNECT, {"sid": check_sid(sid)})

    def _command(self, method: str, payload: dict[str, str]) -> N:
        raise NotImplementedError


def _checked(name: str, check: Any, value: Any) -> str:
    try:
        return str(check(value))
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _room(room: Any) -> str:
    return _checked("room", joinable_room, room)


def resolve_redis_url(redis_url: str | None) -> str:
    """The URL given, else ``REDIS_URL``; refused early with a message saying what to set."""
    url = redis_url or os.environ.get("REDIS_URL")
    if not url:
        raise ValueError("no Redis URL: pass one (e.g. redis://localhost:6379/0) or set REDIS_URL")
    if urlparse(url).scheme not in REDIS_SCHEMES:
        raise ValueError(f"{_redacted(url)!r} is not a Redis URL (expected e.g. redis://localhost:6379/0)")
    return url


def _redacted(url: str) -> str:
    """The URL without its password, for error messages that end up in logs."""
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    return parsed._replace(netloc=parsed.netloc.replace(f":{parsed.password}@", ":***@")).geturl()


def _publish_error(url: str, exc: Exception) -> EmitError:
    return EmitError(f"cannot publish to Redis at {_redacted(url)}: {exc}")


class _Writer:
    """What both external emitters share: their origin and sequence numbers on the bus.

    A write that times out may have reached Redis; redis-py's one retry carries the same (origin,
    sequence number), so nodes deliver it once. A caller's own retry after ``EmitError`` is a new
    entry (a new sequence number and envelope id)."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = resolve_redis_url(redis_url)
        self.origin = new_origin()
        self._seq = itertools.count(1)  # next() is atomic under the GIL: threads share it

    def entry(self, envelope: Envelope, room: str | None) -> dict[bytes, Any]:
        payload = encode_emit(envelope, room)  # ValueError for what nodes could not read
        return entry(self.origin, next(self._seq), EMIT, payload)

    def command(self, method: str, payload: dict[str, str]) -> dict[bytes, Any]:
        return entry(self.origin, next(self._seq), method, dumps(payload))


class Emitter(MessageApi[Awaitable[str]], MembershipApi[Awaitable[None]]):
    """Send to clients on every gateway node from another asyncio process.

    ``Emitter("redis://host:6379/0")``, or ``Emitter()`` to use ``REDIS_URL``. Methods are
    coroutines returning the envelope id and raise :class:`EmitError` when Redis cannot be
    reached. Use one instance per event loop; ``async with`` (or :meth:`close`) releases the
    connection.
    """

    def __init__(self, redis_url: str | None = None) -> None:
        self._writer = _Writer(redis_url)
        self.redis_url = self._writer.redis_url
        self._redis = redis_client(self.redis_url, WRITE_TIMEOUT, "gateway-emitter")
        self._in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def _write(self, fields: dict[bytes, Any]) -> None:
        async with self._in_flight:
            try:
                await self._redis.xadd(STREAM, fields)
            except Exception as exc:  # connection, auth, URL and Redis errors alike
                raise _publish_error(self.redis_url, exc) from exc

    async def _emit(self, envelope: Envelope, room: str | None) -> str:
        await self._write(self._writer.entry(envelope, room))
        return envelope["id"]

    def _deliver(self, envelope: Envelope, room: str | None) -> Awaitable[str]:
        return self._emit(envelope, room)

    def _command(self, method: str, payload: dict[str, str]) -> Awaitable[None]:
        return self._write(self._writer.command(method, payload))

    async def close(self) -> None:
        await self._redis.aclose()

    async def __aenter__(self) -> Emitter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class SyncEmitter(MessageApi[str], MembershipApi[None]):
    """Send to clients on every gateway node from blocking code (Django, Flask, Celery tasks).

    Same constructor and methods as :class:`Emitter`; each call blocks until Redis accepted the
    message and returns the envelope id. Safe to share between threads (redis-py pools
    connections).
    """

    def __init__(self, redis_url: str | None = None) -> None:
        self._writer = _Writer(redis_url)
        self.redis_url = self._writer.redis_url
        self._redis = sync_redis_client(self.redis_url, WRITE_TIMEOUT, "gateway-emitter")
        self._in_flight = threading.BoundedSemaphore(MAX_IN_FLIGHT)

    def _write(self, fields: dict[bytes, Any]) -> None:
        with self._in_flight:
            try:
                self._redis.xadd(STREAM, fields)
            except Exception as exc:
                raise _publish_error(self.redis_url, exc) from exc

    def _deliver(self, envelope: Envelope, room: str | None) -> str:
        self._write(self._writer.entry(envelope, room))
        return envelope["id"]

    def _command(self, method: str, payload: dict[str, str]) -> None:
        self._write(self._writer.command(method, payload))

    def close(self) -> None:
        self._redis.close()

    def __enter__(self) -> SyncEmitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InProcessEmitter(MessageApi[Awaitable[str]], MembershipApi[Awaitable[None]]):
    """The same operations for code running inside the gateway (``request.app[EMITTER_KEY]``).

    Emits through the node's Socket.IO server: local clients directly, other nodes via Redis.
    Raises :class:`EmitError` when the cluster bus refuses (then nothing happened anywhere).
    """

    def __init__(self, events: ClientEvents) -> None:
        self._events = events

    async def _emit(self, envelope: Envelope, room: str | None) -> str:
        try:
            await self._events.emit(envelope, to=room)
        except BusUnavailable as refused:
            raise EmitError(refused.message) from None
        return envelope["id"]

    def _deliver(self, envelope: Envelope, room: str | None) -> Awaitable[str]:
        return self._emit(envelope, room)

    async def _command(self, method: str, payload: dict[str, str]) -> None:
        try:
            await self._events.sio.manager.publish(method, payload)
        except BusUnavailable as refused:
            raise EmitError(refused.message) from None
