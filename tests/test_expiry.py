"""Token lifetime after connect: expiry closes connections, revocation refuses and closes them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import aiohttp
import pytest
import socketio
from conftest import ROOT, make_token, uid

API_KEY = "ops-key-0123456789"
EXPIRED = {"code": 401, "message": "token expired"}
REVOKED = {"code": 401, "message": "token revoked"}


async def revoke(url: str, jti: str, key: str | None = API_KEY) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession() as http, http.post(f"{url}/api/revoke", json={"jti": jti}, headers=headers) as r:
        return r.status, await r.json()


async def refused(url: str, token: str) -> dict:
    """Connect with Socket.IO and return the connect_error data (the connect must fail)."""
    client = socketio.AsyncClient(reconnection=False)
    errors: list = []
    client.on("connect_error", lambda data: errors.append(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=5)
    return errors[0]


async def test_expired_token_closes_both_transports(gateway_factory, clients):
    gateway = gateway_factory(env={"JWT_LEEWAY": "0"})  # closed at exp exactly
    sio = await clients.sio(gateway.url, make_token(uid(), ttl=2))
    ws = await clients.ws(gateway.ws_url, make_token(uid(), ttl=2))
    keeps = await clients.sio(gateway.url, make_token(uid(), ttl=60))
    started = time.monotonic()
    assert (await sio.inbox.next("error", timeout=5))["content"] == EXPIRED
    assert (await ws.inbox.next("error", timeout=5))["content"] == EXPIRED
    await asyncio.wait_for(sio.disconnected.wait(), 5)
    await asyncio.wait_for(ws.closed.wait(), 5)
    assert time.monotonic() - started < 4  # exp is whole seconds: closed 1..2 s from now
    assert keeps.sio.connected


@pytest.fixture
def ops_cluster(redis_server, gateway_factory):
    env = {"REDIS_URL": redis_server.url, "API_KEY": API_KEY}
    return [gateway_factory(env=env), gateway_factory(env=env)]


async def test_revocation_closes_live_connections_on_every_node_and_refuses_new_ones(
    ops_cluster, clients, redis_server, gateway_factory
):
    node1, node2 = ops_cluster
    jti, user = uid("jti"), uid()
    token = make_token(user, jti=jti)
    local = await clients.sio(node1.url, token)
    remote = await clients.ws(node2.ws_url, token)
    other = await clients.sio(node2.url, make_token(user, jti=uid("jti")))
    started = time.monotonic()
    assert await revoke(node1.url, jti) == (200, {"ok": True, "jti": jti})
    assert (await local.inbox.next("error", timeout=5))["content"] == REVOKED
    assert (await remote.inbox.next("error", timeout=5))["content"] == REVOKED
    await asyncio.wait_for(local.disconnected.wait(), 5)
    await asyncio.wait_for(remote.closed.wait(), 5)
    print(f"revocation closed the remote connection after {time.monotonic() - started:.2f}s")
    assert other.sio.connected  # another token of the same user is unaffected
    node3 = gateway_factory(env={"REDIS_URL": redis_server.url})  # loads the revocations at start
    for node in (node1, node2, node3):
        error = await refused(node.url, token)
        assert error["code"] == 401 and error["message"] == "token revoked"
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{node.url}/ws/online-users", params={"token": token}) as response,
        ):
            assert response.status == 401


async def test_revoke_api_requires_the_api_key(gateway_factory):
    node = gateway_factory(env={"API_KEY": API_KEY})
    assert (await revoke(node.url, "x", key="wrong"))[0] == 401
    assert (await revoke(node.url, "x", key=None))[0] == 401
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with http.post(f"{node.url}/api/revoke", json={"nope": 1}, headers=headers) as response:
            assert response.status == 400
    no_key = gateway_factory()
    assert (await revoke(no_key.url, "x"))[0] == 403


async def test_revoke_cli_on_a_single_node(gateway_factory, clients):
    node = gateway_factory(env={"API_KEY": API_KEY})
    jti = uid("jti")
    client = await clients.ws(node.ws_url, make_token(uid(), jti=jti))
    command = [
        sys.executable,
        "-m",
        "realtime_gateway",
        "revoke",
        "--jti",
        jti,
        "--url",
        node.url,
        "--api-key",
        API_KEY,
    ]
    result = await asyncio.to_thread(subprocess.run, command, cwd=ROOT, capture_output=True, text=True, timeout=20)
    assert result.returncode == 0, result.stderr
    assert (await client.inbox.next("error"))["content"] == REVOKED
    await asyncio.wait_for(client.closed.wait(), 5)
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{node.ws_url}?token={make_token(uid(), jti=jti)}") as ws,
    ):
        msg = await ws.receive(timeout=5)  # refused at connect: closed without a welcome
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1008
