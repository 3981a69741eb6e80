"""A small process supervisor: start children, restart crashed ones with backoff, stop all cleanly.

Used by ``beacon dev`` (the whole stack) and ``beacon scale`` (workers by lag). Each child gets
its own session (so a terminal's Ctrl-C reaches only the supervisor, which then stops children in
reverse start order: SIGTERM to the child's process group, a grace period, then SIGKILL) and its
own log file ``<log dir>/<name>.log``, appended across restarts with a marker line per start.
A child that exits while the supervisor runs is reported in one line and restarted after a delay
that doubles with each quick crash (reset once it has run for ``stable_after`` seconds).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from beacon.backoff import backoff_ceiling
from beacon.ops.process import tail

Report = Callable[[str], None]


@dataclass(frozen=True)
class ProcessSpec:
    """What to run: a name (unique, used for the log file), argv, extra environment, working dir."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    restart: bool = True


@dataclass
class Child:
    """A supervised child's live state."""

    spec: ProcessSpec
    log_file: Path
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    quick_crashes: int = 0
    restart_at: float | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None


class Supervisor:
    """Starts, watches, restarts and stops child processes. Not thread-safe: drive it from one thread."""

    def __init__(
        self,
        log_dir: Path,
        *,
        report: Report = print,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        stable_after: float = 30.0,
        stop_timeout: float = 15.0,
        on_spawn: Callable[[Child], None] | None = None,
    ) -> None:
        self.log_dir = log_dir
        self.report = report
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.stable_after = stable_after
        self.stop_timeout = stop_timeout
        #: Called after each start or restart of a child (``beacon dev`` records the new pid).
        self.on_spawn = on_spawn
        self.children: dict[str, Child] = {}
        self.stopping = threading.Event()

    # --- starting and stopping one child ----------------------------------------------------

    def add(self, spec: ProcessSpec) -> Child:
        """Register and start a child."""
        if spec.name in self.children:
            raise ValueError(f"a child named {spec.name} is already supervised")
        child = Child(spec, self.log_dir / f"{spec.name}.log")
        self.children[spec.name] = child
        self._spawn(child)
        return child

    def remove(self, name: str) -> None:
        """Stop a child and forget it (no restart)."""
        child = self.children.pop(name, None)
        if child is not None:
            self._terminate([child])

    def restart(self, name: str) -> None:
        """Stop the child ``name`` and start it again now (``beacon dev --reload``); not counted as a crash."""
        child = self.children[name]
        self._terminate([child])
        child.restarts += 1
        self._spawn(child)

    def _spawn(self, child: Child) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **child.spec.env}
        with child.log_file.open("ab") as log:
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            log.write(f"=== {stamp} supervisor starts {child.spec.name}: {' '.join(child.spec.argv)}\n".encode())
            log.flush()
            child.proc = subprocess.Popen(
                list(child.spec.argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=child.spec.cwd,
                start_new_session=True,
            )
        child.started_at = time.monotonic()
        child.restart_at = None
        if self.on_spawn is not None:
            self.on_spawn(child)

    def _terminate(self, children: Sequence[Child]) -> None:
        """SIGTERM each child's process group, wait up to stop_timeout for all, then SIGKILL the rest."""
        live = [c for c in children if c.proc is not None and c.proc.poll() is None]
        for c in live:
            _signal_group(c.proc, signal.SIGTERM)  # type: ignore[arg-type]
        deadline = time.monotonic() + self.stop_timeout
        for c in live:
            assert c.proc is not None
            try:
                c.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.report(f"{c.spec.name} did not stop within {self.stop_timeout:.0f}s; killing it")
                _signal_group(c.proc, signal.SIGKILL)
                c.proc.wait()
        for c in children:
            if c.proc is not None and c.proc.poll() is not None and not _pid_in_use(c.proc.pid):
                # Whatever the child left behind in its group goes too. Only while no process has the child's pid:
                # the kernel never hands out a pid still used as a process group id, so a live process with that
                # pid (pids wrap around) is someone else's, in a group of its own that must not be killed.
                _signal_group(c.proc, signal.SIGKILL)

    # --- supervision --------------------------------------------------------------------------

    def poll(self) -> None:
        """One supervision step: notice exits, schedule and perform restarts."""
        now = time.monotonic()
        for child in list(self.children.values()):
            proc = child.proc
            if proc is None:
                continue
            code = proc.poll()
            if code is None:
                if child.quick_crashes and now - child.started_at >= self.stable_after:
                    child.quick_crashes = 0
                continue
            if child.restart_at is None:
                ran = now - child.started_at
                if not child.spec.restart or self.stopping.is_set():
                    self.report(f"{child.spec.name} exited with code {code} after {ran:.1f}s (not restarted)")
                    child.proc = None
                    continue
                child.quick_crashes = child.quick_crashes + 1 if ran < self.stable_after else 1
                delay = backoff_ceiling(child.quick_crashes, self.backoff_initial, self.backoff_max)
                child.restart_at = now + delay
                last = tail(child.log_file, 1).strip()
                self.report(
                    f"{child.spec.name} exited with code {code} after {ran:.1f}s; restarting in {delay:.2f}s "
                    f"(restart #{child.restarts + 1}); log {child.log_file}" + (f"; last line: {last}" if last else "")
                )
            elif now >= child.restart_at:
                child.restarts += 1
                self._spawn(child)

    def stop(self) -> None:
        """Stop every child, newest first, and wait for them."""
        self.stopping.set()
        self._terminate(list(reversed(self.children.values())))

    def run(self, interval: float = 0.2, until: Callable[[], bool] | None = None,
            each: Callable[[Supervisor], None] | None = None) -> None:
        """Supervise until ``stop_requested`` (a signal) or ``until()`` says so; then stop everything.
        ``each(self)`` runs at every step, in this thread (e.g. the reloader's restarts)."""
        try:
            while not self.stopping.is_set() and not (until and until()):
                self.poll()
                if each is not None:
                    each(self)
                self.stopping.wait(interval)
        finally:
            self.stop()

    def install_signal_handlers(self) -> None:
        """SIGINT and SIGTERM end ``run`` (call from the main thread)."""

        def handler(signum: int, _frame: FrameType | None) -> None:
            if not self.stopping.is_set():
                self.report(f"{signal.Signals(signum).name} received: stopping everything ...")
            self.stopping.set()

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)


def _pid_in_use(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
