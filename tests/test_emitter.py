"""The Python API: Emitter (asyncio) and SyncEmitter (blocking) from other processes, through a
real two-node cluster to Socket.IO and plain-WS clients; the in-process emitter inside a node."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from conftest import ROOT, SECRET, free_port, make_token
from delivery import audience, nothing_else, received_once, uid, wait_subscribed
from realtime_gateway import Emitter, SyncEmitter
from realtime_gateway.appkeys import EMITTER_KEY
from realtime_gateway.config import Settings
from realtime_gateway.emit.emitter import EmitError
from realtime_gateway.server import create_app


async def test_every_operation_reaches_exactly_its_audience_on_both_nodes(cluster, redis_server, clients):
    people = await audience(clients, cluster)
    await wait_subscribed(redis_server.url, nodes=2)
    async with Emitter(redis_server.url) as emitter:
        system = await emitter.send_system("maintenance at 22:00", level="warning", code=1001)
        to_all = await emitter.send_notification("Hello", "everyone")
        to_user = await emitter.send_notification(
            "Shipped", "order 7", icon="Cart", link="/orders/7", user_id=people.user
        )
        update_all = await emitter.send_data_update("user", "create", id="123", data={"username": "new"})
        update_room = await emitter.send_data_update("order", "update", id=7, room=people.room)
        in_room = await emitter.broadcast_to_room(people.room, "room_news", {"n": 1})
        for_user = await emitter.send_to_user(people.user, "private", [1, 2])
        for_all = await emitter.broadcast("announcement", "hi")

    envelope = (await received_once(people.everyone, "system", system))[0]
    assert envelope["content"] == {"message": "maintenance at 22:00", "level": "warning", "code": 1001}
    assert isinstance(envelope["timestamp"], int)
    await received_once(people.everyone, "notification", to_all)
    envelope = (await received_once(people.devices, "notification", to_user))[1]  # the plain-WS device
    assert envelope["content"] == {"title": "Shipped", "body": "order 7", "icon": "Cart", "link": "/orders/7"}
    assert envelope["to"] == people.user
    envelope = (await received_once(people.everyone, "data_update", update_all))[0]
    assert envelope["content"] == {"entity": "user", "action": "create", "id": "123", "data": {"username": "new"}}
    envelope = (await received_once(people.members, "data_update", update_room))[0]
    assert envelope["room"] == people.room and envelope["content"]["id"] == 7
    assert (await received_once(people.members, "room_news", in_room))[1]["content"] == {"n": 1}
    assert (await received_once(people.devices, "private", for_user))[0]["content"] == [1, 2]
    assert (await received_once(people.everyone, "announcement", for_all))[1]["content"] == "hi"
    await nothing_else(people.everyone, "system", "notification", "data_update", "room_news", "private", "announcement")


SYNC_SCRIPT = textwrap.dedent(
    """
    import sys
    from realtime_gateway import SyncEmitter

    user, room = sys.argv[1], sys.argv[2]
    with SyncEmitter() as emitter:  # REDIS_URL from the environment
        print(emitter.send_notification("From a script", "no event loop here", user_id=user))
        print(emitter.broadcast_to_room(room, "report_ready", {"url": "/r/1"}))
    """
)


async def test_sync_emitter_from_a_plain_script(cluster, redis_server, clients):
    people = await audience(clients, cluster)
    await wait_subscribed(redis_server.url, nodes=2)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SYNC_SCRIPT,
        people.user,
        people.room,
        cwd=ROOT,
        env={"REDIS_URL": redis_server.url, "PATH": ""},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    notification, report = out.decode().split()
    assert (await received_once(people.devices, "notification", notification))[0]["content"]["title"] == "From a script"
    await received_once(people.members, "report_ready", report)
    await nothing_else(people.everyone, "notification", "report_ready")


async def test_in_process_emitter_inside_a_single_node(clients):
    settings = Settings(port=free_port(), host="127.0.0.1", jwt_secret=SECRET)
    settings.validate()
    app = create_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.port).start()
    try:

        class Node:
            url = f"http://127.0.0.1:{settings.port}"
            ws_url = f"ws://127.0.0.1:{settings.port}/ws"

        people = await audience(clients, [Node])
        emitter = app[EMITTER_KEY]
        to_user = await emitter.send_notification("Inside", "the server", user_id=people.user)
        in_room = await emitter.send_data_update("doc", "edit", room=people.room)
        for_all = await emitter.send_system("hello from inside")
        await received_once(people.devices, "notification", to_user)
        await received_once(people.members, "data_update", in_room)
        await received_once(people.everyone, "system", for_all)
        await nothing_else(people.everyone, "notification", "data_update", "system")
        for client in people.everyone:  # else the shutdown waits 5 s for the Socket.IO clients
            await client.close()
    finally:
        await runner.cleanup()


async def test_bursts_queue_instead_of_failing(redis_server, gateway_factory, clients):
    """More concurrent emits than redis-py's pool has connections (100), from tasks and threads."""
    node = gateway_factory(env={"REDIS_URL": redis_server.url})
    user = uid()
    client = await clients.ws(node.ws_url, make_token(user))
    await wait_subscribed(redis_server.url, nodes=1)
    async with Emitter(redis_server.url) as emitter:
        ids = await asyncio.gather(*(emitter.send_to_user(user, "burst", i) for i in range(300)))
    with SyncEmitter(redis_server.url) as sync_emitter, ThreadPoolExecutor(max_workers=150) as pool:
        ids += await asyncio.gather(
            *(asyncio.wrap_future(pool.submit(sync_emitter.send_to_user, user, "burst", i)) for i in range(150))
        )
    for message_id in ids:
        await client.inbox.next("burst", id=message_id)
    assert await client.inbox.quiet("burst", 0.2) == []


async def test_unreachable_redis_and_bad_arguments_raise(monkeypatch):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(EmitError, match=re.escape(f"cannot publish to Redis at {dead}")):
        async with Emitter(dead) as emitter:
            await emitter.broadcast("x", None)
    with SyncEmitter(dead) as sync_emitter, pytest.raises(EmitError, match="Connection refused"):
        sync_emitter.send_system("x")
    monkeypatch.delenv("REDIS_URL", raising=False)
    with pytest.raises(ValueError, match="no Redis URL"):
        Emitter()
    with pytest.raises(ValueError, match="not a Redis URL"):
        SyncEmitter("localhost:6379")
    emitter = SyncEmitter(dead)  # checked before anything is sent: no Redis round trip
    with pytest.raises(ValueError, match="room name"):
        emitter.broadcast_to_room("", "t", None)
    with pytest.raises(ValueError, match="user id"):
        emitter.send_to_user(True, "t", None)
    with pytest.raises(ValueError, match="type"):
        emitter.broadcast("", None)
    with pytest.raises(ValueError, match="'connect' is reserved"):
        emitter.send_to_user("u", "connect", None)
    with pytest.raises(TypeError):
        emitter.broadcast("t", object())


async def test_values_nodes_could_not_read_raise_before_anything_is_sent(redis_server):
    """The emitters used the stdlib encoder: NaN went out as ``NaN``, which the nodes (orjson)
    cannot parse, so the message vanished after the emitter had returned its id."""
    raw = aioredis.Redis.from_url(redis_server.url)
    bad_contents = [float("nan"), {"x": float("inf")}, {"n": 2**64}, [-(2**63) - 1]]
    try:
        async with Emitter(redis_server.url) as emitter:
            for content in bad_contents:
                with pytest.raises(ValueError, match=r"NaN|64-bit"):
                    await emitter.broadcast("t", content)
        with SyncEmitter(redis_server.url) as sync_emitter:
            for content in bad_contents:
                with pytest.raises(ValueError, match=r"NaN|64-bit"):
                    sync_emitter.broadcast("t", content)
            sync_emitter.broadcast("t", {"n": 2**64 - 1, "m": -(2**63)})  # the edges are fine
        assert await raw.xlen("gateway:bus") == 1
    finally:
        await raw.aclose()


async def bus_dropped(url: str) -> dict[str, float]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as response:
        text = await response.text()
    return {m[1]: float(m[2]) for m in re.finditer(r'gateway_bus_dropped_total\{reason="(\w+)"\} (\S+)', text)}


async def test_unreadable_bus_entries_are_logged_counted_and_skipped(cluster, redis_server, clients):
    """Entries another process wrote badly never stop a node: each is logged, counted by reason,
    and the entries around it are delivered."""
    people = await audience(clients, cluster)
    await wait_subscribed(redis_server.url, nodes=2)
    raw = aioredis.Redis.from_url(redis_server.url)
    bad = [
        {"o": "bad", "n": 1, "m": "emit", "p": "not json {"},
        {"o": "bad", "n": 2, "m": "emit", "p": "[" * 5000 + "]" * 5000},
        {"o": "bad", "n": 3, "m": "emit", "p": "[1]"},
        {"o": "bad", "n": 4, "m": "emit", "p": '{"event": "tick"}'},
        {"o": "bad", "n": 5, "m": "no_such_command", "p": "{}"},
        {"o": "bad", "n": "six", "m": "emit", "p": "{}"},
    ]
    try:
        async with Emitter(redis_server.url) as emitter:
            before = await emitter.broadcast("tick", 1)
            for fields in bad:
                await raw.xadd("gateway:bus", fields)
            after = await emitter.broadcast("tick", 2)
        await received_once(people.everyone, "tick", before)
        await received_once(people.everyone, "tick", after)
        await nothing_else(people.everyone, "tick")
        for node in cluster:
            assert await bus_dropped(node.url) == {
                "undecodable": 3,
                "bad_payload": 1,
                "unknown_command": 1,
                "malformed": 1,
            }
            assert node.log().count("dropped a bus entry") == 6
    finally:
        await raw.aclose()
