"""Room history: ``history`` (ack on Socket.IO, a ``history`` envelope on /ws) and
``GET /api/history`` return a room's last messages oldest first, each with the offset it was
delivered with; members only; bounded by --history-size and --history-ttl."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from conftest import make_token, uid
from delivery import join, wait_subscribed, wait_until
from realtime_gateway import Emitter

pytestmark = pytest.mark.timeout(60)

API_KEY = "history-test-key-0123456789"


async def say(sender: Any, room: str, count: int) -> list[str]:
    ids = []
    for i in range(count):
        ack = await sender.call("room_message", {"room": room, "text": f"m{i}"})
        assert ack["ok"] is True, ack
        ids.append(ack["message_id"])
    return ids


async def test_history_is_the_last_messages_oldest_first_with_their_offsets(gateway, clients):
    room = uid("room")
    member = await clients.sio(gateway.url, make_token(uid()))
    listener = await clients.ws(gateway.ws_url, make_token(uid()))
    await join(member, room)
    await join(listener, room)
    ids = await say(member, room, 5)
    delivered = [await listener.inbox.next("room_message", id=i) for i in ids]

    answer = await member.call("history", {"room": room, "limit": 3})
    assert answer["ok"] is True and answer["room"] == room
    assert [m["id"] for m in answer["messages"]] == ids[2:]
    # the same offsets the members received the messages with
    assert [m["offset"] for m in answer["messages"]] == [m["offset"] for m in delivered[2:]]
    assert answer["messages"][0]["content"]["text"] == "m2"

    earlier = await member.call("history", {"room": room, "limit": 10, "before": delivered[2]["offset"]})
    assert [m["id"] for m in earlier["messages"]] == ids[:2]
    everything = await member.call("history", {"room": room})
    assert [m["id"] for m in everything["messages"]] == ids


async def test_history_on_plain_websocket_is_a_history_envelope(gateway, clients):
    room = uid("room")
    member = await clients.ws(gateway.ws_url, make_token(uid()))
    await join(member, room)
    sender = await clients.sio(gateway.url, make_token(uid()))
    await join(sender, room)
    ids = await say(sender, room, 2)
    await member.send({"type": "history", "content": {"room": room, "limit": 5}, "id": "h1"})
    reply = await member.inbox.next("history")
    assert reply["content"]["room"] == room
    assert [m["id"] for m in reply["content"]["messages"]] == ids
    assert "offset" not in reply  # a direct reply, not part of the replayable stream
    assert (await member.inbox.next("ack"))["content"] == {"id": "h1", "ok": True, "room": room, "count": 2}


async def test_history_is_for_members_and_own_user_room_only(gateway, clients):
    room, user = uid("room"), uid("user")
    member = await clients.sio(gateway.url, make_token(uid()))
    await join(member, room)
    await say(member, room, 1)
    outsider = await clients.sio(gateway.url, make_token(user))
    refused = await outsider.call("history", {"room": room})
    assert refused == {"ok": False, "error": {"code": 403, "message": refused["error"]["message"]}}
    assert (await outsider.call("history", {"room": f"user:{uid()}"}))["error"]["code"] == 403
    for bad in ({"room": room, "limit": 101}, {"room": room, "limit": 0}, {"limit": 5}, "lobby"):
        assert (await outsider.call("history", bad))["error"]["code"] == 400

    await member.call("user_message", {"to": user, "text": "for you"})
    own = await outsider.call("history", {"room": f"user:{user}"})
    assert [m["content"]["text"] for m in own["messages"]] == ["for you"]


async def test_http_history_needs_the_key_and_reads_user_rooms(gateway_factory, clients):
    node = gateway_factory(env={"API_KEY": API_KEY})
    user = uid("user")
    receiver = await clients.ws(node.ws_url, make_token(user))
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with aiohttp.ClientSession() as http:
        body = {"target": {"user": user}, "type": "notification", "content": {"title": "t", "body": "b"}}
        async with http.post(f"{node.url}/api/publish", json=body, headers=headers) as response:
            assert response.status == 202
            sent = (await response.json())["id"]
        delivered = await receiver.inbox.next("notification", id=sent)
        async with http.get(f"{node.url}/api/history", params={"room": f"user:{user}"}, headers=headers) as response:
            assert response.status == 200
            answer = await response.json()
        assert [(m["id"], m["offset"]) for m in answer["messages"]] == [(sent, delivered["offset"])]
        async with http.get(f"{node.url}/api/history", params={"room": "x"}) as response:
            assert response.status == 401 and (await response.json())["error"]["code"] == 401
        for params, field in (
            ({}, "room"),
            ({"room": "x", "limit": "many"}, "limit"),
            ({"room": "x", "limit": "500"}, "limit"),
        ):
            async with http.get(f"{node.url}/api/history", params=params, headers=headers) as response:
                assert response.status == 400
                assert (await response.json())["error"]["field"] == field


async def test_history_is_bounded_by_size_and_age(gateway_factory, clients):
    node = gateway_factory(env={"HISTORY_SIZE": "3", "HISTORY_TTL": "1"})
    room = uid("room")
    member = await clients.sio(node.url, make_token(uid()))
    await join(member, room)
    ids = await say(member, room, 5)
    assert [m["id"] for m in (await member.call("history", {"room": room}))["messages"]] == ids[2:]
    await asyncio.sleep(1.5)  # the TTL is what is tested
    assert (await member.call("history", {"room": room}))["messages"] == []


async def test_history_off(gateway_factory, clients):
    node = gateway_factory(env={"HISTORY_SIZE": "0"})
    room = uid("room")
    member = await clients.sio(node.url, make_token(uid()))
    await join(member, room)
    assert (await member.call("history", {"room": room}))["error"]["code"] == 404


async def test_history_keeps_what_was_sent_while_nobody_was_connected(gateway_factory, clients):
    node = gateway_factory(env={"API_KEY": API_KEY})
    room = uid("room")
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with aiohttp.ClientSession() as http:
        body = {"target": {"room": room}, "type": "data_update", "content": {"entity": "order"}}
        async with http.post(f"{node.url}/api/publish", json=body, headers=headers) as response:
            sent = (await response.json())["id"]
    member = await clients.sio(node.url, make_token(uid()))
    await join(member, room)
    assert [m["id"] for m in (await member.call("history", {"room": room}))["messages"]] == [sent]


async def test_cluster_history_is_in_redis_the_same_on_every_node_and_survives_a_restart(
    redis_server, gateway_factory, clients
):
    env = {"REDIS_URL": redis_server.url, "API_KEY": API_KEY, "HISTORY_SIZE": "4"}
    nodes = [gateway_factory(env=env), gateway_factory(env=env)]
    await wait_subscribed(redis_server.url, 2)
    room = uid("room")
    members = [await clients.sio(node.url, make_token(uid())) for node in nodes]
    for member in members:
        await join(member, room)
    ids = await say(members[0], room, 2)
    # acked before it is on the bus: once the other node has it, the next ones come after it
    await members[1].inbox.next("room_message", id=ids[-1])
    ids += await say(members[1], room, 3)
    await members[0].inbox.next("room_message", id=ids[-1])
    async with Emitter(redis_server.url) as emitter:  # not a node: every node stores it, once
        ids.append(await emitter.broadcast_to_room(room, "room_message", {"text": "from a back end"}))
    for member in members:
        await member.inbox.next("room_message", id=ids[-1])
    ids = ids[-5:]

    async def history(node_index: int, **query: Any) -> list[dict[str, Any]]:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with aiohttp.ClientSession() as http:
            url = f"{nodes[node_index].url}/api/history"
            async with http.get(url, params={"room": room, **query}, headers=headers) as response:
                assert response.status == 200, await response.text()
                return (await response.json())["messages"]

    await wait_until(lambda: _ids_are(history(0), ids[1:]), "history written to Redis")
    first, second = await history(0), await history(1)
    assert first == second and [m["id"] for m in first] == ids[1:]  # the last 4, once each
    earlier = await history(1, before=first[2]["offset"], limit="1")
    assert [m["id"] for m in earlier] == [ids[2]]
    nodes[0].kill()
    nodes[0].start()
    assert [m["id"] for m in await history(0)] == ids[1:]
    assert [m["id"] for m in (await members[1].call("history", {"room": room, "limit": 2}))["messages"]] == ids[3:]


async def _ids_are(messages: Any, ids: list[str]) -> bool:
    return [m["id"] for m in await messages] == ids
