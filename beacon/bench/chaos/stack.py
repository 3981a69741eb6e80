"""The chaos bench's own stack: Kafka, registry, database, API, workers, fake Cloud API and gateway on
free ports in one data dir, started as ``beacon dev`` would start them, and the means to break each part.

Nothing here touches a service it did not start, so the bench (and its tests) may kill and stop at will.
The supervisor restarts a killed child as in ``beacon dev``; a child taken down on purpose is removed
from supervision and added back when the outage ends.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from beacon.bench.chaos.postgres import LocalPostgres
from beacon.config import Settings
from beacon.errors import ServiceError
from beacon.ops import kafka_local, registry_local
from beacon.ops.dev import dev_plan
from beacon.ops.process import free_port, port_open
from beacon.ops.supervisor import ProcessSpec, Supervisor

Say = Callable[[str], None]


def _free_ports(count: int, stride: int = 1, taken: frozenset[int] = frozenset()) -> int:
    """A free port ``p`` with ``p + stride * i`` free too for i < count (workers listen on ``worker_web_port + i``,
    the nodes of a local Kafka cluster on ``kafka_port + 2 * i``)."""
    for _ in range(100):
        port = free_port()
        wanted = [port + stride * i for i in range(count)]
        if not taken.intersection(wanted) and not any(port_open("127.0.0.1", p) for p in wanted[1:]):
            return port
    raise ServiceError(f"no {count} free ports {stride} apart found on 127.0.0.1")


def cluster_op(name: str) -> Any:
    """``beacon.ops.kafka_local``'s multi-broker operation ``name`` (start with ``brokers``, kill_node, start_node,
    leaders); ServiceError when this build has no local cluster."""
    op = getattr(kafka_local, name, None)
    if op is None or (name == "start" and "brokers" not in inspect.signature(op).parameters):
        raise ServiceError("this build has no local Kafka cluster (`beacon kafka start --brokers 3`), which the "
                           "leader broker fault needs")
    return op


def wait_until(condition: Callable[[], bool], what: str, timeout: float) -> float:
    """Poll ``condition`` until true; returns the seconds it took. Raises ServiceError after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise ServiceError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - started


@dataclass
class ChaosStack:
    """Settings, child environment, supervisor and services of one isolated stack."""

    settings: Settings
    env: dict[str, str]
    postgres: LocalPostgres | None
    supervisor: Supervisor
    brokers: int = 1
    specs: dict[str, ProcessSpec] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _watcher: threading.Thread | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def create(cls, base: Settings, data_dir: Path, *, database: str = "postgres", workers: int = 2,
               partitions: int = 12, brokers: int = 1, say: Say = print) -> ChaosStack:
        """A stack on free ports under ``data_dir``: one broker, or a local cluster of ``brokers`` nodes
        with topics replicated on all of them (min.insync.replicas 2), as in production."""
        data_dir = data_dir.resolve()
        postgres = LocalPostgres.create() if database == "postgres" else None
        kafka_port = _free_ports(brokers, 2)
        controller_port = _free_ports(brokers, 2, frozenset(range(kafka_port, kafka_port + 2 * brokers, 2)))
        overrides: dict[str, Any] = {
            "data_dir": data_dir,
            "kafka_bootstrap": ",".join(f"127.0.0.1:{kafka_port + 2 * i}" for i in range(brokers)),
            "kafka_controller_port": controller_port,
            "schema_registry_url": f"http://127.0.0.1:{free_port()}/apis/ccompat/v7",
            "database_url": postgres.url if postgres else f"sqlite+aiosqlite:///{data_dir / 'beacon.db'}",
            "topic_partitions": partitions, "topic_replication_factor": min(brokers, 3),
            "topic_min_insync_replicas": 2 if brokers >= 3 else None,
            "api_port": free_port(), "whatsapp_gateway_port": free_port(), "fake_whatsapp_port": free_port(),
            "worker_web_port": _free_ports(workers), "dev_workers": workers,
            # Every simulated user writes often; the Cloud API pair limit (one send per 6 s per user after a
            # burst) would turn the load into throttling, which is not what this bench measures.
            "whatsapp_user_rate": 0.0,
            "whatsapp_access_token": None, "whatsapp_app_secret": None,
        }
        settings = base.replace(**overrides)
        env = {k: v for k, v in os.environ.items() if not k.startswith("BEACON_")}
        env.update({f"BEACON_{k.upper()}": str(v) for k, v in overrides.items() if v is not None})
        env["BEACON_API_URL"] = f"http://127.0.0.1:{settings.api.port}"
        env["BEACON_LOG_LEVEL"] = settings.log_level
        supervisor = Supervisor(settings.log_dir, report=lambda line: say(f"[supervisor] {line}"))
        return cls(settings, env, postgres, supervisor, brokers=brokers)

    # --- whole stack ------------------------------------------------------------------------------

    def start(self, say: Say = print) -> None:
        """Start every service and process; return once the API, gateway, fake and workers listen."""
        from beacon.codec import MessageCodec
        from beacon.fakes.whatsapp.server import FakeCloudApi  # noqa: F401  (fail early if the fake is missing)
        from beacon.kafka import ensure_topics

        s = self.settings
        began = time.monotonic()
        if self.brokers > 1:
            cluster_op("start")(s, brokers=self.brokers)
        else:
            kafka_local.start(s)
        say(f"Kafka          {s.kafka.bootstrap}  ({time.monotonic() - began:.1f}s)")
        took = time.monotonic()
        registry_local.start(s)
        say(f"Registry       {s.registry.url}  ({time.monotonic() - took:.1f}s)")
        if self.postgres is not None:
            self.postgres.start()
            say(f"PostgreSQL     127.0.0.1:{self.postgres.port}  (data in {self.postgres.data})")
        ensure_topics(s)
        MessageCodec(s).prepare([s.topics.inbound, s.topics.outbound])
        migrate = subprocess.run([sys.executable, "-m", "beacon", "api", "migrate"], env=self.env,
                                 capture_output=True, text=True, timeout=300, check=False)
        if migrate.returncode != 0:
            raise ServiceError(f"`beacon api migrate` failed:\n{migrate.stdout}{migrate.stderr}")
        for spec in dev_plan(s).specs:
            # The load is WhatsApp's: the other channels and the console would only take CPU (and their
            # default ports, which a running `beacon dev` may hold).
            if spec.name not in {"api", "fake-whatsapp", "gateway-whatsapp"} and not spec.name.startswith("worker-"):
                continue
            spec = ProcessSpec(spec.name, spec.argv, env={**self.env, **spec.env}, cwd=spec.cwd)
            self.specs[spec.name] = spec
            with self.lock:
                self.supervisor.add(spec)
        self._watcher = threading.Thread(target=self._watch, name="chaos-supervisor", daemon=True)
        self._watcher.start()
        wait_until(self.listening, "the API, gateway, fake Cloud API and workers to listen", 180)
        say(f"Processes      {', '.join(self.specs)}  (stack up in {time.monotonic() - began:.1f}s; "
            f"logs in {s.log_dir})")

    def _watch(self) -> None:
        while not self._stopping.is_set():
            with self.lock:
                self.supervisor.poll()
            self._stopping.wait(0.2)

    def ports(self) -> dict[str, int]:
        s = self.settings
        ports = {"api": s.api.port, "gateway-whatsapp": s.whatsapp.gateway_port,
                 "fake-whatsapp": s.local.fake_whatsapp_port}
        ports.update({f"worker-{i + 1}": s.workers.web_port + i for i in range(s.local.dev_workers)})
        return ports

    def listening(self, name: str | None = None) -> bool:
        ports = self.ports()
        wanted = [ports[name]] if name else list(ports.values())
        return all(port_open("127.0.0.1", p) for p in wanted)

    def stop(self) -> None:
        """Stop the processes, then Kafka, the registry and PostgreSQL."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(5)
        with self.lock:
            self.supervisor.stop()
        for stop in (kafka_local.stop, registry_local.stop):
            with contextlib.suppress(ServiceError):
                stop(self.settings)
        if self.postgres is not None:
            self.postgres.remove()

    # --- breaking it ------------------------------------------------------------------------------

    def pid(self, name: str) -> int | None:
        with self.lock:
            child = self.supervisor.children.get(name)
            return child.pid if child is not None else None

    def kill(self, name: str) -> int:
        """SIGKILL a supervised process (its whole process group); the supervisor restarts it. Returns its pid."""
        pid = self.pid(name)
        if pid is None:
            raise ServiceError(f"{name} is not running, so it cannot be killed")
        os.killpg(pid, signal.SIGKILL)
        return pid

    def take_down(self, name: str) -> None:
        """Stop a supervised process (SIGTERM, as a deploy does) and keep it down."""
        with self.lock:
            self.supervisor.remove(name)

    def bring_up(self, name: str) -> None:
        """Start a process taken down by ``take_down`` again."""
        with self.lock:
            self.supervisor.add(self.specs[name])

    def restarted(self, name: str, old_pid: int) -> bool:
        """True once ``name`` runs again under a new pid and listens on its port."""
        pid = self.pid(name)
        return pid is not None and pid != old_pid and self.listening(name)
