"""A throw-away PostgreSQL cluster on a free port under a data dir, for the chaos bench to restart at will.

It never touches the shared test server (``scripts/postgres``): its own ``initdb`` directory, its own port,
its own socket directory. As root the server runs as the ``postgres`` system user (PostgreSQL refuses
root), like ``scripts/postgres``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from beacon.errors import ServiceError
from beacon.ops.process import free_port


def _bindir() -> Path:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "pg_ctl").exists() and (candidate / "initdb").exists():
            return candidate
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl and shutil.which("initdb"):
        return Path(pg_ctl).resolve().parent
    raise ServiceError("PostgreSQL (initdb, pg_ctl) is not installed; run ./scripts/postgres once (it installs it "
                       "from apt) or choose --database sqlite")


@dataclass
class LocalPostgres:
    """One cluster: ``start`` (initialising it the first time), ``stop``, ``url``."""

    data: Path
    port: int

    @classmethod
    def create(cls) -> LocalPostgres:
        """A cluster in a fresh temporary directory (one every user can traverse: the server may run as
        ``postgres`` while the caller's own directories are private)."""
        data = Path(tempfile.mkdtemp(prefix="beacon-chaos-pg-"))
        data.chmod(0o755)
        return cls(data / "cluster", free_port())

    def remove(self) -> None:
        """Stop the server and delete its files."""
        self.stop()
        shutil.rmtree(self.data.parent, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://beacon@127.0.0.1:{self.port}/beacon"

    def _run_as(self) -> list[str]:
        return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self._run_as(), *argv], capture_output=True, text=True, timeout=timeout, check=False)

    def _init(self) -> None:
        if (self.data / "PG_VERSION").exists():
            return
        self.data.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres", "postgres")
            self.data.chmod(0o700)
        bindir = _bindir()
        result = self._run(str(bindir / "initdb"), "-D", str(self.data), "-U", "beacon", "--auth=trust", "-E",
                           "UTF8", "--no-locale")
        if result.returncode != 0:
            raise ServiceError(f"initdb in {self.data} failed:\n{result.stdout}{result.stderr}")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = '{self.data}'\n"
                       "max_connections = 100\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")

    def start(self) -> None:
        """Start the server (initialising the cluster and its database the first time); wait until it answers."""
        fresh = not (self.data / "PG_VERSION").exists()
        self._init()
        result = self._run(str(_bindir() / "pg_ctl"), "-D", str(self.data), "-l", str(self.data / "server.log"),
                           "-w", "-t", "60", "start")
        if result.returncode != 0:
            raise ServiceError(f"PostgreSQL in {self.data} did not start:\n{result.stdout}{result.stderr}")
        if fresh:
            created = self._run(str(_bindir() / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "beacon",
                                "-d", "postgres", "-qc", "CREATE DATABASE beacon")
            if created.returncode != 0:
                raise ServiceError(f"creating database beacon failed:\n{created.stderr}")

    def stop(self) -> None:
        """Fast shutdown: open connections are cut, like a restart or a failover does to clients."""
        if (self.data / "postmaster.pid").exists():
            self._run(str(_bindir() / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")
