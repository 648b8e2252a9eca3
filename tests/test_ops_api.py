"""The operator API (``/api/ops/*``) on real two-node clusters: what each node knows, gathered
over Redis, with a node that does not answer, with Redis gone, and its access rules."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from typing import Any

import aiohttp
import pytest
import redis.asyncio as redis
from conftest import make_token, uid

KEY = "ops-api-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


async def get(url: str, status: int = 200, headers: dict[str, str] | None = None) -> Any:
    async with aiohttp.ClientSession() as http, http.get(url, headers=AUTH if headers is None else headers) as answer:
        body = await answer.json()
        assert answer.status == status, body
        return body


@pytest.fixture
def ops_cluster(redis_server, gateway_factory):
    env = {"REDIS_URL": redis_server.url, "API_KEY": KEY}
    return [gateway_factory(env=env), gateway_factory(env=env)]


async def test_nodes_rooms_and_users_are_gathered_from_every_node(ops_cluster, clients):
    one, two = ops_cluster
    alice, bob, room, side = uid("alice"), uid("bob"), uid("room"), uid("side")
    first = await clients.sio(one.url, make_token(alice, "Alice"))
    await first.call("join_room", room)
    second = await clients.ws(two.ws_url, make_token(alice, "Alice"))
    for frame in ({"type": "join_room", "content": room, "id": 1}, {"type": "join_room", "content": side, "id": 2}):
        await second.send(frame)
        await second.inbox.next("ack")
    third = await clients.sio(two.url, make_token(bob, "Bob"), transports=["polling"])
    await third.call("join_room", room)

    nodes = await get(f"{one.url}/api/ops/nodes")
    assert (nodes["scope"], nodes["expected"], nodes["missing"]) == ("cluster", 2, 0)
    by_clients = sorted(nodes["nodes"], key=lambda n: n["clients"])
    assert [n["clients"] for n in by_clients] == [1, 2]
    assert by_clients[0]["transports"] == {"socket.io": 1}
    assert by_clients[1]["transports"] == {"socket.io": 1, "websocket": 1}
    assert by_clients[1]["rooms"] == 2 and by_clients[1]["online_users"] == 2
    assert nodes["node"] == by_clients[0]["id"], "the node asked is the one alice's first connection is on"
    assert all(n["time"] == pytest.approx(time.time(), abs=30) and n["uptime"] >= 0 for n in nodes["nodes"])

    # the message counters move with traffic, on the node that handled it
    before = {n["id"]: n["messages_received"] for n in nodes["nodes"]}
    for n in range(5):
        await first.call("room_message", {"room": room, "text": f"m{n}"})
    after = {n["id"]: n["messages_received"] for n in (await get(f"{two.url}/api/ops/nodes"))["nodes"]}
    assert after[nodes["node"]] - before[nodes["node"]] == 5

    rooms = await get(f"{two.url}/api/ops/rooms?prefix={room[:5]}")
    listed = {r["room"]: r for r in rooms["rooms"]}
    assert listed[room] == {"room": room, "members": 3, "nodes": 2}
    assert side not in listed, "filtered by prefix"
    limited = await get(f"{two.url}/api/ops/rooms?limit=1")
    assert [r["room"] for r in limited["rooms"]] == [room] and limited["truncated"] is True

    user = await get(f"{two.url}/api/ops/users/{alice}")
    assert (user["user_id"], user["user_name"], user["online"]) == (alice, "Alice", True)
    connections = user["connections"]
    assert [c["transport"] for c in connections] == ["socket.io", "websocket"], "oldest first"
    assert [c["engineio"] for c in connections] == ["websocket", None]
    assert {c["node"] for c in connections} == {n["id"] for n in nodes["nodes"]}
    assert connections[0]["rooms"] == [room] and connections[1]["rooms"] == sorted([room, side])
    assert connections[0]["since"] <= connections[1]["since"]
    bob_user = await get(f"{one.url}/api/ops/users/{bob}")
    assert [c["engineio"] for c in bob_user["connections"]] == ["polling"]
    nobody = await get(f"{one.url}/api/ops/users/{uid('nobody')}")
    assert (nobody["online"], nobody["connections"], nobody["user_name"]) == (False, [], None)


async def test_rooms_a_back_end_joined_a_user_to_show_on_every_node(ops_cluster, clients):
    """Server-side membership (``POST /api/rooms/join``) is part of what the operator sees."""
    one, two = ops_cluster
    dave, order = uid("dave"), uid("order")
    for node in (one, two):
        await clients.sio(node.url, make_token(dave, "Dave"))
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{one.url}/api/rooms/join", json={"user": dave, "room": order}, headers=AUTH) as answer,
    ):
        assert answer.status == 202, await answer.text()
    deadline = time.monotonic() + 10
    while True:  # the join reaches the other node through the cluster bus
        rooms = {r["room"]: r for r in (await get(f"{two.url}/api/ops/rooms?prefix={order}"))["rooms"]}
        if rooms.get(order, {}).get("members") == 2:
            break
        assert time.monotonic() < deadline, rooms
        await asyncio.sleep(0.1)
    assert rooms[order]["nodes"] == 2
    user = await get(f"{two.url}/api/ops/users/{dave}")
    assert [c["rooms"] for c in user["connections"]] == [[order], [order]]


async def test_a_node_that_does_not_answer_is_reported_missing(ops_cluster):
    one, two = ops_cluster
    two.signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        nodes = await get(f"{one.url}/api/ops/nodes")
        waited = time.monotonic() - started
    finally:
        two.signal(signal.SIGCONT)
    assert (nodes["expected"], nodes["missing"]) == (2, 1)
    assert [n["id"] for n in nodes["nodes"]] == [nodes["node"]]
    assert waited < 5, f"bounded by the query timeout, waited {waited:.1f} s"
    # thawed, it answers again
    assert (await get(f"{one.url}/api/ops/nodes"))["missing"] == 0


async def test_without_redis_a_node_answers_for_itself_and_says_why(ops_cluster, redis_server, clients):
    one, _ = ops_cluster
    await clients.sio(one.url, make_token(uid("carol")))
    redis_server.kill()
    nodes = await get(f"{one.url}/api/ops/nodes")
    assert nodes["scope"] == "node" and "cluster unavailable" in nodes["error"]
    assert [n["clients"] for n in nodes["nodes"]] == [1]


async def test_the_cluster_view_comes_back_with_redis(ops_cluster, redis_server):
    """After a Redis restart every node subscribes again to the query channel by itself."""
    one, _ = ops_cluster
    redis_server.restart()
    deadline = time.monotonic() + 20
    while True:
        nodes = await get(f"{one.url}/api/ops/nodes")
        if nodes["scope"] == "cluster" and nodes["expected"] == 2 and nodes["missing"] == 0:
            break
        assert time.monotonic() < deadline, f"still degraded after a Redis restart: {nodes}"
        await asyncio.sleep(0.2)
    assert len(nodes["nodes"]) == 2


async def test_malformed_questions_on_the_channel_do_not_break_it(ops_cluster, redis_server):
    """Anything else published on the query channel (not JSON, an unknown question, bad args) is
    dropped, logged, and the nodes go on answering."""
    one, two = ops_cluster
    client = redis.Redis.from_url(redis_server.url)
    try:
        for junk in (
            b"not json",
            b"[1, 2]",
            json.dumps({"id": "x", "from": "nobody", "question": "drop_tables", "args": {}}),
            json.dumps({"id": "x", "from": "nobody", "question": "rooms", "args": "not an object"}),
            json.dumps({"id": "x", "from": 7, "question": "node", "args": {}}),
        ):
            assert await client.publish("gateway:ops:query", junk) == 2, "both nodes are subscribed"
    finally:
        await client.aclose()
    for node in (one, two):
        answer = await get(f"{node.url}/api/ops/nodes")
        assert (answer["expected"], answer["missing"]) == (2, 0)
    assert "dropped a message that is not a JSON object" in one.log()


async def test_single_node_answers_without_redis_queries(gateway_factory, clients):
    node = gateway_factory(env={"API_KEY": KEY})
    carol = uid("carol")
    await clients.sio(node.url, make_token(carol))
    nodes = await get(f"{node.url}/api/ops/nodes")
    assert (nodes["scope"], nodes["expected"], nodes["missing"], len(nodes["nodes"])) == ("node", 1, 0, 1)
    assert (await get(f"{node.url}/api/ops/users/{carol}"))["online"] is True


async def test_operator_api_needs_the_api_key_or_the_ops_token(gateway_factory):
    ops = {"Authorization": "Bearer ops-api-test-ops-token"}
    keyed = gateway_factory(env={"API_KEY": KEY, "OPS_TOKEN": "ops-api-test-ops-token"})
    token_only = gateway_factory(env={"OPS_TOKEN": "ops-api-test-ops-token"})
    closed = gateway_factory()
    for path in ("/api/ops/nodes", "/api/ops/rooms", "/api/ops/users/alice"):
        refused = await get(keyed.url + path, 401, headers={})
        assert refused["error"]["code"] == 401
        await get(keyed.url + path, 401, headers={"Authorization": "Bearer not-the-key"})
        await get(keyed.url + path, headers=AUTH)
        await get(keyed.url + path, headers=ops)
        await get(token_only.url + path, headers=ops)
        await get(token_only.url + path, 401, headers=AUTH)  # no API key configured: it is just a wrong token
        disabled = await get(closed.url + path, 403, headers=AUTH)
        assert "API_KEY" in disabled["error"]["message"] and "OPS_TOKEN" in disabled["error"]["message"]
    for query, field in (("limit=0", "limit"), ("limit=x", "limit"), (f"prefix={'p' * 129}", "prefix")):
        bad = await get(f"{keyed.url}/api/ops/rooms?{query}", 400)
        assert bad["error"]["field"] == field


async def test_questions_from_many_operators_at_once_all_get_every_node(ops_cluster):
    one, two = ops_cluster
    answers = await asyncio.gather(*(get(f"{(one, two)[n % 2].url}/api/ops/nodes") for n in range(20)))
    assert all((a["expected"], a["missing"], len(a["nodes"])) == (2, 0, 2) for a in answers)
