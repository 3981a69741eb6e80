"""`beacon gateway whatsapp` as a real process: refuses to start unsigned, serves webhooks, survives a
SIGKILL mid-stream without losing or double-sending replies, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from beacon.codec import MessageCodec
from beacon.config import Settings
from beacon.fakes.whatsapp.driver import WebhookDriver
from beacon.fakes.whatsapp.server import FakeCloudApi, running
from beacon.kafka import AsyncProducer
from beacon.messages import BeaconMessage
from beacon.ops.process import free_port
from tests.gateway.conftest import await_committed, end_offsets

SECRET = "proc-secret"
TOKEN = "proc-token"


def gateway_env(settings: Settings, tmp: Path, port: int, graph_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEACON_")}
    env.update({
        "BEACON_KAFKA_BOOTSTRAP": settings.kafka.bootstrap,
        "BEACON_SCHEMA_REGISTRY_URL": settings.registry.url,
        "BEACON_DATA_DIR": str(tmp / "data"),
        "BEACON_TOPIC_IN": settings.topics.inbound, "BEACON_TOPIC_OUT": settings.topics.outbound,
        "BEACON_TOPIC_DLQ": settings.topics.dlq, "BEACON_TOPIC_PARTITIONS": "4",
        "BEACON_GATEWAY_GROUP": settings.whatsapp.gateway_group, "BEACON_GATEWAY_PORT": str(port),
        "BEACON_WHATSAPP_GRAPH_URL": graph_url, "BEACON_WHATSAPP_ACCESS_TOKEN": TOKEN,
        "BEACON_WHATSAPP_APP_SECRET": SECRET, "BEACON_WHATSAPP_USER_RATE": "0", "BEACON_WHATSAPP_RATE_LIMIT": "0",
        "BEACON_GATEWAY_MAX_IN_FLIGHT": "16",
    })
    env.update(extra)
    return env


def start(env: dict[str, str], tmp: Path, log_name: str) -> subprocess.Popen[bytes]:
    log = (tmp / log_name).open("wb")
    return subprocess.Popen([sys.executable, "-m", "beacon", "gateway", "whatsapp"], env=env, cwd=tmp,
                            stdout=log, stderr=subprocess.STDOUT)


async def wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as c:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "gateway exited during start-up"
            try:
                if (await c.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("gateway did not become healthy")


def test_refuses_to_start_without_app_secret_unless_allowed(kafka_settings: Settings, tmp_path: Path) -> None:
    env = gateway_env(kafka_settings, tmp_path, free_port(), "http://127.0.0.1:9", BEACON_WHATSAPP_APP_SECRET="")
    done = subprocess.run([sys.executable, "-m", "beacon", "gateway", "whatsapp"], env=env, cwd=tmp_path,
                          capture_output=True, timeout=60)
    assert done.returncode == 1 and b"BEACON_WHATSAPP_APP_SECRET" in done.stderr


def isolated(registry_settings: Settings, new_topic: Callable[..., str],
             unique: Callable[[str], str]) -> tuple[Settings, FakeCloudApi, MessageCodec]:
    """Fresh topics and group, a fake Cloud API answering in 10 ms, and a codec ready for bm_out."""
    settings = registry_settings.replace(
        topic_in=new_topic(4, "bm_in"),
        topic_out=new_topic(4, "bm_out"),
        topic_dlq=new_topic(1, "dlq"),
        whatsapp_gateway_group=unique("gw"),
    )
    fake = FakeCloudApi(access_token=TOKEN, app_secret=SECRET, gateway_url="http://127.0.0.1:9")
    fake.state.latency = 0.01
    codec = MessageCodec(settings)
    codec.prepare([settings.topics.outbound])
    return settings, fake, codec


async def test_sigkill_mid_stream_loses_nothing_and_double_sends_only_counted_in_flight_ones(
    registry_settings: Settings, new_topic: Callable[..., str], unique: Callable[[str], str], tmp_path: Path,
) -> None:
    settings, fake, codec = isolated(registry_settings, new_topic, unique)
    producer = AsyncProducer(settings)
    port = free_port()
    async with running(fake) as graph_url:
        env = gateway_env(settings, tmp_path, port, graph_url)
        proc = start(env, tmp_path, "gw1.log")
        try:
            await wait_healthy(port, proc)
            users = [f"4477008{u:05d}" for u in range(40)]
            msgs = [BeaconMessage.inbound_text(channel="whatsapp", account="106540352242922", user_id=u, text="x",
                                               channel_message_id=f"w-{u}-{i}").reply_text(f"{u} r{i}")
                    for i in range(15) for u in users]
            await asyncio.gather(*[producer.produce(settings.topics.outbound, codec.encode(m, settings.topics.outbound),
                                                    key=m.user_key.encode()) for m in msgs])
            while len(fake.state.sent) < 150:
                await asyncio.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(proc.wait, 10)
            killed_at = len(fake.state.sent)
            proc = start(env, tmp_path, "gw2.log")
            await wait_healthy(port, proc)
            deadline = time.monotonic() + 60
            want = {m.id for m in msgs}
            while {s["body"]["biz_opaque_callback_data"] for s in fake.state.sent} != want:
                assert time.monotonic() < deadline, "not every reply was sent after the restart"
                await asyncio.sleep(0.1)
            await await_committed(settings, settings.whatsapp.gateway_group,
                                  settings.topics.outbound)  # every record settled
            async with httpx.AsyncClient() as c:
                metrics = (await c.get(f"http://127.0.0.1:{port}/metrics")).text
            match = re.search(r'beacon_gateway_possible_duplicate_sends_total\{channel="whatsapp"\} (\S+)', metrics)
            possible = int(float(match.group(1))) if match else 0
            ids = [s["body"]["biz_opaque_callback_data"] for s in fake.state.sent]
            duplicates = len(ids) - len(set(ids))
            print(f"killed after {killed_at} sends; {duplicates} double send(s), {possible} counted as possible")
            assert duplicates <= possible <= 16
            for u in users:  # per-user order of first sends is kept across the crash
                firsts: list[Any] = []
                for s in fake.state.sent:
                    text = s["body"]["text"]["body"]
                    if s["to"] == f"+{u}" and text not in firsts:
                        firsts.append(text)
                assert firsts == [f"{u} r{i}" for i in range(15)]
            # the restarted process serves webhooks too, then stops cleanly on SIGTERM
            async with WebhookDriver(f"http://127.0.0.1:{port}", SECRET, max_attempts=1) as d:
                await d.send_text("447700800001", "after restart")
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(proc.wait, 30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            producer.close()


async def test_sigterm_mid_stream_finishes_in_flight_sends_and_a_restart_sends_no_duplicates(
    registry_settings: Settings, new_topic: Callable[..., str], unique: Callable[[str], str], tmp_path: Path,
) -> None:
    settings, fake, codec = isolated(registry_settings, new_topic, unique)
    producer = AsyncProducer(settings)
    port = free_port()
    async with running(fake) as graph_url:
        env = gateway_env(settings, tmp_path, port, graph_url)
        proc = start(env, tmp_path, "gw1.log")
        try:
            await wait_healthy(port, proc)
            msgs = [BeaconMessage.inbound_text(channel="whatsapp", account="106540352242922",
                                               user_id=f"44770070{u:04d}", text="x",
                                               channel_message_id=f"t-{u}-{i}").reply_text(f"r{i}")
                    for i in range(10) for u in range(30)]
            await asyncio.gather(*[producer.produce(settings.topics.outbound, codec.encode(m, settings.topics.outbound),
                                                    key=m.user_key.encode()) for m in msgs])
            while len(fake.state.sent) < 100:
                await asyncio.sleep(0.01)
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(proc.wait, 30) == 0  # the fake shares this loop: keep it serving
            stopped_at = len(fake.state.sent)
            proc = start(env, tmp_path, "gw2.log")
            await wait_healthy(port, proc)
            deadline = time.monotonic() + 60
            while len(fake.state.sent) < len(msgs) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            await await_committed(settings, settings.whatsapp.gateway_group,
                                  settings.topics.outbound)  # every record settled
            ids = [s["body"]["biz_opaque_callback_data"] for s in fake.state.sent]
            print(f"stopped after {stopped_at} sends; {len(ids)} sends in all")
            assert sorted(ids) == sorted(m.id for m in msgs)  # each exactly once
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                await asyncio.to_thread(proc.wait, 30)
            producer.close()


@pytest.mark.slow
async def test_a_cloud_api_outage_is_waited_out_per_number_with_nothing_dead_lettered_or_sent_twice(
    registry_settings: Settings, new_topic: Callable[..., str], unique: Callable[[str], str], tmp_path: Path,
) -> None:
    settings, fake, codec = isolated(registry_settings, new_topic, unique)
    producer = AsyncProducer(settings)
    port, fake_port = free_port(), free_port()
    users = [f"44770060{u:04d}" for u in range(8)]

    def replies(label: str, count: int) -> list[BeaconMessage]:
        return [BeaconMessage.inbound_text(channel="whatsapp", account="106540352242922", user_id=u, text="x",
                                           channel_message_id=f"o-{u}-{label}{i}").reply_text(f"{label}{i}")
                for i in range(count) for u in users]

    async def produce(msgs: list[BeaconMessage]) -> None:
        await asyncio.gather(*[producer.produce(settings.topics.outbound, codec.encode(m, settings.topics.outbound),
                                                key=m.user_key.encode()) for m in msgs])

    async def until(what: str, done: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.05)

    async def refusals(at_least: int) -> None:
        await until(f"{at_least} sends refused", lambda: fake.state.rejected["outage"] >= at_least)

    before, during, refused = replies("b", 1), replies("d", 3), replies("r", 1)
    env = gateway_env(settings, tmp_path, port, f"http://127.0.0.1:{fake_port}", BEACON_WHATSAPP_SEND_TIMEOUT="1",
                      BEACON_WHATSAPP_RETRY_BASE_DELAY="0.2", BEACON_WHATSAPP_RETRY_MAX_DELAY="1",
                      BEACON_WHATSAPP_RETRY_MAX_ATTEMPTS="2")
    proc = start(env, tmp_path, "gw.log")
    try:
        async with running(fake, port=fake_port) as fake_url, httpx.AsyncClient(base_url=fake_url) as control:
            await wait_healthy(port, proc)
            await produce(before)
            await until("the first replies", lambda: len(fake.state.sent) == len(before))
            for mode in ("503", "hang"):  # down: 503 without a body, then no answer at all
                await control.post("/_fake/outage", json={"mode": mode})
                if mode == "503":
                    await produce(during)
                await refusals(fake.state.rejected["outage"] + 3)
        await produce(refused)  # the fake is gone: connections refused
        await asyncio.sleep(5)  # let the outage last (this proves nothing by itself)
        back = FakeCloudApi(access_token=TOKEN, app_secret=SECRET, gateway_url="http://127.0.0.1:9")
        back.state = fake.state
        fake.restore()
        async with running(back, port=fake_port):
            want = before + during + refused
            await until("every reply after the outage", lambda: len(back.state.sent) >= len(want))
            await await_committed(settings, settings.whatsapp.gateway_group, settings.topics.outbound)
        ids = [s["body"]["biz_opaque_callback_data"] for s in back.state.sent]
        assert sorted(ids) == sorted(m.id for m in want)  # each exactly once
        for u in users:
            texts = [s["body"]["text"]["body"] for s in back.state.sent if s["to"] == f"+{u}"]
            assert texts == ["b0", "d0", "d1", "d2", "r0"]
        assert end_offsets(settings, settings.topics.dlq) == {0: 0}
        assert back.state.hanging_peak == 1
        log = (tmp_path / "gw.log").read_text()
        assert log.count("is failing for number") == 1 and "sends resumed" in log
        resumed = re.search(r"sends resumed after (\S+)s", log)
        print(f"outage of {resumed.group(1) if resumed else '?'}s: {fake.state.rejected['outage']} sends refused or "
              "unanswered while the fake was up")
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc.wait, 30)
        producer.close()
