"""Per-connection rate limiting: a token bucket, cheap enough to run on every inbound message."""

from __future__ import annotations

import time


class TokenBucket:
    """Allows ``rate`` events per second on average and bursts of up to ``burst`` events."""

    __slots__ = ("_tokens", "_updated", "burst", "rate")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._updated = time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False
