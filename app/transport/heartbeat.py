"""Heartbeats of every WebSocket session on one event-loop timer (a timer wheel).

A timer handle per connection (``loop.call_later``) costs about 540 bytes of every idle
connection and one heap operation per ping. Here the sessions that share a ping interval share
one :class:`Heartbeats`: each armed session sits in the set of its due slot (a slot is
``interval / SLOTS_PER_INTERVAL`` seconds wide), and one timer per loop visits the slots in turn.
A ping leaves at most one slot late (under a second at the default 25 s interval, 9 ms at the
conformance suites' 300 ms); disarming a closed session drops it from its set at once, so the
wheel never keeps a closed session alive.
"""

from __future__ import annotations

import asyncio
import logging
import math
import weakref
from typing import Protocol

log = logging.getLogger(__name__)

SLOTS_PER_INTERVAL = 32


class Beating(Protocol):
    heartbeat_slot: int | None
    """The slot the session waits in (None: not armed); only :class:`Heartbeats` writes it."""

    def beat(self) -> None:
        """The interval is up: ping, or close a silent connection (and :meth:`Heartbeats.arm` again)."""


class Heartbeats:
    """The wheel for one ping interval on one event loop (:meth:`of_running_loop`)."""

    __slots__ = ("_cursor", "_handle", "_loop", "_slots", "_width")
    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, Heartbeats]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self._loop = loop
        self._width = interval / SLOTS_PER_INTERVAL
        self._slots: dict[int, set[Beating]] = {}
        self._cursor = 0  # the next slot to visit
        self._handle: asyncio.TimerHandle | None = None

    @classmethod
    def of_running_loop(cls, interval: float) -> Heartbeats:
        loop = asyncio.get_running_loop()
        wheels = cls._by_loop.setdefault(loop, {})
        wheel = wheels.get(interval)
        if wheel is None:
            wheel = wheels[interval] = cls(loop, interval)
        return wheel

    def arm(self, session: Beating) -> None:
        """Beat ``session`` one interval from now (moving it if it was armed)."""
        self.disarm(session)
        slot = math.ceil((self._loop.time() + self._width * SLOTS_PER_INTERVAL) / self._width)
        members = self._slots.get(slot)
        if members is None:
            members = self._slots[slot] = set()
        members.add(session)
        session.heartbeat_slot = slot
        if self._handle is None:
            self._cursor = min(self._slots)
            self._handle = self._loop.call_at(self._cursor * self._width, self._turn)

    def disarm(self, session: Beating) -> None:
        slot = session.heartbeat_slot
        if slot is None:
            return
        session.heartbeat_slot = None
        members = self._slots.get(slot)
        if members is not None:
            members.discard(session)
            if not members:
                del self._slots[slot]

    def _turn(self) -> None:
        """Beat every session of every slot that is due, then wait for the next armed slot.
        (``_handle`` stays set meanwhile: the sessions re-arming here schedule nothing.)"""
        now_slot = math.floor(self._loop.time() / self._width)
        slots = self._slots
        while slots and self._cursor <= now_slot:
            members = slots.pop(self._cursor, None)
            self._cursor += 1
            for session in members or ():
                session.heartbeat_slot = None
                try:
                    session.beat()  # re-arms into a later slot
                except Exception:  # one broken session must not stop every heartbeat
                    log.exception("heartbeat of %r failed", session)
        self._handle = None
        if slots:
            self._cursor = min(slots)
            self._handle = self._loop.call_at(self._cursor * self._width, self._turn)
