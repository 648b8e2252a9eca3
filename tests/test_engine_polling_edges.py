"""Long-polling edge cases: overlapping sends, a client that stops polling, a client that leaves
while its poll waits, and a node that offers WebSocket only."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import aiohttp
import pytest
from conftest import make_token, uid
from realtime_gateway.appkeys import SIO_KEY
from realtime_gateway.transport import engine_ws
from test_engine_polling import Polling, start
from test_polling_clients import status_of


@pytest.fixture
async def server():
    test_server = await start()
    yield test_server
    await test_server.close()


async def gone(sio, eio_sid: str) -> bool:
    """Whether the session has left the registry and python-socketio (the gateway) within 5 s."""
    for _ in range(100):
        if eio_sid not in sio.eio.sockets and not sio.events.connections:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_an_overlapping_send_closes_the_session(server):
    async with aiohttp.ClientSession() as http:
        session = Polling(http, server)
        await session.open()
        release = asyncio.Event()

        async def slow_body():
            yield b"4"
            await release.wait()  # the first POST's body is still arriving
            yield b"hello"

        first = asyncio.ensure_future(http.post(f"{session.base}&sid={session.sid}", data=slow_body()))
        await asyncio.sleep(0.1)
        assert (await session.post("4second"))[0] == 400
        release.set()
        async with await first as response:
            assert response.status in (200, 400)  # it lost its session while it was read
        assert (await session.get())[0] == 400


async def test_a_client_that_stops_polling_is_disconnected_past_the_bound():
    server = await start(send_buffer_limit=65_536, ping_interval=25, ping_timeout=20)
    sio = server.app[SIO_KEY]
    try:
        async with aiohttp.ClientSession() as http:
            session = Polling(http, server)
            await session.open()
            await session.connect()
            [sid] = sio.events.connections
            blob = "x" * 10_000
            for _ in range(30):  # 300 KB for a client that never polls: over 4 x 64 KiB
                await sio.emit("system", {"type": "system", "blob": blob}, to=sid)
            assert await gone(sio, session.sid)  # python-socketio and the gateway were told
            assert (await session.get())[0] == 400
    finally:
        await server.close()


async def test_a_client_that_leaves_while_its_poll_waits_ends_the_session(server):
    """aiohttp's test server cancels the waiting poll when the client leaves."""
    sio = server.app[SIO_KEY]
    async with aiohttp.ClientSession() as http:
        session = Polling(http, server)
        await session.open()
        await session.connect()
        waiting = asyncio.ensure_future(session.get())
        await asyncio.sleep(0.1)
    waiting.cancel()
    assert await gone(sio, session.sid)


async def test_a_client_that_left_is_noticed_when_its_poll_wakes(gateway_factory, clients):
    """A production node does not cancel the handler when the client leaves: the poll notices
    when it wakes, and the session ends (python-socketio and presence learn it at once)."""
    gateway = gateway_factory(env={"PING_INTERVAL": "25", "PING_TIMEOUT": "20"})
    user = uid()
    watcher = await clients.sio(gateway.url, make_token(uid()))
    assert (await watcher.call("watch_presence", [user]))["ok"] is True
    async with aiohttp.ClientSession() as http:
        session = Polling(http, SimpleNamespace(port=gateway.port))
        await session.open()
        await session.connect(user)
        assert await status_of(watcher, user) == "online"
        waiting = asyncio.ensure_future(session.get())
        await asyncio.sleep(0.2)
    waiting.cancel()
    await watcher.call("user_message", {"to": user, "text": "wake up"})  # wakes the poll: nobody there
    assert await status_of(watcher, user) == "offline"


async def test_a_websocket_only_node_refuses_long_polling():
    server = await start(transports=["websocket"])
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=polling") as response:
                assert response.status == 400
            url = f"http://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket"
            async with http.ws_connect(url) as ws:
                opened = json.loads((await ws.receive(timeout=10)).data[1:])
                assert opened["upgrades"] == []
                await ws.send_str("40" + json.dumps({"token": make_token(uid())}))
                assert (await ws.receive(timeout=10)).data.startswith("40{")
    finally:
        await server.close()


async def test_an_upgrade_that_never_probes_is_closed_and_polling_goes_on(server, monkeypatch):
    monkeypatch.setattr(engine_ws, "UPGRADE_TIMEOUT", 0.3)
    async with aiohttp.ClientSession() as http:
        session = Polling(http, server)
        await session.open()
        await session.connect()
        async with http.ws_connect(session.ws_url) as ws:  # opens, then says nothing
            assert (await ws.receive(timeout=10)).type == aiohttp.WSMsgType.CLOSE
        assert await session.post('421["ping"]') == (200, "ok")
        await session.until("431[")
        async with http.ws_connect(session.ws_url) as ws:  # a later upgrade still works
            await ws.send_str("2probe")
            assert (await ws.receive(timeout=10)).data == "3probe"
            await ws.send_str("5")
            # the upgraded session has the WebSocket heartbeat: pings, and pongs keep it open
            for _ in range(3):
                while (await ws.receive(timeout=10)).data != "2":
                    pass
                await ws.send_str("3")
            await ws.send_str('422["ping"]')
            while not (await ws.receive(timeout=10)).data.startswith("432["):
                pass
