"""Where each millisecond goes: the per-hop breakdown of a run, from the hops each reply carried.

Every reply the gateway sends carries the ``beacon-hops`` header (``beacon.trace``), which the fake
Cloud API records with the time it received the send; from those points each hop's duration follows
(consecutive points of one message), and per hop the run's p50/p95/p99.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from beacon import trace

CHANNEL = "channel"  # the channel received the send (the fake's receive time)

#: (label, from point, to point) of each hop, in the order a message passes them.
HOPS: tuple[tuple[str, str, str], ...] = (
    ("gateway in: webhook -> bm_in record", trace.WEBHOOK, trace.BM_IN),
    ("bm_in -> worker fetch", trace.BM_IN, trace.WORKER),
    ("worker: fetch -> API request", trace.WORKER, trace.API_SENT),
    ("API: request -> answer", trace.API_SENT, trace.API_ANSWERED),
    ("worker: answer -> bm_out record", trace.API_ANSWERED, trace.BM_OUT),
    ("bm_out -> gateway fetch", trace.BM_OUT, trace.GATEWAY),
    ("gateway out: fetch -> send", trace.GATEWAY, trace.SEND),
    ("channel send: send -> received", trace.SEND, CHANNEL),
    ("end to end: webhook -> received", trace.WEBHOOK, CHANNEL),
)
#: Durations measured inside the API (label, name in the hops).
INSIDE_API: tuple[tuple[str, str], ...] = (
    ("  inside the API: database", trace.API_DB),
    ("  inside the API: pipeline", trace.API_PIPELINE),
)


@dataclass
class Breakdown:
    """Per hop label, the durations (ms) of the messages that carried both its points."""

    durations: dict[str, list[float]] = field(default_factory=dict)
    messages: int = 0
    #: Replies that carried no hops at all (a gateway or worker that does not trace).
    untraced: int = 0

    def add(self, hops_header: str | None, received_at: float) -> None:
        """One reply as the channel received it: its ``beacon-hops`` value, and when (epoch seconds)."""
        self.messages += 1
        hops = trace.Hops.parse(hops_header)
        if not hops.points:
            self.untraced += 1
            return
        points = {**hops.points, CHANNEL: received_at * 1000}
        for label, start, end in HOPS:
            if start in points and end in points:
                self.durations.setdefault(label, []).append(max(0.0, points[end] - points[start]))
        for label, name in INSIDE_API:
            if name in hops.durations:
                self.durations.setdefault(label, []).append(hops.durations[name])

    def missing(self) -> list[str]:
        """The hops no message of the run carried."""
        return [label for label, _, _ in HOPS if label not in self.durations]

    def pct(self, label: str, q: float) -> float:
        values = sorted(self.durations.get(label, ()))
        if not values:
            return float("nan")
        return values[min(len(values) - 1, int(q / 100 * len(values)))]


def hop_table(runs: list[tuple[str, Breakdown]]) -> str:
    """Markdown: per hop, p50/p95/p99 in ms for each run."""
    head = "| hop | " + " | ".join(f"{name}: p50 / p95 / p99 ms" for name, _ in runs) + " |"
    rows = [head, "|---|" + "---|" * len(runs)]
    labels = [label for label, _, _ in HOPS[:4]] + [label for label, _ in INSIDE_API] + \
             [label for label, _, _ in HOPS[4:]]
    for label in labels:
        cells = []
        for _, b in runs:
            cells.append(f"{b.pct(label, 50):.1f} / {b.pct(label, 95):.1f} / {b.pct(label, 99):.1f}"
                         if label in b.durations else "-")
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    untraced = [f"{name}: {b.untraced} of {b.messages} replies carried no hops" for name, b in runs if b.untraced]
    return "\n".join(rows + ([f"({'; '.join(untraced)})"] if untraced else []))
