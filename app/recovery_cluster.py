"""Connection-state recovery across the nodes of a cluster: a client resumes on any node,
including after the node it was on was SIGKILLed.

Every node delivers the same bus stream (:mod:`realtime_gateway.bus`), but in its own order: its
own emits at once, everyone else's when it reads them. So an offset handed out by node B says
where B was on the bus when it delivered the message: ``<epoch>-<seq>.<S>.<n>``, where ``S`` is
the last stream entry B had read and ``n`` the last sequence number B had written. What B had
delivered up to that message is exactly: the entries up to ``S`` (from every origin but B) and
B's own entries up to ``n``. Another node A that resumes the session replays, from its own
journal, every message addressed to the session's rooms that is *not* in that set:

- an entry of another origin (a node, an emitter) with stream id > ``S``;
- an entry of B with sequence number > ``n``;
- an entry of A itself whose stream id is > ``S``, or which is not on the stream yet.

Before it does, A waits (briefly) until it has read the stream up to ``S`` and B's entries up to
``n``, so nothing B delivered can still reach the client live through A. The session itself
(user, node, rooms with the bus position at which each was joined, which of them a back end
granted, :mod:`realtime_gateway.membership`) is written to Redis when it
changes, before the client is answered, so it survives its node; a node refreshes the records of
its live sessions, and a record expires ``--recovery-window`` seconds after its connection ended
(or its node stopped refreshing it).

Relies on the bus's ``_receive(fields)``, ``_last_id``, ``_origin`` and
:func:`realtime_gateway.bus._stream_id` (one module of ours, not a library).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from typing import Any

from .bus import StreamManager, _stream_id
from .bus_wire import FIELD_METHOD, FIELD_ORIGIN, FIELD_PAYLOAD, FIELD_SEQ, redis_client
from .jsoncodec import dumps, loads
from .recovery import Entry, Journal, Resumption, Session

log = logging.getLogger(__name__)

OWN = object()
"""Position marker of an emit of this node, resolved to (origin, seq, None) when it is recorded."""
CATCH_UP_TIMEOUT = 2.0
"""How long a resuming node waits to have read what the old node had read (normally: ms)."""
CATCH_UP_POLL = 0.02
OWN_IDS_KEPT = 200_000
SESSION_PREFIX = "gateway:session:"
STORE_TIMEOUT = 2.0
STREAM_TIMEOUT = 5.0
STREAM_MAX = 200_000
"""Entries read from the stream for one recovery at most (a window of traffic); beyond: not recovered."""
REFRESH_EVERY = 20.0


class RecoveringStreamManager(StreamManager):
    """The bus manager that tells the journal where on the stream each delivery is."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.position: Any = None
        self.own_ids: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        """This node's sequence numbers -> their stream ids, as they came back through the bus."""
        self.highest: dict[bytes, int] = {}
        """The highest sequence number read, per origin."""
        self.first_read: bytes | None = None
        self.session_store: SessionStore | None = None

    async def emit(  # type: ignore[override]
        self,
        event: str,
        data: Any,
        namespace: str | None = None,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        ignore_queue: bool = False,
        **kwargs: Any,
    ) -> None:
        # the journal reads the position synchronously, before the first suspension of emit
        self.position = None if ignore_queue or callback is not None else OWN
        try:
            await super().emit(event, data, namespace, room, skip_sid, callback, to, ignore_queue, **kwargs)
        finally:
            self.position = None

    async def _receive(self, fields: dict[bytes, bytes]) -> None:
        origin = fields.get(FIELD_ORIGIN)
        try:
            seq = int(fields[FIELD_SEQ])
        except (KeyError, ValueError):
            return await super()._receive(fields)
        entry_id = self._last_id
        assert entry_id is not None  # set by the read loop before it hands over the entry
        if self.first_read is None:
            self.first_read = entry_id
        if origin == self._origin:
            self.own_ids[seq] = entry_id
            if len(self.own_ids) > OWN_IDS_KEPT:
                self.own_ids.popitem(last=False)
            own_written = getattr(self.history, "own_written", None)  # history in Redis
            if own_written is not None:
                own_written(seq, entry_id)
            return await super()._receive(fields)
        if origin is not None and seq > self.highest.get(origin, 0):
            self.highest[origin] = seq
        self.position = (origin, seq, entry_id)
        try:
            await super()._receive(fields)
        finally:
            self.position = None

    def cursor(self) -> str:
        """Where this node is on the bus: ``<last stream id read>.<last sequence number written>``."""
        return f"{(self._last_id or b'0-0').decode()}.{self.last_seq:x}"

    async def catch_up(self, stream_id: tuple[int, int], origin: bytes, seq: int) -> bool:
        """Wait until this node has read the stream up to ``stream_id`` and ``origin``'s entries up
        to ``seq``. False when the first never happened within the bound (the second may not
        happen at all: what a killed node had not written yet is gone)."""
        deadline = time.monotonic() + CATCH_UP_TIMEOUT
        while time.monotonic() < deadline:
            read = _stream_id(self._last_id or b"0-0") >= stream_id
            if read and self.highest.get(origin, 0) >= seq:
                return True
            await asyncio.sleep(CATCH_UP_POLL)
        return _stream_id(self._last_id or b"0-0") >= stream_id


Prefetched = tuple[bytes, list[Entry]]
"""(the last stream id read, the emit entries after the session's offset up to it)."""


class Remote:
    """A session another node served: the bus position of its last offset and of its joins, and
    (when this node's journal does not reach back that far) the entries read from the stream up
    to ``upto``, after which the journal takes over."""

    __slots__ = ("origin", "prefetched", "rooms", "seq", "stream_id", "upto")

    def __init__(
        self,
        origin: bytes,
        stream_id: tuple[int, int],
        seq: int,
        rooms: dict[str, tuple[Any, int]],
        prefetched: Prefetched | None,
    ) -> None:
        self.origin = origin
        self.stream_id = stream_id
        self.seq = seq
        self.rooms = rooms
        self.upto = None if prefetched is None else _stream_id(prefetched[0])
        self.prefetched = [] if prefetched is None else prefetched[1]


def parse_cursor(text: str) -> tuple[tuple[int, int], int] | None:
    """``<stream id>.<seq hex>`` -> ((ms, n), seq), None when malformed."""
    stream, _, seq = text.partition(".")
    try:
        return _stream_id(stream), int(seq, 16)
    except ValueError:
        return None


class ClusterJournal(Journal):
    """The journal of a cluster node: offsets carry the bus position (see the module docstring)."""

    def __init__(self, window: float, manager: RecoveringStreamManager, tag_frames: bool = True) -> None:
        super().__init__(window, tag_frames)
        self.manager = manager
        self.floor: tuple[int, int] = (0, 0)
        """The journal holds every delivery after this stream id (raised as entries are trimmed)."""

    def _tag(self, seq: int) -> tuple[str, Any]:
        manager = self.manager
        pos = manager.position
        if pos is OWN:
            pos = (manager._origin, manager.last_seq, None)
        return f"{self._prefix}{seq:012x}.{manager.cursor()}", pos

    def _trimmed(self, entry: Entry) -> None:
        if entry.pos is not None:
            _, seq, entry_id = entry.pos
            entry_id = entry_id or self.manager.own_ids.get(seq)
            if entry_id is not None:
                self.floor = max(self.floor, _stream_id(entry_id))

    def remote_position(self, record: dict[str, Any], offset: Any) -> tuple[tuple[int, int], int] | None:
        """The bus position of ``offset`` (None: the session's start) in the session ``record``
        of another node; None when the offset is not one that node handed out."""
        if offset is None:
            return parse_cursor(record["start"])
        if not isinstance(offset, str):
            return None
        epoch, _, rest = offset.partition("-")
        return parse_cursor(rest.partition(".")[2]) if epoch == record["epoch"] else None

    def covers(self, stream_id: tuple[int, int]) -> bool:
        """Whether the journal holds every delivery after ``stream_id``."""
        first = self.manager.first_read
        return first is not None and stream_id >= max(self.floor, _stream_id(first))

    def remote_claim(
        self,
        record: dict[str, Any],
        position: tuple[tuple[int, int], int],
        sid: str,
        prefetched: Prefetched | None = None,
    ) -> Resumption | None:
        """The session of another node (its Redis ``record``) for the connection ``sid``, when this
        node's journal holds everything the session missed after ``position`` (or after the end
        of what was ``prefetched`` from the stream)."""
        if not self.covers(position[0] if prefetched is None else _stream_id(prefetched[0])):
            return None  # this node did not see (or no longer keeps) all of what followed
        rooms = {}
        for room, value in record["rooms"].items():
            parsed = parse_cursor(value)
            if parsed is None:
                return None
            rooms[room] = parsed
        session = Session(record["pid"], record["user"], None, self.last_seq, dict.fromkeys(rooms))
        session.granted = record["granted"] & rooms.keys()
        resumed = self.adopt(session, sid)
        resumed.previous_sid = record.get("sid") or None
        resumed.remote = Remote(record["origin"].encode(), position[0], position[1], rooms, prefetched)
        if prefetched is not None:  # replayed with this node's offset of the moment of resumption
            offset = self._tag(self.last_seq)[0]
            resumed.remote.prefetched = [entry._replace(offset=offset) for entry in prefetched[1]]
        return resumed

    def missed(self, resumed: Resumption) -> list[Entry]:
        remote = resumed.remote
        if remote is None:
            return super().missed(resumed)
        own, own_ids, upto = self.manager._origin, self.manager.own_ids, remote.upto

        def after(pos: Any, stream_id: tuple[int, int], seq: int, floor: tuple[int, int] | None) -> bool:
            """Not delivered by the old node by (stream_id, seq), nor part of what was read
            from the stream up to ``floor``."""
            origin, number, entry_id = pos
            entry_id = entry_id or (own_ids.get(number) if origin == own else None)
            if entry_id is None:
                return True  # this node's, not on the stream yet: the old node cannot have had it
            position = _stream_id(entry_id)
            if floor is not None and position <= floor:
                return False
            return number > seq if origin == remote.origin else position > stream_id

        def addressed(entry: Entry, floor: tuple[int, int] | None) -> bool:
            pos = entry.pos
            if pos is None or not after(pos, remote.stream_id, remote.seq, floor):
                return False
            room = entry.room
            targets = [None] if room is None else [room] if isinstance(room, str) else room
            return any(r is None or (r in remote.rooms and after(pos, *remote.rooms[r], floor)) for r in targets)

        return [
            *(entry for entry in remote.prefetched if addressed(entry, None)),
            *(entry for entry in self._entries if addressed(entry, upto)),
        ]


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

    async def opened(self, session: Session, user_room: str) -> bool:
        """Write a new (or adopted) session with its rooms; False when Redis did not take it."""
        cursor = self.journal.manager.cursor()
        fields = {
            "user": session.user_id,
            "origin": self.journal.manager._origin.decode(),
            "epoch": self.journal.epoch,
            "start": cursor,
            "sid": session.sid or "",
            **{f"r:{room}": cursor for room in {*session.rooms, user_room}},
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
        return {**fields, "pid": pid, "rooms": rooms, "granted": granted}

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
