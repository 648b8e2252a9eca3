"""Wires presence, token expiry/revocation and the operational endpoints into the gateway.

``create_app`` makes one :class:`Operations` right after the :class:`ClientEvents`, asks it to
:meth:`~Operations.admit` each connecting identity, and calls :meth:`~Operations.install` once
the application exists. Shutdown order matters: the application's own ``on_shutdown`` hook
disconnects every client first; this module's hook then writes this node's users as gone (so
their ``offline`` events go out) before Redis is closed.
"""

from __future__ import annotations

import uuid

import redis.asyncio as redis
from aiohttp import web

from .api.http_api import OperationsAPI
from .api.ops_api import OperatorAPI
from .auth import Identity
from .cluster.bus_wire import redis_client
from .cluster.presence_redis import RedisPresenceStore
from .config import Settings
from .expiry import MemoryRevocations, RedisRevocations, RevocationStore, TokenGuard
from .handlers import ClientEvents
from .presence import MemoryPresenceStore, Presence, PresenceStore

REDIS_TIMEOUT = 2.0
"""Seconds before a Redis command fails, so an unreachable Redis never stalls a connection."""
PRESENCE_STOP_TIMEOUT = 2.0
"""Part of the shutdown budget spent announcing this node's users offline."""


class Operations:
    """Owns the Redis client these parts share (separate from the client manager's, so a
    slow presence write never queues behind fan-out traffic) and their start/stop order."""

    def __init__(self, settings: Settings, events: ClientEvents) -> None:
        self.node_id = uuid.uuid4().hex[:12]
        self.redis: redis.Redis | None = None
        store: PresenceStore
        revocations: RevocationStore
        if settings.redis_url:
            self.redis = redis_client(settings.redis_url, REDIS_TIMEOUT, "gateway-presence", decode_responses=True)
            store = RedisPresenceStore(self.redis, settings.presence_ttl, self.node_id)
            revocations = RedisRevocations(self.redis)
        else:
            store = MemoryPresenceStore()
            revocations = MemoryRevocations()
        self.presence = Presence(events, store, settings.presence_ttl, settings.presence_announce)
        self.guard = TokenGuard(events, revocations, clustered=self.redis is not None)
        self.api = OperationsAPI(settings, events, self.presence, self.guard, self.redis, self.node_id)
        self.operator = OperatorAPI(settings, events, self.presence, self.redis, self.node_id)
        events.listeners += [self.presence, self.guard]
        events.handlers["presence"] = self.presence.query
        events.handlers["watch_presence"] = self.presence.watch
        events.handlers["unwatch_presence"] = self.presence.unwatch

    async def admit(self, identity: Identity) -> None:
        """Raise AuthError when a verified identity must still be refused (revoked token).

        Never waits on I/O: while a Socket.IO connect handler waits, python-socketio already
        delivers broadcasts to the half-connected client, ahead of its CONNECT answer."""
        self.guard.check(identity)

    def install(self, app: web.Application) -> None:
        app.router.add_routes(self.api.routes())
        app.router.add_routes(self.operator.routes())
        app.on_startup.append(self._start)
        app.on_shutdown.append(self._stop)

    async def _start(self, app: web.Application) -> None:
        await self.presence.start()
        await self.guard.start()
        await self.operator.queries.start()

    async def _stop(self, app: web.Application) -> None:
        await self.operator.queries.stop()
        await self.guard.stop()
        await self.presence.stop(PRESENCE_STOP_TIMEOUT)
        if self.redis is not None:
            await self.redis.aclose()
