"""POST /api/publish: delivery through the cluster, and nothing delivered on auth or validation
failures."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from conftest import make_token, uid
from delivery import audience, nothing_else, received_once, wait_subscribed

KEY = "publish-key-0123456789"


async def post(url: str, body: Any, key: str | None = KEY, **headers: str) -> tuple[int, Any]:
    if key is not None:
        headers.setdefault("Authorization", f"Bearer {key}")
    data = json.dumps(body) if isinstance(body, (dict, list)) else body
    async with aiohttp.ClientSession() as session, session.post(f"{url}/api/publish", data=data, headers=headers) as r:
        return r.status, await r.json(content_type=None) if r.status != 404 else None


async def test_publish_reaches_its_targets_on_both_nodes(redis_server, gateway_factory, clients):
    env = {"REDIS_URL": redis_server.url, "API_KEY": KEY}
    node1, node2 = gateway_factory(env=env), gateway_factory(env=env)
    people = await audience(clients, [node1, node2])
    await wait_subscribed(redis_server.url, nodes=2)
    sent = {}
    for name, url, target in (
        ("all", node1.url, {"all": True}),
        ("user", node2.url, {"user": people.user}),
        ("room", node1.url, {"room": people.room}),
    ):
        status, answer = await post(url, {"target": target, "type": "published", "content": {"to": name}})
        assert status == 202, answer
        sent[name] = answer["id"]
    envelope = (await received_once(people.everyone, "published", sent["all"]))[-1]
    assert envelope["content"] == {"to": "all"} and isinstance(envelope["timestamp"], int)
    await received_once(people.devices, "published", sent["user"])
    assert (await received_once(people.members, "published", sent["room"]))[0]["room"] == people.room
    await nothing_else(people.everyone, "published")


async def chunks(chunk: bytes, count: int) -> AsyncIterator[bytes]:
    """A body sent without Content-Length (chunked transfer encoding)."""
    for _ in range(count):
        yield chunk


async def test_auth_and_validation_failures_deliver_nothing(gateway_factory, clients):
    node = gateway_factory(env={"API_KEY": KEY, "MAX_MESSAGE_BYTES": "2048"})
    people = await audience(clients, [node])
    good = {"target": {"all": True}, "type": "leak", "content": "x"}
    cases: list[tuple[str, Any, dict[str, Any], int, str | None]] = [
        ("no key", good, {"key": None}, 401, None),
        ("wrong key", good, {"key": KEY + "x"}, 401, None),
        ("wrong scheme", good, {"key": None, "Authorization": f"Basic {KEY}"}, 401, None),
        ("not JSON", b"{nope", {}, 400, "body"),
        ("array", [good], {}, 400, "body"),
        ("no target", {"type": "leak"}, {}, 400, "target"),
        ("all false", {**good, "target": {"all": False}}, {}, 400, "target"),
        ("two targets", {**good, "target": {"all": True, "room": "r"}}, {}, 400, "target"),
        ("bad user", {**good, "target": {"user": True}}, {}, 400, "target.user"),
        ("bad room", {**good, "target": {"room": "r" * 200}}, {}, 400, "target.room"),
        ("no type", {"target": {"all": True}}, {}, 400, "type"),
        ("empty type", {**good, "type": ""}, {}, 400, "type"),
        ("reserved type", {**good, "type": "disconnect"}, {}, 400, "type"),
        ("too large", {**good, "content": "x" * 3000}, {}, 413, None),
        ("too large, chunked", chunks(b"x" * 1000, 3), {}, 413, None),
    ]
    for name, body, options, status, field in cases:
        got, answer = await post(node.url, body, **options)
        assert got == status, (name, answer)
        assert answer["error"]["code"] == status and answer["error"]["message"], name
        assert answer["error"].get("field") == field, (name, answer)
    await nothing_else(people.everyone, "leak")


async def test_disabled_without_an_api_key(gateway):
    status, _ = await post(gateway.url, {"target": {"all": True}, "type": "t"})
    assert status == 404


async def test_publish_is_kept_then_refused_with_503_while_redis_is_down(redis_server, gateway_factory, clients):
    """During an outage a message is accepted (202) only into the node's bounded outbox, and
    written when Redis is back; past the bound (here 2 s) the caller gets 503, and that message
    reaches nobody, not even this node's own clients."""
    import asyncio
    import time

    node = gateway_factory(env={"REDIS_URL": redis_server.url, "API_KEY": KEY, "OUTBOX_MAX_AGE": "2"})
    await wait_subscribed(redis_server.url, nodes=1)
    client = await clients.ws(node.ws_url, make_token(uid()))
    body = {"target": {"all": True}, "type": "published", "content": "x"}
    assert (await post(node.url, body))[0] == 202
    redis_server.kill()
    kept, refused = [], []
    deadline = time.monotonic() + 15
    while not refused:
        assert time.monotonic() < deadline, "never refused"
        status, answer = await post(node.url, {**body, "content": len(kept)})
        assert status in (202, 503), answer
        if status == 202:
            kept.append(answer["id"])
        else:
            assert answer["error"]["code"] == 503 and "Redis" in answer["error"]["message"]
            refused.append(answer)
        await asyncio.sleep(0.1)
    assert kept, "nothing was kept in the outbox"
    redis_server.start()
    deadline = time.monotonic() + 20
    while (answer := await post(node.url, body))[0] != 202:  # accepted again once written out
        assert answer[0] == 503 and time.monotonic() < deadline, answer
        await asyncio.sleep(0.1)
    received = [e["id"] for e in await client.inbox.quiet("published", 0.5)]
    assert received[1 : len(kept) + 1] == kept  # each kept one once, in order, and no refused one
