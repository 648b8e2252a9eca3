"""Offsets, the recovery log and resumable sessions: a client that loses its connection for a
moment gets back its rooms and every message it missed, in order, exactly once.

Every message of the replayable stream (what the fan-out path delivers to rooms, users or
everyone; not the direct replies welcome, pong, ack and error) gets one offset when it is
emitted, the same for all its recipients, so the frame is still encoded once. The
:class:`Journal` keeps those messages for the recovery window in the order this node delivered
them. Each connection has a :class:`Session` under a secret id (the Socket.IO ``pid``, the plain
WebSocket ``session``). A client that comes back within the window with its session id and the
offset of the last message it received, and a valid token of the same user, gets its session
again: its rooms are restored and what the journal holds after that offset, for those rooms, is
replayed before anything new. Rooms a back end put the session in
(:attr:`Session.granted`, :mod:`realtime_gateway.membership`) come back whatever the new token
says; the others only if the new token may still join them. Anything else (window passed,
journal trimmed, unknown or forged session, another user's session, an offset from another
process) is a fresh session: nothing restored, no error.

Offsets are ``<epoch>-<sequence>``: the epoch is drawn at start, so an offset from an earlier
life of the process (whose journal is gone) is recognised and refused; the sequence is
fixed-width hex, so offsets of one epoch compare in order as strings.
"""

from __future__ import annotations

import collections
import itertools
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

SEQ_WIDTH = 12
"""Hex digits of an offset's sequence number (the literal 12 in ``_tag``'s format, for speed)."""
JOURNAL_MAX_ENTRIES = 200_000
"""Beyond this the oldest entries go even inside the window (memory bound); a client whose
offset is older then recovers ``false`` instead of silently missing messages."""
JOURNAL_GRACE = 2.0
"""The journal keeps entries this many windows long: a client's last offset predates its
disconnect by up to a heartbeat timeout (a black-holed connection is noticed late)."""


TRIM_EVERY_MASK = 0xFF


class Entry(NamedTuple):
    """One replayable message as this node delivered it."""

    seq: int
    at: float  # time.monotonic() when emitted
    room: Any  # None (everyone), a room name, or a list of room names
    skip: Any  # skip_sid as given to emit: None, a sid or a list of sids
    body: str  # the JSON of [event, *args], without the offset
    offset: str
    pos: Any = None  # in a cluster: where the message is on the bus (see recovery_cluster)


_new_entry = tuple.__new__
"""``_new_entry(Entry, fields)``: an Entry without NamedTuple's keyword-handling constructor (the
hot path)."""
_monotonic = time.monotonic


@dataclass(eq=False, slots=True)
class Session:
    """What a resumed connection gets back. ``rooms`` maps a room to the sequence number at
    which the session joined it, so a replay never includes what was sent before the join."""

    pid: str
    user_id: str
    sid: str | None
    start_seq: int
    rooms: dict[str, int] = field(default_factory=dict)
    granted: set[str] = field(default_factory=set)
    """The rooms of ``rooms`` a back end put the session in: restored without the room rule."""
    expires_at: float | None = None  # set when the connection ends
    adopted: bool = False
    """Taken over from another node: an offset up to ``start_seq`` is one of the replay of that
    takeover, which only the session's record in Redis can resume exactly."""


@dataclass(slots=True)
class Resumption:
    """A successful claim: the session (now bound to the new connection), the sequence number
    after which it missed everything addressed to it, and the connection it had (None when
    that one had ended)."""

    session: Session
    after: int
    previous_sid: str | None
    remote: Any = None
    """Set when the session was served by another node (:class:`realtime_gateway.cluster.recovery_cluster.Remote`)."""


class Journal:
    """The node's recovery log and session table (in memory, one process)."""

    def __init__(self, window: float, tag_frames: bool = True) -> None:
        self.window = window
        self.tag_frames = tag_frames
        """Whether frames carry their offset (off when recovery is disabled but history is on)."""
        self.epoch = os.urandom(4).hex()
        self._prefix = f"{self.epoch}-"
        self.last_seq = 0
        self._entries: collections.deque[Entry] = collections.deque()
        self._keep = max(window * JOURNAL_GRACE, 1.0)
        self.sessions: dict[str, Session] = {}
        self._by_user: dict[str, set[str]] = {}  # user id -> pids, for server-side membership
        self._expiry: collections.deque[tuple[float, str]] = collections.deque()

    # -- offsets -----------------------------------------------------------------------------

    def record(self, room: Any, skip: Any, body: str) -> str:
        """Give the next message its offset and keep it for the window (the hot path: no lookup,
        one append, and trimming that touches only what expired)."""
        seq = self.last_seq = self.last_seq + 1
        offset, pos = self._tag(seq)
        if self.window > 0:
            self._entries.append(_new_entry(Entry, (seq, _monotonic(), room, skip, body, offset, pos)))
            if not seq & TRIM_EVERY_MASK:
                self._trim()
        return offset

    def _trim(self) -> None:
        """Drop what is past the time kept or beyond the size bound (run every few hundred
        messages: the bounds are exceeded by that many at most)."""
        entries = self._entries
        limit = _monotonic() - self._keep
        while entries and (entries[0].at < limit or len(entries) > JOURNAL_MAX_ENTRIES):
            self._trimmed(entries.popleft())

    def _tag(self, seq: int) -> tuple[str, Any]:
        """The offset of the message numbered ``seq``, and its bus position (none on one node)."""
        return f"{self._prefix}{seq:012x}", None

    def _trimmed(self, entry: Entry) -> None:
        """An entry left the journal (a subclass keeps track of what is no longer covered)."""

    def parse(self, offset: Any) -> int | None:
        """The sequence number of an offset of this epoch, else None."""
        if not isinstance(offset, str):
            return None
        epoch, _, seq = offset.partition(".")[0].partition("-")
        if epoch != self.epoch or len(seq) != SEQ_WIDTH:
            return None
        try:
            value = int(seq, 16)
        except ValueError:
            return None
        return value if 0 <= value <= self.last_seq else None

    # -- sessions ----------------------------------------------------------------------------

    def open(self, user_id: str, sid: str) -> Session:
        """A new session for a new connection."""
        self._expire()
        session = Session(secrets.token_urlsafe(18), user_id, sid, self.last_seq)
        self.sessions[session.pid] = session
        self._by_user.setdefault(user_id, set()).add(session.pid)
        return session

    def dormant(self, user_id: str) -> list[Session]:
        """The user's sessions whose connection ended within the window: a device that is away
        for a moment, which a back end's leave or disconnect must reach too."""
        self._expire()
        sessions = (self.sessions[pid] for pid in self._by_user.get(user_id, ()))
        return [session for session in sessions if session.sid is None]

    def end(self, session: Session) -> None:
        """Forget a session at once: nothing can resume it (a back end disconnected it)."""
        self._forget(session.pid)

    def claim(self, pid: Any, user_id: str, offset: Any, sid: str) -> Resumption | None:
        """The session ``pid`` for a new connection ``sid`` of ``user_id``, which received
        everything up to ``offset`` (None: nothing yet); None when it cannot be recovered
        exactly. A session whose connection is still open (the server has not noticed it is
        gone) can be claimed too: the caller closes the old connection."""
        self._expire()
        session = self.sessions.get(pid) if isinstance(pid, str) else None
        if session is None or session.user_id != user_id:
            return None
        after = session.start_seq if offset is None else self.parse(offset)
        if after is None:
            return None
        if session.adopted and offset is not None and after <= session.start_seq:
            return None  # within the replay of the takeover: the caller resumes it from Redis
        after = max(after, session.start_seq)
        if after + 1 < self._first_seq():
            return None  # some of what it missed is no longer kept
        previous, session.sid, session.expires_at = session.sid, sid, None
        return Resumption(session, after, previous)

    def missed(self, resumed: Resumption) -> list[Entry]:
        """What the session's rooms were sent after ``resumed.after``, in order. Called at the
        moment the rooms are restored, so the list ends exactly where live delivery begins."""
        entries, first = self._entries, self._first_seq()
        rooms, old_sid = resumed.session.rooms, resumed.previous_sid
        start = max(resumed.after + 1 - first, 0)  # trimmed since the claim (only past the window)
        return [
            entry
            for entry in itertools.islice(entries, start, None)
            if _addressed(entry, rooms) and not _skipped(entry.skip, old_sid)
        ]

    def adopt(self, session: Session, sid: str) -> Resumption:
        """Take over a session another node served (recovered by the caller): it is this node's
        from now on, its rooms counted as joined here now."""
        self._expire()
        previous = self.sessions.get(session.pid)
        if previous is not None and previous is not session:
            previous.sid = None  # its connection, if still open, must not end the new one's session
        session.sid, session.start_seq, session.adopted = sid, self.last_seq, True
        session.rooms = dict.fromkeys(session.rooms, self.last_seq)
        self.sessions[session.pid] = session
        self._by_user.setdefault(session.user_id, set()).add(session.pid)
        return Resumption(session, self.last_seq, None)

    def _first_seq(self) -> int:
        return self._entries[0].seq if self._entries else self.last_seq + 1

    def joined(self, session: Session, sid: str, room: str, granted: bool = False) -> None:
        """The session is in ``room`` from now on (``granted``: by a back end's decision)."""
        if session.sid == sid:  # not a connection whose session was taken over
            session.rooms.setdefault(room, self.last_seq)
            if granted:
                session.granted.add(room)

    def left(self, session: Session, sid: str | None, room: str) -> None:
        """The session is no longer in ``room`` (``sid`` None: a dormant session)."""
        if session.sid == sid:
            session.rooms.pop(room, None)
            session.granted.discard(room)

    def closed(self, session: Session, sid: str) -> None:
        """The connection ``sid`` of the session ended: keep the session for the window (unless
        a newer connection has claimed it already)."""
        if session.sid != sid:
            return
        session.sid = None
        if self.window <= 0:
            self._forget(session.pid)
            return
        session.expires_at = time.monotonic() + self.window
        self._expiry.append((session.expires_at, session.pid))

    def _expire(self) -> None:
        now = time.monotonic()
        expiry = self._expiry
        while expiry and expiry[0][0] <= now:
            _, pid = expiry.popleft()
            session = self.sessions.get(pid)
            if session is not None and session.expires_at is not None and session.expires_at <= now:
                self._forget(pid)

    def _forget(self, pid: str) -> None:
        session = self.sessions.pop(pid, None)
        if session is not None:
            pids = self._by_user[session.user_id]
            pids.discard(pid)
            if not pids:
                del self._by_user[session.user_id]


def _addressed(entry: Entry, rooms: dict[str, int]) -> bool:
    room = entry.room
    if room is None:
        return True
    if isinstance(room, str):
        joined = rooms.get(room)
        return joined is not None and entry.seq > joined
    return any(r in rooms and entry.seq > rooms[r] for r in room)


def _skipped(skip: Any, sid: str | None) -> bool:
    if skip is None or sid is None:
        return False
    return sid == skip if isinstance(skip, str) else sid in skip


def tagged_packet(body: str, offset: str) -> str:
    """The Socket.IO EVENT packet ``2[event,...args,"offset"]`` for a body ``[event,...args]``
    (offsets are hex and a dash: nothing to escape)."""
    return f'2{body[:-1]},"{offset}"]'


def tagged_envelope(text: str, offset: str) -> str:
    """Envelope JSON with ``offset`` as its last field."""
    return f'{text[:-1]},"offset":"{offset}"}}' if len(text) > 2 else f'{{"offset":"{offset}"}}'
