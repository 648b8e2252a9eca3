"""Room history: the last messages of every room (and of every user's room), with their offsets.

Recovery (:mod:`realtime_gateway.recovery`) covers a connection that was away for a moment; history
covers the user who was away longer, or who just joined: ``history {"room", "limit", "before"?}``
returns a room's last messages oldest first, each with the offset it was delivered with. A
user's own room ``user:<id>`` holds the notifications and user messages sent to that user.

Bounded per room by count (``--history-size``) and age (``--history-ttl``), kept in the node's
memory on a single node, in Redis in a cluster (:mod:`realtime_gateway.cluster.history_redis`).
"""

from __future__ import annotations

import collections
import time
from typing import Any, Protocol

from .envelope import BAD_REQUEST, FORBIDDEN, USER_ROOM_PREFIX, ProtocolError, validate_room_name

MAX_LIMIT = 100
PRUNE_FROM = 1024
"""Rooms kept before the first sweep for expired ones; each sweep doubles the threshold."""

Item = tuple[str, float, dict[str, Any]]  # offset, time.time() when sent, envelope


class HistoryStore(Protocol):
    """What the fan-out path and the readers use: this module's :class:`History` (one node), or
    :class:`realtime_gateway.cluster.history_redis.RedisHistory` (a cluster)."""

    def add(self, room: str, offset: str, envelope: dict[str, Any]) -> None: ...

    async def read(self, room: str, limit: int, before: str | None = None) -> list[dict[str, Any]]: ...


class History:
    """In-memory history of every room this node delivered to."""

    def __init__(self, size: int, ttl: float) -> None:
        self.size = size
        self.ttl = ttl
        self._rooms: dict[str, collections.deque[Item]] = {}
        self._clock = time.time
        self._next_prune = PRUNE_FROM

    def add(self, room: str, offset: str, envelope: dict[str, Any]) -> None:
        """Keep ``envelope`` as the newest message of ``room`` (the fan-out path calls this)."""
        items = self._rooms.get(room)
        if items is None:
            if len(self._rooms) >= self._next_prune:
                self._prune()
            items = self._rooms[room] = collections.deque(maxlen=self.size)
        items.append((offset, self._clock(), envelope))

    async def read(self, room: str, limit: int, before: str | None = None) -> list[dict[str, Any]]:
        """Up to ``limit`` messages of ``room`` sent before the offset ``before`` (None: the
        newest), oldest first, each with its ``offset``."""
        items = self._rooms.get(room)
        if not items:
            return []
        oldest = self._clock() - self.ttl
        chosen: list[Item] = []
        for item in reversed(items):
            offset, at, _ = item
            if at < oldest or len(chosen) >= limit:
                break
            if before is None or offset < before:
                chosen.append(item)
        return [{**envelope, "offset": offset} for offset, _, envelope in reversed(chosen)]

    def _prune(self) -> None:
        """Forget rooms whose newest message is past the TTL. Run when the room count doubled, so
        its cost is amortised over the rooms added, never paid per message."""
        oldest = self._clock() - self.ttl
        for room in [r for r, items in self._rooms.items() if not items or items[-1][1] < oldest]:
            del self._rooms[room]
        self._next_prune = max(2 * len(self._rooms), PRUNE_FROM)


class BadHistoryRequest(ProtocolError):
    """A malformed history request; ``field`` names what to fix (for the HTTP error body)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(BAD_REQUEST, f"history: {message}")
        self.field = field


def history_request(content: Any) -> tuple[str, int, str | None]:
    """``{"room", "limit"?, "before"?}`` checked; BadHistoryRequest naming the bad field."""
    if not isinstance(content, dict):
        raise BadHistoryRequest("content", 'content must be {"room", "limit"?, "before"?}')
    try:
        room = validate_room_name(content.get("room"))
    except ProtocolError as error:
        raise BadHistoryRequest("room", error.message) from None
    limit = content.get("limit", MAX_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise BadHistoryRequest("limit", f"limit must be an integer from 1 to {MAX_LIMIT}")
    before = content.get("before")
    if before is not None and (not isinstance(before, str) or not before):
        raise BadHistoryRequest("before", "before must be an offset string")
    return room, limit, before


def check_member(room: str, rooms: set[str], user_id: str) -> None:
    """History is for the members of a room; of ``user:`` rooms only the user's own."""
    if room.startswith(USER_ROOM_PREFIX):
        if room != f"{USER_ROOM_PREFIX}{user_id}":
            raise ProtocolError(FORBIDDEN, "history: only your own user room")
    elif room not in rooms:
        raise ProtocolError(FORBIDDEN, f"history: not a member of room {room!r}; join it first")
