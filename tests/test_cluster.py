"""Two gateway processes joined through a real Redis act as one server."""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiohttp
from conftest import make_token, uid


async def join(client, room: str) -> None:
    if hasattr(client, "sio"):
        assert (await client.call("join_room", room))["ok"] is True
    else:
        await client.send({"type": "join_room", "content": room, "id": room})
        assert (await client.inbox.next("ack", timeout=10))["content"]["ok"] is True


async def test_room_message_crosses_nodes_to_both_transports(cluster, clients):
    node1, node2 = cluster
    room = uid("room")
    sender = await clients.sio(node1.url, make_token(uid(), "Sender"))
    sio_remote = await clients.sio(node2.url, make_token(uid()))
    ws_remote = await clients.ws(node2.ws_url, make_token(uid()))
    outsider = await clients.ws(node2.ws_url, make_token(uid()))
    for client in (sender, sio_remote, ws_remote):
        await join(client, room)
    await sender.call("room_message", {"room": room, "text": "across"})
    for client in (sender, sio_remote, ws_remote):
        envelope = await client.inbox.next("room_message")
        assert envelope["content"]["text"] == "across" and envelope["from_name"] == "Sender"
    # and from a plain-WS client on node 2 back to node 1
    await ws_remote.send({"type": "room_message", "content": {"room": room, "text": "back"}})
    assert (await sender.inbox.next("room_message"))["content"]["text"] == "back"
    for client in (sender, sio_remote, ws_remote):
        assert len([e for e in client.inbox.of_type("room_message")]) == 2  # exactly once each
    assert await outsider.inbox.quiet("room_message") == []


async def test_user_message_reaches_devices_on_every_node(cluster, clients):
    node1, node2 = cluster
    bob = uid()
    sender = await clients.ws(node1.ws_url, make_token(uid()))
    devices = [
        await clients.sio(node1.url, make_token(bob)),
        await clients.sio(node2.url, make_token(bob)),
        await clients.ws(node2.ws_url, make_token(bob)),
    ]
    await sender.send({"type": "user_message", "content": {"to": bob, "text": "everywhere"}})
    for device in devices:
        assert (await device.inbox.next("user_message"))["content"]["text"] == "everywhere"
    for device in devices:
        assert await device.inbox.quiet("user_message", 0.2) == []  # no duplicates


async def healthz(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/healthz") as response:
        return response.status


async def test_redis_outage_keeps_local_delivery_and_cluster_resumes(cluster, redis_server, clients):
    node1, node2 = cluster
    room = uid("room")
    local_a = await clients.sio(node1.url, make_token(uid()))
    local_b = await clients.ws(node1.ws_url, make_token(uid()))
    remote = await clients.sio(node2.url, make_token(uid()))
    for client in (local_a, local_b, remote):
        await join(client, room)

    redis_server.kill()
    await local_a.call("room_message", {"room": room, "text": "during outage"})
    assert (await local_b.inbox.next("room_message"))["content"]["text"] == "during outage"
    assert await healthz(node1.url) == 200 and await healthz(node2.url) == 200

    redis_server.start()
    # the Redis manager reconnects with back-off; keep sending until a message crosses
    deadline = time.monotonic() + 60
    crossed = False
    while time.monotonic() < deadline and not crossed:
        await local_a.call("room_message", {"room": room, "text": "after"})
        try:
            envelope = await remote.inbox.next("room_message", timeout=1, room=room)
            crossed = envelope["content"]["text"] == "after"
        except asyncio.TimeoutError:
            pass
    assert crossed, "cluster delivery did not resume after Redis came back"
    assert node1.proc.poll() is None and node2.proc.poll() is None


async def test_node_starts_while_redis_is_down(redis_server, gateway_factory, clients):
    redis_server.kill()
    node = gateway_factory(env={"REDIS_URL": redis_server.url})  # waits for /healthz
    room = uid("room")
    a = await clients.sio(node.url, make_token(uid()))
    b = await clients.ws(node.ws_url, make_token(uid()))
    await join(a, room)
    await join(b, room)
    await a.call("room_message", {"room": room, "text": "local only"})
    assert (await b.inbox.next("room_message"))["content"]["text"] == "local only"


async def test_resubscribes_quickly_after_a_long_redis_outage(cluster, redis_server, clients):
    """python-socketio alone backs off to a minute between resubscribe attempts."""
    node1, node2 = cluster
    room = uid("room")
    sender = await clients.sio(node1.url, make_token(uid()))
    remote = await clients.sio(node2.url, make_token(uid()))
    for client in (sender, remote):
        await join(client, room)
    redis_server.kill()
    deadline = time.monotonic() + 30
    while "retrying in 4.0 s" not in node2.log():  # several back-off steps have passed
        assert time.monotonic() < deadline, node2.log()[-2000:]
        await asyncio.sleep(0.2)
    redis_server.start()
    restarted = time.monotonic()
    crossed = False
    while not crossed and time.monotonic() - restarted < 12:
        await sender.call("room_message", {"room": room, "text": "back"})
        with contextlib.suppress(asyncio.TimeoutError):
            crossed = (await remote.inbox.next("room_message", timeout=1, room=room))["content"]["text"] == "back"
    assert crossed, "node 2 did not resubscribe within 12 s of Redis coming back"


async def test_replies_to_one_connection_do_not_cross_redis(cluster, redis_server, clients):
    """welcome, pong and error envelopes go to a connection of this node: publishing them
    to every other node would cost a Redis round trip per reply for nothing."""
    import redis.asyncio as aioredis

    node1, _ = cluster
    room = uid("room")
    listener = aioredis.Redis.from_url(redis_server.url)
    try:
        last = (await listener.xinfo_stream("gateway:bus"))["last-generated-id"]  # from now on
        client = await clients.sio(node1.url, make_token(uid()))
        await join(client, room)
        await client.call("ping")
        await client.call("room_message", {"room": "not-joined", "text": "403"})
        await client.call("room_message", {"room": room, "text": "crosses"})  # the positive control
        published: list[str] = []
        deadline = time.monotonic() + 10
        # read until the control message has crossed, then what else is already there
        while time.monotonic() < deadline and not any('"crosses"' in data for data in published):
            for _, entries in await listener.xread({"gateway:bus": last}, block=1000) or ():
                last = entries[-1][0]
                published += [fields[b"p"].decode() for _, fields in entries]
        for _, entries in await listener.xread({"gateway:bus": last}, block=200) or ():
            published += [fields[b"p"].decode() for _, fields in entries]
        assert any('"crosses"' in data for data in published)
        assert not [data for data in published if '"pong"' in data or '"welcome"' in data or '"error"' in data]
    finally:
        await listener.aclose()
