"""The outbox of the cluster bus: what this node accepted and Redis has not confirmed yet.

Entries leave in the order they came, and only once Redis confirmed them, so a write that
failed (or whose outcome is unknown) is written again with the same sequence number. The outbox
is bounded by bytes and by age: past either bound :meth:`Outbox.add` raises
:class:`BusUnavailable` and the caller must deliver the message nowhere.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
from dataclasses import dataclass

from ..envelope import UNAVAILABLE, ProtocolError
from ..metrics import BUS_REFUSED

ENTRY_OVERHEAD = 64
"""Bytes an entry costs beyond its JSON text (fields, bookkeeping); the text counts one byte a
character, exact for ASCII."""


class BusUnavailable(ProtocolError):
    """The bus refused a message (Redis unreachable for too long, outbox full): it was
    delivered nowhere and the sender must be told (ack error 503, HTTP 503)."""

    def __init__(self, reason: str) -> None:
        super().__init__(UNAVAILABLE, f"cluster bus unavailable (Redis): {reason}; message not accepted, retry later")


@dataclass(slots=True)
class Pending:
    seq: int
    method: str
    payload: str
    size: int
    since: float


class Outbox:
    """FIFO of :class:`Pending` entries, numbered 1, 2, ... for this node's lifetime."""

    def __init__(self, max_bytes: int, max_age: float) -> None:
        self.max_bytes = max_bytes
        self.max_age = max_age
        self._entries: collections.deque[Pending] = collections.deque()
        self._bytes = 0
        self._seq = 0
        self._wake = asyncio.Event()
        self.idle = asyncio.Event()
        """Set while nothing waits for Redis."""
        self.idle.set()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def last_seq(self) -> int:
        """The sequence number :meth:`add` handed out last (0: none yet)."""
        return self._seq

    def add(self, method: str, payload: str, bounded: bool = True) -> int:
        """Queue one entry and return its sequence number; BusUnavailable when past a bound
        (``bounded=False``: heartbeats, which must get through to prove the link)."""
        size = len(payload) + ENTRY_OVERHEAD
        now = time.monotonic()
        if bounded:
            if self._bytes + size > self.max_bytes:
                BUS_REFUSED.inc()
                raise BusUnavailable(f"{self._bytes} bytes already wait for Redis")
            if self._entries and now - self._entries[0].since > self.max_age:
                BUS_REFUSED.inc()
                raise BusUnavailable(f"Redis has not taken a message for {now - self._entries[0].since:.0f} s")
        self._seq += 1
        self._entries.append(Pending(self._seq, method, payload, size, now))
        self._bytes += size
        self.idle.clear()
        self._wake.set()
        return self._seq

    async def next_batch(self, limit: int, max_bytes: int) -> list[Pending]:
        """The oldest entries, at most ``limit`` of them and ``max_bytes`` (at least one entry),
        waiting until there is one; they stay queued until :meth:`confirm`."""
        while not self._entries:
            self.idle.set()
            await self._wake.wait()
            self._wake.clear()
        if self._bytes <= max_bytes:  # the usual case: everything, cheaply
            return list(itertools.islice(self._entries, limit))
        batch: list[Pending] = []
        size = 0
        for pending in itertools.islice(self._entries, limit):
            size += pending.size
            if batch and size > max_bytes:
                break
            batch.append(pending)
        return batch

    def confirm(self, count: int) -> None:
        """Redis has the oldest ``count`` entries (new ones are only ever appended on the right)."""
        for _ in range(count):
            self._bytes -= self._entries.popleft().size
        if not self._entries:
            self.idle.set()
