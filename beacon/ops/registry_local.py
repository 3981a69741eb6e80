"""The local schema registry: Apicurio Registry (its Confluent-compatible API) from Maven Central.

``ensure_dist`` copies the pinned runnable archive (``io.apicurio:apicurio-registry-app``, type
``tar.gz``, classifier ``all``) with Maven once and unpacks it into ``ops/registry/dist``. Apicurio
3.0.x is the newest line that runs on Java 17 (3.1 and later need Java 21). Its storage is an H2
database file under ``<data dir>/registry``, so schema ids survive a restart: messages already in
Kafka carry those ids and must keep decoding.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from beacon.config import Settings
from beacon.errors import ServiceError
from beacon.ops.process import BackgroundService, port_open

OPS_DIR = Path(__file__).resolve().parents[2] / "ops"
REGISTRY_OPS = OPS_DIR / "registry"
DIST = REGISTRY_OPS / "dist"
APICURIO_VERSION = "3.0.9"
ARTIFACT = f"io.apicurio:apicurio-registry-app:{APICURIO_VERSION}:tar.gz:all"
RUNNER = f"apicurio-registry-app-{APICURIO_VERSION}-runner.jar"


@dataclass(frozen=True)
class RegistryStatus:
    running: bool
    pid: int | None
    url: str
    rss_bytes: int | None
    data_dir: Path


def _service(settings: Settings) -> BackgroundService:
    data = settings.data_dir.resolve()
    return BackgroundService(
        name=f"Schema registry on 127.0.0.1:{settings.registry_port}",
        pid_file=data / "registry" / "registry.pid",
        log_file=data / "logs" / "registry.log",
        marker=f"-Dbeacon.registry.data={data / 'registry'}",
    )


def ensure_dist() -> Path:
    """Fetch and unpack the pinned Apicurio Registry into ops/registry/dist (once)."""
    marker = DIST / ".complete"
    if marker.exists():
        return DIST
    if shutil.which("mvn") is None:
        raise ServiceError("Maven (mvn) is needed to fetch the schema registry; install it (apt-get install maven).")
    download = REGISTRY_OPS / "download"
    result = subprocess.run(
        ["mvn", "-q", "-B", "dependency:copy", f"-Dartifact={ARTIFACT}", f"-DoutputDirectory={download}"],
        capture_output=True,
        text=True,
        check=False,
    )
    archives = sorted(download.glob("*.tar.gz"))
    if result.returncode != 0 or not archives:
        raise ServiceError(f"Fetching {ARTIFACT} with Maven failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    shutil.rmtree(DIST, ignore_errors=True)
    DIST.mkdir(parents=True)
    with tarfile.open(archives[0]) as archive:
        archive.extractall(DIST, filter="data")
    if not (DIST / RUNNER).exists():
        raise ServiceError(f"{archives[0]} does not contain {RUNNER}; is the pinned version right?")
    shutil.rmtree(download, ignore_errors=True)
    marker.write_text("ok\n")
    return DIST


def answers(settings: Settings) -> bool:
    """True when a registry answers at the configured URL."""
    if not port_open("127.0.0.1", settings.registry_port):
        return False
    try:
        with urllib.request.urlopen(f"{settings.registry.url.rstrip('/')}/subjects", timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def status(settings: Settings) -> RegistryStatus:
    svc = _service(settings)
    pid = svc.pid()
    return RegistryStatus(
        running=pid is not None,
        pid=pid,
        url=settings.registry.url,
        rss_bytes=svc.rss_bytes(),
        data_dir=settings.data_dir.resolve() / "registry",
    )


def start(settings: Settings) -> tuple[RegistryStatus, float | None]:
    """Start the registry unless it runs; return its status and the seconds it took (None if it ran)."""
    svc = _service(settings)
    if svc.pid() is not None:
        return status(settings), None
    port = settings.registry_port
    if port_open("127.0.0.1", port):
        raise ServiceError(
            f"Port {port} on 127.0.0.1 is already in use by another process, so the local schema registry "
            f"cannot listen there. Stop that process or point BEACON_SCHEMA_REGISTRY_URL at another port."
        )
    dist = ensure_dist()
    data = settings.data_dir.resolve() / "registry"
    data.mkdir(parents=True, exist_ok=True)
    java = shutil.which("java")
    if java is None:
        raise ServiceError("Java 17 or newer is needed to run the schema registry; install it (openjdk-17-jre).")
    argv = [
        java,
        f"-Xmx{settings.local.registry_heap}",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-Xss512k",
        f"-Dbeacon.registry.data={data}",
        "-Dquarkus.http.host=127.0.0.1",
        f"-Dquarkus.http.port={port}",
        f"-Dapicurio.datasource.url=jdbc:h2:file:{data}/registry;DB_CLOSE_ON_EXIT=FALSE",
        "-Dquarkus.log.console.color=false",
        "-jar",
        str(dist / RUNNER),
    ]
    _, took = svc.start(argv, ready=lambda: answers(settings), timeout=settings.local.registry_start_timeout, cwd=data)
    return status(settings), took


def ensure(settings: Settings) -> float | None:
    """Make sure a registry answers at BEACON_SCHEMA_REGISTRY_URL. One already answering there (ours,
    another checkout's, one in Docker) is used as it is; otherwise the local registry is started. Returns
    the seconds starting took, or None when nothing had to start."""
    if answers(settings):
        return None
    return start(settings)[1]


def stop(settings: Settings) -> bool:
    """Stop the registry (SIGTERM, then wait). False when it was not running."""
    return _service(settings).stop(timeout=30.0)
