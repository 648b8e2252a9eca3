"""Operational HTTP endpoints: readiness, statistics, online users, Prometheus metrics, revocation.

``/healthz`` (in :mod:`realtime_gateway.server`) says the process is alive; ``/readyz`` says it can serve,
which for a cluster node means Redis answers and the node is linked to the cluster bus (it sees
its own heartbeat come back through it, :mod:`realtime_gateway.cluster.bus`). Load balancers should route
on ``/readyz``.

``/metrics`` and ``/ws/stats`` are cheap whatever the cluster's size (this node's figures are
kept as they change, the cluster's are maintained in Redis and read at most about once a
second), and with ``--ops-token`` they answer only ``Authorization: Bearer <OPS_TOKEN>``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as redis
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..auth import AuthError, api_key_matches, token_from_request
from ..cluster.bus import StreamManager
from ..config import Settings
from ..expiry import TokenGuard
from ..handlers import ClientEvents
from ..metrics import CONNECTIONS, REGISTRY, ROOMS
from ..presence import Presence
from .http_errors import error_response

READY_TIMEOUT = 2.0
"""Seconds /readyz waits for Redis before calling the node unready."""
TRANSPORTS = ("socket.io", "websocket")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class OperationsAPI:
    """The handlers, bound to the parts of the gateway they report on."""

    def __init__(
        self,
        settings: Settings,
        events: ClientEvents,
        presence: Presence,
        guard: TokenGuard,
        client: redis.Redis | None,
        node_id: str,
    ) -> None:
        self.settings = settings
        self.events = events
        self.presence = presence
        self.guard = guard
        self.redis = client
        self.node_id = node_id

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/readyz", self.readyz),
            web.get("/ws/stats", self._operator_only(self.stats)),
            web.get("/ws/online-users", self.online_users),
            web.get("/metrics", self._operator_only(self.metrics)),
            web.post("/api/revoke", self.revoke),
        ]

    def _operator_only(self, handler: Handler) -> Handler:
        """``handler`` behind ``--ops-token`` when one is set (left open otherwise)."""
        token = self.settings.ops_token
        if not token:
            return handler

        async def guarded(request: web.Request) -> web.StreamResponse:
            if not api_key_matches(request.headers, token):
                return error_response(401, "missing or wrong ops token", headers={"WWW-Authenticate": "Bearer"})
            return await handler(request)

        return guarded

    async def readyz(self, request: web.Request) -> web.Response:
        manager = self.events.sio.manager
        if isinstance(manager, StreamManager) and not manager.linked:
            return error_response(503, "not linked to the cluster bus: no own heartbeat back through redis")
        if self.redis is not None:
            try:
                await asyncio.wait_for(self.redis.ping(), READY_TIMEOUT)
            except Exception as exc:
                reason = f"redis unreachable: {exc or type(exc).__name__}"
                return error_response(503, reason)
        return web.json_response({"status": "ready"})

    async def stats(self, request: web.Request) -> web.Response:
        """Cluster totals under the names dashboards read, and this node's figures under ``node``.

        When Redis cannot be read the totals fall back to this node's and ``scope`` says so."""
        snapshot = self.presence.snapshot()
        node = {
            "id": self.node_id,
            "clients": snapshot.clients,
            "online_users": snapshot.online_users,
            "rooms": snapshot.rooms,
            "transports": snapshot.transports,
        }
        body: dict[str, Any] = {
            "total_clients": snapshot.clients,
            "online_users": snapshot.online_users,
            "total_rooms": snapshot.rooms,
            "uptime": round(snapshot.uptime, 1),
            "scope": "node",
            "nodes": 1,
            "node": node,
        }
        if self.presence.store.clustered:
            try:
                cluster = await self.presence.cluster_stats()
            except Exception as exc:
                body["error"] = f"cluster figures unavailable: {exc}"
            else:
                body.update(cluster or {}, scope="cluster")
        return web.json_response(body)

    async def online_users(self, request: web.Request) -> web.Response:
        """``{"total", "users": [{"user_id", "user_name"}]}``; needs a valid client token."""
        try:
            identity = self.events.verifier.verify(token_from_request(None, request.query_string, request.headers))
            self.guard.check(identity)
        except AuthError as error:
            return error_response(error.code, error.message)
        try:
            users = await self.presence.store.users()
        except Exception as exc:
            return error_response(503, f"presence unavailable: {exc}")
        return web.json_response(
            {"total": len(users), "users": [{"user_id": uid, "user_name": name} for uid, name in users]}
        )

    async def metrics(self, request: web.Request) -> web.Response:
        snapshot = self.presence.snapshot()
        for transport in {*TRANSPORTS, *snapshot.transports}:
            CONNECTIONS.labels(transport).set(snapshot.transports.get(transport, 0))
        ROOMS.set(snapshot.rooms)
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def revoke(self, request: web.Request) -> web.Response:
        """``POST /api/revoke`` ``{"jti", "expires_at"?}`` with ``Authorization: Bearer <API_KEY>``.

        ``expires_at`` (the token's ``exp``) lets the entry be forgotten once the token would
        have expired anyway; without it (or null) the revocation is kept for good. It must be a
        finite number: Python's JSON parser accepts ``NaN`` and ``Infinity``, which would
        revoke nothing (NaN compares false) or fail in Redis."""
        key = self.settings.api_key
        if not key:
            return error_response(403, "API_KEY is not set: the revocation API is disabled")
        if not api_key_matches(request.headers, key):
            return error_response(401, "invalid API key", headers={"WWW-Authenticate": "Bearer"})
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return error_response(400, 'body must be {"jti": string, "expires_at"?: number}', field="body")
        jti, expires_at = body.get("jti"), body.get("expires_at")
        if not isinstance(jti, str) or not jti:
            return error_response(400, "jti must be a non-empty string", field="jti")
        if expires_at is not None and (
            isinstance(expires_at, bool) or not isinstance(expires_at, (int, float)) or not math.isfinite(expires_at)
        ):
            return error_response(
                400, "expires_at must be a finite number (the token's exp, unix seconds)", field="expires_at"
            )
        await self.guard.revoke(jti, expires_at)
        return web.json_response({"ok": True, "jti": jti})
