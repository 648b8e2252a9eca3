"""Server-side membership: a back end joins a user's connections to a room, makes them leave it,
or closes them, on every node at once (HTTP API, emitters, CLI).

Two real nodes on a private Redis, real Socket.IO (WebSocket and long-polling) and /ws clients.
The rooms used are protected, so clients could not have joined them themselves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from conftest import WAIT, make_token, uid
from delivery import nothing_else, received_once, wait_subscribed
from realtime_gateway import Emitter, SyncEmitter
from realtime_gateway.emit.emitter import EmitError
from test_emit_cli import emit as run_cli
from test_recovery import welcome, ws_resume

KEY = "membership-key-0123456789"
PROTECTED = "admins,order:*"


async def post(url: str, path: str, body: Any, key: str | None = KEY) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    kwargs: dict[str, Any] = {"data": body} if isinstance(body, bytes) else {"json": body}
    async with aiohttp.ClientSession() as http, http.post(url + path, headers=headers, **kwargs) as response:
        return response.status, await response.json()


@pytest.fixture
def nodes(redis_server, gateway_factory):
    """Two nodes with protected rooms and the HTTP API."""
    env = {"REDIS_URL": redis_server.url, "API_KEY": KEY, "PROTECTED_ROOMS": PROTECTED}
    return [gateway_factory(env=env), gateway_factory(env=env)]


@dataclass
class Backend:
    """One way a back end reaches the cluster: join, leave, and send to a room (message id)."""

    join: Callable[[str, str], Awaitable[None]]
    leave: Callable[[str, str], Awaitable[None]]
    send: Callable[[str, str], Awaitable[str]]


async def http_backend(url: str, redis_url: str) -> Backend:
    """Everything through one node's HTTP API."""

    async def join(user: str, room: str) -> None:
        assert await post(url, "/api/rooms/join", {"user": user, "room": room}) == (202, {"user": user, "room": room})

    async def leave(user: str, room: str) -> None:
        assert await post(url, "/api/rooms/leave", {"user": user, "room": room}) == (202, {"user": user, "room": room})

    async def send(room: str, text: str) -> str:
        status, answer = await post(url, "/api/publish", {"target": {"room": room}, "type": "order", "content": text})
        assert status == 202, answer
        return answer["id"]

    return Backend(join, leave, send)


async def emitter_backend(url: str, redis_url: str) -> Backend:
    """Everything through one asyncio Emitter (another process's view: Redis only)."""
    emitter = Emitter(redis_url)
    return Backend(
        emitter.join_room, emitter.leave_room, lambda room, text: emitter.broadcast_to_room(room, "order", text)
    )


async def sync_emitter_backend(url: str, redis_url: str) -> Backend:
    """The blocking SyncEmitter, from a worker thread as Django or Celery code would call it."""
    emitter = SyncEmitter(redis_url)

    def threaded(call: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
        return lambda *args: asyncio.to_thread(call, *args)

    return Backend(
        threaded(emitter.join_room),
        threaded(emitter.leave_room),
        threaded(lambda room, text: emitter.broadcast_to_room(room, "order", text)),
    )


async def cli_backend(url: str, redis_url: str) -> Backend:
    """``realtime-gateway emit join|leave|room``, one process per command."""
    redis = ["--redis-url", redis_url]

    async def join(user: str, room: str) -> None:
        assert (await run_cli("join", "--user", user, "--room", room, *redis))[0] == 0

    async def leave(user: str, room: str) -> None:
        assert (await run_cli("leave", "--user", user, "--room", room, *redis))[0] == 0

    async def send(room: str, text: str) -> str:
        code, out, err = await run_cli("room", "--room", room, "--type", "order", "--json", f'"{text}"', *redis)
        assert code == 0, err
        return out

    return Backend(join, leave, send)


BACKENDS = {"http": http_backend, "emitter": emitter_backend, "sync-emitter": sync_emitter_backend, "cli": cli_backend}


@pytest.mark.parametrize("via", BACKENDS)
async def test_one_call_joins_a_users_devices_on_both_nodes_to_a_protected_room_and_one_removes_them(
    via, nodes, redis_server, clients
):
    node1, node2 = nodes
    await wait_subscribed(redis_server.url, nodes=2)
    user, room = uid("user"), f"order:{uid()}"
    devices = [
        await clients.sio(node1.url, make_token(user)),
        await clients.ws(node2.ws_url, make_token(user)),
        await clients.sio(node2.url, make_token(user), transports=["polling"]),
    ]
    # others: someone allowed into the room who joined it, someone who is not, a guest
    staff = await clients.sio(node2.url, make_token(uid(), rooms=["order:*"]))
    assert (await staff.call("join_room", room))["ok"] is True
    others = [await clients.ws(node1.ws_url, make_token(uid())), await clients.sio(node2.url, make_token(uid()))]
    refused = await devices[0].call("join_room", room)
    assert refused["ok"] is False and refused["error"]["code"] == 403  # protected: not for this token

    backend = await BACKENDS[via](node1.url, redis_server.url)
    await backend.join(user, room)
    first = await backend.send(room, "shipped")  # straight after the join: no wait in between
    for copy in await received_once([*devices, staff], "order", first):
        assert copy["room"] == room and copy["content"] == "shipped"

    # a device the user connects afterwards is not a member
    later = await clients.ws(node1.ws_url, make_token(user))
    second = await backend.send(room, "delivered")
    await received_once([*devices, staff], "order", second)
    await nothing_else([*devices, staff, later, *others], "order")

    await backend.leave(user, room)
    third = await backend.send(room, "returned")
    await staff.inbox.next("order", id=third)  # it was sent, and reached the member who stayed
    await nothing_else([*devices, later, *others], "order")
    # left for good: posting into the room is refused again
    posted = await devices[0].call("room_message", {"room": room, "text": "still here?"})
    assert posted["ok"] is False and posted["error"]["code"] == 403


async def test_a_join_through_one_node_applies_on_the_other_once_read(nodes, redis_server, clients):
    """Through different nodes there is no ordering promise beyond the stream: the join
    reaches the other node's devices once that node has read it (and then the message does)."""
    node1, node2 = nodes
    await wait_subscribed(redis_server.url, nodes=2)
    user, room = uid("user"), f"order:{uid()}"
    there = await clients.ws(node2.ws_url, make_token(user))
    assert (await post(node1.url, "/api/rooms/join", {"user": user, "room": room}))[0] == 202

    async def member() -> bool:
        status, answer = await post(node2.url, "/api/publish", {"target": {"room": room}, "type": "probe"})
        assert status == 202
        try:
            await there.inbox.next("probe", timeout=0.5, id=answer["id"])
        except TimeoutError:
            return False
        return True

    deadline = time.monotonic() + WAIT
    while not await member():
        assert time.monotonic() < deadline, "the join never reached node 2"


async def closed(client: Any) -> None:
    await asyncio.wait_for((client.disconnected if hasattr(client, "sio") else client.closed).wait(), WAIT)


async def test_disconnect_by_user_closes_every_connection_on_both_nodes_and_by_sid_just_one(
    nodes, redis_server, clients
):
    node1, node2 = nodes
    await wait_subscribed(redis_server.url, nodes=2)
    user, other = uid("user"), uid("user")
    devices = [
        await clients.sio(node1.url, make_token(user)),
        await clients.ws(node1.ws_url, make_token(user)),
        await clients.sio(node2.url, make_token(user), transports=["polling"]),
        await clients.ws(node2.ws_url, make_token(user)),
    ]
    session = devices[3].inbox.of_type("welcome")[0]["content"]["session"]
    bystanders = [await clients.sio(node1.url, make_token(other)), await clients.ws(node2.ws_url, make_token(other))]

    assert await post(node1.url, "/api/disconnect", {"user": user}) == (202, {"user": user})
    await asyncio.gather(*(closed(device) for device in devices))
    for bystander in bystanders:  # still connected, and still served
        assert not (bystander.disconnected if hasattr(bystander, "sio") else bystander.closed).is_set()
    assert (await bystanders[0].call("ping"))["ok"] is True
    # a disconnected session cannot be resumed: the device has to start afresh
    again = await clients.ws(node2.ws_url, make_token(user) + f"&session={session}")
    assert again.inbox.of_type("welcome")[0]["content"]["recovered"] is False

    # by sid: one connection, wherever it is
    one, two = await clients.sio(node2.url, make_token(other)), await clients.ws(node2.ws_url, make_token(other))
    sid = two.inbox.of_type("welcome")[0]["content"]["sid"]
    assert await post(node1.url, "/api/disconnect", {"sid": sid}) == (202, {"sid": sid})
    await closed(two)
    assert (await one.call("ping"))["ok"] is True and not one.disconnected.is_set()

    # and from a back-end process
    async with Emitter(redis_server.url) as emitter:
        await emitter.disconnect_user(other)
    await asyncio.gather(*(closed(client) for client in (*bystanders, one)))

    def kick() -> None:
        with SyncEmitter(redis_server.url) as sync:
            sync.disconnect_user(user)

    await asyncio.to_thread(kick)
    await closed(again)


async def test_a_recovered_connection_keeps_its_granted_protected_room_a_new_one_does_not(gateway_factory, clients):
    """Recovery re-checks the room rule against the new token; a room the back end granted is
    the back end's decision and stays. A new connection of the user is not in it."""
    server = gateway_factory(env={"API_KEY": KEY, "PROTECTED_ROOMS": PROTECTED})  # one node: no Redis
    user = uid("user")
    staff = await clients.sio(server.url, make_token(uid(), rooms=["admins"]))
    assert (await staff.call("join_room", "admins"))["ok"] is True
    device = await clients.ws(server.ws_url, make_token(user))
    assert await post(server.url, "/api/rooms/join", {"user": user, "room": "admins"}) == (
        202,
        {"user": user, "room": "admins"},
    )
    seen = await device.inbox.next(
        "room_message", id=(await staff.call("room_message", {"room": "admins", "text": "1"}))["message_id"]
    )
    session = device.inbox.of_type("welcome")[0]["content"]["session"]
    await device.close()

    missed = (await staff.call("room_message", {"room": "admins", "text": "2"}))["message_id"]
    back = await clients.ws(server.ws_url, make_token(user) + f"&session={session}&offset={seen['offset']}")
    assert back.inbox.of_type("welcome")[0]["content"]["recovered"] is True
    await back.inbox.next("room_message", id=missed)
    fresh = await clients.ws(server.ws_url, make_token(user))
    live = (await staff.call("room_message", {"room": "admins", "text": "3"}))["message_id"]
    await back.inbox.next("room_message", id=live)
    await nothing_else([back, fresh], "room_message")

    assert (await post(server.url, "/api/rooms/leave", {"user": user, "room": "admins"}))[0] == 202
    after = (await staff.call("room_message", {"room": "admins", "text": "4"}))["message_id"]
    await staff.inbox.next("room_message", id=after)
    await nothing_else([back, fresh], "room_message")


async def test_a_device_away_during_a_leave_does_not_get_the_room_back_on_resuming(gateway_factory, clients):
    """A leave also reaches the sessions waiting for their device to come back: a device away
    during the leave resumes without the room, and without what the room was sent meanwhile.
    A join reaches current connections only: a device away during it resumes without the room."""
    server = gateway_factory(env={"API_KEY": KEY, "PROTECTED_ROOMS": PROTECTED})
    user, room = uid("user"), f"order:{uid()}"
    staff = await clients.sio(server.url, make_token(uid(), rooms=["order:*"]))
    assert (await staff.call("join_room", room))["ok"] is True

    async def say(text: str) -> str:
        message_id = (await staff.call("room_message", {"room": room, "text": text}))["message_id"]
        await staff.inbox.next("room_message", id=message_id)
        return message_id

    device = await clients.ws(server.ws_url, make_token(user))
    assert (await post(server.url, "/api/rooms/join", {"user": user, "room": room}))[0] == 202
    seen = await device.inbox.next("room_message", id=await say("member"))
    await device.close()
    assert (await post(server.url, "/api/rooms/leave", {"user": user, "room": room}))[0] == 202
    await say("gone")
    back = await ws_resume(clients, server, make_token(user), welcome(device)["session"], seen["offset"])
    assert welcome(back)["recovered"] is True
    await say("still gone")
    await nothing_else([back], "room_message")

    await back.close()
    assert (await post(server.url, "/api/rooms/join", {"user": user, "room": room}))[0] == 202
    await say("while away")
    again = await ws_resume(clients, server, make_token(user), welcome(back)["session"], None)
    assert welcome(again)["recovered"] is True
    await say("live")
    await nothing_else([again], "room_message")


async def test_granted_rooms_survive_a_resume_on_the_other_node_and_a_leave_follows_there(nodes, redis_server, clients):
    """On a cluster the session is in Redis: the granted room comes back on whichever node the
    device resumes, and a leave while it was away (applied by the node that served it) holds."""
    node1, node2 = nodes
    await wait_subscribed(redis_server.url, nodes=2)
    user, room = uid("user"), f"order:{uid()}"
    staff = await clients.sio(node1.url, make_token(uid(), rooms=["order:*"]))
    assert (await staff.call("join_room", room))["ok"] is True

    async def say(text: str) -> str:
        message_id = (await staff.call("room_message", {"room": room, "text": text}))["message_id"]
        await staff.inbox.next("room_message", id=message_id)
        return message_id

    device = await clients.ws(node2.ws_url, make_token(user))
    assert (await post(node1.url, "/api/rooms/join", {"user": user, "room": room}))[0] == 202
    probe = await say("probe")
    seen = await device.inbox.next("room_message", id=probe)
    await device.close()
    missed = await say("missed")
    back = await ws_resume(clients, node1, make_token(user), welcome(device)["session"], seen["offset"])
    assert welcome(back)["recovered"] is True
    await back.inbox.next("room_message", id=missed)
    await back.inbox.next("room_message", id=await say("live"))

    # away again (now from node 1), the leave applied by node 1 itself, back on node 2
    seen = back.inbox.of_type("room_message")[-1]
    await back.close()
    assert (await post(node1.url, "/api/rooms/leave", {"user": user, "room": room}))[0] == 202
    await say("after the leave")
    again = await ws_resume(clients, node2, make_token(user), welcome(back)["session"], seen["offset"])
    assert welcome(again)["recovered"] is True
    await say("still after")
    await nothing_else([again], "room_message")


BAD_BODIES = [
    ("/api/rooms/join", b"{", "body"),
    ("/api/rooms/join", [1], "body"),
    ("/api/rooms/join", {"room": "admins"}, "user"),
    ("/api/rooms/join", {"user": True, "room": "admins"}, "user"),
    ("/api/rooms/join", {"user": "42"}, "room"),
    ("/api/rooms/join", {"user": "42", "room": ""}, "room"),
    ("/api/rooms/join", {"user": "42", "room": "x" * 129}, "room"),
    ("/api/rooms/join", {"user": "42", "room": "user:43"}, "room"),
    ("/api/rooms/leave", {"user": "42", "room": 7}, "room"),
    ("/api/rooms/leave", {"user": "", "room": "admins"}, "user"),
    ("/api/disconnect", {}, "body"),
    ("/api/disconnect", {"user": "42", "sid": "abc"}, "body"),
    ("/api/disconnect", {"user": None}, "user"),
    ("/api/disconnect", {"sid": 5}, "sid"),
    ("/api/disconnect", {"sid": ""}, "sid"),
]


async def test_bad_bodies_are_400_naming_the_field_and_a_wrong_key_is_401(gateway_factory, clients):
    server = gateway_factory(env={"API_KEY": KEY, "PROTECTED_ROOMS": PROTECTED})
    user = uid("user")
    device = await clients.sio(server.url, make_token(user))
    for path, body, field in BAD_BODIES:
        status, answer = await post(server.url, path, body)
        assert (status, answer["error"]["code"], answer["error"].get("field")) == (400, 400, field), (path, body)
    good = {"user": user, "room": "admins"}
    for path in ("/api/rooms/join", "/api/rooms/leave", "/api/disconnect"):
        for key in (None, "wrong-key"):
            status, answer = await post(server.url, path, good, key=key)
            assert (status, answer["error"]["code"]) == (401, 401), path
    async with aiohttp.ClientSession() as http, http.post(f"{server.url}/api/rooms/join", json=good) as response:
        assert response.headers["WWW-Authenticate"] == "Bearer"
    # nothing of the refused requests was applied
    assert (await device.call("ping"))["ok"] is True
    assert (await post(server.url, "/api/publish", {"target": {"room": "admins"}, "type": "order"}))[0] == 202
    assert await device.inbox.quiet("order") == []


async def test_routes_are_absent_without_an_api_key(gateway):
    for path in ("/api/rooms/join", "/api/rooms/leave", "/api/disconnect"):
        assert (await post(gateway.url, path, {"user": "1", "room": "admins"}))[0] == 404


async def test_refused_with_503_while_redis_is_down_beyond_the_outbox(redis_server, gateway_factory, clients):
    """Within the outbox bound a join is kept and applied everywhere later; past it the answer
    is 503, the join applied nowhere, not even here. Emitters fail at once (EmitError, exit 1)."""
    node = gateway_factory(
        env={"REDIS_URL": redis_server.url, "API_KEY": KEY, "PROTECTED_ROOMS": PROTECTED, "OUTBOX_MAX_AGE": "1"}
    )
    await wait_subscribed(redis_server.url, nodes=1)
    user, room = uid("user"), f"order:{uid()}"
    device = await clients.ws(node.ws_url, make_token(user))
    redis_server.kill()
    deadline = time.monotonic() + 20
    while True:
        status, answer = await post(node.url, "/api/rooms/join", {"user": user, "room": f"order:{uid()}"})
        if status == 503:
            break
        assert status == 202 and time.monotonic() < deadline, answer
        await asyncio.sleep(0.1)
    assert answer["error"]["code"] == 503 and "Redis" in answer["error"]["message"]
    status, answer = await post(node.url, "/api/rooms/join", {"user": user, "room": room})
    assert status == 503
    assert (await post(node.url, "/api/disconnect", {"user": user}))[0] == 503
    assert not device.closed.is_set()

    with pytest.raises(EmitError):
        await Emitter(redis_server.url).join_room(user, room)
    with pytest.raises(EmitError):
        SyncEmitter(redis_server.url).leave_room(user, room)
    code, _, err = await run_cli("join", "--user", user, "--room", room, "--redis-url", redis_server.url)
    assert code == 1 and "Redis" in err

    redis_server.start()
    deadline = time.monotonic() + 20
    while (status := (await post(node.url, "/api/publish", {"target": {"room": room}, "type": "order"}))[0]) != 202:
        assert status == 503 and time.monotonic() < deadline
        await asyncio.sleep(0.1)
    assert await device.inbox.quiet("order") == []  # the refused join was applied nowhere


async def test_emitter_arguments_are_checked_before_anything_is_sent(redis_server):
    async with Emitter(redis_server.url) as emitter:
        for user, room in ((True, "admins"), ("42", "user:42"), ("", "admins"), ("42", "")):
            with pytest.raises(ValueError):
                await emitter.join_room(user, room)
    code, _, err = await run_cli("leave", "--user", "42", "--room", "user:1", "--redis-url", redis_server.url)
    assert code == 2 and "room" in err
