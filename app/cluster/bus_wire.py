"""What travels on the cluster bus, and how every process talks to Redis.

The bus is one Redis Stream (:data:`STREAM`). Every entry has four fields:

======  ==================================================================================
``o``   origin: the writer's random id (a gateway node, an :class:`~realtime_gateway.Emitter`)
``n``   the origin's sequence number (1, 2, ...), so a retried write is recognised
``m``   the command (``emit``, ``disconnect``, ``heartbeat``, ...)
``p``   the command's arguments as JSON, in the gateway codec (:mod:`realtime_gateway.jsoncodec`)
======  ==================================================================================

A write whose outcome is unknown (timeout, connection cut after sending) may be sent again
with the same ``o``/``n``: :class:`SeenFilter` on every reader drops the second copy. That is
what makes retries safe; nothing else on the bus needs to be idempotent.

:func:`redis_client` is the one place connection liveness is configured (timeouts, TCP
keepalive, health checks), for the bus, the emitters, the legacy bridge and presence alike;
:func:`live_messages` is how a pub/sub subscription proves it is alive.
"""

from __future__ import annotations

import collections
import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..jsoncodec import strict_dumps

STREAM = "gateway:bus"
FIELD_ORIGIN, FIELD_SEQ, FIELD_METHOD, FIELD_PAYLOAD = b"o", b"n", b"m", b"p"
EMIT = "emit"

CONNECT_TIMEOUT = 2.0
HEALTH_CHECK_INTERVAL = 5
"""Seconds of idleness after which redis-py PINGs a pooled connection before using it."""
KEEPALIVE = {
    name: value
    for name, value in (("TCP_KEEPIDLE", 5), ("TCP_KEEPINTVL", 2), ("TCP_KEEPCNT", 3))
    if hasattr(socket, name)
}
"""A peer that vanished (host down, cable cut) is noticed by the kernel in ~11 s. Keepalive
cannot see a half-open path whose far side still ACKs (a frozen Redis, a black-holing proxy):
the timeouts and the bus heartbeat cover those."""


def redis_client(url: str, timeout: float, name: str, decode_responses: bool = False) -> aioredis.Redis:
    """An asyncio client whose every command fails within ``timeout`` seconds rather than
    waiting forever on a connection that silently stopped answering."""
    return aioredis.Redis.from_url(url, **_options(timeout, name), decode_responses=decode_responses)


def sync_redis_client(url: str, timeout: float, name: str) -> redis.Redis:
    """Blocking twin of :func:`redis_client` (for :class:`~realtime_gateway.SyncEmitter`)."""
    return redis.Redis.from_url(url, **_options(timeout, name))


def _options(timeout: float, name: str) -> dict[str, Any]:
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": min(timeout, CONNECT_TIMEOUT),
        "socket_keepalive": True,
        "socket_keepalive_options": {getattr(socket, key): value for key, value in KEEPALIVE.items()},
        "health_check_interval": HEALTH_CHECK_INTERVAL,
        "client_name": name,
        # one immediate retry on a stale pooled connection (Redis restarted); safe for bus
        # writes because the retry carries the same origin and sequence number
        "retry": Retry(NoBackoff(), 1),
    }


PING_EVERY = 2.0
SILENCE_LIMIT = 6.0
"""Seconds without any answer on a subscription (a message or a pong) after which it counts as
dead. A pub/sub connection that silently stopped delivering (half-open TCP, a frozen Redis) looks
exactly like a quiet channel, and redis-py's health check sends PINGs but never misses a pong."""


async def live_messages(pubsub: Any) -> AsyncIterator[dict[str, Any]]:
    """The ``message``/``pmessage`` messages of a redis-py subscription, PINGing through it
    every ``PING_EVERY`` seconds; raises ConnectionError once nothing at all arrived for
    ``SILENCE_LIMIT`` seconds, so the caller resubscribes on a fresh connection."""
    heard = pinged = time.monotonic()
    while True:
        now = time.monotonic()
        if now - heard > SILENCE_LIMIT:
            raise ConnectionError(f"no answer on the subscription for {SILENCE_LIMIT:.0f} s (half-open?)")
        if now - pinged >= PING_EVERY:
            await pubsub.ping()
            pinged = now
        message = await pubsub.get_message(timeout=PING_EVERY)
        if message is None:
            continue
        heard = time.monotonic()
        if message["type"] in ("message", "pmessage"):
            yield message


def new_origin() -> str:
    return uuid.uuid4().hex


def entry(origin: str, seq: int, method: str, payload: str) -> dict[bytes, Any]:
    """The stream fields of one command."""
    return {FIELD_ORIGIN: origin, FIELD_SEQ: seq, FIELD_METHOD: method, FIELD_PAYLOAD: payload}


def emit_payload(event: str, data: list[Any], namespace: str, room: Any, skip_sid: Any = None) -> dict[str, Any]:
    """The arguments of an ``emit`` command (the shape of python-socketio's pub/sub message)."""
    return {"event": event, "data": data, "namespace": namespace, "room": room, "skip_sid": skip_sid}


def encode_emit(envelope: dict[str, Any], room: str | None) -> str:
    """An emitter's ``emit`` payload for one envelope, refusing (ValueError) what the nodes
    could not read back exactly: NaN, infinities, integers beyond 64 bits."""
    return strict_dumps(emit_payload(envelope["type"], [envelope], "/", room))


WINDOW = 4096
"""Sequence numbers below an origin's highest that are still told apart. A node writes in
order; an emitter has at most a few dozen writes in flight, which may land out of order."""
MAX_ORIGINS = 10_000
_WINDOW_MASK = (1 << WINDOW) - 1


class SeenFilter:
    """Which (origin, sequence number) pairs were already handled; bounded memory.

    Per origin: the highest number seen and a bit mask of the ``WINDOW`` numbers below it.
    Numbers older than the window count as seen. The least recently active origin is
    forgotten beyond ``MAX_ORIGINS`` (short-lived emitter processes each have their own).
    """

    def __init__(self) -> None:
        self._origins: collections.OrderedDict[bytes, list[int]] = collections.OrderedDict()

    def first_time(self, origin: bytes, seq: int) -> bool:
        state = self._origins.get(origin)
        if state is None:
            self._origins[origin] = [seq, 1]
            if len(self._origins) > MAX_ORIGINS:
                self._origins.popitem(last=False)
            return True
        self._origins.move_to_end(origin)
        highest, mask = state
        if seq > highest:
            shift = seq - highest
            state[0] = seq
            state[1] = ((mask << shift) | 1) & _WINDOW_MASK if shift < WINDOW else 1
            return True
        back = highest - seq
        if back >= WINDOW or mask >> back & 1:
            return False
        state[1] = mask | 1 << back
        return True
