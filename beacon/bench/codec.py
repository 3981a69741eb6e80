"""``beacon bench codec``: encode + decode of a typical text message with cached schemas, on one core.

Baselines in the same run: the bare fastavro round trip of the same record (the floor: what the
codec adds is framing and the model), and a pydantic JSON round trip (what a JSON wire format
with validation would cost). Target: at least 50,000 codec round trips per second.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable

import fastavro
import orjson

from beacon.codec import MessageCodec, to_record
from beacon.config import Settings
from beacon.messages import BeaconMessage

TARGET = 50_000


def typical_message() -> BeaconMessage:
    return BeaconMessage.inbound_text(
        channel="whatsapp", account="106540352242922", user_id="447700900123",
        text="Hi! Can you tell me when my order #48213 will arrive?", profile_name="Ada Lovelace",
        channel_message_id="wamid.HBgLNDQ3NzAwOTAwMTIzFQIAEhggQjVGM0E0QzE3RjM2NkY0NzQ2",
    )


def rate(call: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``call`` over about ``seconds`` (best of three rounds)."""
    best = 0.0
    for _ in range(3):
        count = 0
        started = time.perf_counter()
        deadline = started + seconds / 3
        while True:
            for _ in range(1000):
                call()
            count += 1000
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, count / (now - started))
    return best


def run(settings: Settings, seconds: float = 3.0) -> dict[str, float]:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, as the target says
    codec = MessageCodec(settings)
    msg = typical_message()
    topic = settings.topics.inbound
    data = codec.encode(msg, topic)  # registers (or looks up) once; everything after is cached
    assert codec.decode(data, topic=topic) == msg
    record = to_record(msg)
    schema = codec.reader_schema

    def bare() -> object:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, schema, record)
        buf.seek(0)
        return fastavro.schemaless_reader(buf, schema, None)

    return {
        "codec": rate(lambda: codec.decode(codec.encode(msg, topic), topic=topic), seconds),
        "encode": rate(lambda: codec.encode(msg, topic), seconds / 2),
        "decode": rate(lambda: codec.decode(data, topic=topic), seconds / 2),
        "bare_fastavro": rate(bare, seconds),
        "pydantic_json": rate(lambda: BeaconMessage.model_validate(orjson.loads(orjson.dumps(msg.model_dump(
            mode="json")))), seconds),
        "bytes": float(len(data)),
    }


def report(figures: dict[str, float]) -> str:
    codec = figures["codec"]
    verdict = "meets" if codec >= TARGET else "MISSES"
    return "\n".join([
        f"codec round trip (encode+decode, {int(figures['bytes'])} bytes on the wire): {codec:,.0f}/s on one core "
        f"({verdict} the {TARGET:,}/s target)",
        f"  encode alone: {figures['encode']:,.0f}/s; decode alone: {figures['decode']:,.0f}/s",
        f"  baseline bare fastavro round trip: {figures['bare_fastavro']:,.0f}/s "
        f"(codec = {codec / figures['bare_fastavro']:.2f}x of it)",
        f"  baseline pydantic JSON round trip: {figures['pydantic_json']:,.0f}/s "
        f"(codec = {codec / figures['pydantic_json']:.2f}x of it)",
    ])
