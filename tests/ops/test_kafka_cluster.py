"""A local 3-broker Kafka cluster: its layout (ports, replication), refusals that name the problem, and
(`beacon kafka start --brokers 3`, status, stop) the whole pipeline riding through the SIGKILL of the
broker leading most of bm_in's partitions: every acknowledged webhook answered, none twice, each
user's order kept, no process restarted.

The cluster runs on free ports in the test's own data dir; the shared test broker is not touched.
The schema registry is the shared one: Apicurio keeps schemas in its own H2 file, not in Kafka.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx
import pytest

from beacon.codec import MessageCodec
from beacon.config import Settings
from beacon.errors import ServiceError
from beacon.fakes.whatsapp import payloads as p
from beacon.fakes.whatsapp.driver import WebhookDriver
from beacon.kafka import ensure_topics, make_admin
from beacon.ops import kafka_cluster, kafka_local
from beacon.ops.dev import DEV_APP_SECRET
from beacon.ops.lag import group_lag, total_lag
from beacon.ops.process import free_port_block
from beacon.ops.supervisor import Supervisor
from tests.conftest import make_settings
from tests.ops.stack import ROUND_TRIP, Stack, wait_for

USERS = 20
PAUSE = 0.25  # seconds a user waits between two messages (after the previous one was acknowledged)
GIVE_UP = 45.0  # seconds a webhook is retried (like Meta) before the load counts it as refused


@pytest.fixture
def cluster_settings(registry_settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    """Settings for a 3-node cluster of this test's own (node i on base + 2(i-1), controller on base+1 + 2(i-1))."""
    base = free_port_block(6)
    settings = make_settings(
        data_dir=tmp_path,
        kafka_bootstrap=f"127.0.0.1:{base}",
        kafka_controller_port=base + 1,
        schema_registry_url=registry_settings.registry.url,
        topic_replication_factor=3,
        topic_min_insync_replicas=2,
        kafka_start_timeout=180.0,  # three JVMs starting on two cores shared with the rest of the suite
    )
    yield settings
    kafka_local.stop(settings)


def _beacon(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEACON_")}
    env.update({
        "BEACON_DATA_DIR": str(settings.data_dir),
        "BEACON_KAFKA_BOOTSTRAP": settings.kafka.bootstrap,
        "BEACON_KAFKA_CONTROLLER_PORT": str(settings.local.kafka_controller_port),
        "BEACON_KAFKA_START_TIMEOUT": str(settings.local.kafka_start_timeout),
        "COLUMNS": "200",
    })
    return subprocess.run([sys.executable, "-m", "beacon", *args], env=env, capture_output=True, text=True,
                          timeout=180, check=False)


@dataclass
class Load:
    """Users writing in turn through signed webhooks; what the gateway acknowledged, and its refusals."""

    acked: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    refusals: int = 0  # non-200 answers or failed connections, each retried
    gave_up: int = 0
    longest_ack: float = 0.0  # seconds from a webhook's first POST to its 200
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.acked.values())

    async def user(self, driver: WebhookDriver, number: str) -> None:
        k = 0
        while not self.stop.is_set():
            body = p.encode(p.text_webhook(number, f"{number} {k}", wamid=p.new_wamid()))
            first = time.monotonic()
            while True:
                try:
                    status: int | None = await driver.post_once(body)
                except (aiohttp.ClientError, TimeoutError):
                    status = None
                if status == 200:
                    self.acked[number].append(k)
                    self.longest_ack = max(self.longest_ack, time.monotonic() - first)
                    break
                self.refusals += 1
                if time.monotonic() - first > GIVE_UP:
                    self.gave_up += 1
                    break
                await asyncio.sleep(0.5)
            k += 1
            await asyncio.sleep(PAUSE)


def test_nodes_use_the_documented_ports_and_replicate_internal_topics(tmp_path: Path) -> None:
    settings = make_settings(data_dir=tmp_path, kafka_bootstrap="127.0.0.1:9092", kafka_controller_port=9093)
    members = kafka_cluster.nodes(settings, 3)
    assert [(n.port, n.controller_port) for n in members] == [(9092, 9093), (9094, 9095), (9096, 9097)]
    assert kafka_cluster.bootstrap(members) == "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"
    props = kafka_cluster.properties(members[1], members)
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093,2@127.0.0.1:9095,3@127.0.0.1:9097"
    assert props["offsets.topic.replication.factor"] == props["transaction.state.log.replication.factor"] == "3"
    assert props["min.insync.replicas"] == props["transaction.state.log.min.isr"] == "2"
    assert props["log.dirs"] == str(tmp_path.resolve() / "kafka-cluster" / "node-2" / "logs")
    with pytest.raises(ServiceError, match="no local Kafka cluster"):
        kafka_local.kill_node(settings, 1)


def test_start_refuses_overlapping_or_busy_ports_naming_them(tmp_path: Path) -> None:
    base = free_port_block(6)
    overlapping = make_settings(data_dir=tmp_path, kafka_bootstrap=f"127.0.0.1:{base}", kafka_controller_port=base + 2)
    result = _beacon(overlapping, "kafka", "start", "--brokers", "3")
    assert result.returncode == 1 and "ports overlap" in result.stderr, result.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", base + 2))
        busy.listen()
        settings = make_settings(data_dir=tmp_path, kafka_bootstrap=f"127.0.0.1:{base}", kafka_controller_port=base + 1)
        result = _beacon(settings, "kafka", "start", "--brokers", "3")
    assert result.returncode == 1, result.stdout
    assert f"Port {base + 2} on 127.0.0.1 (node 2) is already in use" in result.stderr


@pytest.mark.slow
def test_the_pipeline_rides_through_the_sigkill_of_the_leading_broker(
    cluster_settings: Settings, unique: Callable[[str], str], tmp_path: Path
) -> None:
    began = time.monotonic()
    started = _beacon(cluster_settings, "kafka", "start", "--brokers", "3")
    assert started.returncode == 0, started.stderr + started.stdout
    print(started.stdout)
    base = cluster_settings.kafka_port
    bootstrap = f"127.0.0.1:{base},127.0.0.1:{base + 2},127.0.0.1:{base + 4}"
    assert f"BEACON_KAFKA_BOOTSTRAP={bootstrap}" in started.stdout
    assert "BEACON_TOPIC_REPLICATION_FACTOR=3 BEACON_TOPIC_MIN_INSYNC_REPLICAS=2" in started.stdout
    status = _beacon(cluster_settings, "kafka", "status")
    assert status.returncode == 0 and "3 of 3 nodes alive" in status.stdout, status.stdout + status.stderr

    # Topics kept on one broker of the cluster (BEACON_TOPIC_REPLICATION_FACTOR left at 1): said plainly.
    unreplicated = _beacon(cluster_settings, "topics", "ensure")
    assert unreplicated.returncode == 0, unreplicated.stderr
    assert "has 3 brokers but Beacon's topics are kept on 1" in unreplicated.stderr

    stack = Stack.create(cluster_settings.replace(kafka_bootstrap=bootstrap), unique, tmp_path,
                         workers=2)
    stack.env.update({"BEACON_TOPIC_REPLICATION_FACTOR": "3", "BEACON_TOPIC_MIN_INSYNC_REPLICAS": "2"})
    s = stack.settings
    ensured = stack.beacon("topics", "ensure")
    assert ensured.returncode == 0 and f"created {s.topics.inbound}" in ensured.stdout, ensured.stdout + ensured.stderr
    # Replication factor 3 and min.insync.replicas=2, as configured (a mismatch would raise here).
    assert sorted(ensure_topics(s, strict=True).unchanged) == sorted([s.topics.inbound, s.topics.outbound,
                                                                      s.topics.dlq])
    MessageCodec(s).prepare([s.topics.inbound, s.topics.outbound])
    migrated = stack.beacon("api", "migrate")
    assert migrated.returncode == 0, migrated.stderr

    reports: list[str] = []
    sup = Supervisor(tmp_path / "logs", report=reports.append)
    gateway = f"http://127.0.0.1:{s.whatsapp.gateway_port}"
    users = [f"4477009{i:05d}" for i in range(USERS)]
    killed: list[int] = []

    def replies(client: httpx.Client) -> list[tuple[str, str]]:
        return [(i["body"]["to"].lstrip("+"), i["body"]["text"]["body"]) for i in stack.sent(client)]

    async def drive(client: httpx.Client) -> Load:
        load = Load()
        async with WebhookDriver(gateway, DEV_APP_SECRET) as driver:
            tasks = [asyncio.create_task(load.user(driver, u)) for u in users]

            async def until(condition: Callable[[], bool], what: str, timeout: float) -> None:
                deadline = time.monotonic() + timeout
                while not condition():
                    assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
                    sup.poll()
                    await asyncio.sleep(0.2)

            await until(lambda: len(stack.sent(client)) >= 2 * USERS, "the first replies", 90)
            print(f"{time.monotonic() - began:.0f}s: the pipeline answers")
            lead = kafka_local.leaders(s, s.topics.inbound)
            victim = max((n for n in lead if n > 0), key=lambda n: len(lead[n]))
            print(f"leaders of {s.topics.inbound} before: {lead}; SIGKILL node {victim}")
            at_kill = {u: len(load.acked[u]) for u in users}
            kafka_local.kill_node(s, victim)
            killed.append(victim)
            print(f"{time.monotonic() - began:.0f}s: node {victim} killed")
            # Keep the load on until every user had 10 more messages acknowledged after the kill.
            await until(lambda: all(len(load.acked[u]) >= at_kill[u] + 10 for u in users),
                        "10 more acknowledged messages per user after the kill", 90)
            print(f"{time.monotonic() - began:.0f}s: leaders of {s.topics.inbound} after: "
                  f"{kafka_local.leaders(s, s.topics.inbound)}")
            load.stop.set()
            await asyncio.gather(*tasks)
        return load

    try:
        for spec in stack.specs((*ROUND_TRIP, "worker-2")):
            sup.add(spec)
        wait_for(stack.listening, "the API, gateway and fake to listen", step=sup.poll, timeout=90)
        with httpx.Client(timeout=30) as client:
            load = asyncio.run(drive(client))
            expected = {(u, f"You said: {u} {k}") for u in users for k in load.acked[u]}
            try:
                wait_for(lambda: expected <= set(replies(client)), "a reply to every acknowledged webhook",
                         step=sup.poll, timeout=90)
            except AssertionError as exc:
                got = replies(client)
                raise AssertionError(f"{exc}: {len(expected)} acknowledged, {len(got)} replies; unanswered: "
                                     f"{sorted(expected - set(got))[:20]}; replies look like {got[:3]}") from None
            # Everything settled (offsets committed on both hops), so no late duplicate can still come.
            wait_for(lambda: total_lag(group_lag(s, s.workers.group, s.topics.inbound)) == 0, "the workers to commit",
                     step=sup.poll, timeout=60)
            wait_for(lambda: total_lag(group_lag(s, s.whatsapp.gateway_group, s.topics.outbound)) == 0,
                     "the gateway to commit", step=sup.poll, timeout=60)
            sent = replies(client)
            print(f"{time.monotonic() - began:.0f}s: all answered and committed")
    finally:
        sup.stop()

    print(f"{load.total} webhooks acknowledged from {USERS} users, {load.refusals} refused and retried, "
          f"{load.gave_up} given up; slowest acknowledgement {load.longest_ack:.1f}s")
    assert not reports, reports  # no process exited (and was restarted) on the way
    for name in ("worker-1", "worker-2", "gateway-whatsapp"):
        # While the node was gone the clients said so once per change (and per 30 s), not once per retry:
        # aiokafka alone logged about 130 lines per worker in the 6 s before the leaders moved.
        text = (tmp_path / "logs" / f"{name}.log").read_text()
        assert text.count("Unable connect to node with id") + text.count("Connect to ipv4#") <= 12, name
    assert load.gave_up == 0
    duplicates = [item for item, count in Counter(sent).items() if count > 1]
    assert not duplicates, duplicates[:10]
    assert not [r for r in sent if r[0] not in users]
    for u in users:
        order = [int(text.rsplit(" ", 1)[1]) for to, text in sent if to == u]
        assert order == sorted(order), f"user {u} got replies out of order: {order}"

    offsets = make_admin(s).list_topics("__consumer_offsets", timeout=10).topics["__consumer_offsets"]
    assert {len(part.replicas) for part in offsets.partitions.values()} == {3}

    # The killed node comes back and the cluster is whole again; then it stops.
    assert kafka_local.start_node(s, killed[0]) is not None
    status = _beacon(cluster_settings, "kafka", "status")
    assert status.returncode == 0 and "3 of 3 nodes alive" in status.stdout, status.stdout
    print(status.stdout)
    stopped = _beacon(cluster_settings, "kafka", "stop")
    assert stopped.returncode == 0 and "Kafka stopped." in stopped.stdout
    status = _beacon(cluster_settings, "kafka", "status")
    assert status.returncode == 1 and "0 of 3 nodes alive" in status.stdout
