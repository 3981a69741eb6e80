"""Through real processes (gateway, worker, API, fake Cloud API): one message's trace context and hops
travel from the webhook over bm_in, the API call and bm_out to the channel's send (``beacon.trace``)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from beacon.codec import MessageCodec
from beacon.config import Settings
from beacon.kafka import ensure_topics, make_consumer
from beacon.ops.process import port_open
from beacon.ops.supervisor import Supervisor
from beacon.routing import channel_of
from beacon.trace import (
    API_DB,
    API_PIPELINE,
    HOPS_HEADER,
    POINTS,
    TRACEPARENT,
    AnyHeaders,
    Hops,
    header,
    parse_traceparent,
)
from tests.ops.stack import Stack, wait_for

pytestmark = pytest.mark.slow


def _records(settings: Settings, topic: str, count: int) -> list[tuple[AnyHeaders, int]]:
    """The first ``count`` records of ``topic``: headers and timestamp (ms)."""
    consumer = make_consumer(settings, f"{topic}-reader", **{"auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    got: list[tuple[AnyHeaders, int]] = []

    def fetched() -> bool:
        m = consumer.poll(0.5)
        if m is not None and m.error() is None:
            got.append((m.headers(), m.timestamp()[1]))
        return len(got) >= count

    try:
        wait_for(fetched, f"{count} record(s) on {topic}")
    finally:
        consumer.close()
    return got


def test_one_message_carries_its_trace_and_every_hop_to_the_channel(
    registry_settings: Settings, unique: Callable[[str], str], tmp_path: Path
) -> None:
    stack = Stack.create(registry_settings, unique, tmp_path, workers=1)
    s = stack.settings
    ensure_topics(s)
    MessageCodec(s).prepare([s.topics.inbound, s.topics.outbound])
    migrated = stack.beacon("api", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    sup = Supervisor(tmp_path / "logs", report=print)
    try:
        for spec in stack.specs():
            if spec.name in ("api", "worker-1", "fake-whatsapp", "gateway-whatsapp"):
                sup.add(spec)
        ports = (s.api.port, s.whatsapp.gateway_port, s.local.fake_whatsapp_port)
        wait_for(lambda: all(port_open("127.0.0.1", p) for p in ports), "the API, gateway and fake to listen",
                 step=sup.poll, timeout=90)
        with httpx.Client(timeout=30) as client:
            stack.say(client, "447700900123", "/ping")
            wait_for(lambda: len(stack.sent(client)) >= 1, "the reply at the fake", step=sup.poll)
            [sent] = stack.sent(client)
    finally:
        sup.stop()
    assert sent["body"]["text"]["body"] == "pong"
    [(in_headers, _)] = _records(s, s.topics.inbound, 1)
    [(out_headers, _)] = _records(s, s.topics.outbound, 1)
    inbound = parse_traceparent(header(in_headers, TRACEPARENT))
    reply = parse_traceparent(header(out_headers, TRACEPARENT))
    send = parse_traceparent(sent["traceparent"])
    assert inbound is not None and reply is not None and send is not None
    # One trace from the webhook to the send; each hop names its own span.
    assert inbound[0] == reply[0] == send[0]
    assert len({inbound[1], reply[1], send[1]}) == 3

    hops = Hops.parse(sent["hops"])
    assert list(hops.points) == list(POINTS), sent["hops"]
    times = [hops.points[p] for p in POINTS] + [sent["received_at"] * 1000]
    # Kafka's record timestamps are whole milliseconds: a point may precede the one before it by under 1 ms.
    assert all(later >= earlier - 1.0 for earlier, later in itertools.pairwise(times)), sent["hops"]
    assert {API_DB, API_PIPELINE} <= set(hops.durations), sent["hops"]
    # bm_out carries the hops up to the API's answer; the gateway adds its own at the send.
    assert Hops.parse(header(out_headers, HOPS_HEADER)).points.keys() == set(POINTS[:5])
    assert channel_of(out_headers) == "whatsapp"  # the other channels' gateways skip the reply undecoded


def test_a_telegram_reply_carries_its_trace_and_every_hop_to_the_bot_api(
    registry_settings: Settings, unique: Callable[[str], str], tmp_path: Path
) -> None:
    """The hops are the gateway framework's, not WhatsApp's: a Telegram sendMessage carries them too."""
    stack = Stack.create(registry_settings, unique, tmp_path, workers=1)
    s = stack.settings
    ensure_topics(s)
    MessageCodec(s).prepare([s.topics.inbound, s.topics.outbound])
    migrated = stack.beacon("api", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    fake = f"http://127.0.0.1:{s.local.fake_telegram_port}"
    sup = Supervisor(tmp_path / "logs", report=print)
    try:
        for spec in stack.specs():
            if spec.name in ("api", "worker-1", "fake-telegram", "gateway-telegram"):
                sup.add(spec)
        ports = (s.api.port, s.telegram.port, s.local.fake_telegram_port)
        wait_for(lambda: all(port_open("127.0.0.1", p) for p in ports), "the API, gateway and fake to listen",
                 step=sup.poll, timeout=90)
        with httpx.Client(timeout=30) as client:

            def said() -> bool:  # the gateway sets its webhook at the fake when it starts
                r = client.post(f"{fake}/_fake/say", json={"chat_id": 987654321, "text": "/ping"})
                return r.status_code == 200 and r.json().get("status") == 200

            wait_for(said, "the fake to deliver the update to the gateway", step=sup.poll)

            def sends() -> list[dict[str, object]]:
                calls = client.get(f"{fake}/_fake/calls", params={"after": 0, "wait": 0, "method": "sendMessage"})
                return list(calls.json())

            wait_for(lambda: len(sends()) >= 1, "the reply at the fake Bot API", step=sup.poll)
            [sent] = sends()
    finally:
        sup.stop()
    assert sent["params"]["text"] == "pong"  # type: ignore[index]
    [(in_headers, _)] = _records(s, s.topics.inbound, 1)
    inbound = parse_traceparent(header(in_headers, TRACEPARENT))
    send = parse_traceparent(sent["traceparent"])  # type: ignore[arg-type]
    assert inbound is not None and send is not None and inbound[0] == send[0]
    hops = Hops.parse(sent["hops"])  # type: ignore[arg-type]
    assert list(hops.points) == list(POINTS), sent["hops"]
