"""What the operational endpoints cost Redis, what they report, who may read them, and how big
``/metrics`` can grow. Redis commands are counted with ``MONITOR`` on the private redis-server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as redis
from conftest import WAIT, make_token, uid
from test_operations import sample

OPS_TOKEN = "ops-token-0123456789abcdef"


class CommandLog:
    """Every command the redis-server runs while open (``MONITOR``), as redis-py parses it:
    ``{"client_type": "tcp" | "lua", "command": "EVALSHA ..."}``. :meth:`mark` sends an ``ECHO``
    and waits until MONITOR has shown it, so what happened before a mark is all in."""

    def __init__(self, monitor: Any, client: redis.Redis) -> None:
        self.commands: list[dict[str, Any]] = []
        self._monitor = monitor
        self._client = client
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            self.commands.append(await self._monitor.next_command())
            self._changed.set()

    async def mark(self, name: str) -> int:
        """Index just after the ``ECHO name`` command in :attr:`commands`."""
        await self._client.echo(name)
        return await self.wait_for(lambda c: c["command"] == f"ECHO {name}") + 1

    async def wait_for(self, predicate: Any, count: int = 1, start: int = 0, timeout: float = WAIT) -> int:
        """Index of the ``count``-th command from ``start`` matching ``predicate``."""

        async def find() -> int:
            seen = 0
            while True:
                for index in range(start, len(self.commands)):
                    if predicate(self.commands[index]):
                        seen += 1
                        if seen == count:
                            return index
                seen = 0
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(find(), timeout)

    def close(self) -> None:
        self._reader.cancel()


@contextlib.asynccontextmanager
async def command_log(url: str) -> AsyncIterator[CommandLog]:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        async with client.monitor() as monitor:
            log = CommandLog(monitor, client)
            try:
                yield log
            finally:
                log.close()
    finally:
        await client.aclose()


async def get_json(http: aiohttp.ClientSession, url: str, **kwargs: Any) -> dict[str, Any]:
    async with http.get(url, **kwargs) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def test_fifty_stats_calls_cost_a_few_redis_commands_and_count_this_nodes_rooms(cluster, redis_server, clients):
    node1, node2 = cluster
    client = await clients.sio(node1.url, make_token(uid()))
    async with aiohttp.ClientSession() as http:
        before = await get_json(http, f"{node1.url}/ws/stats")
        room = uid("room")
        assert (await client.call("join_room", room))["ok"]
        # this node's own join counts at once, not at the next heartbeat
        after = await get_json(http, f"{node1.url}/ws/stats")
        assert after["scope"] == "cluster"
        assert after["total_rooms"] == before["total_rooms"] + 1 == 1
        assert after["node"]["rooms"] == 1
        async with command_log(redis_server.url) as log:
            start = await log.mark("start")
            for _ in range(50):
                stats = await get_json(http, f"{node1.url}/ws/stats")
            end = await log.mark("end") - 1
        assert stats["total_rooms"] == 1 and stats["total_clients"] == 1 and stats["nodes"] == 2
        issued = [c["command"] for c in log.commands[start:end] if c["client_type"] != "lua"]
        print(f"{len(issued)} Redis commands during 50 /ws/stats calls (both nodes, background included)")
        assert len(issued) <= 10, issued
        assert (await client.call("leave_room", room))["ok"]
        assert (await get_json(http, f"{node1.url}/ws/stats"))["total_rooms"] == 0
        # the other node sees the room too (its figures may be up to a second old)
        assert (await client.call("join_room", room))["ok"]
        for _ in range(int(WAIT / 0.2)):
            if (await get_json(http, f"{node2.url}/ws/stats"))["total_rooms"] == 1:
                break
            await asyncio.sleep(0.2)
        else:
            pytest.fail("node 2 never counted node 1's room")


async def test_heartbeats_do_not_rewrite_the_room_set(redis_server, gateway_factory, clients):
    rooms = 500
    env = {
        "REDIS_URL": redis_server.url,
        "PRESENCE_TTL": "3",  # a heartbeat every 0.6 s
        "MAX_ROOMS": str(rooms),
        "RATE_LIMIT": "10000",
        "RATE_BURST": "10000",
    }
    node = gateway_factory(env=env)
    client = await clients.sio(node.url, make_token(uid()))
    prefix = uid("hb")
    for i in range(rooms):
        await client.emit("join_room", f"{prefix}-{i:04d}")
    await client.call("ping")  # events are handled in order: every join is done
    async with command_log(redis_server.url) as log:
        start = await log.mark("start")
        # three heartbeats of this node (each refreshes its key with SET gateway:node:<id>)
        end = await log.wait_for(lambda c: c["command"].startswith("SET gateway:node:"), count=3, start=start)
    window = log.commands[start:end]
    mentioning = [c["command"][:80] for c in window if prefix in c["command"]]
    written = sum(len(c["command"]) for c in window)
    print(f"{len(window)} commands, {written} bytes of commands over 3 heartbeats with {rooms} rooms")
    assert mentioning == [], mentioning
    assert written < 8_000
    async with aiohttp.ClientSession() as http:
        assert (await get_json(http, f"{node.url}/ws/stats"))["total_rooms"] == rooms


async def test_thousands_of_backend_types_keep_metrics_small(redis_server, gateway_factory, clients):
    node = gateway_factory(env={"REDIS_URL": redis_server.url})
    watcher = await clients.sio(node.url, make_token(uid()))
    types = [f"backend-type-{i:05d}" for i in range(5000)]
    publisher = redis.Redis.from_url(redis_server.url)
    try:
        async with publisher.pipeline(transaction=False) as pipe:
            for type_ in types:
                pipe.publish("websocket:broadcast", f'{{"message": {{"type": "{type_}", "content": null}}}}')
            await pipe.execute()
    finally:
        await publisher.aclose()
    await watcher.inbox.next(types[-1], timeout=30)  # one channel: delivered in order
    async with aiohttp.ClientSession() as http, http.get(f"{node.url}/metrics") as response:
        metrics = await response.text()
    print(f"/metrics after 5000 back-end types: {len(metrics.encode())} bytes")
    assert len(metrics.encode()) < 200_000
    assert sample(metrics, "gateway_messages_sent_total", type="other") == 5000
    assert sample(metrics, "gateway_messages_sent_total", type="welcome") == 1
    assert sample(metrics, "gateway_messages_sent_total", type="user_status") >= 1
    assert "backend-type-" not in metrics


async def test_ops_token_protects_metrics_and_stats(gateway_factory):
    node = gateway_factory(args=["--ops-token", OPS_TOKEN])
    async with aiohttp.ClientSession() as http:
        for path in ("/metrics", "/ws/stats"):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": OPS_TOKEN}):
                async with http.get(f"{node.url}{path}", headers=headers) as response:
                    assert response.status == 401, (path, headers)
                    assert response.headers["WWW-Authenticate"] == "Bearer"
                    assert (await response.json())["error"]["code"] == 401
            async with http.get(f"{node.url}{path}", headers={"Authorization": f"Bearer {OPS_TOKEN}"}) as response:
                assert response.status == 200, path
        async with http.get(f"{node.url}/readyz") as response:  # load balancers need no token
            assert response.status == 200
