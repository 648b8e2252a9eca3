"""The request/response path without python-socketio's packet objects: inbound EVENT packets
decoded in one step, replies and acks pushed straight to the connection, counters folded into
Prometheus at scrape time. Each answer must be what python-socketio itself would have sent."""

from __future__ import annotations

import json

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from conftest import SECRET, make_token, uid
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from realtime_gateway.config import Settings
from realtime_gateway.metrics import LoopCounter, LoopHistogram
from realtime_gateway.server import create_app
from socketio import packet as sio_packet


@pytest.fixture
async def server():
    settings = Settings(jwt_secret=SECRET)
    settings.validate()
    test_server = TestServer(create_app(settings), host="127.0.0.1")
    await test_server.start_server()
    yield test_server
    await test_server.close()


async def next_text(ws: aiohttp.ClientWebSocketResponse) -> str:
    """The next text frame other than a heartbeat or a presence broadcast (or the close)."""
    while True:
        msg = await ws.receive(timeout=10)
        if msg.type != aiohttp.WSMsgType.TEXT:
            return f"<{msg.type.name}>"
        if msg.data != "2" and not msg.data.startswith('42["user_status"'):
            return msg.data


async def connected(session: aiohttp.ClientSession, server: TestServer) -> aiohttp.ClientWebSocketResponse:
    ws = await session.ws_connect(f"http://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket")
    await next_text(ws)  # open
    await ws.send_str("40" + json.dumps({"token": make_token(uid())}))
    assert (await next_text(ws)).startswith("40")
    assert (await next_text(ws)).startswith('42["welcome"')
    return ws


def python_socketio_ack(ack_id: int, result: dict) -> str:
    return "4" + sio_packet.Packet(sio_packet.ACK, namespace="/", id=ack_id, data=[result]).encode()


async def test_events_acks_and_replies_are_python_socketio_packets(server):
    async with aiohttp.ClientSession() as session:
        ws = await connected(session, server)
        await ws.send_str('421["join_room","lobby"]')
        assert await next_text(ws) == python_socketio_ack(1, {"ok": True, "room": "lobby"})
        # an id too long for the one-step decoder takes python-socketio's, with the same answer
        long_id = 12345678901234567890
        await ws.send_str(f'42{long_id}["join_room","lobby"]')
        assert await next_text(ws) == python_socketio_ack(long_id, {"ok": True, "room": "lobby"})

        await ws.send_str('42["ping"]')
        pong = await next_text(ws)
        assert pong.startswith('42["pong",')
        event, envelope = sio_packet.Packet(encoded_packet=pong[1:]).data
        assert event == envelope["type"] == "pong" and set(envelope) == {"type", "content", "timestamp", "id"}

        await ws.send_str("42[]")  # no event name: ignored, as before
        await ws.send_str('427["presence",{"users":"x"}]')
        answer = json.loads((await next_text(ws))[3:])[0]
        assert answer["ok"] is False and answer["error"]["code"] == 400

        await ws.send_str('42{"not":"a list"}')  # not a Socket.IO event at all: the session ends
        assert await next_text(ws) == "<CLOSE>"
        await ws.close()


async def test_replies_reach_a_long_polling_client(server, clients):
    """No writer to push to: pong and acks take Engine.IO's queue, in order."""
    client = await clients.sio(f"http://127.0.0.1:{server.port}", make_token(uid()), transports=["polling"])
    assert (await client.call("join_room", "lobby")) == {"ok": True, "room": "lobby"}
    await client.emit("ping")
    await client.inbox.next("pong")
    assert (await client.call("ping"))["ok"] is True
    await client.inbox.next("pong")


def exposition(registry: CollectorRegistry) -> list[str]:
    text = generate_latest(registry).decode()
    return sorted(line for line in text.splitlines() if line and "_created" not in line)


def test_loop_metrics_expose_what_prometheus_client_does():
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    buckets = (0.001, 0.01, 0.1)
    counters = (
        LoopCounter("t_sent", "Sent", ["type"], registry=ours),
        Counter("t_sent", "Sent", ["type"], registry=theirs),
    )
    plain = (LoopCounter("t_failed", "Failed", [], registry=ours), Counter("t_failed", "Failed", registry=theirs))
    histograms = (
        LoopHistogram("t_seconds", "Time", ["type"], buckets=buckets, registry=ours),
        Histogram("t_seconds", "Time", ["type"], buckets=buckets, registry=theirs),
    )
    for counter in counters:
        counter.labels("ping").inc()
        counter.labels("ping").inc(2)
        counter.labels(404).inc()
        counter.labels("404").inc()
    for counter in plain:
        counter.inc(3)
    for histogram in histograms:
        for value in (0.0005, 0.001, 0.002, 0.5, 7.0):
            histogram.labels("ping").observe(value)
    assert exposition(ours) == exposition(theirs)
    with pytest.raises(ValueError):
        counters[0].labels("a", "b")
