"""Presence: who is online anywhere in the cluster, announced exactly once per transition.

A user is online while they have at least one connection on any node. :class:`Presence` (a
connection listener) counts this node's connections per user and writes those counts to a store.
The store is the only place that sees every node, so it is the one that decides a transition:
it reports the users whose cluster-wide count went from 0 to more (``online``) or back to 0
(``offline``), and only those are announced as ``user_status`` envelopes: to everyone, or only to
the connections watching that user (:mod:`realtime_gateway.presence_watch`). A second
device, or a device that connects to node 2 before leaving node 1, therefore changes a count
without announcing anything.

Counts are written as absolute values by one writer task per node, so writes can be batched and
retried, and a full rewrite (after a Redis outage or restart) repairs whatever was lost. The
same writer publishes which rooms have members on this node, when a room gains its first or
loses its last, for the cluster's room total.

:meth:`Presence.cluster_stats` serves ``/ws/stats``: it reads the store at most once per
:data:`STATS_MAX_AGE` unless this node has written since, so the totals always include this
node's own changes while a dashboard polling many times a second costs Redis almost nothing.

Stores: :class:`MemoryPresenceStore` (single node) here, ``RedisPresenceStore`` in
:mod:`realtime_gateway.cluster.presence_redis` (cluster, with expiry of dead nodes' entries).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from .connection import Connection
from .envelope import BAD_REQUEST, UNAVAILABLE, ProtocolError, make_envelope
from .handlers import ClientEvents
from .presence_watch import PresenceWatches, parse_user_ids

log = logging.getLogger(__name__)

CROWD_WARNING = 2000
"""Online users on this node past which ``--presence-announce all`` is worth a warning."""
RETRY_DELAY = 1.0
"""Seconds before a failed store write is retried (as a full rewrite)."""
OPEN_WAIT = 5.0
"""Longest a connect waits for its count to be written; the write itself is bounded by the
store's own timeouts, this only guards the connect path against a stuck writer."""
STATS_MAX_AGE = 1.0
"""Seconds the cluster totals may be reused while this node has written nothing new."""

User = tuple[str, str]
"""(user_id, user_name)"""


@dataclass
class Transitions:
    """Users whose cluster-wide status changed with a store write."""

    online: list[User] = field(default_factory=list)
    offline: list[User] = field(default_factory=list)


@dataclass
class NodeSnapshot:
    """This node's own figures, published with each heartbeat for the cluster statistics."""

    clients: int
    online_users: int
    rooms: int
    transports: dict[str, int]
    uptime: float


class PresenceStore(Protocol):
    """Where the counts of every node meet; decides online/offline transitions."""

    clustered: bool

    async def apply(self, counts: dict[str, tuple[int, str]], rooms: dict[str, bool], replace: bool) -> Transitions:
        """Set this node's connection count (and name) per user, and whether each listed room
        has members on this node; ``replace`` drops users and rooms not listed."""
        ...

    async def heartbeat(self, snapshot: NodeSnapshot) -> bool:
        """Say this node is alive; True when its entries were lost and must be rewritten."""
        ...

    async def sweep(self) -> list[User]:
        """Remove the entries of nodes that stopped heart-beating; return users now offline."""
        ...

    async def online(self, user_ids: list[str]) -> set[str]: ...

    async def users(self) -> list[User]: ...

    async def cluster_stats(self) -> dict[str, Any] | None:
        """Cluster-wide totals, or None for a single node (its own figures are the totals)."""
        ...

    async def close(self) -> None:
        """Forget this node (after its users were written as gone)."""
        ...


class MemoryPresenceStore:
    """Single node: this node's counts are the whole truth, so no expiry is needed."""

    clustered = False

    def __init__(self) -> None:
        self._users: dict[str, User] = {}

    async def apply(self, counts: dict[str, tuple[int, str]], rooms: dict[str, bool], replace: bool) -> Transitions:
        changes = dict(counts)
        if replace:
            changes.update({uid: (0, name) for uid, (_, name) in self._users.items() if uid not in counts})
        result = Transitions()
        for user_id, (count, name) in changes.items():
            known = self._users.get(user_id)
            if count > 0 and known is None:
                self._users[user_id] = (user_id, name)
                result.online.append((user_id, name))
            elif count <= 0 and known is not None:
                del self._users[user_id]
                result.offline.append(known)
        return result

    async def heartbeat(self, snapshot: NodeSnapshot) -> bool:
        return False

    async def sweep(self) -> list[User]:
        return []

    async def online(self, user_ids: list[str]) -> set[str]:
        return {uid for uid in user_ids if uid in self._users}

    async def users(self) -> list[User]:
        return list(self._users.values())

    async def cluster_stats(self) -> dict[str, Any] | None:
        return None

    async def close(self) -> None:
        self._users.clear()


class Presence:
    """Counts this node's connections per user and announces cluster-wide transitions.

    Register it in ``ClientEvents.listeners``; it also answers the ``presence`` client event.
    """

    def __init__(self, events: ClientEvents, store: PresenceStore, ttl: float, announce: str = "all") -> None:
        self.events = events
        self.store = store
        self.watches = PresenceWatches(events.sio, announce)
        self._warned_crowd = False
        self.started_at = time.monotonic()
        self._heartbeat_interval = ttl / 5
        self._counts: dict[str, int] = {}
        self._names: dict[str, str] = {}
        self._dirty: set[str] = set()
        self._dirty_rooms: set[str] = set()
        self._rewrite = False
        self._wake = asyncio.Event()
        self._batch: asyncio.Future[bool] | None = None
        """Resolves when the write that includes the changes marked so far is done (True) or
        has failed (False)."""
        self._writing: asyncio.Future[bool] | None = None
        """The batch the writer is busy with."""
        self._written = 0
        """Successful writes so far: cached cluster totals older than the last one are stale."""
        self._stats: tuple[float, int, dict[str, Any] | None] | None = None
        """(monotonic time, writes then, totals) of the last store read for cluster_stats."""
        self._stats_read: tuple[int, asyncio.Task[dict[str, Any] | None]] | None = None
        """The store read in flight, with the number of writes done when it began."""
        events.rooms.watchers.append(self._room_changed)
        self._tasks: list[asyncio.Task[None]] = []
        self._store_down = False

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        if self.store.clustered:
            # alive before the first count is written, or another node's sweep could take this
            # node for dead and announce its first users offline
            await self._beat()
            self._tasks.append(asyncio.create_task(self._heartbeat_loop()))
        self._tasks.append(asyncio.create_task(self._write_loop()))

    async def stop(self, timeout: float) -> None:
        """Write every remaining user of this node as gone (announcing their ``offline``), then
        leave the store. Called after the clients were disconnected, during shutdown.

        If the store cannot be reached in time, the node's entries are left to expire: other
        nodes announce those users offline within ``ttl``."""
        self._counts.clear()
        written = False
        with contextlib.suppress(asyncio.TimeoutError):
            written = await asyncio.wait_for(asyncio.shield(self._mark_all()), timeout)
        if not written:
            log.warning("could not write presence at shutdown; other nodes will expire it")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if written:
            with contextlib.suppress(Exception):
                await self.store.close()

    # -- ConnectionListener ---------------------------------------------------------------

    async def connection_opened(self, connection: Connection) -> None:
        """Returns once the count is written. The connection's events are handled after this
        (in order), so once a client has an answer to anything it sent, it is counted on every
        node: a device moving between nodes may leave the old node from then on without its
        user looking offline. Closing does not wait, so a shutdown that disconnects thousands
        of clients writes them in a few batches."""
        user_id = connection.identity.user_id
        self._counts[user_id] = self._counts.get(user_id, 0) + 1
        self._names[user_id] = connection.identity.username
        written = self._mark(user_id)
        if not self._store_down:  # during an outage connects go ahead; the rewrite comes later
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(written), OPEN_WAIT)

    async def connection_closed(self, connection: Connection) -> None:
        user_id = connection.identity.user_id
        remaining = self._counts.get(user_id, 0) - 1
        if remaining > 0:
            self._counts[user_id] = remaining
        else:
            self._counts.pop(user_id, None)
        self.watches.forget(connection.sid)
        self._mark(user_id)

    # -- queries ----------------------------------------------------------------------------

    async def query(self, connection: Connection, content: Any) -> dict[str, Any]:
        """Client event ``presence``: which of a list of user ids are online (in the ack, and as a
        ``presence`` envelope for clients that did not ask for one). Content: the list, or
        ``{"users": [...], "watch": true}`` to also receive their ``user_status`` from now on."""
        watch = False
        if isinstance(content, dict):
            watch = content.get("watch", False)
            if not isinstance(watch, bool):
                raise ProtocolError(BAD_REQUEST, "presence: watch must be true or false")
            content = content.get("users")
        user_ids = parse_user_ids(content, "presence")
        assert user_ids is not None
        if watch:
            await self.watches.watch(connection, user_ids)
        return await self._answer(connection, user_ids)

    async def watch(self, connection: Connection, content: Any) -> dict[str, Any]:
        """Client event ``watch_presence``: a list of user ids (answered like ``presence``), or
        ``"*"`` for every user's transitions."""
        user_ids = parse_user_ids(content, "watch_presence", allow_everyone=True)
        await self.watches.watch(connection, user_ids)
        if user_ids is None:
            return {"ok": True, "watching": "*"}
        return await self._answer(connection, user_ids)

    async def unwatch(self, connection: Connection, content: Any) -> dict[str, Any]:
        """Client event ``unwatch_presence``: a list of user ids, or ``"*"``."""
        await self.watches.unwatch(connection, parse_user_ids(content, "unwatch_presence", allow_everyone=True))
        return {"ok": True}

    async def _answer(self, connection: Connection, user_ids: list[str]) -> dict[str, Any]:
        # read after a watch started, so a transition in between is not missed (at worst it
        # arrives as a user_status after this answer, which already shows it)
        try:
            online = await self.store.online(user_ids)
        except Exception as exc:
            raise ProtocolError(UNAVAILABLE, "presence: temporarily unavailable") from exc
        statuses = {uid: "online" if uid in online else "offline" for uid in user_ids}
        await self.events.send(connection.sid, make_envelope("presence", {"users": statuses}))
        return {"ok": True, "users": statuses}

    def snapshot(self) -> NodeSnapshot:
        """This node's own figures (connections, distinct users, client-joined rooms)."""
        events = self.events
        return NodeSnapshot(
            clients=len(events.connections),
            online_users=len(self._counts),
            rooms=len(events.rooms.members),
            transports={transport: n for transport, n in events.transports.items() if n},
            uptime=time.monotonic() - self.started_at,
        )

    async def cluster_stats(self) -> dict[str, Any] | None:
        """The store's cluster totals (None for a single node), including every change this
        node has made: pending writes are awaited, and a cached read older than this node's
        last write is not reused. Concurrent callers share one read."""
        if not self.store.clustered:
            return None
        pending = self._batch or self._writing
        if pending is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(pending), OPEN_WAIT)
        cached = self._stats
        if cached is not None and cached[1] == self._written and time.monotonic() - cached[0] < STATS_MAX_AGE:
            return cached[2]
        read = self._stats_read
        if read is None or read[0] != self._written:  # a read begun before this node's last write
            read = self._stats_read = (self._written, asyncio.create_task(self._read_stats(self._written)))
        return await asyncio.shield(read[1])

    async def _read_stats(self, written: int) -> dict[str, Any] | None:
        started = time.monotonic()
        try:
            totals = await self.store.cluster_stats()
        finally:
            if self._stats_read is not None and self._stats_read[0] == written:
                self._stats_read = None
        if self._stats is None or self._stats[1] <= written:
            self._stats = (started, written, totals)
        return totals

    # -- writing ----------------------------------------------------------------------------

    def _mark(self, user_id: str) -> asyncio.Future[bool]:
        self._dirty.add(user_id)
        return self._wake_writer()

    def _room_changed(self, room: str) -> None:
        self._dirty_rooms.add(room)
        self._wake_writer()

    def _mark_all(self) -> asyncio.Future[bool]:
        self._rewrite = True
        return self._wake_writer()

    def _wake_writer(self) -> asyncio.Future[bool]:
        if self._batch is None:
            self._batch = asyncio.get_running_loop().create_future()
        self._wake.set()
        return self._batch

    async def _write_loop(self) -> None:
        """The only writer: takes whatever changed since the last write and writes it at once."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            dirty, self._dirty = self._dirty, set()
            dirty_rooms, self._dirty_rooms = self._dirty_rooms, set()
            rewrite, self._rewrite = self._rewrite, False
            batch, self._batch = self._batch, None
            self._writing = batch
            users = set(self._counts) if rewrite else dirty
            counts = {uid: (self._counts.get(uid, 0), self._names.get(uid, uid)) for uid in users}
            members = self.events.rooms.members
            rooms = dict.fromkeys(members, True) if rewrite else {room: room in members for room in dirty_rooms}
            try:
                transitions = await self.store.apply(counts, rooms, replace=rewrite)
            except Exception as exc:
                self._report_store_error("presence write", exc)
                self._writing = None
                _resolve(batch, False)  # nobody waits on an unreachable store for more than one try
                await asyncio.sleep(RETRY_DELAY)
                self._mark_all()  # absolute counts: rewriting everything repairs any loss
                continue
            self._written += 1
            self._writing = None
            self._report_store_ok()
            for uid in dirty - self._counts.keys():
                self._names.pop(uid, None)
            await self._announce(transitions.online, "online")
            await self._announce(transitions.offline, "offline")
            _resolve(batch, True)

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            await self._beat()

    async def _beat(self) -> None:
        """Keep this node's entries alive, and expire those of nodes that died (every node
        sweeps; the store makes sure each dead user is reported to exactly one sweeper)."""
        try:
            if await self.store.heartbeat(self.snapshot()):
                self._mark_all()
            await self._announce(await self.store.sweep(), "offline")
        except Exception as exc:
            self._report_store_error("presence heartbeat", exc)
        else:
            self._report_store_ok()

    def _report_store_error(self, what: str, exc: Exception) -> None:
        if not self._store_down:
            self._store_down = True
            log.warning("%s failed, will retry: %s", what, exc)

    def _report_store_ok(self) -> None:
        if self._store_down:
            self._store_down = False
            log.info("presence store reachable again")

    async def _announce(self, users: list[User], status: str) -> None:
        if users and self.watches.announce == "all":
            self._warn_if_crowded()
        for user_id, name in users:
            log.info("user %s %s", user_id, status, extra={"event": "presence", "user_id": user_id, "status": status})
            envelope = make_envelope("user_status", {"user_id": user_id, "user_name": name, "status": status})
            try:
                await self.events.emit(envelope, to=self.watches.targets(user_id))
            except Exception:
                log.warning("could not announce %s %s", user_id, status, exc_info=True)

    def _warn_if_crowded(self) -> None:
        if not self._warned_crowd and len(self._counts) > CROWD_WARNING:
            self._warned_crowd = True
            log.warning(
                "%d users online on this node with --presence-announce all: each transition goes to "
                "every connection (N users connecting cost N^2/2 deliveries); consider watchers",
                len(self._counts),
            )


def _resolve(future: asyncio.Future[bool] | None, written: bool) -> None:
    if future is not None and not future.done():
        future.set_result(written)
