"""Sessions in Redis (``gateway:session:<pid>``), so that any node of a cluster can resume them
(:mod:`realtime_gateway.cluster.recovery_cluster`), and the bus stream read back for a node that lacks
what a session missed.

A record holds the user, the node (bus origin and offset epoch) and, per room, the bus position
at which the session joined it. It is written when the session changes, before the client is
answered (the node may die next); a node refreshes the records of its live sessions, and a record
expires ``--recovery-window`` seconds after its connection ended, or after its node stopped
refreshing it. A write that fails deletes the record: a record that may miss a change must not be
resumed from.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from ..jsoncodec import dumps, loads
from ..recovery import Entry, Session
from .bus import _stream_id
from .bus_wire import FIELD_METHOD, FIELD_ORIGIN, FIELD_PAYLOAD, FIELD_SEQ, redis_client
from .recovery_cluster import ClusterJournal, Prefetched, Remote, format_baseline

log = logging.getLogger(__name__)

SESSION_PREFIX = "gateway:session:"
STORE_TIMEOUT = 2.0
STREAM_TIMEOUT = 5.0
STREAM_MAX = 200_000
"""Entries read from the stream for one recovery at most (a window of traffic); beyond: not recovered."""
REFRESH_EVERY = 20.0


class SessionStore:
    """Sessions in Redis (``gateway:session:<pid>``), so that any node can resume them."""

    def __init__(self, url: str, window: float, journal: ClusterJournal) -> None:
        self.redis = redis_client(url, STORE_TIMEOUT, "gateway-sessions", decode_responses=True)
        self.stream_reader = redis_client(url, STREAM_TIMEOUT, "gateway-recovery")
        self.window = window
        self.journal = journal
        self._live: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._refresher: asyncio.Task[None] | None = None

    @property
    def _live_ttl(self) -> int:
        return int(self.window + 3 * REFRESH_EVERY)

    async def opened(self, session: Session, user_room: str, remote: Remote | None = None) -> bool:
        """Write a new (or adopted, from ``remote``) session with its rooms; False when Redis did
        not take it. An adopted session keeps the baselines of its rooms' joins and, for an offset
        of the replay that follows (``p``), those of what its client had before."""
        cursor = self.journal.manager.cursor()
        joins = {} if remote is None else {room: format_baseline(b) for room, b in remote.rooms.items()}
        fields = {
            "user": session.user_id,
            "origin": self.journal.manager._origin.decode(),
            "epoch": self.journal.epoch,
            "start": cursor,
            "sid": session.sid or "",
            **{f"r:{room}": joins.get(room, cursor) for room in {*session.rooms, user_room}},
            **({"p": " ".join(map(format_baseline, remote.baselines))} if remote is not None else {}),
            **{f"g:{room}": 1 for room in session.granted},
        }
        self._live.add(session.pid)
        self._ensure_refresher()
        return await self._write(session.pid, lambda pipe, key: pipe.delete(key).hset(key, mapping=fields))

    async def joined(self, session: Session, room: str, granted: bool = False) -> bool:
        """``granted``: a back end's join (``g:<room>``), restored whatever the resuming token says."""
        cursor = self.journal.manager.cursor()
        fields: dict[str, Any] = {f"r:{room}": cursor, **({f"g:{room}": 1} if granted else {})}
        return await self._write(session.pid, lambda pipe, key: pipe.hset(key, mapping=fields))

    async def left(self, session: Session, room: str) -> bool:
        """Also for a dormant session (a back end's leave), whose record keeps its expiry."""
        fields = (f"r:{room}", f"g:{room}")
        return await self._write(session.pid, lambda pipe, key: pipe.hdel(key, *fields), live=session.sid is not None)

    async def ended(self, session: Session) -> None:
        """The session ends now (a back end disconnected it): no node may resume it."""
        self._live.discard(session.pid)
        await self._forget(SESSION_PREFIX + session.pid)

    def closed(self, session: Session) -> None:
        """The connection ended: the record lasts the recovery window from now."""
        self._live.discard(session.pid)
        self._spawn(self._expire(session.pid, int(self.window) or 1))

    async def load(self, pid: Any) -> dict[str, Any] | None:
        if not isinstance(pid, str) or not pid:
            return None
        try:
            fields = await self.redis.hgetall(SESSION_PREFIX + pid)
        except Exception as exc:
            log.warning("cannot read session %s from Redis: %s", pid[:6], exc)
            return None
        if not fields or not {"user", "origin", "epoch", "start"} <= fields.keys():
            return None
        rooms = {key[2:]: value for key, value in fields.items() if key.startswith("r:")}
        granted = {key[2:] for key in fields if key.startswith("g:")}
        priors = fields.get("p", "").split()
        return {**fields, "pid": pid, "rooms": rooms, "granted": granted, "priors": priors}

    async def read_stream(self, after: tuple[int, int], upto: bytes) -> Prefetched | None:
        """The emit entries of the bus after ``after`` up to ``upto``, as journal entries; None
        when Redis cannot say (unreachable) or no longer has them all (trimmed, or lost)."""
        stream = self.journal.manager.stream
        try:
            first = await self.stream_reader.xrange(stream, count=1)
            if not first or _stream_id(first[0][0]) > after:
                return None
            raw = await self.stream_reader.xrange(stream, min=f"({after[0]}-{after[1]}", max=upto, count=STREAM_MAX)
        except Exception as exc:
            log.warning("cannot read the bus stream for a recovery: %s", exc)
            return None
        if len(raw) >= STREAM_MAX:
            return None
        entries = []
        for entry_id, fields in raw:
            if fields.get(FIELD_METHOD) != b"emit":
                continue
            try:
                payload = loads(fields[FIELD_PAYLOAD])
                body = dumps([payload["event"], *payload["data"]])
                pos = (fields[FIELD_ORIGIN], int(fields[FIELD_SEQ]), entry_id)
            except (KeyError, TypeError, ValueError):
                continue  # what the nodes dropped too
            if payload.get("namespace", "/") == "/":
                entries.append(Entry(0, 0.0, payload.get("room"), payload.get("skip_sid"), body, "", pos))
        return upto, entries

    async def _write(self, pid: str, build: Any, live: bool = True) -> bool:
        key = SESSION_PREFIX + pid
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                build(pipe, key)
                if live:
                    pipe.expire(key, self._live_ttl)
                await pipe.execute()
            return True
        except Exception as exc:
            # the record may now miss a change: no node may resume from it
            log.warning("session %s not written to Redis (%s): it cannot be resumed elsewhere", pid[:6], exc)
            self._spawn(self._forget(key))
            return False

    async def _forget(self, key: str) -> None:
        with contextlib.suppress(Exception):
            await self.redis.delete(key)

    async def _expire(self, pid: str, seconds: int) -> None:
        with contextlib.suppress(Exception):
            await self.redis.expire(SESSION_PREFIX + pid, seconds)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _ensure_refresher(self) -> None:
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.ensure_future(self._refresh_forever())

    async def _refresh_forever(self) -> None:
        """Keep the records of this node's live sessions; those of a dead node then expire."""
        while True:
            await asyncio.sleep(REFRESH_EVERY)
            live = list(self._live)
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for pid in live:
                        pipe.expire(SESSION_PREFIX + pid, self._live_ttl)
                    await pipe.execute()
            except Exception as exc:
                log.warning("cannot refresh %d session(s) in Redis: %s", len(live), exc)

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        for client in (self.redis, self.stream_reader):
            with contextlib.suppress(Exception):
                await client.aclose()
