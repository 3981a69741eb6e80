"""Which offsets of each partition may be committed: up to the lowest record not yet settled.

Records of one partition are settled out of order (many users in flight); the committed offset
only moves past a record once it and everything before it are settled. Thread-safe: the
consumer's rebalance callbacks run in the polling thread.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

TP = tuple[str, int]


class OffsetTracker:
    """Offsets taken from Kafka per partition, and the next offset safe to commit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[TP, OrderedDict[int, bool]] = {}
        self._next: dict[TP, int] = {}
        self._committed: dict[TP, int] = {}
        self.in_flight = 0

    def add(self, tp: TP, offset: int) -> None:
        with self._lock:
            self._pending.setdefault(tp, OrderedDict())[offset] = False
            self.in_flight += 1

    def done(self, tp: TP, offset: int) -> None:
        with self._lock:
            pending = self._pending.get(tp)
            if pending is None or offset not in pending:
                return  # partition revoked meanwhile
            pending[offset] = True
            self.in_flight -= 1
            while pending:
                first, settled = next(iter(pending.items()))
                if not settled:
                    break
                pending.popitem(last=False)
                self._next[tp] = first + 1

    def committable(self, tps: list[TP] | None = None) -> dict[TP, int]:
        """Offsets to commit (only those that moved since the last call, unless ``tps`` is given)."""
        with self._lock:
            out = {}
            for tp, nxt in self._next.items():
                if tps is not None and tp not in tps:
                    continue
                if tps is not None or self._committed.get(tp) != nxt:
                    out[tp] = nxt
            return out

    def mark_committed(self, offsets: dict[TP, int]) -> None:
        with self._lock:
            self._committed.update(offsets)

    def forget(self, tps: list[TP]) -> None:
        """Partitions revoked: their unsettled records will be redelivered to their new owner."""
        with self._lock:
            for tp in tps:
                pending = self._pending.pop(tp, None)
                if pending:
                    self.in_flight -= sum(1 for settled in pending.values() if not settled)
                self._next.pop(tp, None)
                self._committed.pop(tp, None)
