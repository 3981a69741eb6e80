"""Background services started by ``beacon``: a pid file, a log file, a readiness probe, a clean stop.

Used by the local Kafka broker and the local schema registry. A service is "running" when its
pid file names a live process whose command line still contains the service's marker, so a
stale pid file (after a reboot, or a pid reused by another program) is ignored.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from beacon.errors import ServiceError


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


#: Where :func:`free_port` looks first: below the kernel's ephemeral range (32768 and up by default).
_FIXED_PORTS_FROM = 20000


def _ephemeral_low() -> int:
    """The lowest port the kernel gives outgoing connections (Linux; 32768 elsewhere)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for tests, benchmarks, extra processes).

    Chosen below the kernel's ephemeral range: a port from that range can be taken as the local end of
    any outgoing connection while its server is down (a broker restarted on its own port then fails
    with "Address already in use"). Falls back to a port the kernel picks when none is found there."""
    return free_port_block(1)


def free_port_block(size: int) -> int:
    """The first of ``size`` consecutive free TCP ports on 127.0.0.1, below the ephemeral range as
    :func:`free_port` explains (a single port falls back to one the kernel picks)."""
    low = _ephemeral_low()
    if low - _FIXED_PORTS_FROM >= 1000 + size:
        for _ in range(200):
            base = random.randrange(_FIXED_PORTS_FROM, low - size)
            if _all_free(range(base, base + size)):
                return base
    if size == 1:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    raise ServiceError(f"No {size} consecutive free TCP ports found on 127.0.0.1 below {low}.")


def _all_free(ports: range) -> bool:
    socks: list[socket.socket] = []
    try:
        for port in ports:
            sock = socket.socket()
            socks.append(sock)
            sock.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        for sock in socks:
            sock.close()


def rss_bytes(pid: int) -> int | None:
    """Resident memory of a process, from /proc (Linux); None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far, from /proc (Linux); None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file, or a note that there is none."""
    if not path.exists():
        return f"(no log at {path})"
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 64 * 1024))
        data = fh.read().decode("utf-8", errors="replace")
    return "\n".join(data.splitlines()[-lines:])


@dataclass(frozen=True)
class BackgroundService:
    """A long-running local process owned by a pid file under the data dir."""

    name: str
    pid_file: Path
    log_file: Path
    marker: str

    def pid(self) -> int | None:
        """The pid of the running service, or None."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return None
        if self.marker not in cmdline:
            return None
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()[0]
        except (OSError, IndexError):
            return None
        return None if state == "Z" else pid

    def rss_bytes(self) -> int | None:
        """Resident memory of the running service, from /proc."""
        pid = self.pid()
        return None if pid is None else rss_bytes(pid)

    def start(
        self,
        argv: Sequence[str],
        *,
        ready: Callable[[], bool],
        timeout: float,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> tuple[int, float]:
        """Start the process detached, wait until ``ready()``; return (pid, seconds to ready).

        Raises ServiceError with the log's tail if it exits or is not ready within ``timeout``.
        """
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                env=env,
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        deadline = started + timeout
        while time.monotonic() < deadline:
            code = proc.poll()
            if code is not None:
                self.pid_file.unlink(missing_ok=True)
                raise ServiceError(
                    f"{self.name} exited with code {code} while starting. Last lines of {self.log_file}:\n"
                    f"{tail(self.log_file)}"
                )
            if ready():
                return proc.pid, time.monotonic() - started
            time.sleep(0.2)
        self._kill(proc.pid, graceful=5.0)
        self.pid_file.unlink(missing_ok=True)
        raise ServiceError(
            f"{self.name} did not become ready within {timeout:.0f}s and was stopped. "
            f"Last lines of {self.log_file}:\n{tail(self.log_file)}"
        )

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM, wait up to ``timeout``, then SIGKILL. Returns False if it was not running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        self._kill(pid, graceful=timeout)
        self.pid_file.unlink(missing_ok=True)
        return True

    @staticmethod
    def _kill(pid: int, graceful: float) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + graceful
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    # Reap it if it is our child, so it does not linger as a zombie.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
