"""Scoped presence (``--presence-announce watchers``): ``user_status`` reaches the connections
watching that user, on every node, and nobody else; the default still tells everyone."""

from __future__ import annotations

import pytest
from conftest import make_token, uid
from realtime_gateway.config import ConfigError, settings_from_args
from test_presence import status

WATCHERS = {"PRESENCE_ANNOUNCE": "watchers"}


async def statuses_until(client, user_id: str, state: str) -> list[dict]:
    """Every ``user_status`` this client received up to ``user_id`` going ``state`` (included)."""
    seen = []
    while True:
        envelope = await client.inbox.next("user_status")
        seen.append(envelope["content"])
        if envelope["content"]["user_id"] == user_id and envelope["content"]["status"] == state:
            return seen


@pytest.fixture
def watchers_cluster(redis_server, gateway_factory):
    env = {"REDIS_URL": redis_server.url, **WATCHERS}
    return [gateway_factory(env=env), gateway_factory(env=env)]


async def test_watchers_mode_tells_watchers_on_every_node_and_nobody_else(watchers_cluster, clients):
    node1, node2 = watchers_cluster
    alice, carol = uid(), uid()
    watcher = await clients.sio(node1.url, make_token(uid()))
    assert await watcher.call("watch_presence", [alice]) == {"ok": True, "users": {alice: "offline"}}
    everyone = await clients.ws(node2.ws_url, make_token(uid()))
    await everyone.send({"type": "watch_presence", "content": "*", "id": 1})
    assert (await everyone.inbox.next("ack"))["content"] == {"ok": True, "watching": "*", "id": 1}
    bystander = await clients.sio(node2.url, make_token(uid()))

    device = await clients.ws(node2.ws_url, make_token(alice, "Alice"))
    await status(watcher, alice, "online")
    await status(everyone, alice, "online")
    # carol's transition is announced by node 2 after alice's, and reaches the bystander in that
    # order once it watches her: anything about alice would have arrived first
    assert (await bystander.call("watch_presence", [carol]))["ok"]
    await clients.sio(node2.url, make_token(carol, "Carol"))
    assert await statuses_until(bystander, carol, "online") == [
        {"user_id": carol, "user_name": "Carol", "status": "online"}
    ]

    dave = uid()
    assert await watcher.call("unwatch_presence", [alice]) == {"ok": True}
    assert (await watcher.call("watch_presence", [dave]))["users"] == {dave: "offline"}
    await device.close()
    await status(everyone, alice, "offline")
    # node 2 announces dave after alice's offline: the watcher, no longer watching alice, hears dave only
    await clients.sio(node2.url, make_token(dave, "Dave"))
    assert await statuses_until(watcher, dave, "online") == [{"user_id": dave, "user_name": "Dave", "status": "online"}]


async def test_presence_query_can_start_a_watch_and_inputs_are_checked(gateway_factory, clients):
    node = gateway_factory(env=WATCHERS)
    bob = uid()
    asker = await clients.sio(node.url, make_token(uid()))
    answer = await asker.call("presence", {"users": [bob], "watch": True})
    assert answer == {"ok": True, "users": {bob: "offline"}}
    await clients.sio(node.url, make_token(bob, "Bob"))
    await status(asker, bob, "online")
    assert await asker.call("presence", [bob]) == {"ok": True, "users": {bob: "online"}}

    for event, content in [
        ("presence", {"users": [bob], "watch": "yes"}),
        ("presence", "*"),
        ("watch_presence", "everyone"),
        ("watch_presence", [True]),
        ("watch_presence", [str(i) for i in range(1001)]),
        ("unwatch_presence", {"users": [bob]}),
    ]:
        answer = await asker.call(event, content)
        assert answer["ok"] is False and answer["error"]["code"] == 400, (event, content, answer)
    assert (await asker.call("watch_presence", [str(i) for i in range(999)]))["ok"]
    limit = await asker.call("watch_presence", ["one-more"])
    assert limit["ok"] is False and limit["error"]["code"] == 403
    assert (await asker.call("watch_presence", "*"))["ok"]  # watching everyone counts as no user


async def test_all_mode_tells_everyone_once_even_watchers(gateway_factory, clients):
    node = gateway_factory()
    alice = uid()
    watcher = await clients.sio(node.url, make_token(uid()))
    bystander = await clients.sio(node.url, make_token(uid()))
    assert (await watcher.call("watch_presence", [alice]))["ok"]
    assert (await watcher.call("watch_presence", "*"))["ok"]
    alice_device = await clients.sio(node.url, make_token(alice, "Alice"))
    await status(bystander, alice, "online")
    await alice_device.close()
    assert [s for s in await statuses_until(watcher, alice, "offline") if s["user_id"] == alice] == [
        {"user_id": alice, "user_name": "Alice", "status": "online"},
        {"user_id": alice, "user_name": "Alice", "status": "offline"},
    ]


def test_announce_mode_is_validated():
    with pytest.raises(ConfigError, match="--presence-announce"):
        settings_from_args(["--presence-announce", "nobody"])
    assert settings_from_args(["--presence-announce", "Watchers"]).presence_announce == "watchers"
