"""The bare topology (`beacon bench e2e`'s limit to measure against) runs on the real broker, round-trips every
message through its own processes, and always stops them; Beacon is reported as a ratio of it."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pytest

from beacon.bench.bare.compare import bare_runs, ratio_table
from beacon.bench.bare.topology import BareTopology, running
from beacon.bench.e2e import RunResult
from beacon.config import Settings


@pytest.mark.slow
async def test_every_message_makes_the_round_trip_and_the_report_has_the_ratio_rows(
    kafka_settings: Settings,
) -> None:
    bare_low, bare_high = await bare_runs(kafka_settings, [(10, 2), (20, 2)], users=10, workers=2, partitions=4)

    for run, total in ((bare_low, 20), (bare_high, 40)):
        assert (run.kind, run.sent, run.refused, run.unanswered, run.lost) == ("bare", total, 0, 0, 0)
        assert len(run.latencies) == total
        assert {"ingress", "api", "worker-1", "worker-2", "egress", "channel"} == set(run.processes)

    # A stack run twice as slow as the bare one, at the same rates: the report says 2.00x.
    stack_low = dataclasses.replace(bare_low, name="stack at 10/s", kind="stack",
                                    latencies=[x * 2 for x in bare_low.latencies])
    kafka_low = RunResult("kafka baseline at 10/s", 10, 2, latencies=list(bare_low.latencies),
                          reply_times=list(bare_low.reply_times), kind="kafka")
    report = ratio_table([kafka_low, stack_low, bare_low, bare_high])
    assert "| stack at 10/s | bare at 10/s | 1.00x | 2.00x | 2.00x | 1.00x |" in report
    assert "| stack at 10/s | kafka baseline at 10/s | 1.00x | 2.00x | 2.00x | n/a |" in report
    assert "bare at 20/s |" not in report.split("| stack at 10/s |", 1)[0]


@pytest.mark.slow
async def test_every_process_is_stopped_and_the_workdir_removed_after_the_runs(kafka_settings: Settings) -> None:
    async with running(kafka_settings, workers=1, partitions=2) as topology:
        procs = dict(topology.procs)
        workdir = topology.workdir
        assert len(topology.pids()) == 5
    assert all(proc.poll() is not None for proc in procs.values())
    assert not Path(workdir).exists()


def test_a_stuck_process_is_killed_after_sigterm(kafka_settings: Settings, tmp_path: Path) -> None:
    import subprocess
    import sys

    topology = BareTopology(kafka_settings, tmp_path, workers=1, partitions=1)
    topology.procs["stuck"] = subprocess.Popen(
        [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
         "print('ready', flush=True); time.sleep(600)"], stdout=subprocess.PIPE)
    assert topology.procs["stuck"].stdout is not None and topology.procs["stuck"].stdout.readline() == b"ready\n"
    notes = topology.stop()
    assert topology.procs["stuck"].returncode == -9
    assert notes == ["the bare topology's stuck did not stop within 5s of SIGTERM: killed"]


@pytest.mark.slow
def test_bench_e2e_only_bare_runs_the_bare_topology_alone_and_writes_its_report(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    # No inbound topic of a stack to copy: the partition count comes from the settings.
    env = {**os.environ, "BEACON_KAFKA_BOOTSTRAP": kafka_settings.kafka.bootstrap, "BEACON_DATA_DIR": str(tmp_path),
           "BEACON_TOPIC_PARTITIONS": "3", "BEACON_TOPIC_IN": f"no-stack-{uuid.uuid4().hex[:8]}"}
    done = subprocess.run(
        [sys.executable, "-m", "beacon", "bench", "e2e", "--only", "bare", "--workers", "1", "--latency-rate", "10",
         "--latency-seconds", "1", "--rate", "20", "--seconds", "1", "--users", "5"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 worker process(es), 3 partitions" in done.stdout
    assert "| bare at 10/s | 10/s | 10 | 0 | 0 |" in done.stdout
    assert "| bare at 20/s | 20/s | 20 | 0 | 0 |" in done.stdout
    assert (tmp_path / "bench" / "e2e-percentiles.png").stat().st_size > 0
    assert "stack at" not in done.stdout


def test_a_part_exits_when_the_bench_that_started_it_is_killed() -> None:
    import signal
    import subprocess
    import sys
    import time

    from beacon.ops.process import free_port

    starter = subprocess.Popen(
        [sys.executable, "-c", "import os, subprocess, sys, time; "
         "p = subprocess.Popen([sys.executable, '-m', 'beacon.bench.bare', 'channel', '--parent', str(os.getpid()), "
         f"'--port', '{free_port()}']); print(p.pid, flush=True); time.sleep(600)"], stdout=subprocess.PIPE)
    assert starter.stdout is not None
    part = int(starter.stdout.readline())
    starter.send_signal(signal.SIGKILL)  # the bench dies without stopping its children
    starter.wait(10)

    def running() -> bool:  # a zombie has exited (whoever it was re-parented to may not reap it)
        try:
            return Path(f"/proc/{part}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    deadline = time.monotonic() + 60
    while running() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not running()
