"""Start the bare topology's processes on free ports with topics of their own, and always stop them.

``running()`` yields a :class:`BareTopology` once every process answers and every consumer group has
settled (each partition held by one member) and one warm-up message has made the round trip; on the way
out it stops every process (SIGTERM, SIGKILL after a few seconds) and deletes the topics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from beacon.config import Settings
from beacon.errors import BeaconError
from beacon.fakes.whatsapp import payloads
from beacon.kafka import KafkaException, TopicSpec, ensure_topics, make_admin
from beacon.ops.process import free_port, tail

log = logging.getLogger(__name__)

#: Seconds the processes get to answer, the groups to settle and the warm-up message to come back.
START_TIMEOUT = 120.0
#: Seconds a process gets to exit on SIGTERM before it is killed.
STOP_TIMEOUT = 5.0


class BareTopology:
    """The running bare topology as ``run_stack`` sees a stack: a webhook URL to post to, a record of sends."""

    def __init__(self, settings: Settings, workdir: Path, *, workers: int, partitions: int) -> None:
        self.settings = settings
        self.workdir = workdir
        self.workers = workers
        self.partitions = partitions
        self.app_secret: str | None = None  # the bare ingress checks no signature
        self.phone_number_id = payloads.DEFAULT_PHONE_NUMBER_ID
        run = uuid.uuid4().hex[:8]
        self.topics = (f"bench_bare_{run}_in", f"bench_bare_{run}_out")
        self.groups = (f"bench-bare-{run}-workers", f"bench-bare-{run}-egress")
        self.ports = {"ingress": free_port(), "api": free_port(), "channel": free_port()}
        self.gateway_url = f"http://127.0.0.1:{self.ports['ingress']}"
        self.fake_url = f"http://127.0.0.1:{self.ports['channel']}"
        self.api_url = f"http://127.0.0.1:{self.ports['api']}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.procs.items() if proc.poll() is None}

    def describe(self) -> str:
        return (f"bare topology: {self.workers} worker process(es), {self.partitions} partitions, "
                f"topics {self.topics[0]} / {self.topics[1]}")

    def _start(self, name: str, role: str, *args: str) -> None:
        env = {**os.environ, "BEACON_KAFKA_BOOTSTRAP": self.settings.kafka.bootstrap, "BEACON_LOG_LEVEL": "WARNING",
               "BEACON_DATA_DIR": str(self.workdir)}
        argv = [sys.executable, "-m", "beacon.bench.bare", role, "--ready-file",
                str(self.workdir / f"{name}.assigned"), "--parent", str(os.getpid()), *args]
        with (self.workdir / f"{name}.log").open("wb") as log:
            self.procs[name] = subprocess.Popen(argv, env=env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL)

    def start(self) -> None:
        topic_in, topic_out = self.topics
        self._start("channel", "channel", "--port", str(self.ports["channel"]))
        self._start("api", "api", "--port", str(self.ports["api"]))
        for i in range(self.workers):
            self._start(f"worker-{i + 1}", "worker", "--topic-in", topic_in, "--topic-out", topic_out,
                        "--url", self.api_url, "--group", self.groups[0])
        self._start("egress", "egress", "--topic-out", topic_out, "--url", self.fake_url, "--group", self.groups[1])
        self._start("ingress", "ingress", "--port", str(self.ports["ingress"]), "--topic-in", topic_in)

    def _exited(self) -> str | None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                return (f"the bare topology's {name} exited with code {proc.returncode} while starting; last lines "
                        f"of {self.workdir / f'{name}.log'}:\n{tail(self.workdir / f'{name}.log')}")
        return None

    def _held(self, names: list[str]) -> int:
        held = 0
        for name in names:
            with contextlib.suppress(OSError, ValueError):
                held += int((self.workdir / f"{name}.assigned").read_text() or "0")
        return held

    async def check(self, client: httpx.AsyncClient) -> None:
        for url in (f"{self.gateway_url}/healthz", f"{self.api_url}/healthz", f"{self.fake_url}/_fake/stats"):
            (await client.get(url, timeout=5)).raise_for_status()

    async def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Every process answers, both groups hold every partition, and one message makes the round trip."""
        deadline = time.monotonic() + timeout
        workers = [f"worker-{i + 1}" for i in range(self.workers)]
        async with httpx.AsyncClient() as client:
            while True:
                if (exited := self._exited()) is not None:
                    raise BeaconError(exited)
                try:
                    await self.check(client)
                    answering = True
                except httpx.HTTPError:
                    answering = False
                if answering and self._held(workers) == self.partitions and self._held(["egress"]) == self.partitions:
                    break
                if time.monotonic() > deadline:
                    raise BeaconError(f"the bare topology was not ready within {timeout:.0f}s (processes answering: "
                                      f"{answering}; partitions held by the workers {self._held(workers)}, by the "
                                      f"egress {self._held(['egress'])}, of {self.partitions}); see the logs in "
                                      f"{self.workdir}")
                await asyncio.sleep(0.2)
            body = payloads.encode(payloads.text_webhook("447700999998", "warm-up"))
            (await client.post(f"{self.gateway_url}/webhooks/whatsapp", content=body, timeout=10)).raise_for_status()
            while not (await client.get(f"{self.fake_url}/_fake/sent", params={"wait": 0.5})).json():
                if time.monotonic() > deadline:
                    raise BeaconError(f"the bare topology's warm-up message did not come back within {timeout:.0f}s; "
                                      f"see the logs in {self.workdir}")

    def stop(self) -> list[str]:
        """SIGTERM every process, SIGKILL those still there after STOP_TIMEOUT; returns notes on the killed."""
        notes = []
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in self.procs.items():
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)
                notes.append(f"the bare topology's {name} did not stop within {STOP_TIMEOUT:.0f}s of SIGTERM: killed")
        return notes


@contextlib.asynccontextmanager
async def running(settings: Settings, *, workers: int, partitions: int) -> AsyncIterator[BareTopology]:
    """The bare topology, ready to measure; every process stopped and both topics deleted afterwards."""
    with tempfile.TemporaryDirectory(prefix="beacon-bench-bare-") as tmp:
        topology = BareTopology(settings, Path(tmp), workers=workers, partitions=partitions)
        ensure_topics(settings, [TopicSpec(t, partitions, settings.topics.replication_factor, {})
                                 for t in topology.topics], strict=True)
        try:
            topology.start()
            await topology.wait_ready()
            yield topology
        finally:
            for note in await asyncio.to_thread(topology.stop):
                log.warning(note)
            for fut in make_admin(settings).delete_topics(list(topology.topics), operation_timeout=10).values():
                with contextlib.suppress(KafkaException):
                    fut.result(timeout=15)
