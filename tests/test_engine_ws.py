"""The gateway's own Engine.IO v4 WebSocket transport, at the packet level and with real clients."""

from __future__ import annotations

import asyncio
import json
import zlib

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from conftest import SECRET, make_token, uid
from realtime_gateway.appkeys import SIO_KEY
from realtime_gateway.config import Settings
from realtime_gateway.server import create_app
from realtime_gateway.transport.deflate import DeflateFrameWriter
from realtime_gateway.transport.engine_ws import EngineSocket
from realtime_gateway.transport.fanout import text_frame


@pytest.fixture
async def server():
    settings = Settings(jwt_secret=SECRET, ping_interval=0.3, ping_timeout=0.5, cors_origins=["https://ok.example"])
    settings.validate()
    test_server = TestServer(create_app(settings), host="127.0.0.1")
    await test_server.start_server()
    yield test_server
    await test_server.close()


def eio_url(server: TestServer, **query: str) -> str:
    params = {"EIO": "4", "transport": "websocket", **query}
    return f"http://127.0.0.1:{server.port}/socket.io/?" + "&".join(f"{k}={v}" for k, v in params.items())


async def next_text(ws: aiohttp.ClientWebSocketResponse, skip_pings: bool = True) -> str:
    """The next text frame, skipping server pings and presence broadcasts."""
    while True:
        msg = await ws.receive(timeout=10)
        if msg.type != aiohttp.WSMsgType.TEXT:
            return f"<{msg.type.name}>"
        if not (skip_pings and msg.data == "2") and not msg.data.startswith('42["user_status"'):
            return msg.data


async def test_handshake_events_acks_and_heartbeat(server):
    sio = server.app[SIO_KEY]
    async with aiohttp.ClientSession() as session, session.ws_connect(eio_url(server)) as ws:
        opened = json.loads((await next_text(ws))[1:])
        assert opened["upgrades"] == [] and opened["pingInterval"] == 300 and opened["pingTimeout"] == 500
        assert isinstance(sio.eio.sockets[opened["sid"]], EngineSocket)

        await ws.send_str("40" + json.dumps({"token": make_token(uid())}))
        assert (await next_text(ws)).startswith('40{"sid":')
        assert (await next_text(ws)).startswith('42["welcome"')
        await ws.send_str('421["join_room","lobby"]')
        assert await next_text(ws) == '431[{"ok":true,"room":"lobby"}]'

        # the server pings; a client that answers stays connected through several intervals
        for _ in range(4):
            assert await next_text(ws, skip_pings=False) == "2"
            await ws.send_str("3")
        await ws.send_str("2probe")  # clients may ping too
        assert await next_text(ws) == "3probe"


async def test_a_client_that_stops_answering_pings_is_closed(server):
    async with aiohttp.ClientSession() as session, session.ws_connect(eio_url(server)) as ws:
        await next_text(ws)
        await ws.send_str("40" + json.dumps({"token": make_token(uid())}))
        await next_text(ws)
        while (msg := await ws.receive(timeout=10)).type == aiohttp.WSMsgType.TEXT:
            pass  # read, never answer "2" with "3"
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 1001


async def test_bad_packets_and_close(server):
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(eio_url(server)) as ws:
            await next_text(ws)
            await ws.send_str("9nonsense")
            assert await next_text(ws) == "<CLOSE>"
            assert ws.close_code == 1003
        async with session.ws_connect(eio_url(server)) as ws:
            await next_text(ws)
            await ws.send_str("1")  # Engine.IO close from the client
            assert await next_text(ws) == "<CLOSE>"
        assert server.app[SIO_KEY].eio.sockets == {}


async def test_origin_is_checked_when_origins_are_configured(server):
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(eio_url(server), headers={"Origin": "https://evil.example"})
        assert info.value.status == 400
        async with session.ws_connect(eio_url(server), headers={"Origin": "https://ok.example"}) as ws:
            assert (await next_text(ws)).startswith("0{")


async def test_polling_then_upgrade(gateway, clients):
    """socket.io-client's default: start with long-polling, upgrade to WebSocket (both ours)."""
    room = uid("room")
    a = await clients.sio(gateway.url, make_token(uid()), transports=["polling", "websocket"])
    b = await clients.sio(gateway.url, make_token(uid()))
    for client in (a, b):
        await client.call("join_room", room)
    for i in range(50):
        await b.emit("room_message", {"room": room, "text": str(i)})
    texts = [(await a.inbox.next("room_message"))["content"]["text"] for _ in range(50)]
    assert texts == [str(i) for i in range(50)]
    assert a.sio.transport() == "websocket"


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
async def test_binary_payloads_end_the_session(gateway, clients, transports):
    """The gateway's events are JSON: a client's binary Socket.IO packet (BINARY_EVENT and its
    attachments) closes its session on every transport; the node carries on."""
    client = await clients.sio(gateway.url, make_token(uid()), transports=transports)
    await client.emit("room_message", {"room": "r", "text": "x", "blob": b"\x00\x01"})
    await asyncio.wait_for(client.disconnected.wait(), 10)
    other = await clients.sio(gateway.url, make_token(uid()), transports=transports)
    assert (await other.call("ping"))["ok"] is True


async def test_nothing_is_sent_on_an_upgrade_websocket_before_the_upgrade_completes(gateway, clients):
    """A polling session opening its upgrade WebSocket must see ``3probe`` first, even when a
    broadcast (here: another user's ``user_status``) happens between the open and the probe."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{gateway.url}/socket.io/?EIO=4&transport=polling") as response:
            sid = json.loads((await response.text())[1:])["sid"]
        query = f"EIO=4&transport=polling&sid={sid}"
        connect = "40" + json.dumps({"token": make_token(uid())})
        async with http.post(f"{gateway.url}/socket.io/?{query}", data=connect) as response:
            assert response.status == 200
        async with http.get(f"{gateway.url}/socket.io/?{query}") as response:
            assert "welcome" in await response.text()  # drained: nothing is queued for the session
        upgrade_url = f"{gateway.url}/socket.io/?EIO=4&transport=websocket&sid={sid}"
        async with http.ws_connect(upgrade_url) as ws:
            await clients.sio(gateway.url, make_token(uid()))  # broadcasts user_status online
            await ws.send_str("2probe")
            assert (await ws.receive(timeout=10)).data == "3probe"
            await ws.send_str("5")  # upgrade: from now on the WebSocket carries everything
            await clients.sio(gateway.url, make_token(uid()))
            assert (await ws.receive(timeout=10)).data.startswith('42["user_status"')


async def test_an_oversized_socketio_message_closes_with_1009(gateway_factory):
    server = gateway_factory(env={"MAX_MESSAGE_BYTES": "2048"})
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{server.url}/socket.io/?EIO=4&transport=websocket") as ws:
            assert json.loads((await next_text(ws))[1:])["maxPayload"] == 2048
            await ws.send_str("40" + json.dumps({"token": make_token(uid())}))
            assert (await next_text(ws)).startswith("40{")
            assert (await next_text(ws)).startswith('42["welcome"')
            await ws.send_str('42["ping","' + "x" * 2048 + '"]')
            assert await next_text(ws) == "<CLOSE>"
            assert ws.close_code == 1009
        async with session.get(f"{server.url}/healthz") as response:
            assert response.status == 200


async def test_a_session_that_never_connects_a_namespace_is_closed(gateway_factory):
    server = gateway_factory(env={"CONNECT_TIMEOUT": "0.5"})
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{server.url}/socket.io/?EIO=4&transport=websocket") as idle:
            assert (await next_text(idle)).startswith("0{")
            assert await next_text(idle) == "<CLOSE>"
            assert idle.close_code == 1008
        async with session.ws_connect(f"{server.url}/socket.io/?EIO=4&transport=websocket") as ws:
            await next_text(ws)
            await ws.send_str("40" + json.dumps({"token": make_token(uid())}))
            assert (await next_text(ws)).startswith("40{")
            await ws.send_str('421["ping"]')
            while (reply := await next_text(ws)).startswith('42["'):  # pong, welcome
                pass
            assert reply.startswith("431[")
            await asyncio.sleep(1)  # past the timeout: a connected session stays open
            await ws.send_str('422["ping"]')
            while (reply := await next_text(ws)).startswith('42["'):
                pass
            assert reply.startswith("432[")


async def test_permessage_deflate_when_configured():
    settings = Settings(jwt_secret=SECRET, ws_compression=True)
    settings.validate()
    test_server = TestServer(create_app(settings), host="127.0.0.1")
    await test_server.start_server()
    room = uid("room")
    try:
        async with aiohttp.ClientSession() as session, session.ws_connect(eio_url(test_server), compress=15) as ws:
            assert ws.compress == 15  # negotiated; aiohttp inflates what the server deflated
            sid = json.loads((await next_text(ws))[1:])["sid"]
            assert isinstance(test_server.app[SIO_KEY].eio.sockets[sid].frame_writer, DeflateFrameWriter)
            await ws.send_str("40" + json.dumps({"token": make_token(uid())}))
            assert (await next_text(ws)).startswith("40{")
            assert (await next_text(ws)).startswith('42["welcome"')
            await ws.send_str(f'421["join_room","{room}"]')
            assert await next_text(ws) == f'431[{{"ok":true,"room":"{room}"}}]'
            for i in range(20):  # one compression context across frames (context takeover)
                await ws.send_str(f'42["room_message",{{"room":"{room}","text":"{i}"}}]')
            texts = [json.loads((await next_text(ws))[2:])[1]["content"]["text"] for _ in range(20)]
            assert texts == [str(i) for i in range(20)]
    finally:
        await test_server.close()


async def test_deflated_frames_carry_rsv1_and_inflate_to_the_payload():  # a writer belongs to a loop
    writer = DeflateFrameWriter(None, None, 1 << 20, wbits=15, takeover=True)
    inflate = zlib.decompressobj(wbits=-15)
    for payload in (b"hello hello hello", b"x" * 70_000, b""):
        frame = writer._deflate(text_frame(payload), 0x1)
        assert frame[0] == 0x80 | 0x40 | 0x1
        length = frame[1] & 0x7F
        body = frame[2 if length < 126 else 4 if length == 126 else 10 :]
        assert inflate.decompress(body + b"\x00\x00\xff\xff") == payload
