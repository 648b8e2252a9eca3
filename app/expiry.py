"""Token lifetime after connect: connections close when their token expires or is revoked.

A token is verified once, at connect; without this module a connection would outlive its
token indefinitely. :class:`TokenGuard` (a connection listener) closes each connection at its
token's ``exp`` (plus ``--jwt-leeway``; up to :data:`EXPIRY_SLOT` later: the deadlines of all
connections share one timer, :class:`ExpiryWheel`, where a timer handle each cost ~0.6 KB of
every idle connection) and closes connections whose token id (``jti``) has been
revoked, sending the error envelope ``{"code": 401, "message": "token expired" | "token
revoked"}`` first; the WebSocket (or polling session) is closed with it, code 1008.

Revoked ids live in a :class:`RevocationStore`: a Redis sorted set shared by the cluster, or a
dict for a single node. Each node keeps a copy of the live revocations, so checking a token at
connect never waits on Redis (no added latency, no outage on the connect path). Nodes notice a
revocation made elsewhere by polling a version key once per :data:`POLL_INTERVAL` (one ``GET``
while nothing changes); they then reload the copy and close the matching connections. The
version is random rather than a counter, so a Redis that restarted empty cannot repeat a value
a node has already seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import math
import time
import uuid
from collections.abc import Callable
from typing import Protocol

import redis.asyncio as redis
from aiohttp import WSCloseCode

from .auth import AuthError, Identity
from .connection import Connection
from .envelope import make_envelope
from .handlers import ClientEvents
from .transport.closing import disconnect_session

log = logging.getLogger(__name__)

POLL_INTERVAL = 1.0
"""Seconds between checks for revocations made through another node."""
REVOKED_KEY = "gateway:revoked"
REVOKED_VERSION_KEY = "gateway:revoked:version"
EXPIRY_SLOT = 1.0
"""Seconds per slot of the expiry wheel: how late after its deadline a connection may close."""


class ExpiryWheel:
    """Deadlines of many keys on one event-loop timer: keys in :data:`EXPIRY_SLOT`-wide slots,
    a heap of the slots in use; ``on_due(key)`` runs once per key whose slot has passed.
    Disarming removes the key at once (nothing is kept for a closed connection)."""

    __slots__ = ("_handle", "_heap", "_on_due", "_slot_of", "_slots")

    def __init__(self, on_due: Callable[[str], None]) -> None:
        self._on_due = on_due
        self._slots: dict[int, set[str]] = {}
        self._slot_of: dict[str, int] = {}
        self._heap: list[int] = []  # slots, some perhaps emptied since (skipped when reached)
        self._handle: asyncio.TimerHandle | None = None

    def arm(self, key: str, delay: float) -> None:
        self.disarm(key)
        loop = asyncio.get_running_loop()
        slot = math.ceil((loop.time() + delay) / EXPIRY_SLOT)
        members = self._slots.get(slot)
        if members is None:
            members = self._slots[slot] = set()
            heapq.heappush(self._heap, slot)
            if self._heap[0] == slot:  # earlier than what the timer waits for
                self._schedule(loop)
        members.add(key)
        self._slot_of[key] = slot

    def disarm(self, key: str) -> None:
        slot = self._slot_of.pop(key, None)
        if slot is None:
            return
        members = self._slots[slot]
        members.discard(key)
        if not members:
            del self._slots[slot]

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        heap = self._heap
        while heap and heap[0] not in self._slots:
            heapq.heappop(heap)
        self.stop()
        if heap:
            self._handle = loop.call_at(heap[0] * EXPIRY_SLOT, self._turn)

    def _turn(self) -> None:
        self._handle = None
        loop = asyncio.get_running_loop()
        now_slot = math.floor(loop.time() / EXPIRY_SLOT)
        heap = self._heap
        while heap and heap[0] <= now_slot:
            for key in self._slots.pop(heapq.heappop(heap), ()):
                del self._slot_of[key]
                self._on_due(key)
        self._schedule(loop)


class RevocationStore(Protocol):
    async def add(self, jti: str, until: float) -> None:
        """Revoke ``jti``; the entry may be forgotten after ``until`` (the token's own expiry)."""
        ...

    async def load(self) -> tuple[str | None, dict[str, float]]:
        """The version (it changes with every revocation) and the live revocations, jti -> until."""
        ...

    async def version(self) -> str | None: ...


class MemoryRevocations:
    """Single node: revocations last as long as the process."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._version = 0

    async def add(self, jti: str, until: float) -> None:
        self._until[jti] = until
        self._version += 1

    async def load(self) -> tuple[str | None, dict[str, float]]:
        now = time.time()
        return str(self._version), {jti: until for jti, until in self._until.items() if until > now}

    async def version(self) -> str | None:
        return str(self._version)


class RedisRevocations:
    """Cluster: a sorted set jti -> forget-after time, and a version key renewed on every revoke."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    async def add(self, jti: str, until: float) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(REVOKED_KEY, {jti: until})
            pipe.zremrangebyscore(REVOKED_KEY, "-inf", time.time())  # entries of expired tokens
            pipe.set(REVOKED_VERSION_KEY, uuid.uuid4().hex)
            await pipe.execute()

    async def load(self) -> tuple[str | None, dict[str, float]]:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(REVOKED_VERSION_KEY)
            pipe.zrangebyscore(REVOKED_KEY, f"({time.time()}", "+inf", withscores=True)
            version, entries = await pipe.execute()
        return version, dict(entries)

    async def version(self) -> str | None:
        return await self._redis.get(REVOKED_VERSION_KEY)


class TokenGuard:
    """Refuses revoked tokens and closes connections whose token expires or is revoked."""

    def __init__(self, events: ClientEvents, store: RevocationStore, clustered: bool) -> None:
        self.events = events
        self.store = store
        self._clustered = clustered
        self._revoked: dict[str, float] = {}
        self._loaded = False
        self._version: str | None = None
        self._expiries = ExpiryWheel(lambda sid: self._spawn_close(sid, "token expired"))
        self._closing: set[asyncio.Task[None]] = set()
        self._poller: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load the revocations before serving; a cluster node then keeps polling for more."""
        try:
            await self._refresh()
        except Exception as exc:  # Redis down at start: admit, and catch up at the next poll
            log.warning("could not load revoked tokens, will retry: %s", exc)
        if self._clustered:
            self._poller = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        self._expiries.stop()
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)

    def check(self, identity: Identity) -> None:
        """Raise AuthError("token revoked") for a revoked token (at connect, and on HTTP routes).

        Reads this node's copy: a revocation made through another node is enforced here
        within :data:`POLL_INTERVAL`, and while Redis is unreachable the copy stays as it was."""
        if identity.token_id and self._is_revoked(identity.token_id):
            raise AuthError("token revoked")

    async def revoke(self, jti: str, expires_at: float | None = None) -> None:
        """Revoke a token id cluster-wide and close its connections on this node now (other
        nodes close theirs at their next poll)."""
        until = expires_at if expires_at is not None else math.inf
        await self.store.add(jti, until)
        self._revoked[jti] = until
        log.info("token revoked", extra={"event": "revoke", "jti": jti})
        await self._close_revoked()

    # -- ConnectionListener -------------------------------------------------------------------

    async def connection_opened(self, connection: Connection) -> None:
        expires_at = connection.identity.expires_at
        if expires_at is not None:
            # the same allowance for clock skew as at connect, or a token accepted in its
            # leeway would be closed the moment it connected
            self._expiries.arm(connection.sid, max(0.0, expires_at + self.events.verifier.leeway - time.time()))

    async def connection_closed(self, connection: Connection) -> None:
        self._expiries.disarm(connection.sid)

    # -- closing ------------------------------------------------------------------------------

    def _is_revoked(self, jti: str) -> bool:
        until = self._revoked.get(jti)
        return until is not None and until > time.time()

    def _spawn_close(self, sid: str, message: str) -> None:
        task = asyncio.create_task(self._close(sid, message))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close(self, sid: str, message: str) -> None:
        connection = self.events.connections.get(sid)
        if connection is None:
            return
        log.info(
            "closing sid=%s user=%s: %s",
            sid,
            connection.identity.user_id,
            message,
            extra={"event": "token_close", "sid": sid, "user_id": connection.identity.user_id, "reason": message},
        )
        with contextlib.suppress(Exception):  # the client may already be gone
            await self.events.emit(make_envelope("error", AuthError(message).as_dict()), to=sid, local=True)
        await disconnect_session(self.events.sio, sid, WSCloseCode.POLICY_VIOLATION, message)

    async def _close_revoked(self) -> None:
        revoked = [
            sid
            for sid, connection in self.events.connections.items()
            if connection.identity.token_id and self._is_revoked(connection.identity.token_id)
        ]
        for sid in revoked:
            await self._close(sid, "token revoked")

    async def _refresh(self) -> None:
        """Reload the copy when the version moved, and close what it now revokes."""
        if self._loaded and await self.store.version() == self._version:
            return
        self._version, self._revoked = await self.store.load()
        self._loaded = True
        await self._close_revoked()

    async def _poll(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            try:
                await self._refresh()
                failing = False
            except Exception as exc:
                if not failing:
                    log.warning("revocation check failed, will retry: %s", exc)
                failing = True
