"""Operational HTTP endpoints: readiness, statistics, online users, Prometheus metrics, revocation.

``/healthz`` (in :mod:`realtime_gateway.server`) says the process is alive; ``/readyz`` says it can serve,
which for a cluster node means Redis answers. Load balancers should route on ``/readyz``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as redis
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .auth import AuthError, api_key_matches, token_from_request
from .config import Settings
from .expiry import TokenGuard
from .handlers import ClientEvents
from .http_errors import error_response
from .metrics import CONNECTIONS, REGISTRY, ROOMS
from .presence import Presence

READY_TIMEOUT = 2.0
"""Seconds /readyz waits for Redis before calling the node unready."""
TRANSPORTS = ("socket.io", "websocket")


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
            web.get("/ws/stats", self.stats),
            web.get("/ws/online-users", self.online_users),
            web.get("/metrics", self.metrics),
            web.post("/api/revoke", self.revoke),
        ]

    async def readyz(self, request: web.Request) -> web.Response:
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
            "rooms": len(snapshot.rooms),
            "transports": snapshot.transports,
        }
        body: dict[str, Any] = {
            "total_clients": snapshot.clients,
            "online_users": snapshot.online_users,
            "total_rooms": len(snapshot.rooms),
            "uptime": round(snapshot.uptime, 1),
            "scope": "node",
            "nodes": 1,
            "node": node,
        }
        if self.presence.store.clustered:
            try:
                cluster = await self.presence.store.cluster_stats()
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
        ROOMS.set(len(snapshot.rooms))
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def revoke(self, request: web.Request) -> web.Response:
        """``POST /api/revoke`` ``{"jti", "expires_at"?}`` with ``Authorization: Bearer <API_KEY>``.

        ``expires_at`` (the token's ``exp``) lets the entry be forgotten once the token would
        have expired anyway; without it the revocation is kept for good."""
        key = self.settings.api_key
        if not key:
            return error_response(403, "API_KEY is not set: the revocation API is disabled")
        if not api_key_matches(request.headers, key):
            return error_response(401, "invalid API key", headers={"WWW-Authenticate": "Bearer"})
        try:
            body = await request.json()
        except ValueError:
            body = None
        jti = body.get("jti") if isinstance(body, dict) else None
        expires_at = body.get("expires_at") if isinstance(body, dict) else None
        if not isinstance(jti, str) or not jti or not (expires_at is None or isinstance(expires_at, (int, float))):
            return error_response(400, 'body must be {"jti": string, "expires_at"?: number}', field="body")
        await self.guard.revoke(jti, expires_at)
        return web.json_response({"ok": True, "jti": jti})
