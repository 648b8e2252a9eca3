"""Real clients on the gateway's own long-polling transport and its upgrade to WebSocket:
python-socketio clients against a gateway process, and a packet-level client that upgrades in
the middle of a broadcast stream."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
import socketio
from conftest import SioClient, make_token, uid
from realtime_gateway.appkeys import SIO_KEY
from realtime_gateway.transport.engine_polling import PollingSocket
from realtime_gateway.transport.engine_ws import EngineSocket
from test_engine_polling import Polling, start

COUNT = 200


@pytest.mark.parametrize("transports", [["polling"], ["polling", "websocket"]], ids=["polling", "upgrade"])
async def test_rooms_acks_and_ordered_fanout(gateway, clients, transports):
    room = uid("room")
    receiver = await clients.sio(gateway.url, make_token(uid()), transports=transports)
    sender = await clients.sio(gateway.url, make_token(uid()))  # WebSocket
    for client in (receiver, sender):
        assert (await client.call("join_room", room)) == {"ok": True, "room": room}
    for i in range(COUNT):
        await sender.emit("room_message", {"room": room, "text": str(i)})
        if i % 20 == 0:  # acks interleaved with the stream, on the receiver's own transport
            assert (await receiver.call("ping"))["ok"] is True
    texts = [(await receiver.inbox.next("room_message"))["content"]["text"] for _ in range(COUNT)]
    assert texts == [str(i) for i in range(COUNT)]
    # and the other way: the receiver's messages reach the WebSocket client in order
    for i in range(50):
        await receiver.emit("room_message", {"room": room, "text": f"r{i}"})
    back = [(await sender.inbox.next("room_message"))["content"]["text"] for _ in range(COUNT + 50)]
    assert back[COUNT:] == [f"r{i}" for i in range(50)]
    assert receiver.sio.transport() == transports[-1]
    assert (await receiver.call("leave_room", room))["ok"] is True


async def test_a_polling_client_that_disconnects_is_gone_for_everyone(gateway, clients):
    watcher = await clients.sio(gateway.url, make_token(uid()))
    user = uid()
    assert (await watcher.call("watch_presence", [user]))["ok"] is True
    client = await clients.sio(gateway.url, make_token(user), transports=["polling"])
    assert await status_of(watcher, user) == "online"
    await client.sio.disconnect()
    assert await status_of(watcher, user) == "offline"


async def status_of(watcher: SioClient, user: str) -> str:
    while (envelope := await watcher.inbox.next("user_status"))["content"]["user_id"] != user:
        pass
    return envelope["content"]["status"]


async def test_a_refused_polling_client_gets_connect_error(gateway):
    client = socketio.AsyncClient(reconnection=False)
    errors: list[dict] = []
    client.on("connect_error", lambda data: errors.append(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(gateway.url, auth={"token": "not-a-jwt"}, transports=["polling"], wait_timeout=5)
    assert errors and errors[0]["code"] == 401


async def test_broadcast_order_holds_across_the_upgrade():
    """A receiver takes part of a broadcast stream by polling, upgrades in the middle of it and
    takes the rest on the WebSocket: every message once, in order, whether it was polled,
    buffered before the probe, sent during the probe or after the upgrade."""
    server = await start(ping_interval=25, ping_timeout=20, rate_limit=10_000, rate_burst=10_000)
    sio = server.app[SIO_KEY]
    room = uid("room")
    sender = socketio.AsyncClient(reconnection=False)
    texts: list[str] = []

    def take(packets: list[str]) -> None:
        for packet in packets:
            if packet.startswith('42["room_message"'):
                texts.append(json.loads(packet[2:])[1]["content"]["text"])

    async def stream(numbers: range) -> None:
        for i in numbers:
            await sender.emit("room_message", {"room": room, "text": str(i)})
        await sender.call("ping", timeout=10)  # the server has fanned out all of them

    try:
        async with aiohttp.ClientSession() as http:
            receiver = Polling(http, server)
            await receiver.open()
            await receiver.connect()
            assert await receiver.post("421" + json.dumps(["join_room", room])) == (200, "ok")
            await receiver.until("431[")
            await sender.connect(f"http://127.0.0.1:{server.port}", auth={"token": make_token(uid())})
            await sender.call("join_room", room, timeout=10)

            await stream(range(150))
            while len(texts) < 30:
                take(await receiver.packets())
            assert isinstance(sio.eio.sockets[receiver.sid], PollingSocket)
            async with http.ws_connect(receiver.ws_url) as ws:
                await ws.send_str("2probe")
                assert (await ws.receive(timeout=10)).data == "3probe"
                status, last_poll = await asyncio.wait_for(receiver.get(), 10)  # answered at once
                assert status == 200
                take(last_poll.split("\x1e"))
                await stream(range(150, 200))  # buffered for a poll that will not come
                await ws.send_str("5")
                await stream(range(200, 300))
                while len(texts) < 300:
                    msg = await ws.receive(timeout=10)
                    assert msg.type == aiohttp.WSMsgType.TEXT and msg.data != "6"  # no noop here
                    take([msg.data])
                assert isinstance(sio.eio.sockets[receiver.sid], EngineSocket)
        assert texts == [str(i) for i in range(300)]
    finally:
        await sender.disconnect()
        await server.close()
