"""Plain WebSocket clients on /ws: the JSON envelope protocol, mixed rooms, bad input, heartbeat."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from conftest import make_token, uid


@pytest.mark.parametrize(
    ("token", "needle"),
    [
        (None, "missing token"),
        (make_token("x", secret="another-secret-another-secret-another-secret-0000"), "bad signature"),
        (make_token("x", ttl=-5), "expired"),
        ("garbage", "invalid token"),
    ],
)
async def test_refused_before_upgrade_with_401_json(gateway, token, needle):
    url = f"{gateway.ws_url}?token={token}" if token else gateway.ws_url
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(url)
        assert info.value.status == 401
        async with session.get(url) as response:  # the same refusal as a plain request shows the body
            assert response.status == 401
            body = await response.json()
            assert body["error"]["code"] == 401 and needle in body["error"]["message"]


async def test_bearer_header_accepted_and_welcome_sent(gateway, clients):
    user = uid()
    client = await clients.ws(gateway.ws_url, None, headers={"Authorization": f"Bearer {make_token(user, 'W')}"})
    welcome = client.inbox.of_type("welcome")[0]
    assert welcome["content"]["user_id"] == user and welcome["content"]["username"] == "W"
    assert welcome["content"]["transport"] == "websocket"
    assert set(welcome) >= {"type", "content", "timestamp", "id"}


async def test_room_chat_ping_and_acks(gateway, clients):
    room = uid("room")
    alice, bob = uid(), uid()
    a = await clients.ws(gateway.ws_url, make_token(alice, "Alice"))
    b = await clients.ws(gateway.ws_url, make_token(bob, "Bob"))
    await a.send({"type": "join_room", "content": room, "id": "j1"})
    assert (await a.inbox.next("ack"))["content"] == {"id": "j1", "ok": True, "room": room}
    await b.send({"type": "join_room", "content": room, "id": 7})
    assert (await b.inbox.next("ack"))["content"]["id"] == 7

    await a.send({"type": "room_message", "content": {"room": room, "text": "hello"}})
    for client in (a, b):
        envelope = await client.inbox.next("room_message")
        assert envelope["room"] == room and envelope["from"] == alice and envelope["from_name"] == "Alice"
        assert envelope["content"]["text"] == "hello"
    # the legacy shape with the room beside the content
    await b.send({"type": "room_message", "room": room, "content": {"text": "beside"}})
    assert (await a.inbox.next("room_message"))["content"]["text"] == "beside"

    await a.send({"type": "ping"})
    assert (await a.inbox.next("pong"))["type"] == "pong"
    await a.send({"type": "leave_room", "content": room, "id": "l1"})
    assert (await a.inbox.next("ack"))["content"]["ok"] is True
    await b.send({"type": "room_message", "content": {"room": room, "text": "gone?"}})
    assert (await b.inbox.next("room_message"))["content"]["text"] == "beside"
    assert (await b.inbox.next("room_message"))["content"]["text"] == "gone?"
    assert [e for e in await a.inbox.quiet("room_message") if e["content"]["text"] == "gone?"] == []


async def test_user_message_to_all_devices_across_transports(gateway, clients):
    bob = uid()
    sender = await clients.ws(gateway.ws_url, make_token(uid(), "Sender"))
    ws_device = await clients.ws(gateway.ws_url, make_token(bob))
    sio_device = await clients.sio(gateway.url, make_token(bob))
    await sender.send({"type": "user_message", "content": {"to": bob, "text": "both?", "from": "forged"}, "id": 1})
    ack = await sender.inbox.next("ack")
    assert ack["content"]["ok"] is True and ack["content"]["id"] == 1
    for device in (ws_device, sio_device):
        envelope = await device.inbox.next("user_message")
        assert envelope["content"]["text"] == "both?" and envelope["content"]["from"] != "forged"
        assert envelope["id"] == ack["content"]["message_id"]


async def test_mixed_room_socketio_and_plain_ws(gateway, clients):
    room = uid("room")
    ws_member = await clients.ws(gateway.ws_url, make_token(uid()))
    sio_member = await clients.sio(gateway.url, make_token(uid()))
    await ws_member.send({"type": "join_room", "content": room, "id": 1})
    await ws_member.inbox.next("ack")
    await sio_member.call("join_room", room)

    await sio_member.call("room_message", {"room": room, "text": "from socket.io"})
    await ws_member.send({"type": "room_message", "content": {"room": room, "text": "from ws"}})
    for client in (ws_member, sio_member):
        texts = [(await client.inbox.next("room_message"))["content"]["text"] for _ in range(2)]
        assert texts == ["from socket.io", "from ws"]


@pytest.mark.parametrize(
    ("frame", "needle"),
    [
        ("this is not json", "not valid JSON"),
        ("[1, 2, 3]", "JSON object"),
        ('"a string"', "JSON object"),
        ('{"content": "no type"}', "'type'"),
        ('{"type": 5}', "'type'"),
        ('{"type": "teleport"}', "unknown message type"),
        ('{"type": "room_message", "content": 42}', "content must be an object"),
        ('{"type": "join_room", "content": "user:bob"}', "reserved"),
        ('{"type": "room_message", "content": {"room": "not-joined", "text": "x"}}', "not a member"),
    ],
)
async def test_bad_frames_get_error_envelope_and_connection_survives(gateway, clients, frame, needle):
    client = await clients.ws(gateway.ws_url, make_token(uid()))
    await client.send(frame)
    error = await client.inbox.next("error")
    assert needle in error["content"]["message"]
    assert isinstance(error["content"]["code"], int)
    await client.send({"type": "ping"})
    await client.inbox.next("pong")


async def test_bad_frame_with_id_is_answered_in_the_ack(gateway, clients):
    client = await clients.ws(gateway.ws_url, make_token(uid()))
    await client.send({"type": "join_room", "content": "user:x", "id": "a"})
    ack = await client.inbox.next("ack")
    assert ack["content"]["ok"] is False and ack["content"]["error"]["code"] == 403


async def test_binary_frame_gets_error_and_connection_survives(gateway, clients):
    client = await clients.ws(gateway.ws_url, make_token(uid()))
    await client.ws.send_bytes(b"\x00\x01binary")
    assert "binary" in (await client.inbox.next("error"))["content"]["message"]
    await client.send({"type": "ping"})
    await client.inbox.next("pong")


async def test_oversized_frame_closes_with_1009(gateway_factory, clients):
    server = gateway_factory(env={"MAX_MESSAGE_BYTES": "2048"})
    client = await clients.ws(server.ws_url, make_token(uid()))
    await client.send({"type": "ping", "content": "x" * 4096})
    await asyncio.wait_for(client.closed.wait(), 10)
    assert client.ws.close_code == 1009
    assert await server_is_alive(server.url)


async def server_is_alive(url: str) -> bool:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/healthz") as response:
        return response.status == 200


async def test_heartbeat_closes_a_silent_client(gateway_factory, clients):
    server = gateway_factory(env={"PING_INTERVAL": "0.3", "WS_HEARTBEAT_TIMEOUT": "1"})
    # autoping off: this client never answers the server's pings, like a vanished peer
    silent = await clients.ws(server.ws_url, make_token(uid()), autoping=False)
    # a client that does answer pings is kept open for the same period
    lively = await clients.ws(server.ws_url, make_token(uid()))
    await asyncio.wait_for(silent.closed.wait(), 10)
    assert silent.ws.close_code == 1001
    assert not lively.closed.is_set()
    await lively.send({"type": "ping"})
    await lively.inbox.next("pong")


async def test_many_frames_keep_their_order(gateway, clients):
    room = uid("room")
    sender = await clients.sio(gateway.url, make_token(uid()))
    receiver = await clients.ws(gateway.ws_url, make_token(uid()))
    await receiver.send({"type": "join_room", "content": room, "id": 1})
    await receiver.inbox.next("ack")
    await sender.call("join_room", room)
    for i in range(200):
        await sender.emit("room_message", {"room": room, "text": str(i)})
    texts = [(await receiver.inbox.next("room_message"))["content"]["text"] for _ in range(200)]
    assert texts == [str(i) for i in range(200)]
