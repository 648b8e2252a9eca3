"""The heartbeat timer wheel (realtime_gateway.transport.heartbeat): every armed session beats once per
interval, a disarmed one never and is not kept alive, a failing one stops nobody else. The
sessions' own heartbeats (pings, silence timeouts) are covered end to end by
tests/test_hostile.py, tests/test_engine_ws.py and the conformance suites."""

from __future__ import annotations

import asyncio
import gc
import weakref

from realtime_gateway.transport.heartbeat import Heartbeats

INTERVAL = 0.02


class Session:
    """Beats ``times`` times (re-arming after each) and then sets ``done``."""

    def __init__(self, wheel: Heartbeats, times: int, fail: bool = False) -> None:
        self.wheel = wheel
        self.heartbeat_slot: int | None = None
        self.beats = 0
        self.times = times
        self.fail = fail
        self.done = asyncio.Event()

    def beat(self) -> None:
        self.beats += 1
        if self.beats < self.times:
            self.wheel.arm(self)
        else:
            self.done.set()
        if self.fail:
            raise RuntimeError("a broken session")


async def test_every_armed_session_beats_once_per_interval():
    wheel = Heartbeats.of_running_loop(INTERVAL)
    assert Heartbeats.of_running_loop(INTERVAL) is wheel  # one per interval and loop
    sessions = []
    for _ in range(200):
        sessions.append(Session(wheel, times=3))
        wheel.arm(sessions[-1])
        await asyncio.sleep(0)  # armed at different moments, in different slots
    await asyncio.wait_for(asyncio.gather(*(s.done.wait() for s in sessions)), 30)
    assert [s.beats for s in sessions] == [3] * 200
    assert all(s.heartbeat_slot is None for s in sessions)


async def test_a_disarmed_session_never_beats_and_is_not_kept_alive():
    wheel = Heartbeats.of_running_loop(INTERVAL)
    gone = Session(wheel, times=1)
    wheel.arm(gone)
    wheel.disarm(gone)
    witness = Session(wheel, times=3)  # armed after it: its slots come later
    wheel.arm(witness)
    await asyncio.wait_for(witness.done.wait(), 30)
    assert gone.beats == 0
    ref = weakref.ref(gone)
    del gone
    gc.collect()
    assert ref() is None


async def test_a_failing_session_stops_no_other():
    wheel = Heartbeats.of_running_loop(INTERVAL)
    broken, healthy = Session(wheel, times=3, fail=True), Session(wheel, times=3)
    wheel.arm(broken)
    wheel.arm(healthy)
    await asyncio.wait_for(asyncio.gather(broken.done.wait(), healthy.done.wait()), 30)
    assert broken.beats == healthy.beats == 3
