"""Ask every node of the cluster a question and gather their answers, over Redis pub/sub.

The operator API needs figures only each node has (its connections, their transports and rooms,
its message counters). Keeping them in Redis would cost writes on every connect and join, all
the time, for a page that is rarely open; instead a node asks when an operator looks:

- every node subscribes to ``gateway:ops:query`` and to its own ``gateway:ops:reply:<node>``;
- :meth:`NodeQueries.ask` publishes ``{"id", "from", "question", "args"}`` on the query channel.
  ``PUBLISH`` answers how many subscribers received it, which is how many answers to wait for (so
  no node list is kept anywhere), each node answers on the asker's reply channel, and the asker
  returns once all have answered or ``timeout`` has passed (a frozen node then shows as missing);
- without Redis (a single node) the question is answered locally.

Answers are computed by synchronous functions of this node's state, so answering never waits on
I/O besides the one ``PUBLISH`` of the reply. The cost is one message per node per question,
only while someone asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as redis

from .bus_wire import live_messages

log = logging.getLogger(__name__)

QUERY_CHANNEL = "gateway:ops:query"
REPLY_PREFIX = "gateway:ops:reply:"
ASK_TIMEOUT = 2.0
"""Longest a question waits for the last node's answer."""
RESUBSCRIBE_DELAY = 1.0

Answerer = Callable[[Mapping[str, Any]], dict[str, Any]]
"""Answers one question from this node's own state: ``args`` -> a JSON-able answer."""


@dataclass
class Gathered:
    """The answers to one question, by node id, and how many nodes were expected to answer."""

    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    expected: int = 1

    @property
    def missing(self) -> int:
        return max(0, self.expected - len(self.answers))


class QueryError(Exception):
    """The cluster could not be asked (Redis unreachable): only this node's answer, ``local``, is known."""

    def __init__(self, message: str, local: Gathered) -> None:
        super().__init__(message)
        self.local = local


class NodeQueries:
    """This node's side of the query channel: answers others' questions and asks its own."""

    def __init__(self, client: redis.Redis | None, node_id: str, answerers: Mapping[str, Answerer]) -> None:
        self.node_id = node_id
        self._redis = client
        self._answerers = dict(answerers)
        self._pending: dict[str, tuple[Gathered, asyncio.Event]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    @property
    def clustered(self) -> bool:
        return self._redis is not None

    async def start(self) -> None:
        if self._redis is not None:
            self._listener = asyncio.create_task(self._listen())

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener

    def answer(self, question: str, args: Mapping[str, Any]) -> dict[str, Any]:
        return self._answerers[question](args)

    async def ask(self, question: str, args: Mapping[str, Any], timeout: float = ASK_TIMEOUT) -> Gathered:
        """Every node's answer (this one's included); :class:`QueryError` when Redis is out of
        reach, carrying this node's answer."""
        if question not in self._answerers:
            raise KeyError(question)
        if self._redis is None:
            return Gathered({self.node_id: self.answer(question, args)}, expected=1)
        request_id = uuid.uuid4().hex
        gathered, complete = Gathered(expected=0), asyncio.Event()
        self._pending[request_id] = (gathered, complete)
        try:
            message = json.dumps({"id": request_id, "from": self.node_id, "question": question, "args": dict(args)})
            try:
                # our own reply channel must be listened to before anyone can answer on it
                await asyncio.wait_for(self._subscribed.wait(), timeout)
                gathered.expected = await self._redis.publish(QUERY_CHANNEL, message)
                problem = "" if gathered.expected else "no node is subscribed (Redis was restarted?)"
            except Exception as exc:
                problem = str(exc) or type(exc).__name__
            if problem:
                local = Gathered({self.node_id: self.answer(question, args)}, expected=1)
                raise QueryError(f"cluster unavailable: {problem}", local)
            if len(gathered.answers) < gathered.expected:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(complete.wait(), timeout)
            return gathered
        finally:
            del self._pending[request_id]

    async def _listen(self) -> None:
        assert self._redis is not None
        channels = (QUERY_CHANNEL, REPLY_PREFIX + self.node_id)
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(*channels)
                self._subscribed.set()
                async for message in live_messages(pubsub):  # PINGs: a half-open link is replaced
                    await self._handle_safely(message["channel"], message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._subscribed.clear()
                log.warning("operator queries: Redis subscription lost, retrying: %s", exc)
                await asyncio.sleep(RESUBSCRIBE_DELAY)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def _handle_safely(self, channel: str, data: str) -> None:
        """One message; whatever goes wrong with it (a reply that cannot be published) is logged
        and costs that message only, not the subscription."""
        try:
            await self._handle(channel, data)
        except Exception:
            log.warning("operator queries: could not handle a message on %s", channel, exc_info=True)

    async def _handle(self, channel: str, data: str) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            log.warning("operator queries: dropped a message that is not a JSON object on %s", channel)
            return
        if channel == QUERY_CHANNEL:
            await self._reply(message)
            return
        pending = self._pending.get(str(message.get("id")))
        if pending is not None and isinstance(message.get("answer"), dict):
            gathered, complete = pending
            gathered.answers[str(message.get("node"))] = message["answer"]
            if len(gathered.answers) >= gathered.expected > 0:
                complete.set()

    async def _reply(self, message: dict[str, Any]) -> None:
        question, args = message.get("question"), message.get("args")
        if question not in self._answerers or not isinstance(args, dict) or not isinstance(message.get("from"), str):
            return  # a question from a newer or an older node: it counts this node as missing
        answer = self.answer(str(question), args)
        reply = json.dumps({"id": message.get("id"), "node": self.node_id, "answer": answer})
        await self._redis.publish(REPLY_PREFIX + message["from"], reply)  # type: ignore[union-attr]
