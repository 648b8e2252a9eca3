"""Connection-state recovery across the nodes of a cluster (real processes, a private Redis):
a client resumes on another node — also after its node was SIGKILLed — with its rooms and every
message it missed, from every origin (clients on both nodes, the HTTP API), in order, once."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from conftest import make_token, uid
from delivery import join, wait_subscribed
from test_recovery import RawSocketIO, room_text, welcome, ws_resume

pytestmark = pytest.mark.timeout(90)

API_KEY = "recovery-cluster-key-0123456789"


@pytest.fixture
def nodes(redis_server, gateway_factory) -> list[Any]:
    env = {"REDIS_URL": redis_server.url, "API_KEY": API_KEY, "RATE_LIMIT": "1000", "RATE_BURST": "1000"}
    return [gateway_factory(env=env), gateway_factory(env=env)]


async def publish(node: Any, room: str, text: str) -> str:
    body = {"target": {"room": room}, "type": "room_message", "content": {"text": text}}
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with aiohttp.ClientSession() as http, http.post(f"{node.url}/api/publish", json=body, headers=headers) as r:
        assert r.status == 202, await r.text()
        return (await r.json())["id"]


async def missed_from_everywhere(nodes: list[Any], senders: list[Any], room: str) -> list[str]:
    """Messages from a client on each node and from the HTTP API, interleaved."""
    ids = []
    for i in range(3):
        for sender in senders:
            ids.append(await room_text(sender, room, f"missed {i}"))
        ids.append(await publish(nodes[i % 2], room, f"published {i}"))
    return ids


def stream(client: Any) -> list[dict[str, Any]]:
    return [e for e in client.inbox.received if e["type"] == "room_message"]


@pytest.mark.parametrize("fault", ["disconnect", "sigkill"])
async def test_ws_resumes_on_the_other_node(nodes, redis_server, clients, fault):
    await wait_subscribed(redis_server.url, 2)
    first_node, other = nodes
    user, room = uid("user"), uid("room")
    senders = [await clients.sio(node.url, make_token(uid())) for node in nodes]
    for sender in senders:
        await join(sender, room)
    first = await clients.ws(first_node.ws_url, make_token(user))
    await join(first, room)
    seen = await first.inbox.next("room_message", id=await room_text(senders[1], room, "seen"))
    if fault == "sigkill":
        first_node.kill()
        senders = senders[1:]  # the client on the killed node is gone too
    else:
        await first.close()
    missed = await missed_from_everywhere([other, other] if fault == "sigkill" else nodes, senders, room)

    second = await ws_resume(clients, other, make_token(user), welcome(first)["session"], seen["offset"])
    assert welcome(second)["recovered"] is True
    live = await room_text(senders[-1], room, "live")
    await second.inbox.next("room_message", id=live)
    got = stream(second)
    # in the order the new node delivered them (a message from the other node may come after
    # one sent later here), each once, before the live one
    assert sorted(e["id"] for e in got[:-1]) == sorted(missed) and got[-1]["id"] == live
    assert len({e["id"] for e in got}) == len(got)
    assert [e["offset"] for e in got] == sorted(e["offset"] for e in got)
    # rooms restored on the new node: it may speak without joining
    await second.send({"type": "room_message", "content": {"room": room, "text": "back"}, "id": "m"})
    assert (await second.inbox.next("ack"))["content"]["ok"] is True


async def test_socketio_resumes_on_the_other_node_with_pid(nodes, redis_server, clients):
    await wait_subscribed(redis_server.url, 2)
    user, room = uid("user"), uid("room")
    sender = await clients.sio(nodes[0].url, make_token(uid()))
    await join(sender, room)
    async with aiohttp.ClientSession() as http:
        first = await RawSocketIO.open(http, nodes[0].url, {"token": make_token(user)})
        pid = first.connect_answer["pid"]
        await first.ws.send_str("420" + json.dumps(["join_room", room]))
        while not (await first._text()).startswith("430[{"):  # until joined
            pass
        await room_text(sender, room, "seen")
        _, offset = await first.event("room_message")
        nodes[0].kill()
        sender = await clients.sio(nodes[1].url, make_token(uid()))
        await join(sender, room)
        missed = [await room_text(sender, room, f"missed {i}") for i in range(3)]
        second = await RawSocketIO.open(http, nodes[1].url, {"token": make_token(user), "pid": pid, "offset": offset})
        assert second.connect_answer["pid"] == pid
        (hello,) = await second.event("welcome")
        assert hello["content"]["recovered"] is True
        assert [(await second.event("room_message"))[0]["id"] for _ in missed] == missed
        await second.ws.close()


async def test_cross_node_resume_refused_for_another_user_or_forged_offset(nodes, redis_server, clients):
    await wait_subscribed(redis_server.url, 2)
    user, room = uid("user"), uid("room")
    first = await clients.ws(nodes[0].ws_url, make_token(user))
    await join(first, room)
    await first.close()
    session = welcome(first)["session"]
    other_user = await ws_resume(clients, nodes[1], make_token(uid()), session, None)
    assert welcome(other_user)["recovered"] is False
    forged = await ws_resume(clients, nodes[1], make_token(user), session, "00000000-000000000001.0-0.1")
    assert welcome(forged)["recovered"] is False
    owner = await ws_resume(clients, nodes[1], make_token(user), session, None)
    assert welcome(owner)["recovered"] is True


async def test_a_session_moves_to_the_other_node_and_back(nodes, redis_server, clients):
    """A session that moved to node B can move back to A (its record follows it)."""
    await wait_subscribed(redis_server.url, 2)
    user, room = uid("user"), uid("room")
    sender = await clients.sio(nodes[1].url, make_token(uid()))
    await join(sender, room)
    first = await clients.ws(nodes[0].ws_url, make_token(user))
    await join(first, room)
    seen = await first.inbox.next("room_message", id=await room_text(sender, room, "one"))
    await first.close()
    second = await ws_resume(clients, nodes[1], make_token(user), welcome(first)["session"], seen["offset"])
    assert welcome(second)["recovered"] is True
    seen = await second.inbox.next("room_message", id=await room_text(sender, room, "two"))
    await second.close()
    missed = await room_text(sender, room, "three")
    third = await ws_resume(clients, nodes[0], make_token(user), welcome(first)["session"], seen["offset"])
    assert welcome(third)["recovered"] is True
    assert (await third.inbox.next("room_message"))["id"] == missed
    assert await third.inbox.quiet("room_message") == []


async def test_ws_resumes_on_its_restarted_node_from_the_bus_stream(nodes, redis_server, clients):
    """The node was SIGKILLed and started again: its journal is empty, the stream still has what
    the client missed (sent through the other node while it was down, and after)."""
    await wait_subscribed(redis_server.url, 2)
    user, room = uid("user"), uid("room")
    sender = await clients.sio(nodes[1].url, make_token(uid()))
    await join(sender, room)
    first = await clients.ws(nodes[0].ws_url, make_token(user))
    await join(first, room)
    seen = await first.inbox.next("room_message", id=await room_text(sender, room, "seen"))
    nodes[0].kill()
    missed = [await room_text(sender, room, "while down")]
    nodes[0].start()
    await wait_subscribed(redis_server.url, 2)
    missed.append(await room_text(sender, room, "after the restart"))
    second = await ws_resume(clients, nodes[0], make_token(user), welcome(first)["session"], seen["offset"])
    assert welcome(second)["recovered"] is True
    live = await room_text(sender, room, "live")
    await second.inbox.next("room_message", id=live)
    assert [e["id"] for e in stream(second)] == [*missed, live]


async def read_part_then_cut(node: Any, token: str, session: str, offset: str, count: int) -> tuple[bool, list[Any]]:
    """Resume on ``node``, read the welcome and ``count`` room messages, then cut the TCP
    connection: what the kernel had taken for this client beyond those frames is lost with it."""
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{node.ws_url}?token={token}&session={session}&offset={offset}")
        hello = json.loads((await ws.receive(timeout=30)).data)
        assert hello["type"] == "welcome"
        got = []
        while len(got) < count:
            frame = json.loads((await ws.receive(timeout=30)).data)
            if frame["type"] == "room_message":
                got.append(frame)
        transport = ws._response.connection.transport  # type: ignore[union-attr]
        transport.abort()
        return hello["content"]["recovered"], got


@pytest.mark.parametrize("cut", [20, 300])
@pytest.mark.parametrize("restarted", [False, True], ids=["journal", "bus stream"])
@pytest.mark.parametrize("last", ["same node", "first node"])
async def test_second_drop_during_a_cross_node_replay_leaves_no_gap(nodes, redis_server, clients, last, restarted, cut):
    """The client drops again while the replay of its resumption on another node is arriving,
    then resumes with the offset of the last message it received: it gets the rest of that
    replay, each once, in order, never ``recovered: true`` with a gap. With ``restarted`` the
    other node was restarted while the client was away: it replays first what its journal lacks
    from the bus stream, then the rest from its journal (``cut`` falls into either part)."""
    await wait_subscribed(redis_server.url, 2)
    user, room = uid("user"), uid("room")
    sender = await clients.sio(nodes[0].url, make_token(uid()))
    await join(sender, room)
    first = await clients.ws(nodes[0].ws_url, make_token(user))
    await join(first, room)
    seen = await first.inbox.next("room_message", id=await room_text(sender, room, "seen"))
    await first.close()
    session = welcome(first)["session"]
    if restarted:
        nodes[1].kill()
    missed = [await room_text(sender, room, f"missed {i}") for i in range(250)]
    if restarted:
        nodes[1].start()
        await wait_subscribed(redis_server.url, 2)
    missed += [await room_text(sender, room, f"missed {i}") for i in range(250, 500)]

    recovered, part = await read_part_then_cut(nodes[1], make_token(user), session, seen["offset"], cut)
    assert recovered is True
    assert [e["id"] for e in part] == missed[:cut]

    node = nodes[1] if last == "same node" else nodes[0]
    again = await ws_resume(clients, node, make_token(user), session, part[-1]["offset"])
    assert welcome(again)["recovered"] is True
    live = await room_text(sender, room, "live")
    await again.inbox.next("room_message", id=live)
    assert [e["id"] for e in stream(again)] == [*missed[cut:], live]
