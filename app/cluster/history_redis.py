"""Room history in Redis, for a cluster: one capped stream per room (``gateway:history:<room>``,
``MAXLEN`` ``--history-size``, expiring ``--history-ttl`` after its last message), so every node
answers the same and a restarted node forgets nothing.

Each entry's id is the message's id on the cluster bus, and its offset in history answers is that
id (an ordered string, usable as ``before``). A node stores its own messages once they come back
through the bus (their bus id is known then); messages of other writers (emitters: origins that
write no heartbeat) every node stores, and Redis refuses all copies but the first (an entry id
must grow). Writes leave in one script call per batch, off the message path; reads go to Redis (an
unreachable Redis is a 503 answer). A node that dies before its messages came back leaves them
out of history (they were delivered).

Relies on :class:`realtime_gateway.cluster.recovery_cluster.RecoveringStreamManager`'s ``position`` and
its report of this node's entries coming back (:meth:`RedisHistory.own_written`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ..envelope import UNAVAILABLE, ProtocolError
from ..jsoncodec import dumps, loads
from .bus_wire import redis_client

log = logging.getLogger(__name__)

PREFIX = "gateway:history:"
TIMEOUT = 2.0
PENDING_MAX = 100_000
STORE = """
local size, ttl = ARGV[1], ARGV[2]
for i, key in ipairs(KEYS) do
  -- refused when another node stored the entry first: its id is not above the stream's top
  redis.pcall('XADD', key, 'MAXLEN', size, ARGV[2 * i + 1], 'e', ARGV[2 * i + 2])
  redis.call('EXPIRE', key, ttl)
end
return #KEYS
"""
"""One call per batch: redis-py's pipeline costs a few µs of Python per command, this a few per batch."""
"""This node's messages waiting for their bus id (Redis down): beyond, the oldest are not kept."""


class RedisHistory:
    """The :class:`~realtime_gateway.history.History` interface, kept in Redis."""

    def __init__(self, url: str, size: int, ttl: float, manager: Any) -> None:
        self.redis = redis_client(url, TIMEOUT, "gateway-history", decode_responses=True)
        self.size = size
        self.ttl = ttl
        self.manager = manager
        self._own: dict[int, tuple[str, dict[str, Any]]] = {}  # bus seq -> (room, envelope)
        self._queue: list[tuple[str, str, str]] = []  # (room, bus id, envelope JSON)
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._store = self.redis.register_script(STORE)

    def add(self, room: str, offset: str, envelope: dict[str, Any]) -> None:
        """Called by the fan-out path for each message to a room: queue it (or, for this node's
        own, wait for its bus id)."""
        pos = self.manager.position
        if pos is None or not isinstance(pos, tuple):
            if pos is not None:  # this node's emit: stored when it comes back through the bus
                self._own[self.manager.last_seq] = (room, envelope)
                if len(self._own) > PENDING_MAX:
                    del self._own[next(iter(self._own))]
            return
        if pos[0] not in self.manager.node_origins:  # a node stores its own
            self._enqueue(room, pos[2].decode(), envelope)

    def own_written(self, seq: int, entry_id: bytes) -> None:
        mine = self._own.pop(seq, None)
        if mine is not None:
            self._enqueue(mine[0], entry_id.decode(), mine[1])

    def _enqueue(self, room: str, entry_id: str, envelope: dict[str, Any]) -> None:
        self._queue.append((room, entry_id, dumps(envelope)))
        self._wake.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write_forever())

    async def _write_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue, []
                args: list[Any] = [self.size, int(self.ttl)]
                for _, entry_id, text in batch:
                    args += (entry_id, text)
                try:
                    await self._store(keys=[PREFIX + room for room, _, _ in batch], args=args)
                except Exception as exc:
                    log.warning("%d history entries not written to Redis: %s", len(batch), exc)
                    await asyncio.sleep(1.0)
                    self._queue[:0] = batch[-PENDING_MAX:]  # written again (what is there is refused)

    async def read(self, room: str, limit: int, before: str | None = None) -> list[dict[str, Any]]:
        oldest = int((time.time() - self.ttl) * 1000)
        try:
            rows = await self.redis.xrevrange(PREFIX + room, max=f"({before}" if before else "+", count=limit)
        except Exception as exc:
            if "Invalid stream ID" in str(exc):
                return []  # not an offset of this history: nothing before it
            raise ProtocolError(UNAVAILABLE, f"history unavailable (Redis): {exc}") from None
        messages = []
        for entry_id, fields in reversed(rows):
            if int(entry_id.partition("-")[0]) >= oldest:
                messages.append({**loads(fields["e"]), "offset": entry_id})
        return messages

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
        await self.redis.aclose()
