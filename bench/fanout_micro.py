"""Micro-benchmark of the broadcast fast path with connection-state recovery on and off.

The load generator's figures on a shared machine vary by 2x from run to run; this measures only
the server's side of a broadcast, in one process: ``FanoutManager.emit`` to a room of N
connections (half Socket.IO, half plain WebSocket) whose transports discard what they are given,
CPU time per message, alternating on (recovery and history at their defaults) and off (both off)
runs, the median of each::

    .venv/bin/python bench/fanout_micro.py [--members 1000] [--messages 2000] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import socketio
from realtime_gateway.envelope import make_envelope
from realtime_gateway.history import History
from realtime_gateway.recovery import Journal
from realtime_gateway.transport.fanout import FanoutManager, FrameWriter


class NullTransport(asyncio.Transport):
    def write(self, data: Any) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False


class FakeSocket:
    upgraded = True

    class queue:
        @staticmethod
        def qsize() -> int:
            return 0

    def __init__(self, plain: bool) -> None:
        self.renders_envelopes = plain
        self.frame_writer = FrameWriter(NullTransport(), lambda: None, 1 << 30)


class FakeServer:
    packet_class = socketio.packet.Packet

    def __init__(self) -> None:
        self.eio = type("Eio", (), {"sockets": {}, "generate_id": staticmethod(lambda: str(time.monotonic_ns()))})()


async def build(members: int, recovery: bool) -> FanoutManager:
    manager = FanoutManager()
    manager.set_server(FakeServer())
    manager.initialize()
    if recovery:  # the defaults: recovery window 120 s and 100 messages of history per room
        manager.journal = Journal(120.0)
        manager.history = History(100, 86400.0)
    for i in range(members):
        eio_sid = f"e{i}"
        manager.server.eio.sockets[eio_sid] = FakeSocket(plain=i % 2 == 1)
        sid = await manager.pre_connect(eio_sid, "/")
        await manager.connect(sid, "/")
        manager.basic_enter_room(sid, "/", "room")
    return manager


async def run(members: int, messages: int, recovery: bool) -> float:
    manager = await build(members, recovery)
    envelope = make_envelope("room_message", {"text": "hello", "room": "room"}, room="room", from_="42")
    started = time.process_time()
    for _ in range(messages):
        await manager.emit("room_message", envelope, "/", room="room")
        await asyncio.sleep(0)  # let the writers flush, as the event loop would
    return (time.process_time() - started) / messages


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    results: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(args.runs):
        for recovery in (False, True):
            results[recovery].append(await run(args.members, args.messages, recovery))
    off, on = statistics.median(results[False]), statistics.median(results[True])
    print(f"members={args.members} messages={args.messages} runs={args.runs}")
    print(f"recovery off: {off * 1e6:8.1f} us CPU per broadcast ({args.members / off:,.0f} deliveries/s)")
    print(f"recovery on:  {on * 1e6:8.1f} us CPU per broadcast ({args.members / on:,.0f} deliveries/s)")
    print(f"on/off throughput: {off / on:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
