"""The operator API behind the console's operator page: the cluster's nodes, rooms and users.

All three take ``Authorization: Bearer <API_KEY>`` or ``Bearer <OPS_TOKEN>`` (403 while the node
has neither, 401 for a wrong one) and answer for the whole cluster, gathered from every node when asked
(:mod:`realtime_gateway.cluster.cluster_query`):

- ``GET /api/ops/nodes``: each node's connections, users, rooms, transports, uptime and message
  counters (``messages_received``/``messages_sent`` since start, with the node's ``time``, so a
  page polling it computes messages per second from two answers);
- ``GET /api/ops/rooms?prefix=&limit=``: rooms with their member connections summed over nodes,
  largest first;
- ``GET /api/ops/users/{user_id}``: the user's connections on every node (node, transport and,
  for Socket.IO, its Engine.IO transport, since, rooms).

Each answer says how many nodes were ``expected`` and how many are ``missing`` (did not answer in
time). When Redis cannot be reached the answer is this node's alone, with ``scope: "node"`` and an
``error`` saying why: an operator needs the view most when something is wrong.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import redis.asyncio as redis
from aiohttp import web

from ..auth import api_key_matches
from ..cluster.cluster_query import Gathered, NodeQueries, QueryError
from ..config import Settings
from ..connection import Connection
from ..handlers import ClientEvents
from ..metrics import MESSAGES_RECEIVED, MESSAGES_SENT
from ..presence import Presence
from .http_errors import error_response

ROOMS_LIMIT = 100
ROOMS_LIMIT_MAX = 1000
NODE_ROOMS_MAX = 10_000
"""Rooms one node reports to a rooms query, largest first: bounds each answer's size."""
MAX_PREFIX = 128


def _total(counter: Any) -> int:
    """A labelled counter summed over its labels (prometheus-client's public ``collect``)."""
    return int(sum(s.value for metric in counter.collect() for s in metric.samples if s.name.endswith("_total")))


class OperatorAPI:
    """The ``/api/ops/*`` handlers, and this node's answers to the cluster's questions."""

    def __init__(
        self,
        settings: Settings,
        events: ClientEvents,
        presence: Presence,
        client: redis.Redis | None,
        node_id: str,
    ) -> None:
        self.settings = settings
        self.events = events
        self.presence = presence
        self.node_id = node_id
        self.node_name = events.node  # as in each client's welcome
        self.queries = NodeQueries(client, node_id, {"node": self._node, "rooms": self._rooms, "user": self._user})

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/ops/nodes", self.nodes),
            web.get("/api/ops/rooms", self.rooms),
            web.get("/api/ops/users/{user_id}", self.user),
        ]

    # -- HTTP -------------------------------------------------------------------------------

    def _refusal(self, request: web.Request) -> web.Response | None:
        """None when the request carries the API key or the ops token (reading the cluster is an
        operator's job; changing it, e.g. ``POST /api/disconnect``, stays with the API key)."""
        secrets = [secret for secret in (self.settings.api_key, self.settings.ops_token) if secret]
        if not secrets:
            return error_response(403, "neither API_KEY nor OPS_TOKEN is set: the operator API is disabled")
        if not any(api_key_matches(request.headers, secret) for secret in secrets):
            return error_response(401, "missing or wrong API key or ops token", headers={"WWW-Authenticate": "Bearer"})
        return None

    async def _ask(self, question: str, args: Mapping[str, Any]) -> tuple[Gathered, dict[str, Any]]:
        """Every node's answer, and the fields each operator answer carries about how it was made."""
        try:
            gathered = await self.queries.ask(question, args)
            meta: dict[str, Any] = {"scope": "cluster" if self.queries.clustered else "node"}
        except QueryError as error:
            gathered = error.local
            meta = {"scope": "node", "error": str(error)}
        meta.update(node=self.node_id, expected=gathered.expected, missing=gathered.missing)
        return gathered, meta

    async def nodes(self, request: web.Request) -> web.Response:
        if refused := self._refusal(request):
            return refused
        gathered, meta = await self._ask("node", {})
        nodes = sorted(({"id": node, **answer} for node, answer in gathered.answers.items()), key=lambda n: n["name"])
        return web.json_response({**meta, "nodes": nodes})

    async def rooms(self, request: web.Request) -> web.Response:
        if refused := self._refusal(request):
            return refused
        prefix = request.query.get("prefix", "")
        if len(prefix) > MAX_PREFIX:
            return error_response(400, f"prefix: at most {MAX_PREFIX} characters", field="prefix")
        try:
            limit = int(request.query.get("limit", ROOMS_LIMIT))
        except ValueError:
            limit = 0
        if not 1 <= limit <= ROOMS_LIMIT_MAX:
            return error_response(400, f"limit: an integer from 1 to {ROOMS_LIMIT_MAX}", field="limit")
        gathered, meta = await self._ask("rooms", {"prefix": prefix})
        members: Counter[str] = Counter()
        nodes: Counter[str] = Counter()
        truncated = False
        for answer in gathered.answers.values():
            truncated |= bool(answer.get("truncated"))
            for room, count in answer.get("rooms", {}).items():
                members[room] += count
                nodes[room] += 1
        top = sorted(members.items(), key=lambda item: (-item[1], item[0]))
        return web.json_response(
            {
                **meta,
                "total": len(top),
                "truncated": truncated or len(top) > limit,
                "rooms": [{"room": room, "members": count, "nodes": nodes[room]} for room, count in top[:limit]],
            }
        )

    async def user(self, request: web.Request) -> web.Response:
        if refused := self._refusal(request):
            return refused
        user_id = request.match_info["user_id"]  # the route matches non-empty ids only
        gathered, meta = await self._ask("user", {"user_id": user_id})
        connections = [
            {"node": node, "node_name": answer["name"], **connection}
            for node, answer in gathered.answers.items()
            for connection in answer.get("connections", [])
        ]
        connections.sort(key=lambda c: c["since"])
        names = [answer["user_name"] for answer in gathered.answers.values() if answer.get("user_name")]
        return web.json_response(
            {
                **meta,
                "user_id": user_id,
                "user_name": names[0] if names else None,
                "online": bool(connections),
                "connections": connections,
            }
        )

    # -- this node's answers ----------------------------------------------------------------

    def _node(self, args: Mapping[str, Any]) -> dict[str, Any]:
        snapshot = self.presence.snapshot()
        return {
            "name": self.node_name,
            "clients": snapshot.clients,
            "online_users": snapshot.online_users,
            "rooms": snapshot.rooms,
            "transports": snapshot.transports,
            "uptime": round(snapshot.uptime, 1),
            "messages_received": _total(MESSAGES_RECEIVED),
            "messages_sent": _total(MESSAGES_SENT),
            "time": time.time(),
        }

    def _rooms(self, args: Mapping[str, Any]) -> dict[str, Any]:
        prefix = str(args.get("prefix", ""))
        # members per room are kept by ClientEvents as connections join and leave
        counts = Counter({room: n for room, n in self.events.rooms.members.items() if room.startswith(prefix)})
        return {"rooms": dict(counts.most_common(NODE_ROOMS_MAX)), "truncated": len(counts) > NODE_ROOMS_MAX}

    def _user(self, args: Mapping[str, Any]) -> dict[str, Any]:
        user_id = str(args.get("user_id"))
        mine = self.events.user_connections(user_id)
        return {
            "name": self.node_name,
            "user_name": mine[0].identity.username if mine else None,
            "connections": [
                {
                    "sid": c.sid,
                    "transport": c.transport,
                    "engineio": self._engineio_transport(c),
                    "since": c.connected_at,
                    "rooms": sorted(c.rooms),
                }
                for c in mine
            ],
        }

    def _engineio_transport(self, connection: Connection) -> str | None:
        """``polling`` or ``websocket`` under a Socket.IO connection (public python-socketio and
        python-engineio calls); None for a plain ``/ws`` one, which has no Engine.IO session."""
        if connection.transport != "socket.io":
            return None
        sio = self.events.sio
        eio_sid = sio.manager.eio_sid_from_sid(connection.sid, "/")
        try:
            return str(sio.eio.transport(eio_sid)) if eio_sid is not None else None
        except KeyError:  # closing right now
            return None
