"""Kafka clients' repeated lines while a broker is down are said once per change, with a count."""

from __future__ import annotations

import logging

from beacon.logs import RepeatFilter


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_identical_lines_are_held_back_then_counted() -> None:
    now = [0.0]
    logger = logging.getLogger("tests.logs.repeat")
    logger.propagate = False
    collect = _Collect()
    logger.handlers[:] = [collect]
    logger.filters[:] = [RepeatFilter(interval=30.0, clock=lambda: now[0])]
    for i in range(60):
        now[0] = i * 0.1
        logger.error("Unable connect to node with id %s: %s", 3, "[Errno 111] Connection refused")
    logger.error("Unable connect to node with id %s: %s", 2, "[Errno 111] Connection refused")
    for state in ("after 0ms in state CONNECT", "after 0ms in state CONNECT, 1 identical error(s) suppressed"):
        logger.warning("Kafka: 127.0.0.1:9096/3: Connect failed: Connection refused (%s)", state)
    now[0] = 40.0
    logger.error("Unable connect to node with id %s: %s", 3, "[Errno 111] Connection refused")
    assert collect.lines == [
        "Unable connect to node with id 3: [Errno 111] Connection refused",
        "Unable connect to node with id 2: [Errno 111] Connection refused",
        "Kafka: 127.0.0.1:9096/3: Connect failed: Connection refused (after 0ms in state CONNECT)",
        "Unable connect to node with id 3: [Errno 111] Connection refused (59 identical line(s) held back)",
    ]


def test_a_flood_of_distinct_lines_is_let_through_in_bounded_memory() -> None:
    """Lines that never repeat (debug lines naming an offset each) all pass, the table stays within its limit,
    and a line repeated right after is still held back."""
    now = [0.0]
    repeat = RepeatFilter(interval=30.0, clock=lambda: now[0], limit=100)
    logger = logging.getLogger("tests.logs.flood")
    logger.propagate = False
    collect = _Collect()
    logger.handlers[:] = [collect]
    logger.filters[:] = [repeat]
    for offset in range(1000):
        now[0] = offset * 0.001
        logger.warning("Adding fetch request for partition %s at offset %d", 3, offset)
        assert len(repeat) <= 100
    logger.warning("Adding fetch request for partition %s at offset %d", 3, 999)
    assert len(collect.lines) == 1000
