"""Socket.IO clients against one real gateway: authentication and every client event."""

from __future__ import annotations

import time

import jwt
import pytest
import socketio
from conftest import SECRET, make_token, uid

# -- authentication ---------------------------------------------------------------------------


async def test_good_token_gets_welcome(gateway, clients):
    user = uid()
    client = await clients.sio(gateway.url, make_token(user, "Alice"))
    welcome = client.inbox.of_type("welcome")[0]
    assert welcome["content"]["user_id"] == user
    assert welcome["content"]["username"] == "Alice"
    assert welcome["content"]["sid"] == client.sio.get_sid()
    assert isinstance(welcome["timestamp"], int) and welcome["id"]


async def test_numeric_user_id_kept_as_string_and_username_defaults_to_id(gateway, clients):
    client = await clients.sio(gateway.url, make_token(12345))
    content = client.inbox.of_type("welcome")[0]["content"]
    assert content["user_id"] == "12345"
    assert content["username"] == "12345"


async def test_sub_claim_used_when_user_id_absent(gateway, clients):
    token = jwt.encode({"sub": "subject-7", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    client = await clients.sio(gateway.url, token)
    assert client.inbox.of_type("welcome")[0]["content"]["user_id"] == "subject-7"


async def test_token_in_query_string_and_bearer_header(gateway, clients):
    user = uid()
    by_query = await clients.sio(f"{gateway.url}?token={make_token(user)}", None)
    assert by_query.inbox.of_type("welcome")[0]["content"]["user_id"] == user
    by_header = await clients.sio(gateway.url, None, headers={"Authorization": f"Bearer {make_token(user)}"})
    assert by_header.inbox.of_type("welcome")[0]["content"]["user_id"] == user


def _alg_none_token() -> str:
    import base64
    import json

    def b64(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64({'user_id': 'mallory', 'exp': int(time.time()) + 60})}."


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "missing token"),
        (make_token("bob", secret="wrong-secret-wrong-secret-wrong-secret-0000"), "bad signature"),
        (make_token("bob", ttl=-10), "token expired"),
        (_alg_none_token(), "invalid token"),
        (make_token("bob", algorithm="HS512"), "algorithm not allowed"),
        ("not-a-jwt", "invalid token"),
    ],
    ids=["missing", "bad-signature", "expired", "alg-none", "unlisted-alg", "garbage"],
)
async def test_refused_tokens_get_connect_error_401(gateway, token, reason):
    client = socketio.AsyncClient(reconnection=False)
    errors = []
    client.on("connect_error", lambda data: errors.append(data))
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(
            gateway.url, auth={"token": token} if token else None, transports=["websocket"], wait_timeout=5
        )
    assert errors, "connect_error was not delivered"
    assert errors[0]["code"] == 401
    assert reason in errors[0]["message"]


# -- rooms ------------------------------------------------------------------------------------


async def test_join_room_message_reaches_members_only_with_server_set_sender(gateway, clients):
    room = uid("room")
    alice, bob, carol = uid(), uid(), uid()
    a = await clients.sio(gateway.url, make_token(alice, "Alice"))
    b = await clients.sio(gateway.url, make_token(bob, "Bob"))
    c = await clients.sio(gateway.url, make_token(carol, "Carol"))
    assert await a.call("join_room", room) == {"ok": True, "room": room}
    assert (await b.call("join_room", room))["ok"] is True

    ack = await a.call("room_message", {"room": room, "text": "hi", "from": "forged", "from_name": "Forged"})
    assert ack["ok"] is True and ack["message_id"]
    for client in (a, b):  # the sender is included
        envelope = await client.inbox.next("room_message")
        assert envelope["room"] == room
        assert envelope["from"] == alice and envelope["from_name"] == "Alice"
        assert envelope["content"]["text"] == "hi"
        assert envelope["content"]["from"] == alice  # the forged value is overwritten
        assert envelope["id"] == ack["message_id"]
    assert await c.inbox.quiet("room_message") == []


async def test_room_message_without_ack_and_leave_room(gateway, clients):
    room = uid("room")
    a = await clients.sio(gateway.url, make_token(uid()))
    b = await clients.sio(gateway.url, make_token(uid()))
    await a.emit("join_room", room)
    await b.emit("join_room", room)
    await b.call("ping")  # events from one client are handled in order: b has joined now
    await a.call("ping")
    await a.emit("room_message", {"room": room, "text": "one"})
    assert (await b.inbox.next("room_message"))["content"]["text"] == "one"
    assert await b.call("leave_room", room) == {"ok": True, "room": room}
    await a.emit("room_message", {"room": room, "text": "two"})
    assert (await a.inbox.next("room_message"))["content"]["text"] == "one"
    assert (await a.inbox.next("room_message"))["content"]["text"] == "two"
    assert await b.inbox.quiet("room_message") == []


async def test_non_member_room_message_is_403_and_nobody_receives(gateway, clients):
    room = uid("room")
    member = await clients.sio(gateway.url, make_token(uid()))
    outsider = await clients.sio(gateway.url, make_token(uid()))
    await member.call("join_room", room)
    ack = await outsider.call("room_message", {"room": room, "text": "let me in"})
    assert ack == {"ok": False, "error": {"code": 403, "message": ack["error"]["message"]}}
    # without an ack the error arrives as an envelope and the connection stays open
    await outsider.emit("room_message", {"room": room, "text": "again"})
    error = await outsider.inbox.next("error")
    assert error["content"]["code"] == 403
    assert await member.inbox.quiet("room_message") == []
    assert (await outsider.call("ping"))["ok"] is True


@pytest.mark.parametrize("room", ["user:someone", "user:"])
async def test_reserved_user_rooms_cannot_be_joined_or_left(gateway, clients, room):
    client = await clients.sio(gateway.url, make_token(uid()))
    for event in ("join_room", "leave_room"):
        ack = await client.call(event, room)
        assert ack["ok"] is False and ack["error"]["code"] == 403


@pytest.mark.parametrize(
    ("event", "content", "needle"),
    [
        ("join_room", 42, "room must be a string"),
        ("join_room", "", "1..128"),
        ("join_room", "x" * 129, "1..128"),
        ("join_room", "bad\nname", "control characters"),
        ("room_message", "just text", "content must be an object"),
        ("room_message", {"room": "r"}, "text must be a string"),
        ("user_message", {"text": "hi"}, "content.to"),
        ("user_message", {"to": "x", "text": 5}, "text must be a string"),
        ("no_such_event", {}, "unknown message type"),
    ],
)
async def test_wrong_shapes_are_400_with_a_message(gateway, clients, event, content, needle):
    client = await clients.sio(gateway.url, make_token(uid()))
    ack = await client.call(event, content)
    assert ack["ok"] is False
    assert ack["error"]["code"] == 400
    assert needle in ack["error"]["message"]


async def test_room_limit_per_connection(gateway_factory, clients):
    server = gateway_factory(env={"MAX_ROOMS": "3"})
    client = await clients.sio(server.url, make_token(uid()))
    for i in range(3):
        assert (await client.call("join_room", f"r{i}"))["ok"] is True
    ack = await client.call("join_room", "r3")
    assert ack["ok"] is False and ack["error"]["code"] == 403
    assert (await client.call("join_room", "r0"))["ok"] is True  # re-joining is not a new room


async def test_rate_limit_answers_429_and_connection_survives(gateway_factory, clients):
    server = gateway_factory(env={"RATE_LIMIT": "1", "RATE_BURST": "5"})
    client = await clients.sio(server.url, make_token(uid()))
    answers = [await client.call("ping") for _ in range(8)]
    # every inbound frame counts: the CONNECT packet took the first of the 5
    assert [a["ok"] for a in answers[:4]] == [True] * 4
    assert any(a["ok"] is False and a["error"]["code"] == 429 for a in answers[5:])
    assert client.sio.connected


# -- users ------------------------------------------------------------------------------------


async def test_user_message_reaches_every_device_of_the_user(gateway, clients):
    alice, bob = uid(), uid()
    sender = await clients.sio(gateway.url, make_token(alice, "Alice"))
    phone = await clients.sio(gateway.url, make_token(bob))
    laptop = await clients.sio(gateway.url, make_token(bob))
    bystander = await clients.sio(gateway.url, make_token(uid()))
    ack = await sender.call("user_message", {"to": bob, "text": "psst", "from": "forged"})
    assert ack["ok"] is True
    for device in (phone, laptop):
        envelope = await device.inbox.next("user_message")
        assert envelope["from"] == alice and envelope["from_name"] == "Alice" and envelope["to"] == bob
        assert envelope["content"]["text"] == "psst" and envelope["content"]["from"] == alice
    assert await bystander.inbox.quiet("user_message") == []


async def test_chat_is_an_alias_of_user_message(gateway, clients):
    bob = uid()
    sender = await clients.sio(gateway.url, make_token(uid()))
    receiver = await clients.sio(gateway.url, make_token(bob))
    await sender.emit("chat", {"to": bob, "text": "via chat"})
    assert (await receiver.inbox.next("user_message"))["content"]["text"] == "via chat"


async def test_ping_gets_pong_to_this_connection_only(gateway, clients):
    user = uid()
    one = await clients.sio(gateway.url, make_token(user))
    other = await clients.sio(gateway.url, make_token(user))
    await one.emit("ping")
    pong = await one.inbox.next("pong")
    assert pong["content"]["server_time"] > 0
    ack = await one.call("ping", {"t": 1})
    assert ack["ok"] is True
    assert await other.inbox.quiet("pong") == []


async def test_long_polling_transport_works(gateway, clients):
    room = uid("room")
    client = await clients.sio(gateway.url, make_token(uid()), transports=["polling"])
    assert (await client.call("join_room", room))["ok"] is True
    await client.emit("room_message", {"room": room, "text": "over polling"})
    assert (await client.inbox.next("room_message"))["content"]["text"] == "over polling"
