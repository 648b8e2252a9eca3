"""A client connection as the core sees it, whatever transport carries it, and the listeners
that follow connections opening and closing (presence, metrics, expiry)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from .auth import Identity
from .ratelimit import TokenBucket
from .recovery import Resumption, Session


@dataclass(eq=False, slots=True)
class Connection:
    """One client connection on this node."""

    sid: str
    identity: Identity
    transport: str
    bucket: TokenBucket
    rooms: set[str] = field(default_factory=set)
    connected_at: float = field(default_factory=time.time)
    session: Session | None = None
    resumed: Resumption | None = None
    """Set until :meth:`~realtime_gateway.handlers.ClientEvents.connected` has restored the session it recovered."""


class RoomCounts:
    """This node's client-joined rooms, with how many of its connections are in each.

    ``watchers`` are called with a room when it gains its first member on this node or loses
    its last (presence publishes the cluster's room figures from these)."""

    __slots__ = ("members", "watchers")

    def __init__(self) -> None:
        self.members: dict[str, int] = {}
        self.watchers: list[Callable[[str], None]] = []

    def add(self, room: str) -> None:
        count = self.members.get(room, 0)
        self.members[room] = count + 1
        if count == 0:
            self._changed(room)

    def discard(self, room: str) -> None:
        count = self.members.pop(room, 0)
        if count > 1:
            self.members[room] = count - 1
        elif count == 1:
            self._changed(room)

    def _changed(self, room: str) -> None:
        for watcher in self.watchers:
            watcher(room)


class ConnectionListener(Protocol):
    """Told about connections opening and closing on this node (presence, metrics, expiry)."""

    async def connection_opened(self, connection: Connection) -> None: ...

    async def connection_closed(self, connection: Connection) -> None: ...
