#!/usr/bin/env python3
"""Many idle connections on one machine: the gateway with --workers N holding N x K WebSocket
connections with heartbeats on, and a broadcast that must reach all of them.

    .venv/bin/python bench/scale.py                        # 4 workers x 19,000 connections
    .venv/bin/python bench/scale.py --workers 2 --per-worker 1000   # a quick check

A process may hold at most 20,000 file descriptors on this machine class (hard limit), so the
load comes from one load-generator process per worker, each from a source address of its own
(127.0.0.2, 127.0.0.3, ...: one address has about 28,000 ephemeral ports towards one port). All
connect, stay idle for --hold seconds (longer than the heartbeat interval, so every connection
is pinged at least once) while the workers' CPU is measured, then one client sends a room
message that every connection, on every worker, must receive (the room spans the workers
through Redis). Prints one JSON object; see docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.servers import BENCH, KINDS, Launcher, free_ports

FD_LIMIT = 20_000


def worker_pids(parent: int, expected: int, timeout: float = 20) -> list[int]:
    """The gateway's worker processes (children of the supervising parent)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = []
        for task in Path(f"/proc/{parent}/task").iterdir():
            children += [int(pid) for pid in (task / "children").read_text().split()]
        if len(children) >= expected:
            return children
        time.sleep(0.2)
    raise RuntimeError(f"{expected} workers did not start")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--per-worker", type=int, default=19_000, help="connections per worker (one loadgen each)")
    p.add_argument("--hold", type=float, default=30.0, help="idle seconds measured (ping interval: 25 s)")
    p.add_argument("--connect-budget", type=float, default=150.0, help="seconds allowed for connecting")
    p.add_argument("--python", default=sys.executable)
    opts = p.parse_args()
    if opts.per_worker >= FD_LIMIT - 100:
        p.error(f"--per-worker must stay below the {FD_LIMIT} file descriptors a process may hold")
    secret = secrets.token_hex(16)
    log_dir = BENCH / "results" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    launcher = Launcher(opts.python, secret, log_dir, None)
    try:
        redis_port, port = free_ports(2)
        launcher.redis(redis_port)
        env = {
            "WORKERS": str(opts.workers),
            "MAX_CONNECTIONS_PER_IP": "0",
            "MAX_CONNECTIONS_PER_USER": "0",
        }
        gateway = launcher.server(KINDS["gateway"], port, f"redis://127.0.0.1:{redis_port}/0", env)
        pids = worker_pids(gateway.pid, opts.workers)
        now = time.time() * 1000
        hold_from = now + opts.connect_budget * 1000
        hold_until = hold_from + opts.hold * 1000
        send_at = hold_until + 2000
        loadgens = []
        for n in range(opts.workers):
            argv = [
                "node",
                str(BENCH / "loadgen" / "main.mjs"),
                "--scenario",
                "hold",
                "--url",
                f"http://127.0.0.1:{port}",
                "--secret",
                secret,
                "--clients",
                str(opts.per_worker),
                "--users",
                "1",
                "--local-address",
                f"127.0.0.{n + 2}",
                "--pids",
                ",".join(map(str, pids)),
                "--hold-from",
                str(int(hold_from)),
                "--hold-until",
                str(int(hold_until)),
                "--send-at",
                str(int(send_at)),
                "--stall-ms",
                "15000",
                "--timeout-ms",
                str(int(opts.connect_budget + opts.hold + 60) * 1000),
                *(["--sender"] if n == 0 else []),
            ]
            loadgens.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        results = []
        for proc in loadgens:
            out, err = proc.communicate()
            lines = out.strip().splitlines()
            results.append(json.loads(lines[-1]) if lines else {"error": err[-300:]})
    finally:
        launcher.stop_all()
    print(json.dumps(summarize(results, opts), indent=1))


def summarize(results: list[dict], opts: argparse.Namespace) -> dict:
    ok = [r for r in results if "error" not in r]
    if len(ok) < len(results):
        return {"errors": [r["error"] for r in results if "error" in r], "results": results}
    cpu = ok[0]["server_cpu"]  # every process measured the same window of the same workers
    total = sum(r["connections"] for r in ok)
    return {
        "workers": opts.workers,
        "connections": total,
        "failed": sum(r["failed"] for r in ok),
        "joined": sum(r["joined"] for r in ok),
        "connect_seconds": max(r["connect_seconds"] for r in ok),
        "conns_per_s": round(total / max(r["connect_seconds"] for r in ok)),
        "hold_seconds": opts.hold,
        "heartbeat_cpu_per_worker": cpu,
        "heartbeat_cpu_per_19k": round(sum(cpu) / total * 19_000, 3) if total else None,
        "rss_mb_all_workers": ok[0]["rss_mb"],
        "rss_kb_per_connection_with_baseline": round(ok[0]["rss_mb"] * 1024 / total, 1) if total else None,
        "broadcast_received": sum(r["received"] for r in ok),
        "broadcast_p50_ms": max(r["p50_ms"] or 0 for r in ok),
        "broadcast_p99_ms": max(r["p99_ms"] or 0 for r in ok),
        "loadgen_cpu": [r["loadgen_cpu"] for r in ok],
        "per_process": ok,
    }


if __name__ == "__main__":
    main()
