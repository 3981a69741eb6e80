"""A PostgreSQL cluster of one test's own, on a free port, that the test may stop and start (the
shared test server on 15432 is never touched). Made the way ``scripts/postgres`` makes its cluster:
``initdb`` as the ``postgres`` user when running as root, trust auth on 127.0.0.1."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from beacon.ops.process import free_port
from tests.conftest import unavailable


def _bindir() -> Path | None:
    for pg_ctl in sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True):
        return Path(pg_ctl).parent
    found = shutil.which("pg_ctl")
    return Path(found).resolve().parent if found else None


class OwnPostgres:
    """``start()``, ``stop()``, ``url``; ``close()`` stops it and removes its data."""

    def __init__(self) -> None:
        bindir = _bindir()
        if bindir is None:
            unavailable("no PostgreSQL server binaries (pg_ctl, initdb): run ./scripts/postgres once to install them")
            raise AssertionError("unreachable")
        self.bindir = bindir
        self.port = free_port()
        # Under /tmp itself: the postgres user cannot enter pytest's root-only tmp dirs.
        self.root = Path(tempfile.mkdtemp(prefix="beacon-own-pg-"))
        self.data = self.root / "data"
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-U", "beacon", "--auth=trust", "-E", "UTF8", "--no-locale")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = '{self.data}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nshared_buffers = 16MB\n"
            )
        self.url = f"postgresql+asyncpg://beacon@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.as_user, str(self.bindir / tool), *args], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        """Start and wait until it accepts connections."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-t", "60", "start")

    def stop(self) -> None:
        """Stop at once (fast mode: clients are disconnected), as a restart or failover would."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def close(self) -> None:
        subprocess.run(
            [*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(self.root, ignore_errors=True)
