"""Connection-state recovery across the nodes of a cluster: a client resumes on any node,
including after the node it was on was SIGKILLed.

Every node delivers the same bus stream (:mod:`realtime_gateway.cluster.bus`), but in its own order: its
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
granted, :mod:`realtime_gateway.membership`) is in Redis (:mod:`realtime_gateway.cluster.session_store`)
before the client is answered, so it survives its node. A node that was restarted since the
offset reads what its journal lacks from the bus stream (:meth:`SessionStore.read_stream`).

The client may drop again while that replay is arriving, and come back anywhere with the offset
of the last replayed message it got. That offset is A's (A's record has replaced B's in Redis):
A's own position when it delivered the message (or, for what was read back from the stream,
the message's stream id and A's own entries before it). The client has what that position says
*and* what B had delivered: the new record keeps B's position as a prior (``p``), and each room's
join as the position of the node where it happened, so the next node replays only what is after
all of them. An offset from after A's takeover needs no prior: A had caught up with B by then.
On A itself such an offset (up to the takeover, :attr:`Session.adopted`) takes the same path.

Relies on the bus's ``_receive(fields)``, ``_last_id``, ``_origin`` and
:func:`realtime_gateway.cluster.bus._stream_id` (one module of ours, not a library).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import TYPE_CHECKING, Any

from ..recovery import Entry, Journal, Resumption, Session
from .bus import HEARTBEAT, StreamManager, _stream_id
from .bus_wire import FIELD_METHOD, FIELD_ORIGIN, FIELD_SEQ

if TYPE_CHECKING:
    from .session_store import SessionStore

log = logging.getLogger(__name__)

OWN = object()
"""Position marker of an emit of this node, resolved to (origin, seq, None) when it is recorded."""
CATCH_UP_TIMEOUT = 2.0
"""How long a resuming node waits to have read what the old node had read (normally: ms)."""
CATCH_UP_POLL = 0.02
OWN_IDS_KEPT = 200_000
NODE_ORIGINS_KEPT = 10_000
HEARTBEAT_METHOD = HEARTBEAT.encode()


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
        self.node_origins: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        """Origins that write heartbeats: gateway nodes (each stores its own messages in history)."""
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
        if origin is not None and fields.get(FIELD_METHOD) == HEARTBEAT_METHOD and origin not in self.node_origins:
            self.node_origins[origin] = None
            if len(self.node_origins) > NODE_ORIGINS_KEPT:
                self.node_origins.popitem(last=False)
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

Baseline = tuple[bytes, tuple[int, int], int]
"""``(origin, stream id, seq)``: what a node delivered up to a point, the stream entries up to the
stream id from every origin but ``origin``, and ``origin``'s own up to sequence number ``seq``."""
PRIORS_KEPT = 16
"""Takeovers interrupted in a row during their replay that a session can still resume from."""


class Remote:
    """A session another node served: the baselines of what its client received (the bus
    position of its last offset and, when that offset is one of an interrupted replay, those of
    the earlier nodes), the baseline of each room's join, and (when this node's journal does not
    reach back that far) the entries read from the stream up to ``upto``, after which the
    journal takes over."""

    __slots__ = ("baselines", "own_upto", "prefetched", "rooms", "upto")

    def __init__(self, baselines: list[Baseline], rooms: dict[str, Baseline], prefetched: Prefetched | None) -> None:
        self.baselines = baselines
        self.rooms = rooms
        self.upto = None if prefetched is None else _stream_id(prefetched[0])
        self.prefetched = [] if prefetched is None else prefetched[1]
        self.own_upto = 0
        """The last of this node's own sequence numbers among the prefetched entries."""


def parse_cursor(text: str) -> tuple[tuple[int, int], int] | None:
    """``<stream id>.<seq hex>`` -> ((ms, n), seq), None when malformed."""
    stream, _, seq = text.partition(".")
    try:
        return _stream_id(stream), int(seq, 16)
    except ValueError:
        return None


def parse_baseline(text: str, origin: bytes) -> Baseline | None:
    """``<stream id>.<seq hex>[.<origin>]`` (a cursor of ``origin`` unless it names another)."""
    cursor, _, named = text.partition(".")[2].partition(".")
    parsed = parse_cursor(f"{text.partition('.')[0]}.{cursor}")
    return None if parsed is None else (named.encode() or origin, *parsed)


def format_baseline(baseline: Baseline) -> str:
    origin, (ms, n), seq = baseline
    return f"{ms}-{n}.{seq:x}.{origin.decode()}"


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

    def remote_baselines(self, record: dict[str, Any], offset: Any) -> list[Baseline] | None:
        """What the client of the session ``record`` of another node received, by the offset it
        presents (None: the session's start); None when the offset is not one that node handed
        out. An offset from before the record's start is one of the replay of a takeover
        (interrupted): the client also has what it had before, the record's priors."""
        origin = record["origin"].encode()
        if offset is None:
            start = parse_baseline(record["start"], origin)
            return None if start is None else [start]
        if not isinstance(offset, str):
            return None
        epoch, _, rest = offset.partition("-")
        cursor = parse_cursor(rest.partition(".")[2]) if epoch == record["epoch"] else None
        start = parse_baseline(record["start"], origin)
        if cursor is None or start is None:
            return None
        position = (origin, *cursor)
        if position[1] >= start[1] and position[2] >= start[2]:
            return [position]  # after the takeover: the node had caught up with the priors then
        priors = [prior for text in record["priors"] if (prior := parse_baseline(text, origin)) is not None]
        if len(priors) != len(record["priors"]) or len(priors) >= PRIORS_KEPT:
            return None
        return [position, *priors]

    def covers(self, stream_id: tuple[int, int]) -> bool:
        """Whether the journal holds every delivery after ``stream_id``."""
        first = self.manager.first_read
        return first is not None and stream_id >= max(self.floor, _stream_id(first))

    def remote_claim(
        self,
        record: dict[str, Any],
        baselines: list[Baseline],
        sid: str,
        prefetched: Prefetched | None = None,
    ) -> Resumption | None:
        """The session of another node (its Redis ``record``) for the connection ``sid``, when this
        node's journal holds everything the session missed after ``baselines[0]`` (or after the
        end of what was ``prefetched`` from the stream)."""
        if not self.covers(baselines[0][1] if prefetched is None else _stream_id(prefetched[0])):
            return None  # this node did not see (or no longer keeps) all of what followed
        origin = record["origin"].encode()
        rooms = {}
        for room, value in record["rooms"].items():
            parsed = parse_baseline(value, origin)
            if parsed is None:
                return None
            rooms[room] = parsed
        session = Session(record["pid"], record["user"], None, self.last_seq, dict.fromkeys(rooms))
        session.granted = record["granted"] & rooms.keys()
        resumed = self.adopt(session, sid)
        resumed.previous_sid = record.get("sid") or None
        remote = resumed.remote = Remote(baselines, rooms, prefetched)
        # each replayed entry's offset is where the client is once it has it: read up to the
        # entry's stream id, and this node's own entries up to the last one before it
        own, prefix, own_upto, replayed = self.manager._origin, f"{self._prefix}{self.last_seq:012x}", 0, []
        for entry in remote.prefetched:
            origin, seq, entry_id = entry.pos
            if origin == own:
                own_upto = max(own_upto, seq)
            replayed.append(entry._replace(offset=f"{prefix}.{entry_id.decode()}.{own_upto:x}"))
        remote.prefetched, remote.own_upto = replayed, own_upto
        return resumed

    def missed(self, resumed: Resumption) -> list[Entry]:
        remote = resumed.remote
        if remote is None:
            return super().missed(resumed)
        own, own_ids, upto = self.manager._origin, self.manager.own_ids, remote.upto

        def after(pos: Any, baseline: Baseline, floor: tuple[int, int] | None) -> bool:
            """Not delivered up to ``baseline``, nor part of what was read from the stream up to
            ``floor``."""
            origin, number, entry_id = pos
            entry_id = entry_id or (own_ids.get(number) if origin == own else None)
            if entry_id is None:
                return True  # this node's, not on the stream yet: no other node can have had it
            position = _stream_id(entry_id)
            if floor is not None and position <= floor:
                return False
            base_origin, stream_id, seq = baseline
            return number > seq if origin == base_origin else position > stream_id

        def addressed(entry: Entry, floor: tuple[int, int] | None) -> bool:
            pos = entry.pos
            if pos is None or not all(after(pos, baseline, floor) for baseline in remote.baselines):
                return False
            room = entry.room
            targets = [None] if room is None else [room] if isinstance(room, str) else room
            return any(r is None or (r in remote.rooms and after(pos, remote.rooms[r], floor)) for r in targets)

        journal = [entry for entry in self._entries if addressed(entry, upto)]
        if upto is not None:  # after the prefetched entries: the client has read the stream up to upto
            journal = [entry._replace(offset=self._past(entry.offset, upto, remote.own_upto)) for entry in journal]
        return [*(entry for entry in remote.prefetched if addressed(entry, None)), *journal]

    def _past(self, offset: str, upto: tuple[int, int], own_upto: int) -> str:
        """``offset`` of this node, moved on to at least ``upto`` and own sequence ``own_upto``."""
        local, _, cursor = offset.partition(".")
        parsed = parse_cursor(cursor)
        assert parsed is not None  # this node's own offsets
        (ms, n), seq = max(parsed[0], upto), max(parsed[1], own_upto)
        return f"{local}.{ms}-{n}.{seq:x}"


async def claim_elsewhere(
    store: SessionStore, journal: ClusterJournal, pid: Any, user_id: str, offset: Any, sid: str
) -> Resumption | None:
    """A session another node served (or this node before a restart, or a takeover of this node
    whose replay was interrupted), from its record in Redis, for the connection ``sid`` of
    ``user_id``; None when it cannot be recovered exactly (the reason is logged)."""
    manager = journal.manager
    record = await store.load(pid)
    if record is None or record["user"] != user_id:
        log.info("not recovered: no session %s of this user in Redis", str(pid)[:6])
        return None
    baselines = journal.remote_baselines(record, offset)
    if baselines is None:
        log.info("not recovered: offset %r is not one of session %s", offset, str(pid)[:6])
        return None
    origin, stream_id, seq = baselines[0]
    covered = journal.covers(stream_id)
    # a node that started after the offset never reads the old node's earlier entries
    if not await manager.catch_up(stream_id, origin, seq if covered else 0):
        log.info("not recovered: this node has not read the bus up to session %s's offset", str(pid)[:6])
        return None
    for prior in baselines[1:]:  # what an earlier node delivered must not come again live
        await manager.catch_up(prior[1], prior[0], prior[2] if covered else 0)
    prefetched = None
    if not covered:
        # this node started (or trimmed) after the offset: what it lacks is on the stream
        upto = manager._last_id
        prefetched = None if upto is None else await store.read_stream(stream_id, upto)
        if prefetched is None:
            log.info("not recovered: neither this node nor the bus holds all session %s missed", str(pid)[:6])
            return None
    return journal.remote_claim(record, baselines, sid, prefetched)
