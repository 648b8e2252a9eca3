"""``--workers N``: several processes on one port, joined through Redis, stopped by one SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

import aiohttp
import pytest
from conftest import make_token


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


async def test_two_workers_share_the_port_and_the_rooms(redis_server, gateway_factory, clients):
    server = gateway_factory(env={"REDIS_URL": redis_server.url, "WORKERS": "2"})
    assert len(children(server.proc.pid)) == 2
    # the kernel spreads connections over the workers once both listen; wait (bounded) for that
    nodes: set[str] = set()
    deadline = asyncio.get_running_loop().time() + 15
    while len(nodes) < 2 and asyncio.get_running_loop().time() < deadline:
        probe = await clients.ws(server.ws_url, make_token("probe"))
        nodes.add(probe.inbox.of_type("welcome")[0]["content"]["node"])
        await probe.close()
    assert len(nodes) == 2
    room = f"room-{uuid.uuid4().hex[:6]}"
    members = [await clients.sio(server.url, make_token(f"w{i}")) for i in range(6)]
    members += [await clients.ws(server.ws_url, make_token(f"p{i}")) for i in range(6)]
    for member in members:
        if hasattr(member, "sio"):
            assert (await member.call("join_room", room))["ok"]
        else:
            await member.send({"type": "join_room", "content": room, "id": 1})
            await member.inbox.next("ack")
    await members[0].call("room_message", {"room": room, "text": "to every worker"})
    for member in members:
        assert (await member.inbox.next("room_message"))["content"]["text"] == "to every worker"

    server.signal(signal.SIGTERM)
    assert server.wait(20) == 0


async def test_long_polling_is_refused_with_workers(redis_server, gateway_factory):
    server = gateway_factory(env={"REDIS_URL": redis_server.url, "WORKERS": "2"})
    url = f"{server.url}/socket.io/?EIO=4&transport=polling"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 400


def test_workers_without_redis_is_a_configuration_error(gateway_factory):
    with pytest.raises(RuntimeError, match="needs --redis-url"):
        gateway_factory(env={"WORKERS": "2"})


async def test_workers_exit_when_their_supervisor_is_killed(redis_server, gateway_factory):
    """A SIGKILLed supervisor must not leave workers serving the port with nobody to stop them."""
    server = gateway_factory(env={"REDIS_URL": redis_server.url, "WORKERS": "2"})
    workers = children(server.proc.pid)
    assert len(workers) == 2
    server.proc.kill()  # the supervisor alone (Gateway.kill would take its process group)
    server.proc.wait(5)
    deadline = asyncio.get_running_loop().time() + 20
    while any(Path(f"/proc/{pid}").exists() for pid in workers):
        assert asyncio.get_running_loop().time() < deadline, "workers outlived their supervisor"
        await asyncio.sleep(0.1)
