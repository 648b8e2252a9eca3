"""Connection limits (issue 11, defect 7): per user, per client address and per node, on every
transport; refused before the upgrade where the protocol allows, else as a ``connect_error``;
existing connections unaffected, slots given back when sessions end."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
import socketio
from conftest import SioClient, eventually, make_token, node_clients, uid
from rawws import RawWebSocket


async def sio_refusal(url: str, token: str, transports: list[str]) -> Any:
    client = SioClient()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(url, token, transports=transports)
    return client.connect_error


async def test_connections_per_user(gateway_factory, clients):
    server = gateway_factory(env={"MAX_CONNECTIONS_PER_USER": "2"})
    user = uid()
    first = await clients.ws(server.ws_url, make_token(user))
    await clients.sio(server.url, make_token(user))
    refused = await RawWebSocket.open(server.port, f"/ws?token={make_token(user)}")
    assert refused.status == 429
    assert (await refused.http_body())["error"]["code"] == 429
    for transports in (["websocket"], ["polling"]):
        refusal = await sio_refusal(server.url, make_token(user), transports)
        assert refusal["code"] == 429, refusal
    await first.send({"type": "ping"})  # existing connections unaffected
    await first.inbox.next("pong")
    await first.close()

    async def admitted_again() -> bool:
        ws = await RawWebSocket.open(server.port, f"/ws?token={make_token(user)}")
        ws.close()
        return ws.status == 101

    await eventually(admitted_again)


@pytest.mark.parametrize(("limit", "status"), [("MAX_CONNECTIONS_PER_IP", 429), ("MAX_CONNECTIONS", 503)])
async def test_connections_per_address_and_per_node(gateway_factory, clients, limit, status):
    """Refused before the upgrade, with the documented error body, on both WebSocket paths."""
    server = gateway_factory(env={limit: "2"})
    await clients.ws(server.ws_url, make_token(uid()))
    await clients.sio(server.url, make_token(uid()))
    for path in (f"/ws?token={make_token(uid())}", "/socket.io/?EIO=4&transport=websocket"):
        refused = await RawWebSocket.open(server.port, path)
        assert refused.status == status, path
        assert (await refused.http_body())["error"]["code"] == status
        refused.close()
    polling = f"{server.url}/socket.io/?EIO=4&transport=polling"  # a long-polling handshake counts too
    async with aiohttp.ClientSession() as http, http.get(polling) as response:
        assert response.status == status
        assert (await response.json())["error"]["code"] == status
    assert await node_clients(server.url) == 2


async def test_abandoned_polling_handshakes_are_closed_and_counted(gateway_factory):
    """Handshakes that never CONNECT: each holds a slot of its address until the connect
    timeout closes it; past the limit, more are refused; then the slots are free again."""
    server = gateway_factory(env={"CONNECT_TIMEOUT": "1", "MAX_CONNECTIONS_PER_IP": "20"})
    url = f"{server.url}/socket.io/?EIO=4&transport=polling"
    async with aiohttp.ClientSession() as http:
        statuses = []
        for _ in range(30):
            async with http.get(url) as response:
                statuses.append(response.status)
        assert statuses == [200] * 20 + [429] * 10

        async def admitted_again() -> bool:
            async with http.get(url) as response:
                return response.status == 200

        await eventually(admitted_again, timeout=10)
