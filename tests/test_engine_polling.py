"""The gateway's own Engine.IO v4 long-polling transport and the upgrade to WebSocket, at the
packet level (aiohttp requests against an in-process gateway)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from conftest import SECRET, make_token, uid
from engineio import packet as eio_packet
from realtime_gateway.appkeys import SIO_KEY
from realtime_gateway.config import Settings
from realtime_gateway.server import create_app
from realtime_gateway.transport.engine_polling import PollingSocket
from realtime_gateway.transport.engine_ws import EngineSocket


async def start(**overrides: Any) -> TestServer:
    options: dict[str, Any] = {
        "jwt_secret": SECRET,
        "ping_interval": 0.3,
        "ping_timeout": 0.5,
        "cors_origins": ["https://ok.example"],
        **overrides,
    }
    settings = Settings(**options)
    settings.validate()
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    return server


@pytest.fixture
async def server():
    test_server = await start()
    yield test_server
    await test_server.close()


class Polling:
    """One long-polling session, request by request."""

    def __init__(self, http: aiohttp.ClientSession, server: TestServer) -> None:
        self.http = http
        self.base = f"http://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=polling"
        self.sid = ""

    async def open(self) -> dict[str, Any]:
        async with self.http.get(self.base) as response:
            assert response.status == 200
            text = await response.text()
        assert text.startswith("0")
        opened = json.loads(text[1:])
        self.sid = opened["sid"]
        return opened

    async def get(self) -> tuple[int, str]:
        async with self.http.get(f"{self.base}&sid={self.sid}") as response:
            return response.status, await response.text()

    async def post(self, body: str | bytes) -> tuple[int, str]:
        async with self.http.post(f"{self.base}&sid={self.sid}", data=body) as response:
            return response.status, await response.text()

    async def packets(self) -> list[str]:
        """The next poll's packets, pings answered and left out."""
        while True:
            status, text = await asyncio.wait_for(self.get(), 10)
            assert status == 200, text
            packets = text.split("\x1e")
            if "2" in packets:
                assert await self.post("3") == (200, "ok")
            packets = [p for p in packets if p != "2"]
            if packets:
                return packets

    async def until(self, prefix: str) -> list[str]:
        """Poll until a packet starting with ``prefix`` arrived; everything received."""
        received: list[str] = []
        while not any(p.startswith(prefix) for p in received):
            received += await self.packets()
        return received

    async def connect(self, user: str | None = None) -> list[str]:
        assert await self.post("40" + json.dumps({"token": make_token(user or uid())})) == (200, "ok")
        received = await self.until('42["welcome"')
        assert received[0].startswith('40{"sid":')
        return received

    @property
    def ws_url(self) -> str:
        return self.base.replace("transport=polling", "transport=websocket") + f"&sid={self.sid}"


async def test_handshake_reports_the_configuration_in_milliseconds(server):
    async with aiohttp.ClientSession() as http:
        opened = await Polling(http, server).open()
    assert opened["upgrades"] == ["websocket"]
    assert (opened["pingInterval"], opened["pingTimeout"], opened["maxPayload"]) == (300, 500, 524_288)
    assert isinstance(server.app[SIO_KEY].eio.sockets[opened["sid"]], PollingSocket)


@pytest.mark.parametrize(
    ("method", "query"),
    [
        ("GET", "transport=polling"),
        ("GET", "EIO=3&transport=polling"),
        ("GET", "EIO=4"),
        ("GET", "EIO=4&transport=abc"),
        ("POST", "EIO=4&transport=polling"),
        ("PUT", "EIO=4&transport=polling"),
        ("DELETE", "EIO=4&transport=polling"),
        ("GET", "EIO=4&transport=polling&sid=nosuchsession"),
        ("GET", "EIO=4&transport=websocket"),  # not an upgrade request
    ],
)
async def test_requests_the_protocol_refuses_get_400(server, method, query):
    url = f"http://127.0.0.1:{server.port}/socket.io/?{query}"
    async with aiohttp.ClientSession() as http, http.request(method, url) as response:
        assert response.status == 400
        assert (await response.json())["error"]["code"] == 400


async def test_events_acks_and_broadcasts_over_polling(server):
    async with aiohttp.ClientSession() as http:
        session = Polling(http, server)
        await session.open()
        await session.connect()
        assert await session.post('421["join_room","lobby"]\x1e422["ping"]') == (200, "ok")
        received = await session.until("432")
        assert '431[{"ok":true,"room":"lobby"}]' in received
        assert any(p.startswith('42["pong"') for p in received)
    sio = server.app[SIO_KEY]
    [sid] = sio.events.connections
    assert sio.transport(sid) == "polling"  # python-socketio reads the socket's `upgraded`


async def test_ping_pong_and_ping_timeout(server):
    async with aiohttp.ClientSession() as http:
        session = Polling(http, server)
        await session.open()
        for _ in range(3):
            assert await asyncio.wait_for(session.get(), 10) == (200, "2")
            assert await session.post("3") == (200, "ok")
        assert await asyncio.wait_for(session.get(), 10) == (200, "2")
        await asyncio.sleep(0.6)  # no pong within pingTimeout (0.5 s)
        assert (await session.get())[0] == 400
    assert server.app[SIO_KEY].eio.sockets == {}


async def test_malformed_payload_closes_the_session(server):
    async with aiohttp.ClientSession() as http:
        for body in ("abc", "", "b!!!", b"\xff\xfe", '42["x"'):
            session = Polling(http, server)
            await session.open()
            assert (await session.post(body))[0] == 400, body
            assert (await session.get())[0] == 400, body


async def test_a_duplicate_poll_closes_the_session(server):
    async with aiohttp.ClientSession() as http:
        session = Polling(http, server)
        await session.open()
        first = asyncio.ensure_future(session.get())
        await asyncio.sleep(0.05)
        assert (await session.get())[0] == 400
        assert await first == (200, "1")
        assert (await session.get())[0] == 400


async def test_a_client_close_ends_the_pending_poll_with_a_noop(server):
    async with aiohttp.ClientSession() as http:
        session = Polling(http, server)
        await session.open()
        pending = asyncio.ensure_future(session.get())
        await asyncio.sleep(0.05)
        assert await session.post("1") == (200, "ok")
        assert await pending == (200, "6")
        assert (await session.get())[0] == 400


async def test_payloads_over_max_payload_are_refused_and_close_the_session(server):
    async with aiohttp.ClientSession() as http:
        session = Polling(http, server)
        await session.open()
        assert (await session.post("4" + "x" * 524_288))[0] == 413
        assert (await session.get())[0] == 400


async def test_binary_packets_travel_as_base64(server):
    async with aiohttp.ClientSession() as http:
        session = Polling(http, server)
        await session.open()
        polling = server.app[SIO_KEY].eio.sockets[session.sid]
        await polling.send(eio_packet.Packet(eio_packet.MESSAGE, b"\x01\x02\x03\x04"))
        assert await session.get() == (200, "bAQIDBA==")


async def test_cors_follows_the_configured_origins(server):
    url = f"http://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=polling"
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers={"Origin": "https://ok.example"}) as response:
            assert response.status == 200
            assert response.headers["Access-Control-Allow-Origin"] == "https://ok.example"
            assert response.headers["Access-Control-Allow-Credentials"] == "true"
        async with http.get(url, headers={"Origin": "https://evil.example"}) as response:
            assert response.status == 400
            assert "Access-Control-Allow-Origin" not in response.headers
        preflight = {"Origin": "https://ok.example", "Access-Control-Request-Headers": "content-type"}
        async with http.options(url, headers=preflight) as response:
            assert response.status == 204
            assert response.headers["Access-Control-Allow-Headers"] == "content-type"
            assert "POST" in response.headers["Access-Control-Allow-Methods"]


async def test_upgrade_hands_the_session_to_the_websocket_in_order(server):
    sio = server.app[SIO_KEY]
    async with aiohttp.ClientSession() as http:
        session = Polling(http, server)
        await session.open()
        await session.connect()
        [sid] = sio.events.connections
        await sio.save_session(sid, {"kept": True})  # python-socketio's session lives on the socket
        pending = asyncio.ensure_future(session.get())
        async with http.ws_connect(session.ws_url) as ws:
            await ws.send_str("2probe")
            assert (await ws.receive(timeout=10)).data == "3probe"
            assert await asyncio.wait_for(pending, 10) == (200, "6")  # the polling side pauses
            # sent while the client pauses: waits for the poll that will not come, then moves
            await sio.emit("system", {"type": "system", "n": 1})
            await ws.send_str("5")
            # (the last argument is the message's recovery offset)
            assert (await ws.receive(timeout=10)).data.startswith('42["system",{"type":"system","n":1},')
            assert isinstance(sio.eio.sockets[session.sid], EngineSocket)
            assert sio.transport(sid) == "websocket"
            assert await sio.get_session(sid) == {"kept": True}
            await ws.send_str('421["join_room","lobby"]')
            assert (await ws.receive(timeout=10)).data == '431[{"ok":true,"room":"lobby"}]'
            assert (await session.get())[0] == 400  # polling is over for this session
            async with http.ws_connect(session.ws_url) as second:  # accepted, then closed
                assert (await second.receive(timeout=10)).type == aiohttp.WSMsgType.CLOSE
            await ws.send_str('422["ping"]')
            texts = [(await ws.receive(timeout=10)).data for _ in range(2)]
            assert texts[0].startswith('42["pong"') and texts[1].startswith("432[")
        await asyncio.sleep(0.1)
    assert sio.eio.sockets == {} and sio.events.connections == {}


async def test_a_failed_probe_leaves_the_polling_session_working(server):
    async with aiohttp.ClientSession() as http:
        session = Polling(http, server)
        await session.open()
        await session.connect()
        async with http.ws_connect(session.ws_url) as ws:
            await ws.send_str("4nonsense")
            assert (await ws.receive(timeout=10)).type == aiohttp.WSMsgType.CLOSE
        assert await session.post('421["ping"]') == (200, "ok")
        await session.until("431[")


async def test_unknown_namespace_gets_the_protocols_connect_error(server):
    async with aiohttp.ClientSession() as http:
        session = Polling(http, server)
        await session.open()
        assert await session.post("40/random,") == (200, "ok")
        assert await session.packets() == ['44/random,{"message":"Invalid namespace"}']


async def test_abandoned_polling_handshakes_are_all_closed_after_the_connect_timeout():
    server = await start(connect_timeout=0.5, ping_interval=25, ping_timeout=20)
    sio = server.app[SIO_KEY]
    loop = asyncio.get_running_loop()
    try:
        async with aiohttp.ClientSession() as http:
            abandoned = [Polling(http, server) for _ in range(100)]
            await asyncio.gather(*(s.open() for s in abandoned))
            connected = Polling(http, server)
            await connected.open()
            await connected.connect()
            sockets = [sio.eio.sockets[s.sid] for s in abandoned]
            # one that polls again after the timeout learns it was closed
            assert await asyncio.wait_for(abandoned[0].get(), 10) == (200, "1")
            deadline = loop.time() + 10
            while len(sio.eio.sockets) > 1 and loop.time() < deadline:
                await asyncio.sleep(0.1)
            assert list(sio.eio.sockets) == [connected.sid]  # the connected one stays
            assert all(sock.closed and sock.connect_timer is None for sock in sockets)
            assert (await abandoned[1].get())[0] == 400
            assert await connected.post('421["ping"]') == (200, "ok")
            await connected.until("431[")
    finally:
        await server.close()


async def test_the_connect_timer_is_cancelled_on_connect_and_on_close(server):
    sio = server.app[SIO_KEY]
    async with aiohttp.ClientSession() as http:
        session = Polling(http, server)
        await session.open()
        timer = sio.eio.sockets[session.sid].connect_timer
        await session.connect()
        assert timer.cancelled() and sio.eio.sockets[session.sid].connect_timer is None
        closing = Polling(http, server)
        await closing.open()
        timer = sio.eio.sockets[closing.sid].connect_timer
        assert await closing.post("1") == (200, "ok")
        assert timer.cancelled()


async def test_one_poll_carries_at_most_16_packets_and_a_server_close_reaches_the_next_poll(server):
    """python-engineio's client refuses a poll answer of more than 16 packets; what the server
    sends before it closes the session still reaches the client's next polls."""
    sio = server.app[SIO_KEY]
    async with aiohttp.ClientSession() as http:
        session = Polling(http, server)
        await session.open()
        polling = sio.eio.sockets[session.sid]
        for i in range(40):
            polling.push_text(f"4{i}")
        await polling.close(wait=True)  # server-initiated: python-socketio is told at once
        received: list[str] = []
        for expected in (16, 16, 9):
            status, text = await session.get()
            assert status == 200 and len(text.split("\x1e")) == expected
            received += text.split("\x1e")
        assert received == [f"4{i}" for i in range(40)] + ["1"]
        assert (await session.get())[0] == 400
    assert sio.eio.sockets == {}
