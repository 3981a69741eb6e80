"""Logging set-up shared by every Beacon process."""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable, Iterable


def setup_logging(level: str = "INFO", process: str = "beacon") -> None:
    """Log lines to stderr as ``time level process logger: message``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s %(levelname)s {process} %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Per-request lines of HTTP clients drown what matters; their warnings still show.
    for noisy in ("httpx", "httpcore", "httpx2", "httpcore2"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    quiet_repeats()


#: Loggers of the Kafka clients, which repeat one line per retry while a broker is down (aiokafka
#: every 100 ms until the partition has a new leader) or per reconnect (librdkafka, via beacon.kafka).
KAFKA_CLIENT_LOGGERS = (
    "beacon.kafka",
    "beacon.librdkafka",
    "aiokafka",
    "aiokafka.consumer.fetcher",
    "aiokafka.consumer.group_coordinator",
)

# librdkafka varies the tail of one and the same error: "(after 0ms in state CONNECT, 1 identical error(s)
# suppressed)".
_VARYING_TAIL = re.compile(r"\s*\(after \d+ms in state \w+(, \d+ identical error\(s\) suppressed)?\)")


class RepeatFilter(logging.Filter):
    """Lets the first of identical lines through, then at most one per ``interval`` seconds saying how
    many were held back: a client retrying a dead broker ten times a second says so once per change,
    not sixty times."""

    def __init__(self, interval: float = 30.0, clock: Callable[[], float] = time.monotonic, limit: int = 1000) -> None:
        super().__init__()
        self.interval = interval
        self.limit = limit
        self._clock = clock
        self._seen: dict[str, tuple[float, int]] = {}  # line -> (when last let through, held back since)

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        key = f"{record.name}|{record.levelno}|{_VARYING_TAIL.sub('', text)}"
        now = self._clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self.interval:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        if len(self._seen) >= self.limit:
            self._forget(now)
        self._seen[key] = (now, 0)
        if last is not None and last[1]:
            record.msg, record.args = f"{text} ({last[1]} identical line(s) held back)", None
        return True

    def __len__(self) -> int:
        """Lines remembered (at most ``limit``)."""
        return len(self._seen)

    def _forget(self, now: float) -> None:
        """Forget lines not seen for an interval, and if most are recent (a logger naming a new offset in each
        line, at DEBUG) the oldest of them too, down to half the limit: a scan per ``limit / 2`` new lines, not per
        line, and bounded memory."""
        keep = self.limit // 2
        seen = {k: v for k, v in self._seen.items() if now - v[0] < self.interval}
        if len(seen) > keep:
            seen = dict(list(seen.items())[len(seen) - keep:])
        self._seen = seen


def quiet_repeats(names: Iterable[str] = KAFKA_CLIENT_LOGGERS, interval: float = 30.0) -> None:
    """Install a :class:`RepeatFilter` on each named logger (once)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatFilter) for f in logger.filters):
            logger.addFilter(RepeatFilter(interval))
