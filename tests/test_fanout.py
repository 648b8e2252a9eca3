"""The broadcast fast path produces exactly the bytes of python-socketio's ordinary path,
keeps per-connection order, and disconnects clients that stop reading."""

from __future__ import annotations

import asyncio
import contextlib
import json

import aiohttp
import pytest
import socketio
from aiohttp.test_utils import TestServer
from conftest import SECRET, eventually, make_token, node_clients, uid
from realtime_gateway.appkeys import SIO_KEY
from realtime_gateway.config import Settings
from realtime_gateway.envelope import event_as_envelope_text, make_envelope
from realtime_gateway.server import create_app
from realtime_gateway.transport.fanout import CLOSE_TIMEOUT, SLOW_CLIENT_GRACE, text_frame


class RawSocketIO:
    """A Socket.IO client at the Engine.IO frame level, to see the exact text the server sent."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    @classmethod
    async def connect(cls, session: aiohttp.ClientSession, base: str, token: str) -> RawSocketIO:
        ws = await session.ws_connect(f"{base}/socket.io/?EIO=4&transport=websocket")
        client = cls(ws)
        assert (await client.text()).startswith("0{")  # Engine.IO open
        await ws.send_str("40" + json.dumps({"token": token}))
        assert (await client.text()).startswith("40{")  # Socket.IO connect
        assert (await client.text()).startswith('42["welcome"')
        return client

    async def text(self, prefix: str = "") -> str:
        """The next text frame starting with ``prefix`` (skipping pings and other events)."""
        while True:
            msg = await self.ws.receive(timeout=10)
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            if msg.data != "2" and msg.data.startswith(prefix):
                return msg.data


async def next_plain(ws: aiohttp.ClientWebSocketResponse, type_: str) -> str:
    while True:
        msg = await ws.receive(timeout=10)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        if json.loads(msg.data)["type"] == type_:
            return msg.data


@pytest.fixture(params=[120.0, 0.0], ids=["recovery-on", "recovery-off"])
async def server(request):
    settings = Settings(jwt_secret=SECRET, rate_limit=10_000, rate_burst=10_000, recovery_window=request.param)
    settings.validate()
    test_server = TestServer(create_app(settings), host="127.0.0.1")
    await test_server.start_server()
    yield test_server
    await test_server.close()


@pytest.mark.parametrize(
    "content",
    [
        {"text": "plain ascii"},
        {"text": "ünïcødé 中文 ✓", "nested": {"list": [1, 2.5, None, True], "big": 2**70}},
        "x" * 70_000,  # a frame with a 64-bit length
    ],
    ids=["ascii", "unicode-and-bigint", "large"],
)
async def test_fast_path_bytes_equal_slow_path(server, content):
    sio = server.app[SIO_KEY]
    room = uid("room")
    base = f"http://127.0.0.1:{server.port}"
    async with aiohttp.ClientSession() as session:
        sio_client = await RawSocketIO.connect(session, base, make_token(uid()))
        plain = await session.ws_connect(f"ws://127.0.0.1:{server.port}/ws?token={make_token(uid())}")
        await next_plain(plain, "welcome")
        for sid in list(sio.events.connections):
            await sio.enter_room(sid, room)

        envelope = make_envelope("data_update", content, room=room)
        await sio.manager.emit("data_update", envelope, namespace="/", room=room)  # fast path
        # with recovery on, the fast path adds the offset as the last argument: the slow path is
        # given the same arguments
        journal = sio.manager.journal
        tail = (f"{journal.epoch}-{journal.last_seq:012x}",) if journal.tag_frames else ()
        slow_args = (envelope, *tail)
        await socketio.AsyncManager.emit(sio.manager, "data_update", slow_args, namespace="/", room=room)  # slow

        fast_sio, slow_sio = await sio_client.text('42["data_update"'), await sio_client.text('42["data_update"')
        fast_plain = await next_plain(plain, "data_update")
        slow_plain = await next_plain(plain, "data_update")
        assert fast_sio == slow_sio
        assert fast_plain == slow_plain
        assert json.loads(fast_plain) == {**envelope, **({"offset": tail[0]} if tail else {})}
        assert json.loads(fast_sio[2:]) == ["data_update", envelope, *tail]
        await plain.close()
        await sio_client.ws.close()


def test_text_frame_headers():
    assert text_frame(b"hi") == b"\x81\x02hi"
    assert text_frame(b"x" * 126)[:4] == b"\x81\x7e\x00\x7e"
    assert text_frame(b"x" * 65536)[:10] == b"\x81\x7f" + (65536).to_bytes(8, "big")
    assert text_frame(b"\x00", opcode=0x2) == b"\x82\x01\x00"


def test_non_envelope_events_are_wrapped_for_plain_clients():
    frame = json.loads(event_as_envelope_text("custom", ["plain string"]))
    assert frame["type"] == "custom" and frame["content"] == "plain string" and frame["id"]
    envelope = {"type": "custom", "content": 1, "timestamp": 1, "id": "x"}
    assert json.loads(event_as_envelope_text("custom", [envelope])) == envelope


async def test_order_is_kept_between_acks_and_broadcasts(gateway, clients):
    """A client that joins then immediately receives broadcasts sees its ack and the messages
    in the order the server produced them."""
    room = uid("room")
    sender = await clients.sio(gateway.url, make_token(uid()))
    await sender.call("join_room", room)
    receivers = [await clients.sio(gateway.url, make_token(uid())) for _ in range(5)]
    receivers += [await clients.ws(gateway.ws_url, make_token(uid())) for _ in range(5)]
    for receiver in receivers:
        if hasattr(receiver, "sio"):
            await receiver.call("join_room", room)
        else:
            await receiver.send({"type": "join_room", "content": room, "id": 1})
            await receiver.inbox.next("ack")
    for i in range(300):
        await sender.emit("room_message", {"room": room, "text": str(i)})
    for receiver in receivers:
        texts = [(await receiver.inbox.next("room_message"))["content"]["text"] for _ in range(300)]
        assert texts == [str(i) for i in range(300)]
        assert await receiver.inbox.quiet("room_message", 0.05) == []


@pytest.mark.parametrize("transport", ["socket.io", "plain"])
async def test_a_client_that_stops_reading_is_disconnected_others_unaffected(gateway_factory, clients, transport):
    server = gateway_factory(env={"MAX_SEND_BUFFER": "1048576", "RATE_LIMIT": "10000", "RATE_BURST": "10000"})
    room = uid("room")
    # plain aiohttp clients read as fast as the server writes: they stay under the bound
    sender = await clients.ws(server.ws_url, make_token(uid()))
    healthy = await clients.ws(server.ws_url, make_token(uid()))
    for client in (sender, healthy):
        await client.send({"type": "join_room", "content": room, "id": 1})
        await client.inbox.next("ack")

    async with aiohttp.ClientSession() as session:
        token = make_token(uid())
        if transport == "plain":
            stuck = await session.ws_connect(f"{server.ws_url}?token={token}", max_msg_size=0)
            await stuck.send_str(json.dumps({"type": "join_room", "content": room, "id": 1}))
            await next_plain(stuck, "ack")
        else:
            raw = await RawSocketIO.connect(session, server.url, token)
            stuck = raw.ws
            await stuck.send_str("421" + json.dumps(["join_room", room]))
            assert (await raw.text("431")).startswith("431")  # the join's ack
        # the stuck client never reads again: the kernel buffers fill, then the server's bound trips
        count, blob = 200, "y" * 100_000
        for _ in range(count):  # paced by the sender's own echo, as a well-behaved client would be
            await sender.send({"type": "room_message", "content": {"room": room, "text": blob}})
            assert len((await sender.inbox.next("room_message", timeout=30))["content"]["text"]) == len(blob)
        for _ in range(count):
            assert len((await healthy.inbox.next("room_message", timeout=30))["content"]["text"]) == len(blob)
        # without reading a byte, the stuck client is dropped by the node: it leaves the room
        # and the node's count (the slow-client grace, then the close deadline)

        async def only_the_readers_left() -> bool:
            return await node_clients(server.url) == 2

        await eventually(only_the_readers_left, timeout=SLOW_CLIENT_GRACE + CLOSE_TIMEOUT + 10)
        # and its connection was reset: reading now ends in an error or a close, not in the messages
        received = 0
        with contextlib.suppress(aiohttp.ClientError, ConnectionError):
            while (await stuck.receive(timeout=30)).type == aiohttp.WSMsgType.TEXT:
                received += 1
        assert received < count
    assert "disconnecting slow client" in server.log()
    await healthy.send({"type": "ping"})
    await healthy.inbox.next("pong")


async def test_broadcasts_wait_for_the_connect_answer(server):
    """A broadcast made while a client's connect handler is still running must not reach that
    client before its CONNECT answer (python-socketio's own manager would send it)."""
    sio = server.app[SIO_KEY]
    original = sio.handlers["/"]["connect"]
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow_connect(*args):
        entered.set()
        await release.wait()
        return await original(*args)

    sio.handlers["/"]["connect"] = slow_connect
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"http://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket")
        client = RawSocketIO(ws)
        assert (await client.text()).startswith("0{")
        await ws.send_str("40" + json.dumps({"token": make_token(uid())}))
        await asyncio.wait_for(entered.wait(), 10)
        await sio.emit("system", make_envelope("system", {"message": "early"}))
        release.set()
        assert (await client.text()).startswith("40{")
        await ws.close()
