"""Trace context and per-hop timestamps that travel with a BeaconMessage through every process.

Two headers, on Kafka records and on HTTP requests between Beacon's processes (and on the channel
send where the channel's API takes extra headers):

- ``traceparent``: W3C trace context, ``00-<trace id>-<span id>-01``. The trace id is the message's
  ``trace_id`` (replies keep the trace id of the message they answer); the span id names the hop that
  wrote the record or made the request, so the next hop is its child.
- ``beacon-hops``: the hops so far, comma-separated, each hop appending its own: ``name@ms`` is a point
  in time (milliseconds since the epoch, 0.1 ms resolution), ``name=ms`` a duration measured inside one
  hop (e.g. the API's database time). See :data:`POINTS` for the names, in the order a message passes
  them.

Cheap on purpose (a string append per hop): it is always on. OpenTelemetry spans are separate and
only exist when ``BEACON_OTEL_ENDPOINT`` is set.
"""

from __future__ import annotations

import contextvars
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

HOPS_HEADER = "beacon-hops"
TRACEPARENT = "traceparent"

#: The points a message passes, in order, from the channel's webhook to the channel's send.
WEBHOOK = "webhook"  # the gateway received the webhook (or event) carrying the message
BM_IN = "bm_in"  # the gateway produced it to bm_in (the record's timestamp)
WORKER = "worker"  # a worker fetched it
API_SENT = "api_sent"  # the worker sent it to the API
API_ANSWERED = "api_answered"  # the worker had the API's answer (the reply)
BM_OUT = "bm_out"  # the worker produced the reply to bm_out (the record's timestamp)
GATEWAY = "gateway"  # the gateway fetched the reply
SEND = "send"  # the gateway started the channel's send
POINTS = (WEBHOOK, BM_IN, WORKER, API_SENT, API_ANSWERED, BM_OUT, GATEWAY, SEND)
#: Durations measured inside the API (from its ``Server-Timing`` answer).
API_DB = "api_db"
API_PIPELINE = "api_pipeline"

_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")

#: The hops header of the message the current task is sending (set by the gateway around a channel send,
#: read by channel clients that can pass headers on).
current_hops: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("beacon_hops", default=None)


def now_ms() -> float:
    return time.time() * 1000


def new_span_id() -> str:
    return os.urandom(8).hex()


def trace_id_of(trace_id: str) -> str:
    """A W3C trace id (32 lowercase hex, not all zero) for a message's ``trace_id``."""
    t = trace_id.replace("-", "").lower()
    if _TRACE_ID.match(t) and t != "0" * 32:
        return t
    import hashlib

    return hashlib.blake2b(trace_id.encode(), digest_size=16).hexdigest()


def traceparent(trace_id: str, span_id: str) -> str:
    return f"00-{trace_id_of(trace_id)}-{span_id}-01"


def parse_traceparent(value: str | bytes | None) -> tuple[str, str] | None:
    """(trace id, parent span id) from a ``traceparent`` value, or None when it is not one."""
    if value is None:
        return None
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    parts = text.strip().split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    return parts[1], parts[2]


def add_point(hops: str, name: str, ms: float | None = None) -> str:
    """``hops`` with the point ``name`` appended (now, unless ``ms`` is given)."""
    entry = f"{name}@{now_ms() if ms is None else ms:.1f}"
    return f"{hops},{entry}" if hops else entry


def add_duration(hops: str, name: str, ms: float) -> str:
    entry = f"{name}={ms:.1f}"
    return f"{hops},{entry}" if hops else entry


@dataclass
class Hops:
    """A parsed ``beacon-hops`` value: points (epoch ms) and durations (ms), the first of each name kept."""

    points: dict[str, float] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: str | bytes | None) -> Hops:
        hops = cls()
        if not value:
            return hops
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        for entry in text.split(","):
            for sep, into in (("@", hops.points), ("=", hops.durations)):
                name, found, number = entry.partition(sep)
                if found:
                    if (ms := _number(number)) is not None:  # a garbled entry is skipped, not fatal
                        into.setdefault(name.strip(), ms)
                    break
        return hops


#: Headers as the clients give them: Kafka record headers (pairs) or a mapping.
AnyHeaders = Iterable[tuple[str, bytes | str | None]] | Mapping[str, bytes | str | None] | None


def _pairs(headers: AnyHeaders) -> Iterable[tuple[str, bytes | str | None]]:
    if not headers:
        return ()
    return headers.items() if isinstance(headers, Mapping) else headers


def header(headers: AnyHeaders, name: str) -> str | None:
    """The value of header ``name`` among Kafka record headers (pairs) or a header mapping."""
    for key, value in _pairs(headers):
        if key == name and value is not None:
            return value.decode("ascii", "replace") if isinstance(value, bytes) else value
    return None


def trace_headers(headers: AnyHeaders) -> list[tuple[str, bytes]]:
    """Of ``headers``, those that carry the trace (``traceparent``, ``beacon-hops``): what a copy keeps."""
    return [(k, v.encode() if isinstance(v, str) else v) for k, v in _pairs(headers)
            if k in (TRACEPARENT, HOPS_HEADER) and v is not None]


def record_headers(hops: str, trace_id: str, span_id: str) -> list[tuple[str, bytes]]:
    """Kafka headers carrying ``hops`` and the trace context of the hop that writes the record."""
    return [(TRACEPARENT, traceparent(trace_id, span_id).encode()), (HOPS_HEADER, hops.encode())]


def server_timing(durations: Sequence[tuple[str, float]]) -> str:
    """A ``Server-Timing`` value: ``db;dur=1.2, pipeline;dur=3.4``."""
    return ", ".join(f"{name};dur={ms:.1f}" for name, ms in durations)


def parse_server_timing(value: str | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for metric in (value or "").split(","):
        name, _, params = metric.strip().partition(";")
        for param in params.split(";"):
            key, _, number = param.strip().partition("=")
            if key == "dur" and (ms := _number(number)) is not None:
                out[name.strip()] = ms
    return out


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
