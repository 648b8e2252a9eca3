"""The Redis channels the Go services already publish on, delivered to this node's connections.

=====================================  ===========================================
channel                                delivered to
=====================================  ===========================================
``websocket:broadcast``                every connection
``websocket:user:{user_id}``           every connection of that user
``websocket:room:{room}``              every member of that room
``websocket:notification:{user_id}``   every connection of that user
=====================================  ===========================================

The payload is ``{"message": ENVELOPE}``. Every node pattern-subscribes and delivers **locally
only** (``ClientEvents.emit(..., local=True)``): each node sees each publish, so relaying it
through the cluster would hand every client one copy per node.

A payload that cannot be delivered (not JSON — parsed with the gateway codec, so deep nesting is
refused rather than a ``RecursionError`` —, no ``message``, no or a reserved ``type``, unknown
channel, anything else that fails on it) is logged with its channel, counted in
``gateway_bridge_dropped_total`` and dropped; it never stops the subscription.

Liveness: a pub/sub connection that silently stopped delivering (half-open TCP, a frozen Redis)
looks exactly like a quiet channel. So the bridge PINGs through its subscription and resubscribes
on a fresh connection when nothing at all (no message, no pong) arrives for a while
(:func:`realtime_gateway.cluster.bus_wire.live_messages`). A lost Redis connection is retried with back-off for as
long as the node runs. Pub/sub keeps nothing: what is published while a node resubscribes is
lost for that node (the Go services' contract; the cluster bus itself is durable).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from ..appkeys import EVENTS_KEY, SETTINGS_KEY
from ..auth import user_room
from ..emit.emitter import check_type
from ..envelope import Envelope, ProtocolError, complete_envelope
from ..handlers import ClientEvents
from ..jsoncodec import loads
from ..metrics import BRIDGE_DROPPED
from .bus_wire import live_messages, redis_client

log = logging.getLogger(__name__)

PREFIX = "websocket:"
PATTERN = PREFIX + "*"
RETRY_FIRST = 0.5
RETRY_MAX = 10.0
COMMAND_TIMEOUT = 3.0


class Dropped(Exception):
    """A payload the bridge refuses; ``reason`` is the metric label, the message the log detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def route(channel: str) -> str | None:
    """The room a legacy channel addresses (None: everyone); raises Dropped for other channels."""
    rest = channel.removeprefix(PREFIX)
    if rest == "broadcast":
        return None
    kind, _, name = rest.partition(":")
    if name and kind in ("user", "notification"):
        return user_room(name)
    if name and kind == "room":
        return name
    raise Dropped("unknown_channel", "not one of the websocket:* channels the gateway serves")


def parse(data: bytes | str) -> Envelope:
    """The envelope inside a ``{"message": ENVELOPE}`` payload, completed with timestamp and id."""
    try:
        payload = loads(data)
    except (ValueError, RecursionError):  # RecursionError: the stdlib parser, without orjson
        raise Dropped("not_json", "payload is not JSON") from None
    if not isinstance(payload, dict) or "message" not in payload:
        raise Dropped("no_message", "payload has no 'message'")
    try:
        envelope = complete_envelope(payload["message"])
        check_type(envelope["type"])
    except ProtocolError as error:
        raise Dropped("bad_message", error.message) from None
    except ValueError as error:
        raise Dropped("bad_message", str(error)) from None
    return envelope


class LegacyBridge:
    """One pattern subscription to ``websocket:*`` for the lifetime of the node."""

    def __init__(self, redis_url: str, events: ClientEvents) -> None:
        self._redis = redis_client(redis_url, COMMAND_TIMEOUT, "gateway-bridge")
        self._events = events
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="legacy-bridge")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._redis.aclose()

    async def _run(self) -> None:
        delay = RETRY_FIRST
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.psubscribe(PATTERN)
                log.info("legacy bridge subscribed to %s", PATTERN)
                delay = RETRY_FIRST
                async for message in live_messages(pubsub):
                    await self.handle(message["channel"].decode(errors="replace"), message["data"])
            except Exception as exc:  # any Redis failure: resubscribe on a fresh connection
                log.warning("legacy bridge lost Redis (%s); retrying in %.1f s", exc or type(exc).__name__, delay)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), COMMAND_TIMEOUT)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    async def handle(self, channel: str, data: Any) -> None:
        """Deliver one payload, or drop it with a log line and a count; never raises."""
        try:
            room = route(channel)
            envelope = parse(data)
        except Dropped as dropped:
            BRIDGE_DROPPED.labels(dropped.reason).inc()
            log.warning("dropped payload on %s: %s", channel, dropped)
            return
        except Exception:  # whatever else a payload can cause must not end the subscription
            BRIDGE_DROPPED.labels("failed").inc()
            log.exception("dropped payload on %s: it could not be read", channel)
            return
        try:
            await self._events.emit(envelope, to=room, local=True)
        except Exception:  # a delivery problem must not end the subscription
            log.exception("delivering a payload from %s failed", channel)


async def legacy_bridge(app: web.Application) -> AsyncIterator[None]:
    """aiohttp cleanup context: bridge from start-up to clean-up (register only when clustered)."""
    settings = app[SETTINGS_KEY]
    assert settings.redis_url is not None
    bridge = LegacyBridge(settings.redis_url, app[EVENTS_KEY])
    bridge.start()
    yield
    await bridge.stop()
