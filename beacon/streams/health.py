"""Whether the dependencies of one worker are up, and what the worker does while one is down.

One :class:`DependencyHealth` per worker. Any part of the worker reports a dependency down (the
processor, when the API is unreachable); the first report of an outage marks it down once: it logs
once, counts the outage and sets the metrics. Work that needs the dependency waits in
:meth:`DependencyHealth.wait_up` meanwhile, so an outage spends no message's retry budget, and no
new work is taken (the dispatcher admits jobs through :meth:`DependencyHealth.wait_all_up`, so
fetching stops). A dependency registered with a probe (the API's ``/readyz``) is probed by ONE task
with capped exponential backoff and jitter until it answers; then it is marked up, the waiters are
released and fetching resumes. Dependencies without a probe (the registry, Kafka) are marked up by
whoever next succeeds in using them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from beacon.backoff import backoff_delay
from beacon.streams.metrics import WorkerMetrics

log = logging.getLogger("beacon.streams")

API = "api"
REGISTRY = "registry"
KAFKA = "kafka"
#: How each dependency is named in the log.
DISPLAY_NAMES = {API: "API", REGISTRY: "schema registry", KAFKA: "Kafka"}

#: Answers None when the dependency is ready, else the reason it is not.
Probe = Callable[[], Awaitable[str | None]]


@dataclass
class _Dependency:
    name: str
    probe: Probe | None
    up: asyncio.Event = field(default_factory=asyncio.Event)
    down_since: float | None = None
    prober: asyncio.Task[None] | None = None
    check: asyncio.Future[str | None] | None = None

    def __post_init__(self) -> None:
        self.up.set()


class DependencyHealth:
    """Up/down state of the worker's dependencies; see the module doc."""

    def __init__(
        self,
        metrics: WorkerMetrics,
        *,
        probe_base_delay: float,
        probe_max_delay: float,
        waiting: Callable[[], int] = lambda: 0,
    ) -> None:
        self._metrics = metrics
        self._base = probe_base_delay
        self._cap = probe_max_delay
        self._waiting = waiting
        self._deps: dict[str, _Dependency] = {}

    def register(self, name: str, probe: Probe | None = None) -> None:
        """Track ``name`` (up until reported down); ``probe`` tells when it is back."""
        self._deps[name] = _Dependency(name, probe)
        self._metrics.dependency_up.labels(name).set(1)
        self._metrics.dependency_down_seconds.labels(name).set_function(lambda: self.down_for(name))
        self._metrics.dependency_outages.labels(name)

    def is_up(self, name: str) -> bool:
        return self._deps[name].up.is_set()

    @property
    def all_up(self) -> bool:
        return all(dep.up.is_set() for dep in self._deps.values())

    def down_for(self, name: str) -> float:
        """Seconds ``name`` has been down (0 while up)."""
        since = self._deps[name].down_since
        return 0.0 if since is None else time.monotonic() - since

    async def wait_up(self, name: str) -> None:
        """Return once ``name`` is up (at once when it is)."""
        dep = self._deps[name]
        if not dep.up.is_set():
            await dep.up.wait()

    async def wait_all_up(self) -> None:
        """Return once every dependency is up (at once when they are)."""
        while True:
            down = next((dep for dep in self._deps.values() if not dep.up.is_set()), None)
            if down is None:
                return
            await down.up.wait()

    def report_down(self, name: str, reason: str) -> None:
        """``name`` failed for a reason that is not the message's: mark it down (once per outage)."""
        dep = self._deps[name]
        if not dep.up.is_set():
            return
        dep.up.clear()
        dep.down_since = time.monotonic()
        self._metrics.dependency_up.labels(name).set(0)
        self._metrics.dependency_outages.labels(name).inc()
        log.warning("%s unreachable (%s) — pausing fetch, %d messages waiting", DISPLAY_NAMES.get(name, name),
                    reason, self._waiting())
        if dep.probe is not None:
            dep.prober = asyncio.create_task(self._probe_until_up(dep), name=f"probe {name}")

    def report_up(self, name: str) -> None:
        """``name`` answers again: release its waiters (and new work, when nothing else is down)."""
        dep = self._deps[name]
        if dep.up.is_set():
            return
        down_for = self.down_for(name)
        dep.down_since = None
        dep.up.set()
        self._metrics.dependency_up.labels(name).set(1)
        log.info("%s is back after %.1f s — resuming", DISPLAY_NAMES.get(name, name), down_for)

    async def confirm_up(self, name: str, failure: str) -> bool:
        """After a failure that may be the message's or the dependency's: probe once (callers at the
        same moment share the probe). Up: True (the failure is the message's). Not ready: report it
        down and return False (the failure is the outage's)."""
        dep = self._deps[name]
        if not dep.up.is_set():
            return False
        if dep.probe is None:
            return True
        if dep.check is None:
            dep.check = asyncio.ensure_future(dep.probe())
            dep.check.add_done_callback(lambda _: setattr(dep, "check", None))
        reason = await asyncio.shield(dep.check)
        if reason is None:
            return True
        self.report_down(name, f"{failure}; {reason}")
        return False

    async def _probe_until_up(self, dep: _Dependency) -> None:
        assert dep.probe is not None
        attempt = 0
        while not dep.up.is_set():
            attempt += 1
            await asyncio.sleep(backoff_delay(attempt, self._base, self._cap))
            reason = await dep.probe()
            if reason is None:
                self.report_up(dep.name)
            else:
                log.debug("%s still unreachable after %.0f s (%s); probing again",
                         DISPLAY_NAMES.get(dep.name, dep.name), self.down_for(dep.name), reason)

    async def close(self) -> None:
        """Stop the probes (shutdown)."""
        tasks = [dep.prober for dep in self._deps.values() if dep.prober is not None and not dep.prober.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
