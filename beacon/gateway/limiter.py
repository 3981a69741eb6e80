"""Rate limits and backoffs of the sender engine: per account (throughput, slowing down, pauses on
refused credentials, outage pause and probe) and per user (the per-user rate, back-offs).

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

    def try_take(self) -> bool:
        """Take one token if one is there now (True), else take nothing (False): for limits that drop
        rather than wait, such as a NostrMQ sender's messages."""
        if self.reserve() == 0.0:
            return True
        self.tokens += 1  # give back what reserve took: a refused message costs the sender nothing more
        return False

    @property
    def full(self) -> bool:
        now = time.monotonic()
        return self.rate <= 0 or self.tokens + (now - self.stamp) * self.rate >= self.burst


@dataclass
class Gate:
    """A bucket plus a "not before" time set by errors; ``streak`` counts errors in a row.

    ``down``: the channel's API is failing for this scope (an outage, not one message): once the block
    ends a single send goes through as a probe while the others wait; its success resumes them all.
    """

    bucket: TokenBucket
    blocked_until: float = 0.0
    streak: int = 0
    paused: bool = False
    last_code: int | None = field(default=None)
    down: bool = False
    down_since: float = 0.0
    probing: bool = False
    successes: int = 0  #: sends that succeeded so far (tells one message's failure from an outage)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def block(self, seconds: float) -> None:
        self.blocked_until = max(self.blocked_until, time.monotonic() + seconds)

    def probed(self) -> None:
        """The probe in flight has its answer: let waiters look again."""
        self.probing = False
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed(self, stop: asyncio.Event, timeout: float) -> bool:
        """Wait for ``probed()`` (at most ``timeout``); True if ``stop`` was set meanwhile."""
        waiter = asyncio.ensure_future(self._changed.wait())
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait([waiter, stopper], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            stopper.cancel()
        return stop.is_set()

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
        if delay > 0:
            if await _sleep(delay, stop):
                return None
            continue
        if not gate.down:
            break
        if not gate.probing:
            gate.probing = True  # this send is the probe; the caller calls gate.probed() when it has its answer
            break
        if await gate.changed(stop, 5.0):
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
