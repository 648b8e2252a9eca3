"""The bus's public command interface, on two real managers joined through a real Redis:
``publish`` runs a command on every node (this one included) once, in order, through an outage
within the outbox bound, and nowhere when the outbox refuses it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from realtime_gateway.cluster.bus import StreamManager
from realtime_gateway.cluster.bus_outbox import BusUnavailable

WAIT = 20.0


class Node:
    """One manager (no Socket.IO server needed for custom commands) and what its command saw."""

    def __init__(self, redis_url: str, **limits: Any) -> None:
        self.manager = StreamManager(redis_url, **limits)
        self.seen: list[Any] = []
        self.changed = asyncio.Event()
        self.manager.register("record", self.record)

    async def record(self, payload: dict[str, Any]) -> None:
        self.seen.append(payload["n"])
        self.changed.set()

    async def until(self, check: Any) -> None:
        async def wait() -> None:
            while not check():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), WAIT)


async def linked(*nodes: Node) -> None:
    async def wait() -> None:
        while not all(node.manager.linked for node in nodes):
            await asyncio.sleep(0.05)

    await asyncio.wait_for(wait(), WAIT)


@pytest.fixture
async def nodes(redis_server: Any) -> AsyncIterator[list[Node]]:
    started = [Node(redis_server.url, outbox_max_age=2.0), Node(redis_server.url, outbox_max_age=2.0)]
    for node in started:
        node.manager.initialize()
    await linked(*started)
    yield started
    for node in started:
        with contextlib.suppress(Exception):
            await node.manager.close()


async def test_publish_runs_on_every_node_once_in_order(nodes):
    here, there = nodes
    for n in range(200):
        await here.manager.publish("record", {"n": n})
    assert here.seen == list(range(200))  # at once, on this node
    await there.until(lambda: len(there.seen) >= 200)
    await asyncio.sleep(0.3)  # a second copy would arrive now
    assert there.seen == list(range(200))
    with pytest.raises(ValueError, match="already registered"):
        here.manager.register("record", here.record)


async def test_publish_is_kept_through_an_outage_and_refused_past_the_bound(nodes, redis_server):
    here, there = nodes
    redis_server.kill()
    await here.manager.publish("record", {"n": "kept"})  # into the outbox
    assert here.seen == ["kept"]
    await asyncio.sleep(2.5)  # past --outbox-max-age: nothing has left for 2 s
    with pytest.raises(BusUnavailable) as refused:
        await here.manager.publish("record", {"n": "refused"})
    assert refused.value.code == 503
    assert here.seen == ["kept"]  # a refused command runs nowhere, not even here
    redis_server.start()
    await there.until(lambda: there.seen)
    await linked(here, there)
    await here.manager.publish("record", {"n": "after"})
    await there.until(lambda: len(there.seen) >= 2)
    assert there.seen == ["kept", "after"]


async def test_a_large_backlog_goes_out_in_bounded_batches_in_order(nodes, redis_server):
    """6 MB accepted during an outage leaves in several pipelines of about 1 MiB (the multi-batch
    path of the writer): all of it arrives, once, in order."""
    here, there = nodes
    redis_server.kill()
    big = "x" * 200_000
    for n in range(30):
        await here.manager.publish("record", {"n": n, "pad": big})
    redis_server.start()
    await there.until(lambda: len(there.seen) >= 30)
    assert there.seen == list(range(30))
