"""``beacon bench api``: requests/s and latency of the processing endpoint against a real server.

Starts ``beacon api`` as its own process on a free port (a fresh SQLite file, or the database URL
given), then drives it over HTTP with aiohttp: first ``/healthz`` (the baseline: HTTP and framework
cost alone), then ``POST /v1/messages/process`` with new inbound messages at full speed, then at a
fixed rate to measure latency percentiles.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson

from beacon.messages import BeaconMessage
from beacon.ops.process import cpu_seconds, free_port

TOKEN = "bench-token"


@dataclass
class Run:
    """One run of requests: only the 2xx answers count as throughput (and have their latency kept)."""

    name: str
    requests: int
    seconds: float
    latencies: list[float]
    #: Requests answered with a non-2xx status, or with no answer (connection refused or dropped).
    errors: int

    @property
    def succeeded(self) -> int:
        return self.requests - self.errors

    @property
    def rate(self) -> float:
        """Successful requests per second: a failure answered fast is not throughput."""
        return self.succeeded / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        values = sorted(self.latencies)
        return values[min(len(values) - 1, int(p / 100 * len(values)))] * 1000


def message(account: str, n: int) -> bytes:
    msg = BeaconMessage.inbound_text(
        channel="whatsapp",
        account=account,
        user_id=f"4477{n % 500:05d}",
        text=f"hello {n}",
        channel_message_id=f"wamid.{uuid.uuid4().hex}",
    )
    return orjson.dumps(msg.model_dump(mode="json"))


async def _drive(url: str, bodies: list[bytes] | None, total: int, concurrency: int, rate: float | None) -> Run:
    latencies: list[float] = []
    errors = 0
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    counter = iter(range(total))
    started = time.perf_counter()

    async with aiohttp.ClientSession(connector=connector) as http:

        async def one(i: int) -> None:
            nonlocal errors
            t0 = time.perf_counter()
            try:
                if bodies is None:
                    resp = await http.get(url)
                else:
                    resp = await http.post(url, data=bodies[i], headers=headers)
                await resp.read()
            except aiohttp.ClientError:
                errors += 1
                return
            if 200 <= resp.status < 300:
                latencies.append(time.perf_counter() - t0)
            else:
                errors += 1

        async def worker() -> None:
            for i in counter:
                await one(i)

        if rate is None:
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        else:
            tasks = []
            for i in range(total):
                delay = started + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(i)))
            await asyncio.gather(*tasks)
    return Run("", total, time.perf_counter() - started, latencies, errors)


def _start_server(database_url: str, port: int, workers: int, workdir: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "BEACON_DATA_DIR": str(workdir),
        "BEACON_DATABASE_URL": database_url,
        "BEACON_API_TOKEN": TOKEN,
        "BEACON_LOG_LEVEL": "WARNING",
        "BEACON_DB_AUTO_MIGRATE": "true",
        "BEACON_API_WORKERS": str(workers),
    }
    env.pop("BEACON_LLM_BASE_URL", None)
    env.pop("BEACON_HOOK_URL", None)
    return subprocess.Popen(
        [sys.executable, "-m", "beacon", "api", "--port", str(port)],
        env=env,
        cwd=workdir,
    )


async def _wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"beacon api exited with code {proc.returncode} before it was ready")
            try:
                async with http.get(base + "/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"beacon api not ready at {base} after {timeout:.0f}s")


async def bench(database_url: str | None, requests: int, concurrency: int, latency_rate: float, workers: int) -> int:
    """Run the three measurements and print them; returns how many requests failed (non-2xx or no answer)."""
    with tempfile.TemporaryDirectory(prefix="beacon-bench-api-") as tmp:
        workdir = Path(tmp)
        url = database_url or f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = _start_server(url, port, workers, workdir)
        try:
            await _wait_ready(base, proc)
            account = f"bench{uuid.uuid4().hex[:8]}"
            warm = [message(account, i) for i in range(min(500, requests))]
            await _drive(base + "/v1/messages/process", warm, len(warm), concurrency, None)
            cpu0 = cpu_seconds(proc.pid)
            baseline = await _drive(base + "/healthz", None, requests, concurrency, None)
            cpu1 = cpu_seconds(proc.pid)
            calls = [await sqlite_calls(base)]
            bodies = [message(account, i) for i in range(requests)]
            full = await _drive(base + "/v1/messages/process", bodies, requests, concurrency, None)
            cpu2 = cpu_seconds(proc.pid)
            calls.append(await sqlite_calls(base))
            n_lat = int(latency_rate * 5)
            lat_bodies = [message(account, i) for i in range(n_lat)]
            paced = await _drive(base + "/v1/messages/process", lat_bodies, n_lat, concurrency, latency_rate)
            cpu3 = cpu_seconds(proc.pid)
            calls.append(await sqlite_calls(base))
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    kind = url.split(":", 1)[0]
    print(f"beacon bench api — database {kind}, {workers} server process(es), {concurrency} concurrent clients")
    print(
        f"  baseline GET /healthz:          {baseline.rate:8.0f} req/s  p50 {baseline.pct(50):6.2f} ms  "
        f"p99 {baseline.pct(99):6.2f} ms  failed {baseline.errors}"
    )
    print(
        f"  POST /v1/messages/process new:  {full.rate:8.0f} req/s  p50 {full.pct(50):6.2f} ms  "
        f"p99 {full.pct(99):6.2f} ms  failed {full.errors}"
    )
    if workers == 1 and cpu0 is not None and cpu1 is not None and cpu2 is not None:
        print(
            f"  server CPU per request:         healthz {(cpu1 - cpu0) / requests * 1000:.3f} ms, "
            f"process {(cpu2 - cpu1) / requests * 1000:.3f} ms (the client shares this machine's cores)"
        )
    print(f"  ratio process / baseline:       {full.rate / baseline.rate if baseline.rate else float('nan'):8.2f}")
    print(
        f"  at {latency_rate:.0f} req/s paced:            p50 {paced.pct(50):6.2f} ms  p99 {paced.pct(99):6.2f} ms  "
        f"failed {paced.errors}"
    )
    if workers == 1 and cpu2 is not None and cpu3 is not None and n_lat:
        # At a light rate no batch forms: each request pays the per-request costs a deployment at that rate pays.
        print(f"  server CPU per request paced:   {(cpu3 - cpu2) / n_lat * 1000:.3f} ms")
    if workers == 1 and calls[0] and calls[1] and calls[2] and n_lat:
        print(f"  SQLite calls per request:       full speed {calls[1].report(calls[0], requests)}")
        print(f"                                  paced {calls[2].report(calls[1], n_lat)}")
    runs = {"GET /healthz": baseline, "POST /v1/messages/process": full, f"paced at {latency_rate:.0f} req/s": paced}
    for line in failure_report(runs):
        print(line, file=sys.stderr)
    return sum(run.errors for run in runs.values())


@dataclass
class SqliteCalls:
    """The server's SQLite calls so far (from its /metrics): on the event loop, by upper bound of their
    duration in seconds (cumulative, as Prometheus buckets), and on aiosqlite's thread."""

    loop_le: dict[float, float]
    thread: float

    def report(self, since: SqliteCalls, requests: int) -> str:
        """Calls per request since ``since`` by where they ran, and the bound every loop call stayed under."""
        loop = self.loop_le[float("inf")] - since.loop_le[float("inf")]
        longest = next(
            (le for le in sorted(self.loop_le) if self.loop_le[le] - since.loop_le.get(le, 0.0) == loop), float("inf")
        )
        bound = f" (each under {longest * 1000:g} ms)" if loop else ""
        return (f"{loop / requests:.2f} on the loop{bound}, "
                f"{(self.thread - since.thread) / requests:.2f} on aiosqlite's thread")


async def sqlite_calls(base: str) -> SqliteCalls | None:
    """The server's SQLite calls so far, or None when it has none (another database)."""
    async with aiohttp.ClientSession() as http, http.get(base + "/metrics") as resp:
        text = await resp.text()
    loop_le = {
        float(le): float(count)
        for le, count in re.findall(r'^beacon_api_sqlite_loop_call_seconds_bucket\{le="([^"]+)"\} (\S+)$', text, re.M)
    }
    thread = re.search(r"^beacon_api_sqlite_thread_calls_total (\S+)$", text, re.M)
    if not loop_le or not thread or (loop_le[float("inf")] == 0 and float(thread.group(1)) == 0):
        return None
    return SqliteCalls(loop_le, float(thread.group(1)))


def failure_report(runs: dict[str, Run]) -> list[str]:
    """What the operator reads when requests failed: the figures above count only the 2xx answers."""
    failed = {name: run for name, run in runs.items() if run.errors}
    if not failed:
        return []
    counts = ", ".join(f"{run.errors:,} of {run.requests:,} in {name}" for name, run in failed.items())
    return [f"error: requests failed (non-2xx answer or no answer): {counts}; req/s and latencies count only the "
            "successful ones; see the server's output above for why"]
