"""The console's chart data: messages in and out per second from samples of real end offsets."""

from __future__ import annotations

import time
from collections.abc import Callable

from beacon import kafka
from beacon.config import Settings
from beacon.console.throughput import Sampler, chart_svg


def test_rates_count_the_records_produced_between_two_samples(
    kafka_settings: Settings, new_topic: Callable[..., str]
) -> None:
    settings = kafka_settings.replace(topic_in=new_topic(partitions=3), topic_out=new_topic(3))
    sampler = Sampler(settings)
    deadline = time.monotonic() + 30
    while not sampler.samples:  # a topic just created may not be in the broker's metadata yet: sampled again
        assert time.monotonic() < deadline, f"no sample within 30s: {sampler.problem}"
        sampler.sample_once()
        if not sampler.samples:
            time.sleep(0.2)
    producer = kafka.make_producer(settings)
    for n in range(30):
        producer.produce(settings.topics.inbound, value=b"x", key=f"user-{n}")
    assert producer.flush(10) == 0
    sampler.sample_once()
    assert sampler.problem is None and len(sampler.samples) == 2
    (rate,) = sampler.rates()
    span = sampler.samples[1].at - sampler.samples[0].at
    assert round(rate.inbound * span) == 30 and rate.outbound == 0
    svg = chart_svg(sampler.rates(), settings.console.chart_minutes)
    assert svg.count("<polyline") == 2 and "in " in svg
