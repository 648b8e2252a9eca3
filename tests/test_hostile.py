"""Hostile and broken clients against a real gateway process: clients that stop reading, send
half a frame, flood, send binary attachments, CONNECT twice, join sid rooms, come from an
unlisted origin or outlive their token (the connection limits: tests/test_limits.py). Each test asserts what
the node looks like afterwards (connection count, presence, memory, health).

The misbehaving clients are raw sockets (:mod:`rawws`): they do exactly what the test says and
nothing more, which no polite client library allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from conftest import SECRET, eventually, make_token, node_clients, uid
from rawws import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_TEXT,
    TCP_ESTABLISHED,
    Closed,
    RawWebSocket,
    join,
    plain_session,
    socketio_session,
)
from realtime_gateway.config import Settings
from realtime_gateway.server import create_app
from realtime_gateway.transport.engine_ws import EngineSocket
from realtime_gateway.transport.fanout import CLOSE_TIMEOUT, SLOW_CLIENT_GRACE, FrameWriter, text_frame

TRANSPORTS = ["plain", "socket.io"]
FAST_HEARTBEAT = {"PING_INTERVAL": "0.5", "PING_TIMEOUT": "1.5", "WS_HEARTBEAT_TIMEOUT": "2"}
SILENCE = 2.0  # what FAST_HEARTBEAT allows on both transports
UNLIMITED_RATE = {"RATE_LIMIT": "100000", "RATE_BURST": "100000"}


async def session(transport: str, port: int, token: str, **kwargs: Any) -> RawWebSocket:
    opener = socketio_session if transport == "socket.io" else plain_session
    return await opener(port, token, **kwargs)


async def presence_of(observer: Any, user: str) -> str:
    """What the gateway answers to a ``presence`` query for one user."""
    await observer.send({"type": "presence", "content": [user], "id": uid("q")})
    return (await observer.inbox.next("ack"))["content"]["users"][user]


async def online_users(base_url: str) -> set[str]:
    url = f"{base_url}/ws/online-users?token={make_token(uid())}"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return {user["user_id"] for user in (await response.json())["users"]}


async def flood(sender: Any, room: str, count: int, size: int) -> None:
    """``count`` room messages of ``size`` bytes, paced by the sender's own copy."""
    blob = "y" * size
    for _ in range(count):
        await sender.send({"type": "room_message", "content": {"room": room, "text": blob}})
        await sender.inbox.next("room_message", timeout=30)


# -- defect 1: clients that stop reading ------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("trigger", ["overflow", "heartbeat"])
async def test_a_client_that_stops_reading_is_cut_off_within_seconds(gateway_factory, clients, transport, trigger):
    """A raw socket that completes the upgrade, joins a room, then never reads again (its
    receive window fills): whether the send-buffer bound or the heartbeat trips, the node drops
    it from its rooms, presence and count, and resets the TCP connection, within grace + 10 s,
    without the client reading a byte."""
    if trigger == "overflow":
        env, budget = {"MAX_SEND_BUFFER": "65536"}, SLOW_CLIENT_GRACE + 10
    else:  # a send bound the flood never reaches: only the heartbeat can end it
        env, budget = {"MAX_SEND_BUFFER": str(256 << 20), **FAST_HEARTBEAT}, SILENCE + 10
    server = gateway_factory(env={**env, **UNLIMITED_RATE})
    room, stuck_user = uid("room"), uid("stuck")
    sender = await clients.ws(server.ws_url, make_token(uid()))
    await sender.send({"type": "join_room", "content": room, "id": 1})
    await sender.inbox.next("ack")
    stuck = await session(transport, server.port, make_token(stuck_user), rcvbuf=4096)
    await join(stuck, room, transport == "socket.io")
    assert await presence_of(sender, stuck_user) == "online"

    await flood(sender, room, count=60, size=100_000)  # ~6 MB, far beyond the kernel buffers
    flooded = time.monotonic()
    while stuck.tcp_state() == TCP_ESTABLISHED:
        assert time.monotonic() - flooded < budget, "the stuck client's connection is still established"
        await asyncio.sleep(0.2)
    elapsed = time.monotonic() - flooded
    print(f"{transport}/{trigger}: TCP connection of the stuck reader gone {elapsed:.1f} s after the flood")
    assert await node_clients(server.url) == 1
    assert await presence_of(sender, stuck_user) == "offline"
    assert stuck_user not in await online_users(server.url)
    if trigger == "overflow":
        assert "disconnecting slow client" in server.log()
    await sender.send({"type": "ping"})
    await sender.inbox.next("pong")
    stuck.close()


# -- defect 2: nothing after the close frame ----------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_no_frame_follows_the_close_frame(gateway_factory, clients, transport):
    """A member of a busy room falls behind (it does not read for a while, so frames queue up
    for it) and never answers a heartbeat, so the server closes it while the room keeps
    talking. Read afterwards, the raw byte stream ends with the close frame: no room_message
    behind it (RFC 6455 5.5.1)."""
    server = gateway_factory(env={**FAST_HEARTBEAT, **UNLIMITED_RATE, "MAX_SEND_BUFFER": str(256 << 20)})
    room = uid("room")
    sender = await clients.ws(server.ws_url, make_token(uid()))
    await sender.send({"type": "join_room", "content": room, "id": 1})
    await sender.inbox.next("ack")
    member = await session(transport, server.port, make_token(uid()), rcvbuf=4096)
    await join(member, room, transport == "socket.io")

    stop = asyncio.Event()

    async def chatter() -> None:
        while not stop.is_set():
            await flood(sender, room, count=1, size=500)

    async def member_gone() -> bool:
        return await node_clients(server.url) == 1

    talking = asyncio.create_task(chatter())
    try:
        # not reading while the heartbeat times out; then read what the server wrote
        with contextlib.suppress(AssertionError):
            await eventually(member_gone, timeout=SILENCE + 1.5)
        code, before = await member.close_frame(timeout=SILENCE + 10)
        assert code == 1001  # heartbeat timeout
        assert any(b"room_message" in payload for _, payload in before)
        after: list[tuple[int, bytes]] = []
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            try:
                after.append(await member.frame(timeout=deadline - time.monotonic()))
            except (Closed, asyncio.TimeoutError):
                break
        assert after == [], f"{len(after)} frame(s) after the close frame"
    finally:
        stop.set()
        await talking
        member.close()


# -- half-written frames, floods ----------------------------------------------------------------


async def test_a_half_written_frame_does_not_hold_the_connection(gateway_factory):
    """A client that sends the header and a few bytes of a frame, then nothing, while still
    reading: the heartbeat closes it and the node forgets it within the silence limit plus the
    close deadline."""
    server = gateway_factory(env=FAST_HEARTBEAT)
    ws = await plain_session(server.port, make_token(uid()))
    await ws.send_raw(bytes((0x81, 0x80 | 126)) + (1000).to_bytes(2, "big") + b"mask" + b"0123456789")
    started = time.monotonic()
    code, _ = await ws.close_frame(timeout=SILENCE + 5)
    assert code == 1001
    with pytest.raises((Closed, asyncio.TimeoutError)):
        while True:
            await ws.frame(timeout=CLOSE_TIMEOUT + 2)
    assert time.monotonic() - started < SILENCE + CLOSE_TIMEOUT + 2
    assert await node_clients(server.url) == 0
    ws.close()


FLOODS = {
    "plain-garbage": ("plain", OP_TEXT, b"not json"),
    "plain-binary": ("plain", OP_BINARY, b"\x00\x01"),
    "plain-ws-ping": ("plain", OP_PING, b"p"),
    "socket.io-engine-ping": ("socket.io", OP_TEXT, b"2probe"),
    "socket.io-ws-ping": ("socket.io", OP_PING, b"p"),
}


@pytest.mark.parametrize("kind", FLOODS)
async def test_frames_that_carry_no_event_count_against_the_rate_limit(gateway_factory, kind):
    """Unparsable, binary and ping frames each cost a token too (each is answered, so each
    free one would be an amplifier): a flood of them ends in close 1008."""
    transport, opcode, payload = FLOODS[kind]
    server = gateway_factory(env={"RATE_LIMIT": "5", "RATE_BURST": "20"})
    ws = await session(transport, server.port, make_token(uid()))
    sent = 0
    try:
        for _ in range(300):
            await ws.send(payload, opcode)
            sent += 1
    except ConnectionError:
        pass  # reset after the close deadline: the close frame was sent before that
    code, _ = await ws.close_frame(timeout=10)
    assert code == 1008, f"closed with {code} after {sent} frames"
    ws.close()


async def test_polling_packets_count_against_the_rate_limit(gateway_factory):
    """One POST carrying 300 Engine.IO pings: past the burst the session ends (400), the node
    does not answer 300 pongs."""
    server = gateway_factory(env={"RATE_LIMIT": "5", "RATE_BURST": "20"})
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/socket.io/?EIO=4&transport=polling") as response:
            sid = json.loads((await response.text())[1:])["sid"]
        url = f"{server.url}/socket.io/?EIO=4&transport=polling&sid={sid}"
        async with http.post(url, data="\x1e".join(["2probe"] * 300)) as response:
            assert response.status == 400
            assert "rate limit" in (await response.json())["error"]["message"]


# -- defect 3: binary attachments ---------------------------------------------------------------


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))


async def test_binary_attachments_cannot_grow_the_node(gateway_factory, clients):
    """A BINARY_EVENT header announcing billions of attachments, then 200 x 500 KiB binary
    frames: the session is closed (1003) at the header and RSS grows by < 30 MB."""
    server = gateway_factory(env=UNLIMITED_RATE)
    assert server.proc is not None
    ws = await socketio_session(server.port, make_token(uid()))
    before = rss_kib(server.proc.pid)
    await ws.send("459999999999-" + json.dumps(["room_message", {"_placeholder": True, "num": 0}]))
    blob = b"\x00" * (500 << 10)
    sent = 0
    try:
        for _ in range(200):
            await ws.send(blob)
            sent += 1
    except ConnectionError:
        pass  # refused: the server reset the connection
    code, _ = await ws.close_frame()
    await asyncio.sleep(1)
    growth = (rss_kib(server.proc.pid) - before) / 1024
    print(f"binary attachments: {sent} frames sent, RSS growth {growth:.1f} MB")
    assert code == 1003
    assert growth < 30
    other = await clients.sio(server.url, make_token(uid()))
    assert (await other.call("ping"))["ok"] is True
    ws.close()


async def test_a_binary_frame_before_connect_closes_1003_without_a_traceback(gateway_factory):
    server = gateway_factory()
    ws = await socketio_session(server.port, None)
    await ws.send(b"\x00\x01\x02")
    code, _ = await ws.close_frame()
    assert code == 1003
    await asyncio.sleep(0.5)
    assert "Traceback" not in server.log() and "Error handling request" not in server.log()
    ws.close()


# -- defect 4: a second CONNECT ----------------------------------------------------------------


async def test_a_second_connect_leaves_presence_exact(gateway_factory, clients):
    """``40`` twice on one session: one welcome, and once the socket closes the user is
    offline everywhere (presence query, /ws/online-users)."""
    server = gateway_factory()
    user = uid("twice")
    observer = await clients.ws(server.ws_url, make_token(uid()))
    ws = await socketio_session(server.port, make_token(user))
    await ws.send("40" + json.dumps({"token": make_token(user)}))
    assert (await ws.text("44")).startswith("44")  # python-socketio: CONNECT_ERROR
    await ws.send('421["ping"]')
    await ws.text("431")
    frames: list[str] = []
    with pytest.raises(asyncio.TimeoutError):
        while True:
            frames.append(await ws.text(timeout=0.5))
    assert not [f for f in frames if f.startswith('42["welcome"')]
    assert await presence_of(observer, user) == "online"
    await ws.send(b"\x03\xe8", OP_CLOSE)
    ws.close()

    async def offline() -> bool:
        return await presence_of(observer, user) == "offline" and user not in await online_users(server.url)

    await eventually(offline)


# -- defect 5: sessions that never connect (in-process: the test looks at live objects) ---------


@pytest.fixture
async def quick_connect_timeout():
    settings = Settings(jwt_secret=SECRET, connect_timeout=30)
    settings.validate()
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


async def test_closed_sessions_are_not_kept_alive_by_their_connect_timer(quick_connect_timeout):
    """The connect deadline is cancelled once a session connects or closes: 20 sessions that
    came and went leave no EngineSocket behind (the timer held each for --connect-timeout)."""
    port = quick_connect_timeout.port
    for _ in range(10):
        ws = await socketio_session(port, make_token(uid()))
        ws.close()
        ws = await socketio_session(port, None)  # never connects
        ws.close()

    async def all_gone() -> bool:
        gc.collect()
        return not [o for o in gc.get_objects() if isinstance(o, EngineSocket)]

    await eventually(all_gone, timeout=CLOSE_TIMEOUT + 5)


# -- defect 6: token expiry closes the transport --------------------------------------------------


async def test_token_expiry_closes_the_websocket(gateway_factory):
    server = gateway_factory()
    ws = await socketio_session(server.port, make_token(uid(), ttl=2))
    code, before = await ws.close_frame(timeout=10)
    texts = [payload.decode() for opcode, payload in before if opcode == OP_TEXT]
    assert any('"token expired"' in text for text in texts) and "41" in texts
    assert code == 1008
    ws.close()


async def test_a_back_end_disconnect_closes_the_websocket(gateway_factory):
    """``POST /api/disconnect`` ends the transport too, not only the namespace: a client that
    ignores the ``41`` is not left with an open session."""
    server = gateway_factory(env={"API_KEY": "k" * 32})
    user = uid()
    ws = await socketio_session(server.port, make_token(user))
    headers = {"Authorization": "Bearer " + "k" * 32}
    disconnect = f"{server.url}/api/disconnect"
    async with aiohttp.ClientSession() as http, http.post(disconnect, json={"user": user}, headers=headers) as answer:
        assert answer.status == 202
    code, before = await ws.close_frame(timeout=10)
    assert "41" in [payload.decode() for opcode, payload in before if opcode == OP_TEXT]
    assert code == 1008
    ws.close()


async def test_a_back_end_disconnect_ends_a_polling_session_that_ignores_it(gateway_factory):
    """Long-polling: the poll answer carries the ``41`` alone (a close packet beside it would make
    socket.io-client report "transport close" and reconnect); a client that does not hang up
    gets the close packet a little later."""
    server = gateway_factory(env={"API_KEY": "k" * 32})
    user = uid()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/socket.io/?EIO=4&transport=polling") as response:
            sid = json.loads((await response.text())[1:])["sid"]
        url = f"{server.url}/socket.io/?EIO=4&transport=polling&sid={sid}"
        async with http.post(url, data="40" + json.dumps({"token": make_token(user)})) as response:
            assert response.status == 200
        async with http.get(url) as response:
            assert "welcome" in await response.text()
        headers = {"Authorization": "Bearer " + "k" * 32}
        async with http.post(f"{server.url}/api/disconnect", json={"user": user}, headers=headers) as response:
            assert response.status == 202
        async with http.get(url) as response:
            assert (await response.text()).split("\x1e") == ["41"]
        started = time.monotonic()
        async with http.get(url) as response:  # the client ignores it and polls again
            assert await response.text() == "1"
        assert time.monotonic() - started < CLOSE_TIMEOUT + 5


# -- defect 9: the smaller ones -------------------------------------------------------------------


async def test_joining_a_sid_room_is_refused_without_closing_or_revealing(gateway, clients):
    target = await clients.ws(gateway.ws_url, make_token(uid()))
    sid = target.inbox.of_type("welcome")[0]["content"]["sid"]
    caller = await clients.sio(gateway.url, make_token(uid()))
    live = await caller.call("join_room", sid)
    made_up = await caller.call("join_room", "A" * 20)
    assert live["ok"] is False and live["error"]["code"] == 403
    assert made_up == live  # the same answer whether that sid exists or not
    assert (await caller.call("ping"))["ok"] is True


async def test_cors_origins_apply_to_ws(gateway_factory):
    server = gateway_factory(env={"CORS_ORIGINS": "https://good.example"})
    path = f"/ws?token={make_token(uid())}"
    refused = await RawWebSocket.open(server.port, path, headers={"Origin": "https://evil.example"})
    assert refused.status == 403
    assert (await refused.http_body())["error"]["code"] == 403
    accepted = await RawWebSocket.open(server.port, path, headers={"Origin": "https://good.example"})
    assert accepted.status == 101
    refused.close()
    accepted.close()


def test_flush_scheduler_survives_a_loop_that_stopped_with_a_flush_pending():
    """A loop stopped right after a frame was pushed (its flush never ran) must not stop the
    next loop's writers from ever flushing."""

    async def connected_writer() -> tuple[FrameWriter, socket.socket, Any]:
        loop = asyncio.get_running_loop()
        peer, ours = socket.socketpair()
        transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
        return FrameWriter(transport, lambda: None, 1 << 20), peer, transport

    first = asyncio.new_event_loop()
    writer, peer, transport = first.run_until_complete(connected_writer())

    def push_then_stop() -> None:
        first.stop()
        writer.push(text_frame(b"lost"))

    first.call_soon(push_then_stop)
    first.run_forever()
    transport.abort()
    first.close()
    peer.close()

    async def second_loop() -> bytes:
        writer, peer, transport = await connected_writer()
        writer.push(text_frame(b"hello"))
        peer.setblocking(False)
        try:
            return await asyncio.wait_for(asyncio.get_running_loop().sock_recv(peer, 64), 5)
        finally:
            transport.abort()
            peer.close()

    assert asyncio.run(second_loop()) == text_frame(b"hello")
