"""Chaos: nothing accepted is lost, nothing is delivered twice, every reconnect recovers.

Real processes: a Redis with an append-only file (fsync always), two gateway nodes, 100 clients
in 10 rooms — 50 Socket.IO clients in Node (``tests/node/chaos_clients.mjs``: 30 stock
socket.io-client sockets, 10 of the project's ``RealtimeClient`` and 10 ``GatewayWebSocket`` on
long-polling upgraded to WebSocket, from frontend-adapter's built ``dist/``, rebuilt here when
older than its sources) and 50 plain ``/ws`` clients here that resume with ``session`` and
``offset``. Every client reaches the cluster through its own TCP proxy, which plays the load
balancer (it keeps a client on the node that last served it and moves it when that node is down)
and the network (it cuts the client's connections and refuses new ones for a while). For
``CHAOS_SECONDS`` (60) about 200 messages a second come from the clients, the HTTP API and the
Emitter, while: 20 clients lose their connection for 2-20 s, one node is SIGKILLed and restarted
(its clients move to the other node), and Redis is SIGKILLed and restarted.

What a ``RealtimeClient`` or ``GatewayWebSocket`` received is counted as its application sees it,
after the adapter's drop of repeated ids, and its ``recovery`` event gives its recovered:false.

Accepted means: acknowledged ``ok`` to the client (a ``/ws`` client here, or an adapter client in
Node, which sends through the adapter's offline queue while disconnected), answered 202 by the
HTTP API, or given an id by the Emitter. Every accepted message must reach every member of its
room exactly once, and no reconnect may come back with ``recovered: false``.

Runs when ``CHAOS=1`` or in CI (``CI=true``): a few minutes of two busy cores.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import random
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import RedisServer, make_token, uid
from realtime_gateway import EmitError, Emitter

pytestmark = [
    pytest.mark.timeout(420),
    pytest.mark.skipif(
        os.environ.get("CHAOS") != "1" and os.environ.get("CI", "").lower() != "true",
        reason="the chaos test runs with CHAOS=1, and always in CI",
    ),
]

SECONDS = float(os.environ.get("CHAOS_SECONDS", "60"))
ROOMS = 10
PER_ROOM = 5  # of each transport: 5 Socket.IO + 5 plain WebSocket members per room
# the Socket.IO members of a room, by position: the client package's two classes, then stock sockets
NODE_KINDS = ("client", "gws", "sio", "sio", "sio")
API_KEY = "chaos-api-key-0123456789abcdef"
NODE_SCRIPT = Path(__file__).parent / "node" / "chaos_clients.mjs"
ADAPTER = Path(__file__).parent.parent / "frontend-adapter"


def build_adapter(npm: str) -> None:
    """Builds frontend-adapter's ``dist/`` unless it is newer than every source file, so the test
    never runs an out-of-date client package (or none)."""
    built = ADAPTER / "dist" / "index.js"
    sources = [ADAPTER / "package.json", *(ADAPTER / "src").rglob("*.ts")]
    if built.exists() and built.stat().st_mtime >= max(path.stat().st_mtime for path in sources):
        return
    subprocess.run([npm, "run", "--silent", "build"], cwd=ADAPTER, check=True, timeout=300)


class Balancer:
    """One client's TCP proxy: sticky to the node that last took its connection, failing over to
    the other; ``block(seconds)`` cuts its connections and refuses new ones meanwhile."""

    def __init__(self, ports: list[int], preferred: int) -> None:
        self.ports = ports
        self.current = preferred
        self.blocked_until = 0.0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._live: set[asyncio.StreamWriter] = set()

    async def start(self) -> Balancer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def block(self, seconds: float) -> None:
        self.blocked_until = time.monotonic() + seconds
        for writer in list(self._live):
            writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if time.monotonic() < self.blocked_until:
            writer.transport.abort()
            return
        for attempt in range(len(self.ports)):
            port = self.ports[(self.current + attempt) % len(self.ports)]
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            self.current = self.ports.index(port)
            break
        else:
            writer.transport.abort()
            return
        self._live.update((writer, up_writer))
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        self._live.difference_update((writer, up_writer))

    @staticmethod
    async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        sink.transport.abort()

    async def close(self) -> None:
        self.block(3600)
        if self._server is not None:
            self._server.close()


class ResumingWs:
    """A plain /ws client that reconnects and resumes with ``session`` and the last ``offset``."""

    def __init__(self, http: aiohttp.ClientSession, balancer: Balancer, user: str, room: str) -> None:
        self.http, self.balancer, self.user, self.room = http, balancer, user, room
        self.received: list[str] = []
        self.texts: dict[str, str] = {}  # envelope id -> its text, which says who sent it
        self.accepted: dict[str, str] = {}  # envelope id -> room
        self.session: str | None = None
        self.offset: str | None = None
        self.recovered_false = self.reconnects = 0
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.joined = asyncio.Event()
        self._acks = 0
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            query = f"token={make_token(self.user)}"
            if self.session:
                query += f"&session={self.session}" + (f"&offset={self.offset}" if self.offset else "")
            try:
                async with self.http.ws_connect(f"ws://127.0.0.1:{self.balancer.port}/ws?{query}") as ws:
                    await self._serve(ws)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
                pass
            self.ws = None
            await asyncio.sleep(0.2 + random.random() * 0.3)

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            envelope = json.loads(msg.data)
            if "offset" in envelope:
                self.offset = envelope["offset"]
            kind = envelope["type"]
            if kind == "room_message":
                self.received.append(envelope["id"])
                self.texts[envelope["id"]] = envelope["content"].get("text", "")
            elif kind == "welcome":
                content = envelope["content"]
                if self.session is not None:
                    self.reconnects += 1
                    if not content["recovered"]:
                        self.recovered_false += 1
                        self.offset = None
                if self.session is None or not content["recovered"]:
                    await ws.send_json({"type": "join_room", "content": self.room, "id": "join"})
                self.session = content["session"]
                self.ws = ws
            elif kind == "ack":
                content = envelope["content"]
                if content.get("id") == "join":
                    self.joined.set()
                elif content.get("ok"):
                    self.accepted[content["message_id"]] = self.room

    async def say(self) -> None:
        ws = self.ws
        if ws is not None and self.joined.is_set():
            self._acks += 1
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_json(
                    {"type": "room_message", "content": {"room": self.room, "text": "c"}, "id": self._acks}
                )

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def wait_ready(urls: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        for url in urls:
            while True:
                with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
                    async with http.get(f"{url}/readyz") as response:
                        if response.status == 200:
                            break
                assert time.monotonic() < deadline, f"{url} not ready"
                await asyncio.sleep(0.2)


async def test_chaos(gateway_factory, tmp_path):
    node_bin, npm = shutil.which("node"), shutil.which("npm")
    assert node_bin and npm, "the chaos test needs Node.js and npm (tests/node/chaos_clients.mjs)"
    build_adapter(npm)
    redis = RedisServer(appendonly=True, data_dir=tmp_path, fsync="always")
    redis.start()
    env = {
        "REDIS_URL": redis.url,
        "API_KEY": API_KEY,
        "RATE_LIMIT": "1000",
        "RATE_BURST": "1000",
        "LOG_LEVEL": os.environ.get("CHAOS_LOG_LEVEL", "WARNING"),
    }
    nodes = [gateway_factory(env=env), gateway_factory(env=env)]
    ports = [node.port for node in nodes]
    rooms = [uid("chaos") for _ in range(ROOMS)]
    accepted: dict[str, str] = {}  # id -> room: HTTP API and Emitter
    refused = collections.Counter()
    http = aiohttp.ClientSession()
    emitter = Emitter(redis.url)
    balancers = [await Balancer(ports, i % 2).start() for i in range(2 * ROOMS * PER_ROOM)]
    sio_balancers, ws_balancers = balancers[::2], balancers[1::2]
    members = {room: [] for room in rooms}
    node_clients = []
    for i, balancer in enumerate(sio_balancers):
        room, kind = rooms[i % ROOMS], NODE_KINDS[i // ROOMS]
        node_clients.append({"kind": kind, "url": balancer.url, "token": make_token(uid(kind)), "room": room})
        members[room].append((kind, i))
    ws_clients = [ResumingWs(http, b, uid("ws"), rooms[i % ROOMS]) for i, b in enumerate(ws_balancers)]
    for i, client in enumerate(ws_clients):
        members[client.room].append(("ws", i))

    def tell_script(command: str) -> None:
        script.stdin.write(f"{command}\n")
        script.stdin.flush()

    async def script_says() -> str:
        return (await asyncio.wait_for(asyncio.to_thread(script.stdout.readline), 60)).strip()

    script = subprocess.Popen(
        [node_bin, str(NODE_SCRIPT)],
        env={**os.environ, "CHAOS_CLIENTS": json.dumps(node_clients)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        await wait_ready([n.url for n in nodes])
        assert (ready := await script_says()) == "READY", ready
        await asyncio.wait_for(asyncio.gather(*(c.joined.wait() for c in ws_clients)), 60)
        started = time.monotonic()
        stop = started + SECONDS
        tell_script(f"TALK {SECONDS}")  # the adapter clients: 20 x 1/s

        async def clients_talk() -> None:  # 50 clients x 2/s
            while time.monotonic() < stop:
                await asyncio.gather(*(c.say() for c in ws_clients))
                await asyncio.sleep(0.5)

        async def api_publishes() -> None:  # ~50/s
            turn = 0
            while time.monotonic() < stop:
                turn += 1
                room = rooms[turn % ROOMS]
                body = {"target": {"room": room}, "type": "room_message", "content": {"text": "api"}}
                url = nodes[turn % 2].url
                try:
                    async with http.post(
                        f"{url}/api/publish", json=body, headers={"Authorization": f"Bearer {API_KEY}"}
                    ) as r:
                        if r.status == 202:
                            accepted[(await r.json())["id"]] = room
                        else:
                            refused[f"http {r.status}"] += 1
                except (aiohttp.ClientError, OSError):
                    refused["http down"] += 1
                await asyncio.sleep(0.02)

        async def emitter_sends() -> None:  # ~50/s
            turn = 0
            while time.monotonic() < stop:
                turn += 1
                room = rooms[turn % ROOMS]
                try:
                    accepted[await emitter.broadcast_to_room(room, "room_message", {"text": "emitter"})] = room
                except EmitError:
                    refused["emitter"] += 1
                await asyncio.sleep(0.02)

        async def faults() -> None:
            rng = random.Random(14)
            # (when, action, whether it blocks): process kills and starts wait for the process, so
            # they run in a thread; a cut runs on the loop, which owns the proxy's transports
            plan: list[tuple[float, Any, bool]] = [
                (SECONDS * 0.25, lambda: nodes[0].kill(), True),
                (SECONDS * 0.33, lambda: nodes[0].start(wait=False), True),
                (SECONDS * 0.55, redis.kill, True),
                (SECONDS * 0.60, redis.start, True),
            ]
            for _ in range(20):
                victim, seconds = rng.choice(balancers), rng.uniform(2, min(20, SECONDS * 0.3))
                at = rng.uniform(SECONDS * 0.05, SECONDS * 0.95 - seconds)
                plan.append((at, lambda v=victim, s=seconds: v.block(s), False))
            for at, action, blocks in sorted(plan, key=lambda step: step[0]):
                await asyncio.sleep(max(0.0, started + at - time.monotonic()))
                if blocks:
                    await asyncio.to_thread(action)
                else:
                    action()

        await asyncio.gather(clients_talk(), api_publishes(), emitter_sends(), faults())
        tell_script("SETTLE")  # every adapter message acknowledged (or refused) before the markers
        assert (settled := await script_says()) == "SETTLED", settled
        # every client back, every node linked, then one marker per room: once all have it, all is in
        await wait_ready([n.url for n in nodes], timeout=60)
        markers = {}
        for room in rooms:
            markers[await emitter.broadcast_to_room(room, "room_message", {"text": "marker"})] = room
        accepted.update(markers)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(
            set(c.received) >= {m for m, r in markers.items() if r == c.room} for c in ws_clients
        ):
            await asyncio.sleep(0.2)
        await asyncio.sleep(3)  # the Node sockets get the same frames at the same moment
        tell_script("REPORT")
        report = json.loads(await script_says())
    finally:
        script.kill()
        for client in ws_clients:
            await client.close()
        for balancer in balancers:
            await balancer.close()
        await emitter.close()
        await http.close()
        redis.kill()

    for client in ws_clients:
        accepted.update(client.accepted)
    accepted.update(report["accepted"])
    if report["refused"]:
        refused["adapter"] += report["refused"]
    received = {(node_clients[i]["kind"], i): ids for i, ids in enumerate(report["received"])}
    received.update({("ws", i): c.received for i, c in enumerate(ws_clients)})
    sets = {member: set(ids) for member, ids in received.items()}
    lost = sum(1 for message, room in accepted.items() for member in members[room] if message not in sets[member])
    duplicated = sum(len(ids) - len(sets[member]) for member, ids in received.items())
    recovered_false = report["recovered_false"] + sum(c.recovered_false for c in ws_clients)
    reconnects = report["reconnects"] + sum(c.reconnects for c in ws_clients)
    print(
        f"\nchaos {SECONDS:.0f} s: accepted {len(accepted)} messages "
        f"({sum(len(members[r]) for r in accepted.values())} deliveries due), "
        f"delivered {sum(len(ids) for ids in received.values())}, lost {lost}, duplicated {duplicated}, "
        f"reconnects {reconnects}, recovered:false {recovered_false}, refused {dict(refused)}; "
        f"Node clients by kind {report['by_kind']}"
    )
    # a message whose acceptance never reached its sender (a cut, a SIGKILL) may still be delivered
    texts = {message: text for c in ws_clients for message, text in c.texts.items()}
    unacknowledged = {message for ids in sets.values() for message in ids} - accepted.keys()
    print(f"delivered without an acceptance: {collections.Counter(texts.get(m, '?') for m in unacknowledged)}")
    if lost:  # which messages, and who missed them: all members (lost on the way) or a few (a gap)
        missing = collections.Counter(
            (message, room) for message, room in accepted.items() for m in members[room] if message not in sets[m]
        )
        whole = sum(1 for (message, room), n in missing.items() if n == len(members[room]))
        by_member = collections.Counter(
            m[0] for message, room in accepted.items() for m in members[room] if message not in sets[m]
        )
        print(f"lost: {whole} message(s) reached no member; misses by client kind {dict(by_member)}")
        for node in nodes:
            print(node.log()[-4000:])
    assert (lost, duplicated, recovered_false) == (0, 0, 0)
