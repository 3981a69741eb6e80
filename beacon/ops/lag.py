"""``beacon lag``: how far each consumer group is behind, per partition (end offset - committed)."""

from __future__ import annotations

from dataclasses import dataclass

from beacon import kafka
from beacon.config import Settings


@dataclass(frozen=True)
class PartitionLag:
    """A group's position on one partition. With nothing committed the group starts at ``low``."""

    group: str
    topic: str
    partition: int
    committed: int | None
    low: int
    high: int

    @property
    def lag(self) -> int:
        start = self.committed if self.committed is not None else self.low
        return max(0, self.high - max(start, self.low))


def default_groups(settings: Settings) -> list[tuple[str, str]]:
    """Beacon's own groups and the topic each reads: workers on bm_in, each channel's gateway on bm_out."""
    return [(settings.workers.group, settings.topics.inbound), (settings.whatsapp.gateway_group,
                                                                settings.topics.outbound),
            (settings.telegram.gateway_group, settings.topics.outbound), (settings.webchat.gateway_group,
                                                                          settings.topics.outbound)]


def group_lag(settings: Settings, group: str, topic: str | None = None) -> list[PartitionLag]:
    """Lag per partition of ``group`` on ``topic`` (every partition), or on all topics it committed."""
    committed = kafka.committed_offsets(settings, group, topic)
    topics = sorted({t for t, _ in committed} | ({topic} if topic else set()))
    rows: list[PartitionLag] = []
    for t in topics:
        parts = sorted(p for tt, p in committed if tt == t) if topic is None else kafka.topic_partitions(settings, t)
        low = kafka.list_topic_offsets(settings, t, parts, "earliest")
        high = kafka.list_topic_offsets(settings, t, parts, "latest")
        rows.extend(PartitionLag(group, t, p, committed.get((t, p)), low[p], high[p]) for p in parts)
    return rows


def total_lag(rows: list[PartitionLag]) -> int:
    return sum(r.lag for r in rows)
