"""Presence: ``user_status`` exactly once per transition, across devices and nodes, and the queries."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from conftest import make_token, uid

PRESENCE_TTL = 3.0


async def status(client, user_id: str, state: str, timeout: float = 10) -> dict:
    envelope = await client.inbox.next("user_status", timeout=timeout)
    while envelope["content"]["user_id"] != user_id:
        envelope = await client.inbox.next("user_status", timeout=timeout)
    assert envelope["content"]["status"] == state, envelope
    return envelope


async def no_more_status(client, user_id: str, seconds: float = 0.5) -> None:
    left = [e for e in await client.inbox.quiet("user_status", seconds) if e["content"]["user_id"] == user_id]
    assert left == []


@pytest.fixture
def fast_cluster(redis_server, gateway_factory):
    """Two nodes whose presence entries expire after PRESENCE_TTL seconds."""
    env = {"REDIS_URL": redis_server.url, "PRESENCE_TTL": str(PRESENCE_TTL)}
    return [gateway_factory(env=env), gateway_factory(env=env)]


async def test_single_node_second_device_announces_nothing(gateway, clients):
    alice = uid()
    watcher = await clients.sio(gateway.url, make_token(uid()))
    phone = await clients.sio(gateway.url, make_token(alice, "Alice"))
    online = await status(watcher, alice, "online")
    assert online["content"] == {"user_id": alice, "user_name": "Alice", "status": "online"}
    laptop = await clients.ws(gateway.ws_url, make_token(alice, "Alice"))
    await phone.close()
    await no_more_status(watcher, alice)
    await laptop.close()
    offline = await status(watcher, alice, "offline")
    assert offline["content"] == {"user_id": alice, "user_name": "Alice", "status": "offline"}
    await no_more_status(watcher, alice)


async def test_cluster_transitions_exactly_once_across_devices_and_nodes(cluster, clients):
    node1, node2 = cluster
    alice = uid()
    watchers = [await clients.sio(node1.url, make_token(uid())), await clients.ws(node2.ws_url, make_token(uid()))]
    first = await clients.sio(node1.url, make_token(alice, "Alice"))
    for watcher in watchers:
        await status(watcher, alice, "online")
    second = await clients.ws(node2.ws_url, make_token(alice, "Alice"))
    # the first device moves from node 1 to node 2: connects there, then leaves node 1 (after
    # its first answer from node 2, which comes once the new connection is counted)
    moved = await clients.sio(node2.url, make_token(alice, "Alice"))
    await moved.call("ping")
    await first.close()
    await second.close()
    for watcher in watchers:
        await no_more_status(watcher, alice)
    await moved.close()
    for watcher in watchers:
        await status(watcher, alice, "offline")
        await no_more_status(watcher, alice)


async def test_presence_query_by_ack_and_by_reply_envelope(cluster, clients):
    node1, node2 = cluster
    alice, nobody = uid(), uid()
    asker = await clients.sio(node1.url, make_token(uid()))
    await clients.ws(node2.ws_url, make_token(alice))
    await status(asker, alice, "online")
    answer = await asker.call("presence", [alice, nobody])
    assert answer == {"ok": True, "users": {alice: "online", nobody: "offline"}}
    ws_asker = await clients.ws(node2.ws_url, make_token(uid()))
    await ws_asker.send({"type": "presence", "content": [alice, nobody]})
    reply = await ws_asker.inbox.next("presence")
    assert reply["content"]["users"] == {alice: "online", nobody: "offline"}
    bad = await asker.call("presence", "not-a-list")
    assert bad["ok"] is False and bad["error"]["code"] == 400


async def test_sigkilled_node_users_go_offline_within_ttl(fast_cluster, clients):
    node1, node2 = fast_cluster
    alice, bob = uid(), uid()
    watcher = await clients.sio(node1.url, make_token(uid()))
    await clients.sio(node2.url, make_token(alice, "Alice"))
    await clients.ws(node2.ws_url, make_token(bob, "Bob"))
    await status(watcher, alice, "online")
    await status(watcher, bob, "online")
    killed_at = time.monotonic()
    node2.kill()
    await status(watcher, alice, "offline", timeout=PRESENCE_TTL + 5)
    await status(watcher, bob, "offline", timeout=PRESENCE_TTL + 5)
    elapsed = time.monotonic() - killed_at
    assert elapsed <= PRESENCE_TTL + 1, f"offline after {elapsed:.1f}s"
    print(f"offline detection after SIGKILL: {elapsed:.2f}s (PRESENCE_TTL={PRESENCE_TTL})")
    await no_more_status(watcher, alice)


async def test_online_users_and_stats_cover_the_cluster(fast_cluster, clients):
    node1, node2 = fast_cluster
    alice, bob = uid(), uid()
    token = make_token(alice, "Alice")
    a1 = await clients.sio(node1.url, token)
    a2 = await clients.ws(node2.ws_url, make_token(alice, "Alice"))
    b = await clients.sio(node2.url, make_token(bob, "Bob"))
    await status(a1, bob, "online")
    assert (await a1.call("join_room", "lobby"))["ok"]
    assert (await b.call("join_room", "lobby"))["ok"]
    assert (await b.call("join_room", "games"))["ok"]
    await a2.send({"type": "join_room", "content": "news", "id": 1})
    await a2.inbox.next("ack")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{node1.url}/ws/online-users") as response:
            assert response.status == 401
        async with http.get(f"{node2.url}/ws/online-users", headers={"Authorization": f"Bearer {token}"}) as response:
            assert response.status == 200
            body = await response.json()
        assert body["total"] == 2
        assert sorted(body["users"], key=lambda u: u["user_id"]) == sorted(
            [{"user_id": alice, "user_name": "Alice"}, {"user_id": bob, "user_name": "Bob"}],
            key=lambda u: u["user_id"],
        )
        # room figures travel with the heartbeats (every PRESENCE_TTL / 5 s): wait for them, bounded
        deadline = time.monotonic() + PRESENCE_TTL
        while True:
            async with http.get(f"{node1.url}/ws/stats") as response:
                stats = await response.json()
            if stats["total_rooms"] == 3 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    assert stats["scope"] == "cluster" and stats["nodes"] == 2
    assert stats["total_clients"] == 3 and stats["online_users"] == 2 and stats["total_rooms"] == 3
    assert stats["uptime"] > 0
    assert stats["node"]["clients"] == 1 and stats["node"]["rooms"] == 1
    assert stats["node"]["transports"] == {"socket.io": 1}


async def test_presence_recovers_after_redis_restart(fast_cluster, redis_server, clients):
    node1, node2 = fast_cluster
    alice, bob = uid(), uid()
    token = make_token(alice, "Alice", jti=uid("jti"))
    await clients.sio(node1.url, token)
    redis_server.kill()
    # admitted while Redis is down (revocation check fails open), counted once it is back
    await clients.ws(node2.ws_url, make_token(bob, "Bob", jti=uid("jti")))
    redis_server.start()  # empty: every node rewrites its users at its next heartbeat
    deadline = time.monotonic() + 10
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(f"{node1.url}/ws/online-users", params={"token": token}) as response:
                body = await response.json() if response.status == 200 else {}
            if body.get("total") == 2 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    assert sorted(u["user_id"] for u in body["users"]) == sorted([alice, bob])
