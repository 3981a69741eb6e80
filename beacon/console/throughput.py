"""Messages in and out per second, from periodic samples of the end offsets of bm_in and bm_out.

A background thread asks the broker for the topics' end offsets every few seconds and keeps a small
ring of samples; the rate between two samples is the difference of the summed offsets over the
time between them. Reading end offsets is an admin request: no consumer, no group, nothing on the
message path waits for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from beacon import kafka
from beacon.config import Settings
from beacon.errors import KafkaError

log = logging.getLogger("beacon.console")


@dataclass(frozen=True)
class Sample:
    """Summed end offsets of bm_in and bm_out at a moment (monotonic seconds)."""

    at: float
    inbound: int
    outbound: int


@dataclass(frozen=True)
class Rate:
    """Messages per second in and out between two samples, ``ago`` seconds before now."""

    ago: float
    inbound: float
    outbound: float


def end_offsets(settings: Settings, topic: str, admin: Any = None) -> int:
    """The sum of ``topic``'s end offsets over its partitions."""
    parts = kafka.topic_partitions(settings, topic, admin)
    return sum(kafka.list_topic_offsets(settings, topic, parts, "latest", admin).values())


class Sampler:
    """Samples end offsets in a daemon thread; :meth:`rates` turns the ring into per-second rates."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.interval = settings.console.sample_seconds
        size = max(2, int(settings.console.chart_minutes * 60 / self.interval) + 1)
        self.samples: deque[Sample] = deque(maxlen=size)
        self.problem: str | None = None
        self._admin: Any = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="console-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.settings.kafka.request_timeout * 3)

    def sample_once(self) -> None:
        if self._admin is None:
            # One admin client for every sample: a new one per request would connect anew every few seconds.
            self._admin = kafka.make_admin(self.settings)
        try:
            sample = Sample(time.monotonic(), end_offsets(self.settings, self.settings.topics.inbound, self._admin),
                            end_offsets(self.settings, self.settings.topics.outbound, self._admin))
        except KafkaError as exc:
            if self.problem is None:
                log.warning("console: cannot sample end offsets for the chart (%s); retrying every %.0fs",
                            exc, self.interval)
            self.problem = str(exc)
            return
        if self.problem is not None:
            log.info("console: sampling end offsets again")
        self.problem = None
        self.samples.append(sample)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample_once()
            self._stop.wait(self.interval)

    def rates(self) -> list[Rate]:
        """Rates between consecutive samples, oldest first."""
        samples = list(self.samples)
        now = time.monotonic()
        out = []
        for a, b in pairwise(samples):
            span = b.at - a.at
            if span > 0:
                out.append(Rate(now - b.at, max(0, b.inbound - a.inbound) / span,
                                max(0, b.outbound - a.outbound) / span))
        return out


def chart_svg(rates: list[Rate], minutes: float, width: int = 720, height: int = 200) -> str:
    """An inline SVG line chart of the rates (in: blue, out: green) over the last ``minutes``."""
    span = minutes * 60
    top = max([1.0, *(r.inbound for r in rates), *(r.outbound for r in rates)])
    pad_l, pad_b = 44, 22
    plot_w, plot_h = width - pad_l - 8, height - pad_b - 8

    def point(ago: float, value: float) -> str:
        x = pad_l + plot_w * (1 - min(ago, span) / span)
        y = 8 + plot_h * (1 - value / top)
        return f"{x:.1f},{y:.1f}"

    lines = []
    for colour, attr in (("#1a73e8", "inbound"), ("#137333", "outbound")):
        pts = " ".join(point(r.ago, getattr(r, attr)) for r in rates)
        if pts:
            lines.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{pts}"/>')
    last = rates[-1] if rates else Rate(0, 0, 0)
    return (
        f'<svg role="img" aria-label="messages per second" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" style="background:#fff;border:1px solid #d8dce3">'
        f'<line x1="{pad_l}" y1="8" x2="{pad_l}" y2="{8 + plot_h}" stroke="#999"/>'
        f'<line x1="{pad_l}" y1="{8 + plot_h}" x2="{pad_l + plot_w}" y2="{8 + plot_h}" stroke="#999"/>'
        f'<text x="4" y="16" font-size="11">{top:.1f}/s</text>'
        f'<text x="4" y="{8 + plot_h}" font-size="11">0</text>'
        f'<text x="{pad_l}" y="{height - 4}" font-size="11">-{minutes:g} min</text>'
        f'<text x="{pad_l + plot_w - 24}" y="{height - 4}" font-size="11">now</text>'
        + "".join(lines)
        + f'<text x="{pad_l + 8}" y="22" font-size="12" fill="#1a73e8">in {last.inbound:.1f}/s</text>'
        f'<text x="{pad_l + 100}" y="22" font-size="12" fill="#137333">out {last.outbound:.1f}/s</text></svg>'
    )
