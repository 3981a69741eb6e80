"""The ids of BeaconMessages the bridge already produced, so a re-sent message is acknowledged again
but produced once.

The destination topic is the durable record: every message the bridge produces carries its id in
the ``beacon-bridge-id`` header, and at start the bridge reads the last
``BEACON_NOSTR_BRIDGE_DEDUPE_WINDOW`` seconds of that topic to remember them. A message being
produced right now is remembered as a future, so a copy arriving meanwhile waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Any

from beacon.config import Settings
from beacon.kafka import TopicPartition, list_topic_offsets, make_consumer, topic_partitions

log = logging.getLogger("beacon.bridge")

ID_HEADER = "beacon-bridge-id"
FROM_HEADER = "beacon-bridge-from"
#: Ids kept in memory; far more than can be in flight, and a re-send comes within minutes.
LIMIT = 500_000


class SeenIds:
    """Ids produced (done) and being produced (pending futures)."""

    def __init__(self) -> None:
        self._done: OrderedDict[str, None] = OrderedDict()
        self.pending: dict[str, asyncio.Future[bool]] = {}

    def __contains__(self, message_id: str) -> bool:
        return message_id in self._done

    def __len__(self) -> int:
        return len(self._done)

    def add(self, message_id: str) -> None:
        self._done[message_id] = None
        if len(self._done) > LIMIT:
            self._done.popitem(last=False)

    def load_from_topic(self, settings: Settings, topic: str, window: float, timeout: float = 60.0) -> int:
        """Remember the ids in ``topic``'s last ``window`` seconds; returns how many were found."""
        partitions = topic_partitions(settings, topic)
        start = list_topic_offsets(settings, topic, partitions, int((time.time() - window) * 1000))
        end = list_topic_offsets(settings, topic, partitions, "latest")
        todo = {p: (start[p], end[p]) for p in partitions if 0 <= start[p] < end[p]}
        if not todo:
            return 0
        consumer = make_consumer(settings, f"beacon-bridge-seen-{time.time_ns()}")
        found = 0
        try:
            consumer.assign([TopicPartition(topic, p, first) for p, (first, _) in todo.items()])
            remaining = dict(todo)
            deadline = time.monotonic() + timeout
            while remaining and time.monotonic() < deadline:
                record = consumer.poll(0.5)
                if record is None or record.error() is not None:
                    continue
                headers: list[Any] = list(record.headers() or [])
                for name, value in headers:
                    if name == ID_HEADER and isinstance(value, bytes):
                        self.add(value.decode())
                        found += 1
                part = record.partition()
                offset = record.offset()
                if part is not None and offset is not None and part in remaining and offset + 1 >= remaining[part][1]:
                    del remaining[part]
            if remaining:
                log.warning("reading %s to rebuild the bridge's dedupe memory took over %.0fs; partitions %s not "
                            "fully read, so a message re-sent from before the restart may be produced twice",
                            topic, timeout, sorted(remaining))
        finally:
            consumer.close()
        return found
