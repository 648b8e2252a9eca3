"""The cluster's client manager: every node's emits travel on one Redis Stream, read by all.

Shape: python-socketio's pub/sub manager (``emit``, ``can_disconnect``, ``enter_room``,
``leave_room`` reach the nodes that hold the connections), but on a Stream instead of pub/sub,
after ``@socket.io/redis-streams-adapter``:

- **Local first.** An emit reaches this node's members at once
  (:class:`~realtime_gateway.transport.fanout.FanoutManager`) and is queued in the *outbox*; one writer
  task XADDs whatever has queued up as one pipeline, in order. Nothing on the message path waits
  for Redis.
- **Catch-up.** Each node reads every entry with ``XREAD BLOCK`` from the last id it handled, so a
  node that lost Redis for a while reads what it missed, in order, once it is back (as long as
  the stream still holds it: retention is ``--bus-max-len`` / ``--bus-max-age``). It skips its
  own entries.
- **Exactly once.** A write whose outcome is unknown is written again; every entry carries its
  writer's (origin, sequence number) and readers drop the second copy
  (:class:`~realtime_gateway.cluster.bus_wire.SeenFilter`).
- **Nothing accepted is dropped.** The outbox keeps what Redis has not confirmed, bounded by
  ``--outbox-max-bytes`` and ``--outbox-max-age``. Past either bound an emit raises
  :class:`~realtime_gateway.cluster.bus_outbox.BusUnavailable` (a 503) *before* anything is delivered, here or anywhere.
- **A link you can trust.** Every second the node writes a heartbeat entry; the link counts
  (:attr:`StreamManager.linked`, ``/readyz``) only while the node sees its own heartbeat come
  back through the stream within ``LINK_TIMEOUT``. Otherwise both connections are replaced, which
  also heals a half-open TCP connection that no timeout would report.

Cluster-wide commands are a registry (:attr:`StreamManager.commands`): :meth:`StreamManager.publish`
runs one on every node, this one included, with the guarantees above; :meth:`StreamManager.register`
adds a new one. Emits with an ack callback (never made by the gateway) are delivered on this node
only.

Relies on python-socketio's manager interface (``AsyncManager.emit/enter_room/leave_room/
can_disconnect``, ``is_connected``, ``is_pre_connected``, ``server``), as any client manager does.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from typing import Any

import redis.asyncio as aioredis

from ..jsoncodec import dumps, loads
from ..metrics import BUS_DROPPED, BUS_DUPLICATES, BUS_GAPS, REDIS_PUBLISH_FAILURES
from ..transport.fanout import FanoutManager
from .bus_outbox import Outbox
from .bus_wire import (
    EMIT,
    FIELD_METHOD,
    FIELD_ORIGIN,
    FIELD_PAYLOAD,
    FIELD_SEQ,
    STREAM,
    SeenFilter,
    emit_payload,
    entry,
    new_origin,
    redis_client,
)

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 1.0
LINK_TIMEOUT = 5.0
"""Seconds without seeing its own heartbeat after which a node calls itself unlinked and
reconnects. Covers every way a link can fail silently, whatever the timeouts below miss."""
READ_BLOCK_MS = 1000
READ_TIMEOUT = 4.0
"""Socket timeout of the reader: ``READ_BLOCK_MS`` plus slack, so a read that gets no answer
(half-open connection, frozen Redis) fails instead of hanging."""
WRITE_TIMEOUT = 3.0
READ_COUNT = 256
WRITE_BATCH = 1000
WRITE_BATCH_BYTES = 1 << 20
"""A batch is at most this many entries and (unless one entry alone is larger) bytes, so the
backlog of an outage goes out in pipelines that each finish well within ``WRITE_TIMEOUT``."""
TRIM_EVERY = 5
"""Heartbeats between two trims of the stream to its retention."""
RETRY_FIRST = 0.5
RETRY_MAX = 5.0
"""python-socketio backs off to 60 s between attempts to resubscribe; a node would then miss
other nodes' messages for up to a minute after Redis is back."""
CLOSE_TIMEOUT = 1.0
HEARTBEAT = "heartbeat"


class LinkLost(Exception):
    """The end-to-end check failed: this node's own heartbeat did not come back."""


def _stream_id(value: bytes | str) -> tuple[int, int]:
    text = value.decode() if isinstance(value, bytes) else value
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


class StreamManager(FanoutManager):
    """The client manager of a cluster node (see the module docstring)."""

    name = "redis-stream"

    def __init__(
        self,
        redis_url: str,
        *,
        max_len: int = 100_000,
        max_age: float = 600.0,
        outbox_max_bytes: int = 64 << 20,
        outbox_max_age: float = 30.0,
        stream: str = STREAM,
    ) -> None:
        super().__init__()
        self.redis_url = redis_url
        self.stream = stream
        self.max_len = max_len
        self.max_age = max_age
        self.origin = new_origin()
        self._origin = self.origin.encode()
        self.outbox = Outbox(outbox_max_bytes, outbox_max_age)
        self._seen = SeenFilter()
        self._last_id: bytes | None = None
        self._beat_seq = 0  # the heartbeat this node waits to see come back
        self._proof = 0.0  # when it last saw one
        self._task: asyncio.Task[None] | None = None
        self.linked = False
        """True while this node sees its own heartbeat come back through Redis."""
        self.commands.update(
            {
                EMIT: self._on_emit,
                "disconnect": self._on_disconnect,
                "enter_room": self._on_enter_room,
                "leave_room": self._on_leave_room,
                HEARTBEAT: self._on_heartbeat,
            }
        )
        """Command name -> handler, run on each node for each entry of that name (with the
        payload given to :meth:`publish`); add to it with :meth:`register`."""

    # -- public interface -------------------------------------------------------------------

    async def publish(self, method: str, payload: dict[str, Any]) -> None:
        """Run a registered command on every node, this one included.

        Here it runs at once; the other nodes run it when they read it from the stream, in
        the order this node published, exactly once, after a Redis outage too (within the
        outbox and retention bounds). Raises ``BusUnavailable`` — and nothing runs
        anywhere — when the outbox refuses it."""
        handler = self.commands[method]
        self.outbox.add(method, dumps(payload))
        await handler(payload)

    @property
    def last_seq(self) -> int:
        """The sequence number of this node's latest entry (an emit, a command, a heartbeat):
        read right after an emit, the one that emit travels under."""
        return self.outbox.last_seq

    async def drain(self, timeout: float) -> None:
        """Wait, at most ``timeout`` seconds, until Redis has everything queued (at shutdown:
        the last presence updates must reach the other nodes)."""
        try:
            await asyncio.wait_for(self.outbox.idle.wait(), timeout)
        except asyncio.TimeoutError:
            log.warning("%d message(s) for Redis not written before shutdown", len(self.outbox))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -- python-socketio's manager interface ------------------------------------------------

    def initialize(self) -> None:
        super().initialize()
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def emit(  # type: ignore[override]
        self,
        event: str,
        data: Any,
        namespace: str | None = None,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        ignore_queue: bool = False,
        **kwargs: Any,
    ) -> None:
        room = to or room
        namespace = namespace or "/"
        if not ignore_queue and callback is None:
            args = list(data) if isinstance(data, tuple) else ([] if data is None else [data])
            self.outbox.add(EMIT, dumps(emit_payload(event, args, namespace, room, skip_sid)))
        await super().emit(event, data, namespace, room=room, skip_sid=skip_sid, callback=callback)

    async def can_disconnect(self, sid: str, namespace: str) -> bool:
        if self.is_connected(sid, namespace) or self.is_pre_connected(sid, namespace):
            return await super().can_disconnect(sid, namespace)
        await self.publish("disconnect", {"sid": sid, "namespace": namespace or "/"})
        return False

    async def enter_room(self, sid: str, namespace: str, room: str, eio_sid: str | None = None) -> None:
        if self.is_connected(sid, namespace) or self.is_pre_connected(sid, namespace):
            return await super().enter_room(sid, namespace, room, eio_sid=eio_sid)
        await self.publish("enter_room", {"sid": sid, "namespace": namespace or "/", "room": room})

    async def leave_room(self, sid: str, namespace: str, room: str) -> None:
        if self.is_connected(sid, namespace) or self.is_pre_connected(sid, namespace):
            return await super().leave_room(sid, namespace, room)
        await self.publish("leave_room", {"sid": sid, "namespace": namespace or "/", "room": room})

    # -- command handlers (payloads come from other processes: checked) ---------------------

    async def _on_emit(self, payload: dict[str, Any]) -> None:
        event, args = payload["event"], payload["data"]
        if not isinstance(event, str) or not isinstance(args, list):
            raise TypeError("emit needs a string event and a list of arguments")
        data = None if not args else args[0] if len(args) == 1 else tuple(args)
        await super().emit(
            event, data, payload.get("namespace") or "/", room=payload.get("room"), skip_sid=payload.get("skip_sid")
        )

    async def _on_disconnect(self, payload: dict[str, Any]) -> None:
        await self.server.disconnect(payload["sid"], namespace=payload.get("namespace") or "/", ignore_queue=True)

    async def _on_enter_room(self, payload: dict[str, Any]) -> None:
        sid, namespace = payload["sid"], payload.get("namespace") or "/"
        if self.is_connected(sid, namespace) or self.is_pre_connected(sid, namespace):
            await super().enter_room(sid, namespace, payload["room"])

    async def _on_leave_room(self, payload: dict[str, Any]) -> None:
        sid, namespace = payload["sid"], payload.get("namespace") or "/"
        if self.is_connected(sid, namespace) or self.is_pre_connected(sid, namespace):
            await super().leave_room(sid, namespace, payload["room"])

    async def _on_heartbeat(self, payload: dict[str, Any]) -> None:
        """Other nodes' heartbeats: nothing to do (their seq numbers were noted as seen)."""

    # -- writing ---------------------------------------------------------------------------

    async def _write_loop(self, client: aioredis.Redis) -> None:
        """Write the outbox in order; an entry leaves it only once Redis confirmed it. A failure
        ends the link; the next one writes the same entries again (readers drop repeats)."""
        while True:
            batch = await self.outbox.next_batch(WRITE_BATCH, WRITE_BATCH_BYTES)
            try:
                async with client.pipeline(transaction=False) as pipe:
                    for pending in batch:
                        pipe.xadd(self.stream, entry(self.origin, pending.seq, pending.method, pending.payload))
                    await pipe.execute()
            except Exception:
                REDIS_PUBLISH_FAILURES.inc(len(batch))
                raise
            self.outbox.confirm(len(batch))

    # -- reading ----------------------------------------------------------------------------

    async def _resume(self, client: aioredis.Redis) -> None:
        """Where to read from on this link: where the last one stopped, unless the stream is
        not the one read before (Redis lost its data) or has been trimmed past that point."""
        try:
            info = await client.xinfo_stream(self.stream)
        except aioredis.ResponseError:  # no stream yet: read it from its first entry
            info = None
        newest = info["last-generated-id"] if info else b"0-0"
        if self._last_id is None:  # first link: from now on
            self._last_id = newest
        elif _stream_id(newest) < _stream_id(self._last_id):
            log.warning("the bus stream is older than what this node read: Redis lost its data; reading it anew")
            BUS_GAPS.inc()
            self._last_id = b"0-0"
        elif info and info.get("first-entry") and _stream_id(info["first-entry"][0]) > _stream_id(self._last_id):
            log.error("this node was away longer than the bus retention: messages it missed may be lost")
            BUS_GAPS.inc()

    async def _read_loop(self, client: aioredis.Redis) -> None:
        streams = {self.stream: self._last_id}
        while True:
            response = await client.xread(streams, count=READ_COUNT, block=READ_BLOCK_MS)
            for _name, entries in response or ():
                for entry_id, fields in entries:
                    self._last_id = streams[self.stream] = entry_id
                    await self._receive(fields)

    async def _receive(self, fields: dict[bytes, bytes]) -> None:
        origin = fields.get(FIELD_ORIGIN)
        try:
            seq = int(fields[FIELD_SEQ])
            method = fields[FIELD_METHOD].decode()
        except (KeyError, ValueError):
            return self._drop("malformed", "an entry without origin, sequence number or command")
        if origin == self._origin:
            if method == HEARTBEAT and seq >= self._beat_seq:
                self._proof = time.monotonic()
                self._beat_seq = 0
                if not self.linked:
                    log.info("linked to the cluster bus")
                    self.linked = True
            return
        if origin is None or not self._seen.first_time(origin, seq):
            BUS_DUPLICATES.inc()
            return
        handler = self.commands.get(method)
        if handler is None:
            return self._drop("unknown_command", f"unknown command {method!r}")
        try:
            payload = loads(fields[FIELD_PAYLOAD])
        except (KeyError, ValueError, UnicodeDecodeError) as exc:
            return self._drop("undecodable", f"{method} payload cannot be decoded: {exc}")
        if not isinstance(payload, dict):
            return self._drop("undecodable", f"{method} payload is not a JSON object")
        try:
            await handler(payload)
        except (KeyError, TypeError, ValueError) as exc:
            self._drop("bad_payload", f"{method} payload refused: {exc!r}")
        except Exception:
            log.exception("bus command %s failed", method)
            BUS_DROPPED.labels("failed").inc()

    @staticmethod
    def _drop(reason: str, detail: str) -> None:
        BUS_DROPPED.labels(reason).inc()
        log.warning("dropped a bus entry: %s", detail)

    # -- the link ---------------------------------------------------------------------------

    async def _run(self) -> None:
        delay = RETRY_FIRST
        while True:
            reason = "link ended"
            try:
                await self._link_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = str(exc) or type(exc).__name__
            if self.linked:
                delay = RETRY_FIRST
            self.linked = False
            log.error("cluster bus lost Redis (%s); retrying in %.1f s", reason, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    async def _link_once(self) -> None:
        """One pair of fresh connections, until either fails or the heartbeat stops coming back."""
        name = f"gateway-bus:{self.origin[:12]}"
        reader = redis_client(self.redis_url, READ_TIMEOUT, name + ":reader")
        writer = redis_client(self.redis_url, WRITE_TIMEOUT, name + ":writer")
        try:
            await self._resume(reader)
            self._proof = time.monotonic()
            self._beat_seq = self.outbox.add(HEARTBEAT, "{}", bounded=False)
            tasks = [
                asyncio.ensure_future(self._read_loop(reader)),
                asyncio.ensure_future(self._write_loop(writer)),
                asyncio.ensure_future(self._watch(writer)),
            ]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                # bounded: a redis-py call that does not give way to cancellation must not hold
                # the relink (or the shutdown) forever
                await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT)
            for task in done:
                task.result()
        finally:
            for client in (reader, writer):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.aclose(), CLOSE_TIMEOUT)

    async def _watch(self, writer: aioredis.Redis) -> None:
        """Heartbeats, the end-to-end check, and trimming the stream to its retention."""
        for beat in itertools.count(1):
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            if time.monotonic() - self._proof > LINK_TIMEOUT:
                raise LinkLost(f"own heartbeat did not come back within {LINK_TIMEOUT:.0f} s")
            if not self._beat_seq:
                self._beat_seq = self.outbox.add(HEARTBEAT, "{}", bounded=False)
            if beat % TRIM_EVERY == 0:
                await self._trim(writer)

    async def _trim(self, writer: aioredis.Redis) -> None:
        async with writer.pipeline(transaction=False) as pipe:
            if self.max_len:
                pipe.xtrim(self.stream, maxlen=self.max_len, approximate=True)
            if self.max_age:
                pipe.xtrim(self.stream, minid=f"{int((time.time() - self.max_age) * 1000)}-0", approximate=True)
            await pipe.execute()
