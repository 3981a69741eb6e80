"""The local Apache Kafka (KRaft) built from Maven Central jars: one broker+controller node, or a
cluster of several (``beacon kafka start --brokers 3``, laid out by :mod:`beacon.ops.kafka_cluster`).

``ops/kafka/pom.xml`` pins the release; ``ensure_jars`` copies it and its dependencies into
``ops/kafka/libs`` once. The single broker's data and configuration live under
``<data dir>/kafka`` so they survive stop/start; its log goes to ``<data dir>/logs/kafka.log``.

The functions the fault benchmarks drive: :func:`start` (``brokers=3`` for the cluster), :func:`stop`,
:func:`kill_node`, :func:`start_node` and :func:`leaders`.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from beacon.config import Settings
from beacon.errors import ServiceError
from beacon.ops import kafka_cluster, kafka_tls
from beacon.ops.kafka_cluster import Node
from beacon.ops.process import BackgroundService, port_open, tail

OPS_DIR = Path(__file__).resolve().parents[2] / "ops"
KAFKA_OPS = OPS_DIR / "kafka"
LIBS = KAFKA_OPS / "libs"
# A KRaft cluster id is a base64url UUID; a fixed one keeps the local cluster's identity stable.
CLUSTER_ID = base64.urlsafe_b64encode(uuid.UUID("6265616f-6e2d-4c6f-8361-6c2d6b61666b").bytes).decode().rstrip("=")


@dataclass(frozen=True)
class NodeStatus:
    """One node of the local cluster as ``beacon kafka status`` lists it."""

    node_id: int
    pid: int | None
    port: int
    controller_port: int
    rss_bytes: int | None
    log_file: Path

    @property
    def alive(self) -> bool:
        return self.pid is not None


@dataclass(frozen=True)
class KafkaStatus:
    """The single broker (``nodes`` empty) or the cluster (``running`` only when every node is alive;
    ``bootstrap`` then covers every node and ``rss_bytes`` is their sum)."""

    running: bool
    pid: int | None
    bootstrap: str
    rss_bytes: int | None
    data_dir: Path
    nodes: tuple[NodeStatus, ...] = ()


def _service(settings: Settings) -> BackgroundService:
    data = settings.data_dir.resolve()
    return BackgroundService(
        name=f"Kafka broker on 127.0.0.1:{settings.kafka_port}",
        pid_file=data / "kafka" / "kafka.pid",
        log_file=data / "logs" / "kafka.log",
        marker=str(data / "kafka" / "server.properties"),
    )


def ensure_jars() -> Path:
    """Resolve the pinned Kafka release and its logging backend into ops/kafka/libs (once)."""
    marker = LIBS / ".complete"
    if marker.exists():
        return LIBS
    if shutil.which("mvn") is None:
        raise ServiceError("Maven (mvn) is needed to fetch the Kafka jars; install it (apt-get install maven).")
    result = subprocess.run(
        [
            "mvn", "-q", "-B", "-f", str(KAFKA_OPS / "pom.xml"),
            "dependency:copy-dependencies", f"-DoutputDirectory={LIBS}", "-DincludeScope=runtime",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        output = result.stdout[-3000:] + result.stderr[-3000:]
        raise ServiceError(f"Fetching the Kafka jars with Maven failed:\n{output}")
    marker.write_text("ok\n")
    return LIBS


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise ServiceError("Java 17 or newer is needed to run Kafka; install it (apt-get install openjdk-17-jre).")
    return java


def _write_properties(settings: Settings) -> Path:
    data = settings.data_dir.resolve() / "kafka"
    port, cport = settings.kafka_port, settings.local.kafka_controller_port
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{cport}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data / "logs"),
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "12",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
        "num.network.threads": "2",
        "num.io.threads": "4",
        "log.retention.check.interval.ms": "300000",
    }
    if kafka_tls.secured(settings):
        props.update(kafka_tls.broker_properties(settings, port, cport))
    path = data / "server.properties"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)  # a secured broker's file holds its SCRAM password
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    return path


def _classpath() -> str:
    return f"{ensure_jars()}/*"


def _jvm_args(heap: str) -> list[str]:
    return [
        _java(),
        f"-Xmx{heap}",
        f"-Xms{heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:TieredStopAtLevel=1",
        "-Xss512k",
        "-XX:MaxDirectMemorySize=128m",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={KAFKA_OPS / 'log4j2.yaml'}",
        "-cp",
        _classpath(),
    ]


def _format_once(settings: Settings, props: Path) -> None:
    extra = kafka_tls.format_arguments(settings) if kafka_tls.secured(settings) else []
    _format_all([(props, settings.data_dir.resolve() / "kafka" / "logs")], extra)


def _format_all(stores: list[tuple[Path, Path]], extra: list[str] | None = None) -> None:
    """Format each (properties, log dir) not formatted yet, in parallel (a JVM each)."""
    todo = [(props, logs) for props, logs in stores if not (logs / "meta.properties").exists()]
    runs = [
        (logs, subprocess.Popen(
            # A short-lived JVM: the C1 compiler and the serial collector start it ~40% faster.
            [_java(), "-Xmx128m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-cp", _classpath(),
             "kafka.tools.StorageTool",
             "format", "-t", CLUSTER_ID, "-c", str(props), *(extra or [])],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ))
        for props, logs in todo
    ]
    failures = []
    for logs, proc in runs:
        output, _ = proc.communicate(timeout=120)
        if proc.returncode != 0:
            failures.append(f"Formatting Kafka storage in {logs} failed:\n{output}")
    if failures:
        raise ServiceError("\n".join(failures))


def status(settings: Settings) -> KafkaStatus:
    """The single broker when it runs or when no cluster was ever made under the data dir; else the cluster."""
    single = _single_status(settings)
    size = kafka_cluster.formatted_size(settings)
    if single.running or size is None:
        return single
    return _cluster_status(settings, size)


def _single_status(settings: Settings) -> KafkaStatus:
    svc = _service(settings)
    pid = svc.pid()
    return KafkaStatus(
        running=pid is not None,
        pid=pid,
        bootstrap=f"127.0.0.1:{settings.kafka_port}",
        rss_bytes=svc.rss_bytes(),
        data_dir=settings.data_dir.resolve() / "kafka",
    )


def _cluster_status(settings: Settings, size: int) -> KafkaStatus:
    members = kafka_cluster.nodes(settings, size)
    listed = []
    for n in members:
        svc = n.service()
        pid = svc.pid()
        listed.append(NodeStatus(n.node_id, pid, n.port, n.controller_port, svc.rss_bytes(), n.log_file))
    rss = [n.rss_bytes for n in listed if n.rss_bytes is not None]
    return KafkaStatus(
        running=all(n.alive for n in listed),
        pid=None,
        bootstrap=kafka_cluster.bootstrap(members),
        rss_bytes=sum(rss) if rss else None,
        data_dir=kafka_cluster.cluster_dir(settings),
        nodes=tuple(listed),
    )


def _broker_answers(settings: Settings) -> bool:
    if not port_open("127.0.0.1", settings.kafka_port):
        return False
    from beacon.kafka import broker_ready  # the wrapper owns confluent_kafka

    return broker_ready(f"127.0.0.1:{settings.kafka_port}", timeout=2.0, settings=settings)


def start(settings: Settings, brokers: int = 1) -> tuple[KafkaStatus, float | None]:
    """Start the local Kafka unless it already runs; return its status and the seconds it took (None if
    it was already running).

    ``brokers=1`` is the single broker+controller; ``brokers=3`` a cluster of three combined KRaft nodes
    (a 3-voter quorum) on the ports :mod:`beacon.ops.kafka_cluster` describes, with the internal topics
    replicated 3 times and ``min.insync.replicas=2``. Ready when every node is registered and unfenced.
    """
    if brokers < 1:
        raise ServiceError(f"--brokers must be at least 1, got {brokers}.")
    if brokers > 1:
        if kafka_tls.secured(settings):
            raise ServiceError("The local cluster listens with PLAINTEXT only; the SASL_SSL listener "
                               "(BEACON_KAFKA_SECURITY_PROTOCOL=SASL_SSL) is for the single broker.")
        return _start_cluster(settings, brokers)
    size = kafka_cluster.formatted_size(settings)
    if size is not None and any(n.alive for n in _cluster_status(settings, size).nodes):
        raise ServiceError("The local Kafka cluster runs under this data dir; stop it first (`beacon kafka stop`).")
    svc = _service(settings)
    if svc.pid() is not None:
        return status(settings), None
    for port in (settings.kafka_port, settings.local.kafka_controller_port):
        if port_open("127.0.0.1", port):
            raise ServiceError(
                f"Port {port} on 127.0.0.1 is already in use by another process, so the local broker cannot "
                f"listen there. Stop that process or choose other ports (BEACON_KAFKA_BOOTSTRAP, "
                f"BEACON_KAFKA_CONTROLLER_PORT)."
            )
    props = _write_properties(settings)
    _format_once(settings, props)
    _, took = svc.start(
        [*_jvm_args(settings.local.kafka_heap), "kafka.Kafka", str(props)],
        ready=lambda: _broker_answers(settings),
        timeout=settings.local.kafka_start_timeout,
    )
    return status(settings), took


def ensure(settings: Settings) -> float | None:
    """Make sure a broker answers at BEACON_KAFKA_BOOTSTRAP. One already answering there (ours, another
    checkout's, one in Docker) is used as it is; otherwise the local broker is started. Returns the seconds
    starting took, or None when nothing had to start."""
    from beacon.kafka import broker_ready

    if broker_ready(settings.kafka.bootstrap, settings=settings):
        return None
    return start(settings)[1]


def stop(settings: Settings) -> bool:
    """Stop the single broker and every node of the cluster cleanly (SIGTERM to all at once, then wait;
    SIGKILL after 60 s). False when nothing was running."""
    single = _service(settings).stop(timeout=60.0)
    size = kafka_cluster.formatted_size(settings)
    if size is None:
        return single
    services = [n.service() for n in kafka_cluster.nodes(settings, size)]
    running = [(svc, pid) for svc in services if (pid := svc.pid()) is not None]
    # All at once: stopped one by one, the last nodes would wait for a controller quorum that is gone.
    for _, pid in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60.0
    for svc, _ in running:
        svc.stop(timeout=max(1.0, deadline - time.monotonic()))
    return single or bool(running)


def _start_cluster(settings: Settings, brokers: int) -> tuple[KafkaStatus, float | None]:
    size = kafka_cluster.formatted_size(settings)
    home = kafka_cluster.cluster_dir(settings)
    if size is not None and size != brokers:
        raise ServiceError(
            f"The local cluster in {home} was made with {size} nodes; start it with --brokers {size}, or stop it "
            f"and delete {home} to make a new one with {brokers}."
        )
    if _service(settings).pid() is not None:
        raise ServiceError(
            f"The single local broker runs on 127.0.0.1:{settings.kafka_port}; stop it first (`beacon kafka stop`)."
        )
    members = kafka_cluster.nodes(settings, brokers)
    kafka_cluster.check_ports(members)
    down = [n for n in members if n.service().pid() is None]
    if not down:
        return _cluster_status(settings, brokers), None
    for n in down:
        _refuse_busy_ports(n)
    started = time.monotonic()
    for n in members:
        kafka_cluster.write_properties(n, members)
    kafka_cluster.record_size(settings, brokers)
    _format_all([(n.properties_file, n.log_dirs) for n in down])
    for n in down:
        n.service().start(_node_argv(settings, n), ready=lambda: True, timeout=settings.local.kafka_start_timeout)
    _wait_for_cluster(settings, members, time.monotonic() + settings.local.kafka_start_timeout)
    return _cluster_status(settings, brokers), time.monotonic() - started


def _refuse_busy_ports(node: Node) -> None:
    for port in (node.port, node.controller_port):
        if port_open("127.0.0.1", port):
            raise ServiceError(
                f"Port {port} on 127.0.0.1 (node {node.node_id}) is already in use by another process, so the local "
                f"cluster cannot listen there. Stop that process or choose other ports (BEACON_KAFKA_BOOTSTRAP, "
                f"BEACON_KAFKA_CONTROLLER_PORT; node i uses each + {kafka_cluster.PORT_STRIDE}(i-1))."
            )


def _node_argv(settings: Settings, node: Node) -> list[str]:
    return [*_jvm_args(settings.local.kafka_cluster_heap), "kafka.Kafka", str(node.properties_file)]


def _wait_for_cluster(settings: Settings, members: list[Node], deadline: float) -> None:
    """Until every node is registered and unfenced (listed in the metadata); a node that exits fails fast."""
    from beacon.kafka import registered_brokers

    address = kafka_cluster.bootstrap(members)
    while time.monotonic() < deadline:
        for n in members:
            if n.service().pid() is None:
                raise ServiceError(f"Kafka node {n.node_id} exited while the cluster started. Last lines of "
                                   f"{n.log_file}:\n{tail(n.log_file)}")
        if registered_brokers(address, timeout=2.0) >= len(members):
            return
        time.sleep(0.5)
    stop(settings)
    raise ServiceError(
        f"The local Kafka cluster did not have all {len(members)} nodes registered within "
        f"{settings.local.kafka_start_timeout:.0f}s and was stopped (BEACON_KAFKA_START_TIMEOUT). Logs: "
        + ", ".join(str(n.log_file) for n in members)
    )


def _cluster_node(settings: Settings, node_id: int) -> Node:
    size = kafka_cluster.formatted_size(settings)
    if size is None:
        raise ServiceError(f"There is no local Kafka cluster under {kafka_cluster.cluster_dir(settings)}; "
                           "make one with `beacon kafka start --brokers 3`.")
    if not 1 <= node_id <= size:
        raise ServiceError(f"The local cluster has nodes 1 to {size}; there is no node {node_id}.")
    return kafka_cluster.nodes(settings, size)[node_id - 1]


def kill_node(settings: Settings, node_id: int) -> None:
    """SIGKILL node ``node_id`` (1-based) of the local cluster, as a crash would, and wait until it is gone.
    Raises ServiceError when it is not running."""
    svc = _cluster_node(settings, node_id).service()
    pid = svc.pid()
    if pid is None:
        raise ServiceError(f"Kafka node {node_id} is not running.")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30.0
    while svc.pid() is not None:
        if time.monotonic() > deadline:
            raise ServiceError(f"Kafka node {node_id} (pid {pid}) is still there 30 s after SIGKILL.")
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it when it is our child
        time.sleep(0.05)


def start_node(settings: Settings, node_id: int) -> float | None:
    """Start node ``node_id`` of the local cluster again (after :func:`kill_node` or a crash); return the
    seconds until it answered on its port, or None when it was already running."""
    from beacon.kafka import broker_ready

    node = _cluster_node(settings, node_id)
    svc = node.service()
    if svc.pid() is not None:
        return None
    _refuse_busy_ports(node)
    _, took = svc.start(_node_argv(settings, node), ready=lambda: broker_ready(node.address, timeout=2.0),
                        timeout=settings.local.kafka_start_timeout)
    return took


def leaders(settings: Settings, topic: str) -> dict[int, list[int]]:
    """Which node leads which partitions of ``topic``: node id -> sorted partitions (-1 for partitions
    without a leader right now). Asks the whole local cluster when there is one, else the bootstrap."""
    from beacon.kafka import partition_leaders

    size = kafka_cluster.formatted_size(settings)
    if size is not None:
        settings = settings.replace(
            kafka_bootstrap=kafka_cluster.bootstrap(
            kafka_cluster.nodes(settings, size)),
        )
    result: dict[int, list[int]] = {}
    for partition, leader in sorted(partition_leaders(settings, topic).items()):
        result.setdefault(leader, []).append(partition)
    return result
