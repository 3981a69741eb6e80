"""The one backoff policy of every retry in Beacon: exponential growth, capped, with full jitter.

Workers retrying the API, gateways retrying a channel, the bridge retrying its peers and relays
all wait ``backoff_delay``; a pause that holds a whole scope (an account during an outage) waits
the un-jittered ``backoff_ceiling`` so that every send behind it resumes at one known time.
"""

from __future__ import annotations

import random


def backoff_ceiling(attempt: int, base: float, cap: float, factor: float = 2.0) -> float:
    """The longest wait before retry number ``attempt`` (1-based): ``base * factor**(attempt-1)``, at most ``cap``."""
    return min(cap, base * factor ** max(attempt - 1, 0))


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Delay before retry number ``attempt`` (1-based): exponential with full jitter, capped."""
    return random.uniform(0, backoff_ceiling(attempt, base, cap))
