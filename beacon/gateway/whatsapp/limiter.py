"""Rate limits and backoffs of the sender: per business number (throughput, 130429 throttling,
190 pause) and per user (the pair limit, 131056 backoff).

Token buckets hand out reservations, so concurrent waiters are served in order without polling.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved; ``rate`` 0 means unlimited."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.tokens = self.burst
        self.stamp = time.monotonic()

    def reserve(self) -> float:
        """Take one token; return how many seconds to wait before using it."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    @property
    def full(self) -> bool:
        now = time.monotonic()
        return self.rate <= 0 or self.tokens + (now - self.stamp) * self.rate >= self.burst


@dataclass
class Gate:
    """A bucket plus a "not before" time set by errors; ``streak`` counts errors in a row."""

    bucket: TokenBucket
    blocked_until: float = 0.0
    streak: int = 0
    paused: bool = False
    last_code: int | None = field(default=None)

    def block(self, seconds: float) -> None:
        self.blocked_until = max(self.blocked_until, time.monotonic() + seconds)

    @property
    def blocked(self) -> bool:
        return time.monotonic() < self.blocked_until

    @property
    def idle(self) -> bool:
        return not self.blocked and self.streak == 0 and self.bucket.full


async def wait_for_gate(gate: Gate, stop: asyncio.Event, *, use_token: bool = True) -> float | None:
    """Wait until ``gate`` lets one send through; the seconds waited, or None when ``stop`` was set."""
    started = time.monotonic()
    while True:
        delay = gate.blocked_until - time.monotonic()
        if delay <= 0:
            break
        if await _sleep(delay, stop):
            return None
    if use_token:
        delay = gate.bucket.reserve()
        if delay > 0 and await _sleep(delay, stop):
            return None
    return time.monotonic() - started


async def _sleep(seconds: float, stop: asyncio.Event) -> bool:
    """Sleep ``seconds``; True if ``stop`` was set meanwhile."""
    if stop.is_set():
        return True
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True


async def sleep_unless_stopped(seconds: float, stop: asyncio.Event) -> bool:
    """Sleep ``seconds``; True if ``stop`` was set meanwhile (the caller abandons the message)."""
    return await _sleep(seconds, stop)
