"""``beacon replay``: move a consumer group's committed offsets, so its consumers read again (or skip).

The plan is computed first (a pure function of the current offsets), printed, and applied only
when the group has no active members: offsets changed under running consumers would be
overwritten by their next commit, so replay refuses and says which consumers to stop.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from beacon import kafka
from beacon.config import Settings
from beacon.errors import BeaconError

Mode = Literal["datetime", "earliest", "latest", "offset", "shift"]


class ReplayRefusedError(BeaconError):
    """The group has active members, or the request makes no sense for this topic."""


@dataclass(frozen=True)
class PartitionMove:
    """One partition's committed offset before and after the reset, and its watermarks."""

    partition: int
    before: int | None
    after: int
    low: int
    high: int


@dataclass(frozen=True)
class ReplayPlan:
    group: str
    topic: str
    moves: list[PartitionMove]
    applied: bool = False


def parse_datetime(text: str) -> datetime:
    """ISO 8601; a time without a zone is taken as UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ReplayRefusedError(
            f"--to-datetime {text!r} is not an ISO 8601 date-time (e.g. 2026-11-28T20:15:00Z)"
        ) from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def target_offset(
    mode: Mode,
    *,
    before: int | None,
    low: int,
    high: int,
    value: int = 0,
    at_time: int | None = None,
) -> int:
    """Where one partition's offset goes, clamped to [low, high].

    ``at_time`` is the first offset at or after the requested time (-1: none, so the end).
    A shift starts from the committed offset, or from ``low`` when nothing is committed (where the
    group would start anyway, as Beacon's consumers reset to earliest).
    """
    if mode == "earliest":
        target = low
    elif mode == "latest":
        target = high
    elif mode == "offset":
        target = value
    elif mode == "shift":
        target = (before if before is not None else low) + value
    elif mode == "datetime":
        target = high if at_time is None or at_time < 0 else at_time
    else:
        raise ValueError(f"unknown mode {mode}")
    return max(low, min(high, target))


def plan(
    settings: Settings,
    *,
    group: str,
    topic: str,
    mode: Mode,
    value: int = 0,
    when: datetime | None = None,
    partitions: Iterable[int] | None = None,
) -> ReplayPlan:
    """Read the current offsets and compute each partition's target (changes nothing)."""
    all_parts = kafka.topic_partitions(settings, topic)
    chosen = sorted(set(partitions)) if partitions is not None else all_parts
    unknown = [p for p in chosen if p not in all_parts]
    if unknown:
        raise ReplayRefusedError(f"{topic} has partitions 0..{max(all_parts)}; no partition {unknown}")
    committed = kafka.committed_offsets(settings, group, topic)
    low = kafka.list_topic_offsets(settings, topic, chosen, "earliest")
    high = kafka.list_topic_offsets(settings, topic, chosen, "latest")
    at: dict[int, int] = {}
    if mode == "datetime":
        if when is None:
            raise ReplayRefusedError("--to-datetime needs a date-time")
        at = kafka.list_topic_offsets(settings, topic, chosen, int(when.timestamp() * 1000))
    moves = []
    for p in chosen:
        before = committed.get((topic, p))
        after = target_offset(mode, before=before, low=low[p], high=high[p], value=value, at_time=at.get(p))
        moves.append(PartitionMove(p, before, after, low[p], high[p]))
    return ReplayPlan(group, topic, moves)


def apply(settings: Settings, replay: ReplayPlan) -> ReplayPlan:
    """Commit the plan's offsets for the group; refuses while the group has active members."""
    info = kafka.describe_group(settings, replay.group)
    if info.active:
        members = ", ".join(info.members) or "none listed"
        raise ReplayRefusedError(
            f"group {replay.group} is {info.state} with {len(info.members)} active member(s) ({members}). "
            "Stop its consumers first (e.g. the workers or gateways of this group), then run replay again: "
            "offsets moved under running consumers would be overwritten by their next commit."
        )
    kafka.alter_group_offsets(settings, replay.group, replay.topic, {m.partition: m.after for m in replay.moves})
    return ReplayPlan(replay.group, replay.topic, replay.moves, applied=True)
