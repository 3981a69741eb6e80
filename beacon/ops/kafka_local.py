"""The local single-node Apache Kafka (KRaft, broker+controller) built from Maven Central jars.

``ops/kafka/pom.xml`` pins the release; ``ensure_jars`` copies it and its dependencies into
``ops/kafka/libs`` once. The broker's data and configuration live under
``<data dir>/kafka`` so they survive stop/start; its log goes to ``<data dir>/logs/kafka.log``.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from beacon.config import Settings
from beacon.errors import ServiceError
from beacon.ops.process import BackgroundService, port_open, tail

OPS_DIR = Path(__file__).resolve().parents[2] / "ops"
KAFKA_OPS = OPS_DIR / "kafka"
LIBS = KAFKA_OPS / "libs"
# A KRaft cluster id is a base64url UUID; a fixed one keeps the local cluster's identity stable.
CLUSTER_ID = base64.urlsafe_b64encode(uuid.UUID("6265616f-6e2d-4c6f-8361-6c2d6b61666b").bytes).decode().rstrip("=")


@dataclass(frozen=True)
class KafkaStatus:
    running: bool
    pid: int | None
    bootstrap: str
    rss_bytes: int | None
    data_dir: Path


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
    port, cport = settings.kafka_port, settings.kafka_controller_port
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
    path = data / "server.properties"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    return path


def _classpath() -> str:
    return f"{ensure_jars()}/*"


def _jvm_args(settings: Settings) -> list[str]:
    return [
        _java(),
        f"-Xmx{settings.kafka_heap}",
        f"-Xms{settings.kafka_heap}",
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
    data = settings.data_dir.resolve() / "kafka" / "logs"
    if (data / "meta.properties").exists():
        return
    result = subprocess.run(
        [*_jvm_args(settings)[:1], "-Xmx128m", "-cp", _classpath(), "kafka.tools.StorageTool",
         "format", "-t", CLUSTER_ID, "-c", str(props)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ServiceError(f"Formatting Kafka storage in {data} failed:\n{result.stdout}{result.stderr}")


def status(settings: Settings) -> KafkaStatus:
    svc = _service(settings)
    pid = svc.pid()
    return KafkaStatus(
        running=pid is not None,
        pid=pid,
        bootstrap=f"127.0.0.1:{settings.kafka_port}",
        rss_bytes=svc.rss_bytes(),
        data_dir=settings.data_dir.resolve() / "kafka",
    )


def _broker_answers(settings: Settings) -> bool:
    if not port_open("127.0.0.1", settings.kafka_port):
        return False
    from beacon.kafka import broker_ready  # the wrapper owns confluent_kafka

    return broker_ready(f"127.0.0.1:{settings.kafka_port}", timeout=2.0)


def start(settings: Settings) -> tuple[KafkaStatus, float | None]:
    """Start the broker unless it already runs; return its status and the seconds it took (None if
    it was already running)."""
    svc = _service(settings)
    if svc.pid() is not None:
        return status(settings), None
    for port in (settings.kafka_port, settings.kafka_controller_port):
        if port_open("127.0.0.1", port):
            raise ServiceError(
                f"Port {port} on 127.0.0.1 is already in use by another process, so the local broker cannot "
                f"listen there. Stop that process or choose other ports (BEACON_KAFKA_BOOTSTRAP, "
                f"BEACON_KAFKA_CONTROLLER_PORT)."
            )
    props = _write_properties(settings)
    _format_once(settings, props)
    _, took = svc.start(
        [*_jvm_args(settings), "kafka.Kafka", str(props)],
        ready=lambda: _broker_answers(settings),
        timeout=settings.kafka_start_timeout,
    )
    return status(settings), took


def ensure(settings: Settings) -> float | None:
    """Make sure a broker answers at BEACON_KAFKA_BOOTSTRAP. One already answering there (ours, another
    checkout's, one in Docker) is used as it is; otherwise the local broker is started. Returns the seconds
    starting took, or None when nothing had to start."""
    from beacon.kafka import broker_ready

    if broker_ready(settings.kafka_bootstrap):
        return None
    return start(settings)[1]


def stop(settings: Settings) -> bool:
    """Stop the broker cleanly (SIGTERM, then wait). False when it was not running."""
    return _service(settings).stop(timeout=60.0)


def log_tail(settings: Settings, lines: int = 40) -> str:
    return tail(_service(settings).log_file, lines)
