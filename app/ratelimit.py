"""Per-connection rate limiting: a token bucket, cheap enough to run on every inbound message."""

from __future__ import annotations

import time


class TokenBucket:
    """Allows ``rate`` events per second on average and bursts of up to ``burst`` events.

    A transport that reads frames itself charges every frame with :meth:`charge` (binary, ping
    and unparsable ones included, so none is free); the event handler's :meth:`allow` then
    answers for the frame's event without charging it twice, and :meth:`settle` tells the
    transport whether an over-limit frame carried no event to refuse (it then closes).
    """

    __slots__ = ("_prepaid", "_tokens", "_updated", "burst", "rate")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._updated = time.monotonic()
        self._prepaid: bool | None = None

    def allow(self) -> bool:
        verdict = self._prepaid
        if verdict is not None:
            self._prepaid = None
            return verdict
        return self._take()

    def charge(self) -> None:
        """One inbound frame arrived: take its token now."""
        self._prepaid = self._take()

    def settle(self) -> bool:
        """After the frame was handled: True when it was over the limit and no event was
        refused for it."""
        verdict = self._prepaid
        self._prepaid = None
        return verdict is False

    def _take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False
