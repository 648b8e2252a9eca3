"""Helpers for the back-end sending tests: an audience of clients spread over the nodes and both
transports, checks that a message reached exactly its intended connections exactly once, and
waits for the nodes' Redis subscriptions."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from conftest import WAIT, make_token, uid


async def join(client: Any, room: str) -> None:
    if hasattr(client, "sio"):
        assert (await client.call("join_room", room))["ok"] is True
    else:
        await client.send({"type": "join_room", "content": room, "id": room})
        assert (await client.inbox.next("ack"))["content"] == {"id": room, "ok": True, "room": room}


@dataclass
class Audience:
    """Connections on every node and both transports: one user's devices, the members of one
    room (other users), and outsiders who are neither."""

    user: str
    room: str
    devices: list[Any]
    members: list[Any]
    outsiders: list[Any]

    @property
    def everyone(self) -> list[Any]:
        return [*self.devices, *self.members, *self.outsiders]


async def audience(clients: Any, nodes: list[Any]) -> Audience:
    first, last = nodes[0], nodes[-1]
    user, room = uid("user"), uid("room")
    devices = [await clients.sio(first.url, make_token(user)), await clients.ws(last.ws_url, make_token(user))]
    members = [await clients.ws(first.ws_url, make_token(uid())), await clients.sio(last.url, make_token(uid()))]
    outsiders = [await clients.sio(last.url, make_token(uid())), await clients.ws(first.ws_url, make_token(uid()))]
    for member in members:
        await join(member, room)
    return Audience(user, room, devices, members, outsiders)


async def received_once(receivers: list[Any], type_: str, message_id: str) -> list[dict[str, Any]]:
    """Each receiver's copy of one message (consumed, so a second copy shows in :func:`nothing_else`)."""
    return list(await asyncio.gather(*(r.inbox.next(type_, id=message_id) for r in receivers)))


async def nothing_else(everyone: list[Any], *types: str) -> None:
    """After traffic settles, no connection holds an unconsumed message of these types: no
    duplicates for the intended receivers, nothing at all for anyone else."""
    leftovers = await asyncio.gather(*(c.inbox.quiet(t) for c in everyone for t in types))
    assert [left for left in leftovers if left] == []


async def wait_until(predicate: Any, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def wait_subscribed(redis_url: str, nodes: int, bridges: int | None = None) -> None:
    """Wait until ``nodes`` gateways read the cluster bus stream and ``bridges`` (default: as
    many) hold the ``websocket:*`` pattern subscription, so a publish cannot race them."""
    bridges = nodes if bridges is None else bridges
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)

    async def ready() -> bool:
        try:
            listed = await client.client_list()
        except (aioredis.ConnectionError, OSError):
            return False
        readers = {c["name"] for c in listed if c.get("name", "").startswith("gateway-bus:") and c["cmd"] == "xread"}
        patterns = sum(1 for c in listed if int(c.get("psub", 0)) > 0)
        return len(readers) == nodes and patterns == bridges

    try:
        await wait_until(ready, f"{nodes} node(s) and {bridges} bridge(s) subscribed", timeout=30)
    finally:
        await client.aclose()
