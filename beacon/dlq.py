"""Dead letters: what goes on ``bm_dlq`` and how to read it back.

A dead-lettered record keeps the original key and value bytes untouched (the value may be
garbage that never decoded) and says in headers where it came from and why it was given up:
source topic, partition and offset, the error's class and text, how many attempts were made,
when, and which process gave up. ``beacon dlq`` lists, shows and redrives from these headers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from beacon.config import Settings
from beacon.trace import AnyHeaders
from beacon.trace import trace_headers as trace_headers_of

if TYPE_CHECKING:
    from beacon.kafka import AsyncProducer

log = logging.getLogger("beacon.dlq")

PREFIX = "beacon.dlq."
H_TOPIC = PREFIX + "source.topic"
H_PARTITION = PREFIX + "source.partition"
H_OFFSET = PREFIX + "source.offset"
H_ERROR_CLASS = PREFIX + "error.class"
H_ERROR_TEXT = PREFIX + "error.text"
H_ATTEMPTS = PREFIX + "attempts"
H_TIME = PREFIX + "time"
H_ORIGIN = PREFIX + "origin"
#: Error texts are cut to this many characters (headers are not the place for a whole traceback).
MAX_ERROR_TEXT = 4000


@dataclass(frozen=True)
class DeadLetterInfo:
    """Why and from where a record was dead-lettered."""

    topic: str
    partition: int
    offset: int
    error_class: str
    error_text: str
    attempts: int
    time: datetime | None
    origin: str


def dlq_headers(
    *,
    topic: str,
    partition: int,
    offset: int,
    error_class: str,
    error_text: str,
    attempts: int,
    origin: str,
    when: datetime | None = None,
) -> list[tuple[str, bytes]]:
    """The headers of a dead-lettered record."""
    stamp = (when or datetime.now(UTC)).isoformat()
    return [
        (H_TOPIC, topic.encode()),
        (H_PARTITION, str(partition).encode()),
        (H_OFFSET, str(offset).encode()),
        (H_ERROR_CLASS, error_class.encode()),
        (H_ERROR_TEXT, error_text[:MAX_ERROR_TEXT].encode()),
        (H_ATTEMPTS, str(attempts).encode()),
        (H_TIME, stamp.encode()),
        (H_ORIGIN, origin.encode()),
    ]


def read_dlq_headers(
    headers: Sequence[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None] | None,
) -> DeadLetterInfo | None:
    """The dead-letter information in a record's headers, or None if it has none."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers or []
    values = {
        k: v.decode("utf-8", errors="replace") if isinstance(v, bytes) else (v or "")
        for k, v in pairs
        if k.startswith(PREFIX)
    }
    if H_TOPIC not in values:
        return None

    def number(key: str) -> int:
        try:
            return int(values.get(key, "-1"))
        except ValueError:
            return -1

    try:
        when: datetime | None = datetime.fromisoformat(values[H_TIME]) if values.get(H_TIME) else None
    except ValueError:
        when = None
    return DeadLetterInfo(
        topic=values[H_TOPIC],
        partition=number(H_PARTITION),
        offset=number(H_OFFSET),
        error_class=values.get(H_ERROR_CLASS, ""),
        error_text=values.get(H_ERROR_TEXT, ""),
        attempts=number(H_ATTEMPTS),
        time=when,
        origin=values.get(H_ORIGIN, ""),
    )


async def dead_letter(
    producer: AsyncProducer,
    settings: Settings,
    *,
    key: bytes | None,
    value: bytes | None,
    topic: str,
    partition: int,
    offset: int,
    error: BaseException | str,
    attempts: int,
    origin: str,
    trace_headers: AnyHeaders = None,
) -> None:
    """Put the original record on the dead-letter topic with the reason, and wait for the broker's ack.
    Of ``trace_headers`` (the original record's), the trace context and hops are kept (``beacon.trace``).

    Logged as an error an operator can act on: what, where, why, and how to redrive it.
    """
    error_class = type(error).__name__ if isinstance(error, BaseException) else "Rejected"
    error_text = str(error)
    headers = dlq_headers(
        topic=topic, partition=partition, offset=offset, error_class=error_class,
        error_text=error_text, attempts=attempts, origin=origin,
    )
    headers += trace_headers_of(trace_headers)
    await producer.produce(settings.topics.dlq, value, key=key, headers=headers)
    log.error(
        "dead-lettered %s[%d]@%d after %d attempt(s) by %s: %s: %s; inspect with `beacon dlq show`, "
        "redrive with `beacon dlq redrive` once fixed",
        topic, partition, offset, attempts, origin, error_class, error_text[:500],
    )
