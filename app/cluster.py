"""The cluster's client manager: python-socketio's Redis manager, with the local fast path and
pipelined publishing.

python-socketio's ``AsyncRedisManager`` awaits one Redis round trip per emit, inside the event
handler of the client that caused it; since a client's events are handled in order, a chatty
client then gets one message per round trip through. Here emits are delivered locally at once
(:class:`~realtime_gateway.fanout.FanoutManager`) and queued for Redis; one background task sends whatever has
queued up as a single pipeline, in order. Nothing is awaited on the message path.

Redis unreachable: a batch is tried twice (reconnecting in between) and then dropped, counted in
``gateway_redis_publish_failures_total`` and logged — python-socketio's own behaviour, without
blocking local delivery. The outbox is bounded (``OUTBOX_LIMIT``), oldest dropped first.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any

import socketio

from .fanout import FanoutManager
from .metrics import REDIS_PUBLISH_FAILURES

log = logging.getLogger(__name__)

OUTBOX_LIMIT = 100_000
RESUBSCRIBE_MAX_DELAY = 5.0
"""python-socketio backs off to 60 s between attempts to resubscribe; a node would then miss
other nodes' messages for up to a minute after Redis is back."""


class RedisFanoutManager(socketio.AsyncRedisManager, FanoutManager):
    """MRO: AsyncRedisManager -> AsyncPubSubManager -> FanoutManager -> AsyncManager, so the
    pub/sub layer's local delivery (``super().emit`` in ``_handle_emit``) is the fast path."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._outbox: collections.deque[str] = collections.deque()
        self._outbox_ready = asyncio.Event()
        self._idle = asyncio.Event()  # set while nothing is queued or being sent
        self._idle.set()
        self._publisher: asyncio.Task[None] | None = None
        self.linked = False
        """True while this node is subscribed to Redis: what it publishes reaches the others."""

    async def _redis_listen_with_retries(self):  # type: ignore[no-untyped-def]
        """python-socketio's listen loop (async_redis_manager.py) with a capped back-off."""
        delay = 0.5
        while True:
            try:
                self._redis_connect()
                await self.pubsub.subscribe(self.channel)
                self.linked = True
                delay = 0.5
                async for message in self.pubsub.listen():
                    yield message
            except Exception as exc:
                self.linked = False
                log.error("cannot receive from Redis, retrying in %.1f s: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RESUBSCRIBE_MAX_DELAY)

    async def _publish(self, data: Any) -> None:
        if len(self._outbox) >= OUTBOX_LIMIT:
            self._outbox.popleft()
            REDIS_PUBLISH_FAILURES.inc()
        self._outbox.append(self.json.dumps(data))
        self._idle.clear()
        self._outbox_ready.set()
        if self._publisher is None or self._publisher.done():
            self._publisher = asyncio.ensure_future(self._publish_forever())

    async def _publish_forever(self) -> None:
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            while self._outbox:
                batch = list(self._outbox)
                self._outbox.clear()
                await self._send(batch)
            self._idle.set()

    async def drain(self, timeout: float) -> None:
        """Wait, at most ``timeout`` seconds, until everything queued was handed to Redis (at
        shutdown: the last presence updates must reach the other nodes)."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            log.warning("%d message(s) for Redis not sent before shutdown", len(self._outbox))

    async def _send(self, batch: list[str]) -> None:
        for attempt in (1, 2):
            try:
                if not self.connected:
                    self._redis_connect()
                async with self.redis.pipeline(transaction=False) as pipe:
                    for message in batch:
                        pipe.publish(self.channel, message)
                    await pipe.execute()
                return
            except Exception as exc:
                self.connected = False
                if attempt == 2:
                    self.linked = False
                    REDIS_PUBLISH_FAILURES.inc(len(batch))
                    log.error("cannot publish %d message(s) to Redis, dropped: %s", len(batch), exc)
