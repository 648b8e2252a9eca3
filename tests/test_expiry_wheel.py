"""The expiry wheel of realtime_gateway.expiry: every armed key comes due once, no earlier than
its delay and in deadline order across slots, a disarmed or re-armed one only as armed last.
Connections closed at their token's expiry end to end: tests/test_expiry.py, tests/test_hostile.py."""

from __future__ import annotations

import asyncio

from realtime_gateway.expiry import EXPIRY_SLOT, ExpiryWheel


async def test_keys_come_due_once_in_deadline_order_and_disarmed_ones_never():
    due: list[str] = []
    all_due = asyncio.Event()

    def on_due(key: str) -> None:
        due.append(key)
        if len(due) == 3:
            all_due.set()

    wheel = ExpiryWheel(on_due)
    wheel.arm("late", 2 * EXPIRY_SLOT)
    wheel.arm("early", 0.0)  # earlier than the slot the timer waits for: it is rescheduled
    wheel.arm("gone", 0.0)
    wheel.disarm("gone")
    wheel.arm("moved", 0.0)
    wheel.arm("moved", EXPIRY_SLOT)  # re-armed: only the last deadline counts
    await asyncio.wait_for(all_due.wait(), 30)
    # "gone" and the first "moved" were in the first slot: they would have come before "late"
    assert due == ["early", "moved", "late"]
    wheel.stop()
