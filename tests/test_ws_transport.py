"""Upgraded WebSocket connections leave aiohttp's request machinery (realtime_gateway.transport.ws_transport):
nothing of aiohttp's stays alive per connection, an idle connection holds no task, messages are
handled in order as they arrive, a backlog stops the transport reading, frames that came with
the upgrade request are read, and compressed connections still go through aiohttp's
WebSocketResponse. Framing, limits
and closes are covered on the same connections by tests/test_hostile.py and the conformance suites.
"""

from __future__ import annotations

import asyncio
import gc
import json
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.web_protocol import RequestHandler
from conftest import SECRET, make_token, uid
from rawws import OP_PING, OP_PONG, OP_TEXT, RawWebSocket, client_frame, plain_session, socketio_session
from realtime_gateway.appkeys import SIO_KEY
from realtime_gateway.config import Settings
from realtime_gateway.server import create_app
from realtime_gateway.transport.ws_session import OwnedWebSocketResponse
from realtime_gateway.transport.ws_transport import QUEUE_LIMIT, WsProtocol

PATHS = {"plain": "/ws?token={token}", "socket.io": "/socket.io/?EIO=4&transport=websocket"}


async def _server(**overrides: object) -> TestServer:
    settings = Settings(jwt_secret=SECRET, **overrides)
    settings.validate()
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    return server


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    server = await _server()
    yield server
    await server.close()


async def pong(ws: RawWebSocket) -> bytes:
    """The payload of the next pong, past the presence and welcome frames sent meanwhile."""
    for _ in range(50):
        opcode, payload = await ws.frame()
        if opcode == OP_PONG:
            return payload
        assert opcode == OP_TEXT
    raise AssertionError("no pong")


def alive(kind: type) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, kind))


async def test_open_sessions_keep_nothing_of_aiohttps_request_machinery(server):
    """Five open sessions of each protocol: no aiohttp request handler, request or
    WebSocketResponse is alive, and every session still answers (before: one of each per
    connection, for the life of the connection)."""
    sessions = []
    for _ in range(5):
        sessions.append(await plain_session(server.port, make_token(uid())))
        sessions.append(await socketio_session(server.port, make_token(uid())))
    try:
        assert alive(WsProtocol) == 10
        assert alive(RequestHandler) == 0
        assert alive(web.BaseRequest) == 0
        assert alive(web.WebSocketResponse) == 0
        for ws in sessions:
            await ws.send(b"still there?", opcode=OP_PING)
            assert await pong(ws) == b"still there?"
    finally:
        for ws in sessions:
            ws.close()


def session_tasks() -> list[asyncio.Task[object]]:
    """The running tasks whose coroutine is a session's (its opening, its reading)."""
    return [t for t in asyncio.all_tasks() if "Socket." in getattr(t.get_coro(), "__qualname__", "")]


async def test_idle_sessions_hold_no_task(server):
    """Ten open, idle sessions hold no task between messages, and each still handles the next
    message (before: one reader task per connection, waiting for its next message)."""
    sessions = []
    for _ in range(5):
        sessions.append(await plain_session(server.port, make_token(uid())))
        sessions.append(await socketio_session(server.port, make_token(uid())))
    try:
        async with asyncio.timeout(10):
            while session_tasks():  # the openings end once the sessions run
                await asyncio.sleep(0.01)
        for ws in sessions:
            await ws.send(b"still there?", opcode=OP_PING)
            assert await pong(ws) == b"still there?"
        await asyncio.sleep(0)  # the tasks that handled the pings end
        assert session_tasks() == []
    finally:
        for ws in sessions:
            ws.close()


@pytest.mark.parametrize("transport", list(PATHS))
async def test_messages_of_one_write_are_handled_in_order(server, transport):
    """join, send to the room, leave, send again, all in one TCP write: each is handled after
    the one before it completed, even where that one waited (the acks come back in order and
    only the message sent while a member is accepted)."""
    room = f"r-{uid()}"
    if transport == "plain":
        ws = await plain_session(server.port, make_token(uid()))
        frames = [
            {"type": "join_room", "content": room, "id": 1},
            {"type": "room_message", "content": {"room": room, "text": "in"}, "id": 2},
            {"type": "leave_room", "content": room, "id": 3},
            {"type": "room_message", "content": {"room": room, "text": "out"}, "id": 4},
        ]
        await ws.send_raw(b"".join(client_frame(json.dumps(f).encode()) for f in frames))
        acks = []
        while len(acks) < 4:
            envelope = json.loads(await ws.text())
            if envelope["type"] == "ack":
                acks.append(envelope["content"])
        assert [a["id"] for a in acks] == [1, 2, 3, 4]
        assert [a["ok"] for a in acks] == [True, True, True, False]
    else:
        ws = await socketio_session(server.port, make_token(uid()))
        packets = [
            f"421{json.dumps(['join_room', room])}",
            f"422{json.dumps(['room_message', {'room': room, 'text': 'in'}])}",
            f"423{json.dumps(['leave_room', room])}",
            f"424{json.dumps(['room_message', {'room': room, 'text': 'out'}])}",
        ]
        await ws.send_raw(b"".join(client_frame(p.encode()) for p in packets))
        acks = [json.loads((await ws.text(f"43{i}"))[3:])[0] for i in range(1, 5)]
        assert [a["ok"] for a in acks] == [True, True, True, False]
    ws.close()


async def test_a_backlog_stops_the_transport_reading_until_it_is_taken():
    """Messages nobody has taken yet: past QUEUE_LIMIT bytes the transport stops reading (the
    kernel's buffers then push back on the client); once they are all taken it reads again,
    and every message arrives once, in order."""
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
    protocol = WsProtocol(transport, 1 << 20)
    transport.set_protocol(protocol)
    count = 3 * QUEUE_LIMIT // 200
    data = b"".join(client_frame(b"%05d" % i + b"x" * 95) for i in range(count))
    try:
        await loop.sock_sendall(theirs, data[: len(data) // 2])
        async with asyncio.timeout(10):
            while transport.is_reading():
                await asyncio.sleep(0.01)
        await loop.sock_sendall(theirs, data[len(data) // 2 :])
        taken = []
        async with asyncio.timeout(10):
            while len(taken) < count:
                msg = await protocol.receive()
                taken.append(int(msg.data[:5]))
        assert taken == list(range(count))
        assert transport.is_reading()
    finally:
        transport.close()
        theirs.close()


@pytest.mark.parametrize("transport", list(PATHS))
async def test_frames_sent_with_the_upgrade_request_are_read(server, transport):
    """A client may send frames right behind its upgrade request, before the 101: they arrive
    while aiohttp still owns the connection and must not be lost in the hand-over."""
    path = PATHS[transport].format(token=make_token(uid()))
    ws = await RawWebSocket.open(server.port, path, early=client_frame(b"early", OP_PING))
    try:
        assert ws.status == 101, ws.headers
        assert await pong(ws) == b"early"
    finally:
        ws.close()


async def test_a_compressed_connection_stays_on_aiohttps_websocket():
    """--ws-compression and a client offering permessage-deflate: aiohttp's WebSocketResponse
    (its parser inflates what the client sends); a client that does not offer it is detached."""
    server = await _server(ws_compression=True)
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket"
            async with session.ws_connect(url, compress=15) as deflating, session.ws_connect(url, compress=0) as plain:
                sids = [json.loads((await ws.receive_str())[1:])["sid"] for ws in (deflating, plain)]
                sockets = server.app[SIO_KEY].eio.sockets
                assert isinstance(sockets[sids[0]].ws, OwnedWebSocketResponse)
                assert isinstance(sockets[sids[1]].ws, WsProtocol)
                for ws in (deflating, plain):
                    await ws.send_str("2probe")
                    assert await ws.receive_str() == "3probe"
    finally:
        await server.close()


async def test_a_poll_behind_the_upgrade_is_refused(gateway_factory):
    """``2probe`` and ``5`` sent, then a poll on another connection: the upgrade is complete
    by then and the poll gets 400 (engine.io-protocol's "ignores HTTP requests with same sid
    after upgrade"). Twenty rounds: a reader that needs extra loop iterations per message
    (a task per timed read) lost this race about one time in three."""
    base = f"http://127.0.0.1:{gateway_factory().port}/socket.io/?EIO=4"  # its own process: a real race
    async with aiohttp.ClientSession() as session:
        for _ in range(20):
            async with session.get(f"{base}&transport=polling") as response:
                sid = json.loads((await response.text())[1:])["sid"]
            async with session.ws_connect(f"{base}&transport=websocket&sid={sid}") as ws:
                await ws.send_str("2probe")
                await ws.send_str("5")
                async with session.get(f"{base}&transport=polling&sid={sid}") as response:
                    assert response.status == 400
