"""The Go services' websocket:* Redis channels: PUBLISHed payloads reach exactly the addressed
connections exactly once on every node; malformed ones are dropped, logged and counted; the
bridge survives a Redis outage and can be switched off."""

from __future__ import annotations

import json
import re

import aiohttp
import pytest
import redis.asyncio as aioredis
from conftest import make_token
from delivery import audience, nothing_else, received_once, uid, wait_subscribed


@pytest.fixture
async def redis_client(redis_server):
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def publish(client: aioredis.Redis, channel: str, message: object) -> None:
    await client.publish(channel, message if isinstance(message, (str, bytes)) else json.dumps(message))


async def dropped(url: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as response:
        text = await response.text()
    return {m[1]: float(m[2]) for m in re.finditer(r'gateway_bridge_dropped_total\{reason="(\w+)"\} (\S+)', text)}


async def test_each_channel_reaches_its_audience_once_on_both_nodes(cluster, redis_server, redis_client, clients):
    people = await audience(clients, cluster)
    await wait_subscribed(redis_server.url, nodes=2)
    note = {"type": "notification", "content": {"title": "Order", "body": "shipped"}, "id": "n-1"}
    await publish(redis_client, "websocket:broadcast", {"message": {"type": "announce", "content": "all", "id": "b-1"}})
    await publish(redis_client, f"websocket:user:{people.user}", {"message": {"type": "private", "id": "u-1"}})
    await publish(redis_client, f"websocket:room:{people.room}", {"message": {"type": "room_news", "id": "r-1"}})
    await publish(redis_client, f"websocket:notification:{people.user}", {"message": note})

    announce = (await received_once(people.everyone, "announce", "b-1"))[0]
    assert announce["content"] == "all" and isinstance(announce["timestamp"], int)  # timestamp filled in
    assert (await received_once(people.devices, "private", "u-1"))[1]["content"] is None  # content defaults
    await received_once(people.members, "room_news", "r-1")
    assert (await received_once(people.devices, "notification", "n-1"))[0]["content"] == note["content"]
    await nothing_else(people.everyone, "announce", "private", "room_news", "notification")


async def test_malformed_payloads_are_dropped_logged_and_counted_between_valid_ones(
    cluster, redis_server, redis_client, clients
):
    people = await audience(clients, cluster)
    await wait_subscribed(redis_server.url, nodes=2)
    await publish(redis_client, "websocket:broadcast", {"message": {"type": "tick", "id": "t-1"}})
    await publish(redis_client, "websocket:broadcast", "not json {")
    await publish(redis_client, "websocket:broadcast", b"\xff\xfe")
    await publish(redis_client, f"websocket:user:{people.user}", {"msg": {"type": "tick"}})
    await publish(redis_client, "websocket:broadcast", {"message": {"content": "no type"}})
    await publish(redis_client, "websocket:broadcast", {"message": {"type": "connect"}})  # reserved by Socket.IO
    await publish(redis_client, f"websocket:room:{people.room}", {"message": "a string"})
    await publish(redis_client, "websocket:elsewhere:x", {"message": {"type": "tick"}})
    await publish(redis_client, "websocket:broadcast", {"message": {"type": "tick", "id": "t-2"}})

    await received_once(people.everyone, "tick", "t-1")
    await received_once(people.everyone, "tick", "t-2")  # each node handled every payload by now
    await nothing_else(people.everyone, "tick", "connect")
    for node in cluster:
        assert await dropped(node.url) == {"not_json": 2, "no_message": 1, "bad_message": 3, "unknown_channel": 1}
        assert "dropped payload on websocket:broadcast: payload is not JSON" in node.log()
        assert f"dropped payload on websocket:room:{people.room}: message must be a JSON object" in node.log()


async def test_deeply_nested_payload_is_dropped_without_ending_the_subscription(
    redis_server, redis_client, gateway_factory, clients
):
    """The stdlib parser raised RecursionError on this, which ended the subscription: the
    payload right behind it was lost while the bridge resubscribed."""
    node = gateway_factory(env={"REDIS_URL": redis_server.url})
    client = await clients.ws(node.ws_url, make_token(uid()))
    await wait_subscribed(redis_server.url, nodes=1)
    deep = '{"message": ' + "[" * 100_000 + "]" * 100_000 + "}"
    await publish(redis_client, "websocket:broadcast", deep)
    await publish(redis_client, "websocket:broadcast", {"message": {"type": "after", "id": "a-1"}})
    await received_once([client], "after", "a-1")
    assert await dropped(node.url) == {"not_json": 1}
    assert "legacy bridge lost Redis" not in node.log()


async def test_bridge_resubscribes_after_a_redis_outage(redis_server, redis_client, gateway_factory, clients):
    node = gateway_factory(env={"REDIS_URL": redis_server.url})
    client = await clients.ws(node.ws_url, make_token(uid()))
    await wait_subscribed(redis_server.url, nodes=1)
    redis_server.restart()  # a fresh Redis: no subscriptions until the node makes them again
    await wait_subscribed(redis_server.url, nodes=1)
    await redis_client.publish("websocket:broadcast", json.dumps({"message": {"type": "back", "id": "after"}}))
    await received_once([client], "back", "after")
    assert "legacy bridge lost Redis" in node.log()


async def test_no_legacy_channels_switches_the_bridge_off(redis_server, redis_client, gateway_factory, clients):
    env = {"REDIS_URL": redis_server.url}
    bridged = gateway_factory(env=env)
    unbridged = gateway_factory(env=env, args=["--no-legacy-channels"])
    listener = await clients.sio(bridged.url, make_token(uid()))
    deaf = await clients.ws(unbridged.ws_url, make_token(uid()))
    await wait_subscribed(redis_server.url, nodes=2, bridges=1)
    await publish(redis_client, "websocket:broadcast", {"message": {"type": "legacy", "id": "l-1"}})
    await received_once([listener], "legacy", "l-1")
    await nothing_else([listener, deaf], "legacy")


async def test_exactly_once_with_worker_processes(redis_server, redis_client, gateway_factory, clients):
    server = gateway_factory(env={"REDIS_URL": redis_server.url, "WORKERS": "2"})
    await wait_subscribed(redis_server.url, nodes=2)  # each worker is a cluster member with its bridge
    user = uid()
    connected: list = []
    workers: set[str] = set()
    while len(workers) < 2 or len(connected) < 6:  # the kernel spreads connections over the workers
        assert len(connected) < 40, "every connection landed on one worker"
        connected.append(await clients.ws(server.ws_url, make_token(user)))
        workers.add(connected[-1].inbox.of_type("welcome")[0]["content"]["node"])
    await publish(redis_client, f"websocket:user:{user}", {"message": {"type": "once", "id": "w-1"}})
    await received_once(connected, "once", "w-1")
    await nothing_else(connected, "once")
