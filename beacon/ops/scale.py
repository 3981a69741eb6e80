"""``beacon scale``: a local autoscaler that starts and stops worker processes from consumer lag.

The decision is a pure function (:func:`decide`) of the policy, the current worker count, the
group's total lag and the partition count, so it is tested on its own. Hysteresis: a worker is
added when lag per worker exceeds ``up_lag``, and removed only when the remaining workers would
each carry less than ``down_lag`` (well below ``up_lag``), so a lag near one threshold does not
make the count flap. After every change nothing moves for ``cooldown`` seconds (a rebalance must
settle, and a new worker needs time to catch up before its effect shows in the lag). Never more
workers than partitions: an extra consumer would sit idle.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from beacon.config import Settings
from beacon.ops.supervisor import ProcessSpec, Supervisor

Say = Callable[[str], None]


@dataclass(frozen=True)
class ScalePolicy:
    """Bounds and thresholds of the autoscaler."""

    min_workers: int = 1
    max_workers: int = 4
    up_lag: int = 500
    down_lag: int = 50
    cooldown: float = 30.0

    def __post_init__(self) -> None:
        if self.min_workers < 0 or self.max_workers < max(1, self.min_workers):
            raise ValueError("need 0 <= min <= max and max >= 1")
        if self.down_lag >= self.up_lag:
            raise ValueError("down_lag must be below up_lag (hysteresis)")


@dataclass(frozen=True)
class Decision:
    workers: int
    reason: str


def decide(
    policy: ScalePolicy,
    *,
    current: int,
    lag: int,
    partitions: int,
    now: float,
    last_change: float | None,
) -> Decision:
    """How many workers there should be now, and why."""
    ceiling = max(1, min(policy.max_workers, partitions))
    floor = min(policy.min_workers, ceiling)
    target, reason = current, "within thresholds"
    if last_change is not None and now - last_change < policy.cooldown:
        reason = "cooling down"
    elif lag > policy.up_lag * current and current < ceiling:
        target = max(current + 1, math.ceil(lag / policy.up_lag))
        reason = f"lag {lag} is above {policy.up_lag} per worker"
    elif current > floor and lag < policy.down_lag * (current - 1):
        target, reason = current - 1, f"lag {lag} is below {policy.down_lag} per worker with one fewer"
    elif floor == 0 and current == 1 and lag == 0:
        target, reason = 0, "idle: no lag"
    if target < floor:
        return Decision(floor, f"{reason}; the minimum is {floor}")
    if target > ceiling:
        return Decision(ceiling, f"{reason}; the ceiling is {ceiling} (max {policy.max_workers}, "
                                 f"{partitions} partitions)")
    return Decision(target, reason)


class Scaler:
    """Supervises worker processes and resizes their number from the lag of ``group`` on ``topic``."""

    def __init__(
        self,
        settings: Settings,
        policy: ScalePolicy,
        *,
        worker_argv: Sequence[str] | None = None,
        group: str | None = None,
        topic: str | None = None,
        say: Say = print,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from beacon.ops.dev import beacon_argv

        self.settings = settings
        self.policy = policy
        self.worker_argv = list(worker_argv) if worker_argv is not None else beacon_argv("worker")
        self.group = group or settings.workers.group
        self.topic = topic or settings.topics.inbound
        self.say = say
        self.clock = clock
        self.supervisor = Supervisor(settings.log_dir.resolve(), report=lambda line: say(f"[supervisor] {line}"))
        self.last_change: float | None = None

    @property
    def workers(self) -> list[str]:
        return sorted(self.supervisor.children, key=lambda n: int(n.rsplit("-", 1)[1]))

    def _resize(self, target: int) -> None:
        while len(self.workers) < target:
            taken = {int(n.rsplit("-", 1)[1]) for n in self.workers}
            index = next(i for i in range(1, target + len(taken) + 2) if i not in taken)
            port = self.settings.workers.web_port + index - 1
            self.supervisor.add(ProcessSpec(f"worker-{index}", self.worker_argv,
                                            env={"BEACON_WORKER_WEB_PORT": str(port)}))
        while len(self.workers) > target:
            self.supervisor.remove(self.workers[-1])

    def step(self) -> Decision:
        """Read the lag, decide, and start or stop workers accordingly."""
        from beacon.kafka import topic_partitions
        from beacon.ops.lag import group_lag, total_lag

        self.supervisor.poll()
        lag = total_lag(group_lag(self.settings, self.group, self.topic))
        partitions = len(topic_partitions(self.settings, self.topic))
        now = self.clock()
        current = len(self.workers)
        decision = decide(self.policy, current=current, lag=lag, partitions=partitions, now=now,
                          last_change=self.last_change)
        if decision.workers != current:
            self.say(f"lag {lag} on {self.topic} ({partitions} partitions): {current} -> {decision.workers} "
                     f"worker(s): {decision.reason}")
            self._resize(decision.workers)
            self.last_change = now
        return decision

    def run(self, interval: float = 5.0) -> None:
        """Scale until SIGINT/SIGTERM, then stop every worker."""
        from beacon.errors import BeaconError

        self.supervisor.install_signal_handlers()
        next_check = 0.0
        try:
            while not self.supervisor.stopping.is_set():
                if self.clock() >= next_check:
                    try:
                        self.step()
                    except BeaconError as exc:
                        self.say(f"cannot read lag ({exc}); keeping {len(self.workers)} worker(s)")
                    next_check = self.clock() + interval
                self.supervisor.poll()
                self.supervisor.stopping.wait(0.2)
        finally:
            self.supervisor.stop()
