"""End to end through real processes: `beacon dev` answers a user and stops cleanly on Ctrl-C, and
replaying bm_in through the workers sends no reply twice (idempotent API, gateway's sent-id record)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from beacon.bench.hops import HOPS, INSIDE_API
from beacon.codec import MessageCodec
from beacon.config import Settings
from beacon.kafka import describe_group, ensure_topics, list_topic_offsets, topic_partitions
from beacon.ops import stackfile
from beacon.ops.lag import group_lag, total_lag
from beacon.ops.process import port_open
from beacon.ops.supervisor import Supervisor
from tests.ops.stack import ROUND_TRIP, Stack, wait_for

pytestmark = pytest.mark.slow


def test_beacon_dev_runs_the_stack_answers_and_stops_on_ctrl_c(
    registry_settings: Settings, unique: Callable[[str], str], tmp_path: Path
) -> None:
    stack = Stack.create(registry_settings, unique, tmp_path, workers=1)
    out = tmp_path / "dev.out"
    with out.open("w") as fh:
        dev = subprocess.Popen([sys.executable, "-m", "beacon", "dev", "--keep-services"], env=stack.env,
                               stdout=fh, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: "Ctrl-C stops everything." in out.read_text() or dev.poll() is not None,
                 "beacon dev to announce the stack", timeout=120)
        assert dev.poll() is None, out.read_text()
        text = out.read_text()
        assert f"http://127.0.0.1:{stack.settings.api.port}" in text and "fake-whatsapp say --from" in text
        announced = text.split("Database       migrated", 1)[1].splitlines()[1:]
        announced = [line for line in announced if line.strip()]
        assert announced[0] == f"Chat with the bot: open http://127.0.0.1:{stack.settings.webchat.port}/ in a browser"
        said = stack.beacon("fake-whatsapp", "say", "--from", "447700900123", "/ping", "--timeout", "60")
        assert said.returncode == 0, said.stderr + out.read_text()
        assert said.stdout.strip() == "pong"
        said = stack.beacon("fake-telegram", "say", "--chat", "987654321", "/ping", "--timeout", "60")
        assert said.returncode == 0, said.stderr + out.read_text()
        assert said.stdout.strip() == "pong"
        assert 'fake-telegram say --chat 987654321 "/ping"' in text

        # `beacon bench e2e` in another terminal, as the README shows it: the plain environment has no app
        # secret, the bench finds the running stack's card and its webhooks are accepted.
        assert "BEACON_WHATSAPP_APP_SECRET" not in stack.env
        card = stackfile.read(stack.settings)
        assert card is not None
        assert set(card.processes) == {"api", "worker-1", "console", "fake-whatsapp", "gateway-whatsapp",
                                       "fake-telegram", "gateway-telegram", "gateway-webchat"}
        bench = stack.beacon("bench", "e2e", "--rate", "20", "--seconds", "2", "--latency-rate", "10",
                             "--latency-seconds", "2", "--users", "10", "--out", str(tmp_path / "bench" / "e2e"),
                             timeout=300)
        assert bench.returncode == 0, bench.stdout + bench.stderr
        assert "| stack at 10/s | 10/s | 20 | 0 |" in bench.stdout, bench.stdout
        assert "| stack at 20/s | 20/s | 40 | 0 |" in bench.stdout, bench.stdout
        assert "| gateway-whatsapp |" in bench.stdout and "| worker-1 |" in bench.stdout, bench.stdout
        # The bare topology ran at the same rates, and Beacon is reported as a ratio of it and of raw Kafka.
        assert "| bare at 10/s | 10/s | 20 | 0 |" in bench.stdout, bench.stdout
        assert "| stack at 20/s | bare at 20/s |" in bench.stdout, bench.stdout
        assert "| stack at 20/s | kafka baseline at 20/s |" in bench.stdout, bench.stdout
        assert (tmp_path / "bench" / "e2e-percentiles.png").stat().st_size > 0
        # The per-hop breakdown, from the hops the replies carried to the fake: every hop measured in both runs.
        for label in [label for label, _, _ in HOPS] + [label for label, _ in INSIDE_API]:
            row = next((line for line in bench.stdout.splitlines() if line.startswith(f"| {label} |")), None)
            assert row is not None, f"no row for hop {label!r}:\n{bench.stdout}"
            cells = [c.strip() for c in row.strip("|").split("|")[1:]]
            assert len(cells) == 2 and all(re.fullmatch(r"[\d.]+ / [\d.]+ / [\d.]+", c) for c in cells), row
        assert "carried no hops" not in bench.stdout, bench.stdout

        # A gateway that refuses the bench's webhooks stops the bench with the reason, before any run.
        card.whatsapp_app_secret = "not-the-gateway-secret"
        stackfile.write(stack.settings, card)
        refused = stack.beacon("bench", "e2e", "--rate", "20", "--seconds", "1", "--latency-seconds", "1",
                               "--out", str(tmp_path / "bench" / "refused"), timeout=120)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "refused the bench's webhook with 403" in refused.stderr, refused.stderr
        assert "kafka baseline" not in refused.stdout
        dev.send_signal(signal.SIGINT)
        assert dev.wait(timeout=60) == 0
    finally:
        if dev.poll() is None:  # a failed check: stop the stack as Ctrl-C does (a kill would orphan its children)
            dev.send_signal(signal.SIGINT)
            try:
                dev.wait(timeout=60)
            except subprocess.TimeoutExpired:
                dev.kill()
    text = out.read_text()
    assert "SIGINT received" in text and "Beacon stopped." in text
    for name in ("api", "worker-1", "fake-whatsapp", "gateway-whatsapp", "fake-telegram", "gateway-telegram"):
        assert (tmp_path / "logs" / f"{name}.log").stat().st_size > 0
    s = stack.settings
    assert not any(port_open("127.0.0.1", p) for p in (s.api.port, s.whatsapp.gateway_port, s.local.fake_whatsapp_port,
                                                        s.telegram.port, s.local.fake_telegram_port))
    assert not stackfile.path(s).exists()


def test_replaying_bm_in_through_the_workers_sends_no_reply_twice(
    registry_settings: Settings, unique: Callable[[str], str], tmp_path: Path
) -> None:
    stack = Stack.create(registry_settings, unique, tmp_path, workers=1)
    s = stack.settings
    ensure_topics(s)
    MessageCodec(s).prepare([s.topics.inbound, s.topics.outbound])
    migrated = stack.beacon("api", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    sup = Supervisor(tmp_path / "logs", report=print)
    specs = {spec.name: spec for spec in stack.specs(ROUND_TRIP)}
    try:
        for spec in specs.values():
            sup.add(spec)
        wait_for(stack.listening, "the API, gateway and fake to listen", step=sup.poll)
        users = ["447700900001", "447700900002", "447700900003"]
        texts = [f"message {i}" for i in range(12)]
        with httpx.Client(timeout=30) as client:
            for i, text in enumerate(texts):
                stack.say(client, users[i % len(users)], text)
            wait_for(lambda: len(stack.sent(client)) >= len(texts), "every first reply", step=sup.poll)
            first = stack.sent(client)
            assert sorted(i["body"]["text"]["body"] for i in first) == sorted(f"You said: {t}" for t in texts)

            out_end = sum(list_topic_offsets(s, s.topics.outbound, topic_partitions(s, s.topics.outbound),
                                             "latest").values())
            wait_for(lambda: total_lag(group_lag(s, s.workers.group, s.topics.inbound)) == 0, "the workers to commit",
                     step=sup.poll)
            sup.remove("worker-1")
            wait_for(lambda: not describe_group(s, s.workers.group).active, "the worker group to empty", step=sup.poll)

            replay = stack.beacon("replay", "--group", s.workers.group, "--topic", s.topics.inbound, "--to-earliest")
            assert replay.returncode == 0, replay.stderr
            assert "moved" in replay.stdout
            assert total_lag(group_lag(s, s.workers.group, s.topics.inbound)) == len(texts)

            sup.add(specs["worker-1"])
            wait_for(lambda: total_lag(group_lag(s, s.workers.group, s.topics.inbound)) == 0,
                     "the replay to be processed",
                     step=sup.poll)

            def replies_reproduced() -> bool:
                end = list_topic_offsets(s, s.topics.outbound, topic_partitions(s, s.topics.outbound), "latest")
                return sum(end.values()) >= 2 * out_end

            wait_for(replies_reproduced, "the replayed replies on bm_out", step=sup.poll)
            wait_for(lambda: total_lag(group_lag(s, s.whatsapp.gateway_group, s.topics.outbound)) == 0,
                     "the gateway to settle the replayed replies", step=sup.poll)
            again = stack.sent(client)
        assert len(again) == len(texts), [i["body"]["text"]["body"] for i in again]
    finally:
        sup.stop()
