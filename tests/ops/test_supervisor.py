"""The supervisor with small dummy children: restarts crashes with a report line, stops cleanly, logs per child."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from beacon.ops.supervisor import ProcessSpec, Supervisor

PY = sys.executable


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0, step: Callable[[], None] | None = None
             ) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if step:
            step()
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_crashing_child_is_restarted_with_a_report_and_log(tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    crash = f"import pathlib,sys; p=pathlib.Path({str(counter)!r}); p.write_text(str(int(p.read_text() or 0)+1) if p.exists() else '1'); print('boom now', flush=True); sys.exit(3)"  # noqa: E501
    lines: list[str] = []
    sup = Supervisor(tmp_path / "logs", report=lines.append, backoff_initial=0.05, backoff_max=0.2)
    sup.add(ProcessSpec("crasher", [PY, "-c", crash]))
    try:
        # the child truncates, then writes: a read in between sees "" (not yet written, not 0 runs)
        wait_for(lambda: counter.exists() and int(counter.read_text() or 0) >= 3, "three runs", step=sup.poll)
    finally:
        sup.stop()
    assert sup.children["crasher"].restarts >= 2
    assert any("crasher exited with code 3" in line and "restarting in" in line and "boom now" in line
               for line in lines), lines
    log = (tmp_path / "logs" / "crasher.log").read_text()
    assert log.count("supervisor starts crasher") >= 3 and "boom now" in log


def test_backoff_doubles_for_quick_crashes_and_is_capped(tmp_path: Path) -> None:
    lines: list[str] = []
    sup = Supervisor(tmp_path, report=lines.append, backoff_initial=0.05, backoff_max=0.15, stable_after=60)
    sup.add(ProcessSpec("c", [PY, "-c", "raise SystemExit(1)"]))
    try:
        wait_for(lambda: len(lines) >= 4, "four crash reports", step=sup.poll)
    finally:
        sup.stop()
    delays = [float(line.split("restarting in ")[1].split("s")[0]) for line in lines[:4]]
    assert delays == [0.05, 0.1, 0.15, 0.15], lines


def test_stop_terminates_children_cleanly_and_they_are_not_restarted(tmp_path: Path) -> None:
    marker = tmp_path / "bye"
    graceful = (
        "import signal,sys,time,pathlib\n"
        f"def bye(*a):\n    pathlib.Path({str(marker)!r}).write_text('clean'); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\nprint('up and ' + 'running', flush=True)\nwhile True: time.sleep(0.05)\n"
    )
    lines: list[str] = []
    sup = Supervisor(tmp_path / "logs", report=lines.append)
    a = sup.add(ProcessSpec("graceful", [PY, "-c", graceful]))
    b = sup.add(ProcessSpec("sleeper", [PY, "-c", "import time; time.sleep(600)"]))
    log = tmp_path / "logs" / "graceful.log"
    wait_for(lambda: log.exists() and "up and running" in log.read_text(), "the child to be ready")
    pids = [a.pid, b.pid]
    assert all(p is not None for p in pids)
    sup.stop()
    assert marker.read_text() == "clean"
    assert not any(_alive(p) for p in pids if p is not None)
    sup.poll()
    assert not lines or all("not restarted" in line for line in lines)


def test_sigint_to_a_supervising_process_stops_everything(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    script = f"""
import sys, pathlib
from beacon.ops.supervisor import ProcessSpec, Supervisor
sup = Supervisor(pathlib.Path({str(tmp_path / 'logs')!r}))
sup.install_signal_handlers()
c = sup.add(ProcessSpec("sleeper", [sys.executable, "-c", "import time; time.sleep(600)"]))
pathlib.Path({str(pid_file)!r}).write_text(str(c.pid))
sup.run()
print("all stopped", flush=True)
"""
    proc = subprocess.Popen([PY, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: pid_file.exists() and pid_file.read_text() != "", "the supervisor to start its child")
        child_pid = int(pid_file.read_text())
        assert _alive(child_pid)
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "SIGINT received: stopping everything" in out and "all stopped" in out
    assert not _alive(child_pid)
