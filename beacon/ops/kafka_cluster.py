"""The layout of the local multi-broker Kafka (``beacon kafka start --brokers N``, N >= 2).

Every node is a combined KRaft broker+controller; the N controllers form a static voter quorum.
Ports: node i (1-based) listens on ``BEACON_KAFKA_BOOTSTRAP``'s port + 2(i-1) and its controller on
``BEACON_KAFKA_CONTROLLER_PORT`` + 2(i-1). With the defaults (9092, 9093) that is 9092/9093,
9094/9095, 9096/9097: node 1 uses the single broker's ports, and the stride of 2 keeps a broker
port from landing on the next node's controller port.

Node i keeps its data and configuration under ``<data dir>/kafka-cluster/node-<i>`` (apart from the
single broker's ``<data dir>/kafka``: the two are different clusters) and logs to
``<data dir>/logs/kafka-<i>.log``. ``cluster.json`` there records how many nodes were formatted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from beacon.config import Settings
from beacon.errors import ServiceError
from beacon.ops.process import BackgroundService

PORT_STRIDE = 2


@dataclass(frozen=True)
class Node:
    """One node of the local cluster: its id, ports and where it keeps its files."""

    node_id: int
    port: int
    controller_port: int
    home: Path
    log_file: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def properties_file(self) -> Path:
        return self.home / "server.properties"

    @property
    def log_dirs(self) -> Path:
        return self.home / "logs"

    def service(self) -> BackgroundService:
        return BackgroundService(
            name=f"Kafka node {self.node_id} on {self.address}",
            pid_file=self.home / "kafka.pid",
            log_file=self.log_file,
            marker=str(self.properties_file),
        )


def cluster_dir(settings: Settings) -> Path:
    return settings.data_dir.resolve() / "kafka-cluster"


def nodes(settings: Settings, brokers: int) -> list[Node]:
    """The nodes of a ``brokers``-node cluster under the settings' data dir and ports."""
    data = settings.data_dir.resolve()
    return [
        Node(
            node_id=i,
            port=settings.kafka_port + PORT_STRIDE * (i - 1),
            controller_port=settings.local.kafka_controller_port + PORT_STRIDE * (i - 1),
            home=cluster_dir(settings) / f"node-{i}",
            log_file=data / "logs" / f"kafka-{i}.log",
        )
        for i in range(1, brokers + 1)
    ]


def check_ports(members: list[Node]) -> None:
    """Refuse a layout whose ports overlap (a controller port chosen inside the brokers' range)."""
    ports = [p for n in members for p in (n.port, n.controller_port)]
    if len(set(ports)) != len(ports):
        layout = ", ".join(f"node {n.node_id} {n.port}/{n.controller_port}" for n in members)
        raise ServiceError(
            f"The cluster's ports overlap ({layout}): node i listens on BEACON_KAFKA_BOOTSTRAP's port + "
            f"{PORT_STRIDE}(i-1) and its controller on BEACON_KAFKA_CONTROLLER_PORT + {PORT_STRIDE}(i-1). "
            "Set BEACON_KAFKA_CONTROLLER_PORT to the bootstrap port + 1."
        )


def bootstrap(members: list[Node]) -> str:
    """BEACON_KAFKA_BOOTSTRAP covering every node."""
    return ",".join(n.address for n in members)


def replication(brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for topics on a ``brokers``-node cluster: 3 and 2 from
    three nodes on, so one node can be lost without refusing writes."""
    factor = min(3, brokers)
    return factor, 2 if factor >= 3 else 1


def formatted_size(settings: Settings) -> int | None:
    """How many nodes the cluster under the data dir was formatted with; None if there is none."""
    try:
        return int(json.loads((cluster_dir(settings) / "cluster.json").read_text())["brokers"])
    except (OSError, ValueError, KeyError):
        return None


def record_size(settings: Settings, brokers: int) -> None:
    path = cluster_dir(settings) / "cluster.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"brokers": brokers}) + "\n")


def properties(node: Node, members: list[Node]) -> dict[str, str]:
    """server.properties of one combined broker+controller node."""
    factor, min_isr = replication(len(members))
    voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in members)
    return {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(node.log_dirs),
        "num.partitions": "1",
        "default.replication.factor": str(factor),
        # The broker-wide default also covers __consumer_offsets: committed offsets survive losing a node.
        "min.insync.replicas": str(min_isr),
        "offsets.topic.replication.factor": str(factor),
        "offsets.topic.num.partitions": "12",
        "transaction.state.log.replication.factor": str(factor),
        "transaction.state.log.min.isr": str(min_isr),
        "share.coordinator.state.topic.replication.factor": str(factor),
        "share.coordinator.state.topic.min.isr": str(min_isr),
        "unclean.leader.election.enable": "false",
        # A SIGKILLed node is fenced (and its partitions get new leaders) after this session timeout:
        # 6 s instead of Kafka's 9 s, with heartbeats every second.
        "broker.session.timeout.ms": "6000",
        "broker.heartbeat.interval.ms": "1000",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
        "num.network.threads": "2",
        "num.io.threads": "2",
        "num.replica.fetchers": "1",
        "background.threads": "4",
        "log.retention.check.interval.ms": "300000",
    }


def write_properties(node: Node, members: list[Node]) -> Path:
    node.home.mkdir(parents=True, exist_ok=True)
    node.properties_file.write_text("".join(f"{k}={v}\n" for k, v in properties(node, members).items()))
    return node.properties_file
