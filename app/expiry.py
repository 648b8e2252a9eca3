"""Token lifetime after connect: connections close when their token expires or is revoked.

A token is verified once, at connect; without this module a connection would outlive its
token indefinitely. :class:`TokenGuard` (a connection listener) arms a timer at each token's
``exp`` and closes connections whose token id (``jti``) has been revoked, sending the error
envelope ``{"code": 401, "message": "token expired" | "token revoked"}`` first.

Revoked ids live in a :class:`RevocationStore`: a Redis sorted set shared by the cluster, or a
dict for a single node. Nodes notice a revocation made elsewhere by polling a version counter
once per :data:`POLL_INTERVAL`, which costs one ``GET`` while nothing changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Iterable
from typing import Protocol

import redis.asyncio as redis

from .auth import AuthError, Identity
from .envelope import make_envelope
from .handlers import ClientEvents, Connection

log = logging.getLogger(__name__)

POLL_INTERVAL = 1.0
"""Seconds between checks for revocations made through another node."""
REVOKED_KEY = "gateway:revoked"
REVOKED_VERSION_KEY = "gateway:revoked:version"


class RevocationStore(Protocol):
    async def add(self, jti: str, until: float) -> None:
        """Revoke ``jti``; the entry may be forgotten after ``until`` (the token's own expiry)."""
        ...

    async def revoked(self, jtis: Iterable[str]) -> set[str]: ...

    async def version(self) -> int:
        """Changes whenever a token is revoked, so pollers only look closer when it moved."""
        ...


class MemoryRevocations:
    """Single node: revocations last as long as the process."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._version = 0

    async def add(self, jti: str, until: float) -> None:
        self._until[jti] = until
        self._version += 1

    async def revoked(self, jtis: Iterable[str]) -> set[str]:
        now = time.time()
        return {jti for jti in jtis if self._until.get(jti, 0) > now}

    async def version(self) -> int:
        return self._version


class RedisRevocations:
    """Cluster: a sorted set jti -> forget-after time, and a counter bumped on every revoke."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    async def add(self, jti: str, until: float) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(REVOKED_KEY, {jti: until})
            pipe.zremrangebyscore(REVOKED_KEY, "-inf", time.time())  # entries of expired tokens
            pipe.incr(REVOKED_VERSION_KEY)
            await pipe.execute()

    async def revoked(self, jtis: Iterable[str]) -> set[str]:
        ids = list(jtis)
        if not ids:
            return set()
        now = time.time()
        scores = await self._redis.zmscore(REVOKED_KEY, ids)
        return {jti for jti, until in zip(ids, scores, strict=True) if until is not None and until > now}

    async def version(self) -> int:
        return int(await self._redis.get(REVOKED_VERSION_KEY) or 0)


class TokenGuard:
    """Refuses revoked tokens and closes connections whose token expires or is revoked."""

    def __init__(self, events: ClientEvents, store: RevocationStore, clustered: bool) -> None:
        self.events = events
        self.store = store
        self._clustered = clustered
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._poller: asyncio.Task[None] | None = None
        self._seen_version: int | None = None
        """Revocation version last checked against the live connections; None forces a check."""

    async def start(self) -> None:
        if self._clustered:
            self._poller = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)

    async def check(self, identity: Identity) -> None:
        """Raise AuthError("token revoked") for a revoked token (at connect, and on HTTP routes).

        Fails open while the store is unreachable, so a Redis outage does not lock every client
        out; the next successful poll re-checks all live connections."""
        if not identity.token_id:
            return
        try:
            revoked = await self.store.revoked([identity.token_id])
        except Exception as exc:
            log.warning("revocation check unavailable, admitting: %s", exc)
            self._seen_version = None
            return
        if revoked:
            raise AuthError("token revoked")

    async def revoke(self, jti: str, expires_at: float | None = None) -> None:
        """Revoke a token id cluster-wide and close its connections on this node now (other
        nodes close theirs at their next poll)."""
        await self.store.add(jti, expires_at if expires_at is not None else math.inf)
        log.info("token revoked", extra={"event": "revoke", "jti": jti})
        await self._close_revoked()

    # -- ConnectionListener -------------------------------------------------------------------

    async def connection_opened(self, connection: Connection) -> None:
        expires_at = connection.identity.expires_at
        if expires_at is not None:
            delay = max(0.0, expires_at - time.time())
            loop = asyncio.get_running_loop()
            self._timers[connection.sid] = loop.call_later(delay, self._spawn_close, connection.sid, "token expired")

    async def connection_closed(self, connection: Connection) -> None:
        timer = self._timers.pop(connection.sid, None)
        if timer is not None:
            timer.cancel()

    # -- closing ------------------------------------------------------------------------------

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
        await self.events.sio.disconnect(sid)

    async def _close_revoked(self) -> None:
        by_jti: dict[str, list[str]] = {}
        for sid, connection in self.events.connections.items():
            if connection.identity.token_id:
                by_jti.setdefault(connection.identity.token_id, []).append(sid)
        for jti in await self.store.revoked(by_jti):
            for sid in by_jti[jti]:
                await self._close(sid, "token revoked")

    async def _poll(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            try:
                version = await self.store.version()
                if version != self._seen_version:
                    await self._close_revoked()
                    self._seen_version = version
                failing = False
            except Exception as exc:
                if not failing:
                    log.warning("revocation check failed, will retry: %s", exc)
                failing = True
                self._seen_version = None
