"""`beacon bench gateway`: one `measure(channel)` runs every channel's bench, the fake in a process of its own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from beacon.bench.gateway import WHATSAPP, Channel, measure
from beacon.bench.telegram import TELEGRAM
from beacon.config import Settings


def live_children() -> set[int]:
    """Pids of this process's children that are still running (not zombies)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("channel", [WHATSAPP, TELEGRAM], ids=lambda c: c.name)
async def test_measure_runs_each_channels_bench_and_stops_its_gateway_and_fake(
    registry_settings: Settings, channel: Channel
) -> None:
    before = live_children()
    figures = await measure(registry_settings, channel, seconds=0.5, concurrency=4, paced_rate=20, sends=20,
                            users=5)
    assert figures.notes == []
    assert figures.webhook_errors == 0
    assert min(figures.raw_produce, figures.webhooks, figures.raw_http, figures.sends) > 0
    assert figures.p50_ms > 0 and figures.p99_ms >= figures.p50_ms
    assert live_children() <= before  # the gateway and the fake were stopped
