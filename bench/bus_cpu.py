"""CPU the cluster bus costs per message: two gateway nodes, one member on each, N room messages
from a plain-WS client on node 1; prints the CPU seconds each node spent (``/proc/PID/stat``)
per message. CPU time, unlike throughput, hardly moves with other work on a shared machine.

    .venv/bin/python bench/bus_cpu.py [--messages 20000] [--ref COMMIT]

``--ref`` measures the gateway as committed there (exported, like ``run.py --gateway-ref``).
Uses the test suite's process helpers (tests/conftest.py): a private redis-server, real nodes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent / "tests"), str(BENCH)]

import conftest  # noqa: E402
from harness.servers import export_gateway  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(messages: int) -> dict[str, object]:
    redis = conftest.RedisServer()
    redis.start()
    env = {"REDIS_URL": redis.url, "RATE_LIMIT": "1000000000", "RATE_BURST": "1000000000", "LOG_LEVEL": "WARNING"}
    nodes = [conftest.Gateway(env=env).start(), conftest.Gateway(env=env).start()]
    try:
        room = conftest.uid("room")
        async with aiohttp.ClientSession() as session:
            tokens = [conftest.make_token(conftest.uid()) for _ in nodes]
            sockets = [await session.ws_connect(f"{n.ws_url}?token={t}") for n, t in zip(nodes, tokens, strict=True)]
            for ws in sockets:
                await ws.receive()  # welcome
                await ws.send_json({"type": "join_room", "content": room, "id": "join"})
                while (await ws.receive_json())["type"] != "ack":
                    pass
            await asyncio.sleep(2)  # let start-up work settle
            before = [cpu_seconds(n.proc.pid) for n in nodes]
            started = time.monotonic()

            async def receive_all(ws: aiohttp.ClientWebSocketResponse) -> None:
                received = 0
                while received < messages:
                    received += (await ws.receive_json())["type"] == "room_message"

            readers = [asyncio.create_task(receive_all(ws)) for ws in sockets]
            for i in range(messages):
                await sockets[0].send_json({"type": "room_message", "content": {"room": room, "text": f"m{i}"}})
                if i % 50 == 0:
                    await asyncio.sleep(0.001)  # a steady stream, not one burst
            await asyncio.wait_for(asyncio.gather(*readers), 300)
            wall = time.monotonic() - started
            used = [cpu_seconds(n.proc.pid) - b for n, b in zip(nodes, before, strict=True)]
    finally:
        for node in nodes:
            node.kill()
        redis.kill()
    return {
        "messages": messages,
        "wall_s": round(wall, 2),
        "us_per_message": {n: round(cpu / messages * 1e6) for n, cpu in zip(("sender", "other"), used, strict=True)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--ref", help="measure the gateway as committed at this git ref")
    args = parser.parse_args()
    if args.ref:
        into = Path(tempfile.mkdtemp(prefix="bus-cpu-"))
        print(f"gateway at {export_gateway(args.ref, into)}", file=sys.stderr)
        conftest.ROOT = into  # nodes run `python -m realtime_gateway` from there
        os.environ["PYTHONPATH"] = f"{into}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    print(json.dumps(asyncio.run(measure(args.messages))))


if __name__ == "__main__":
    main()
