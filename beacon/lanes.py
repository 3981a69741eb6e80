"""Keyed lanes: per-key sequential, cross-key concurrent dispatch with a bound on work in flight, and
in-order acknowledgement per partition. The one such component in Beacon: workers (``beacon.streams.app``,
through Faust), gateways' senders (``beacon.gateway.outbound``) and the bridge (``beacon.bridge.forward``,
both on confluent-kafka, whose rebalance callbacks run in the polling thread: they hand ``drain`` to the
event loop with ``asyncio.run_coroutine_threadsafe``; the lanes themselves live on the loop only).

Jobs with the same key run one after another in arrival order; jobs with different keys run
concurrently, at most ``max_in_flight`` at once (``submit`` waits for a free slot: that is the
worker's backpressure). A partition's jobs finish out of order, but they are *acknowledged* in
offset order: a job is acked only once every earlier job of its partition is done. So whatever
offset the committer commits, every message below it is finished.

Why Faust's own acked-offset scan is not trusted with this (``beacon.streams.app`` has the
committer ask the trackers instead): in faust-streaming 0.15.3 ``Consumer._new_offset`` checks
``min(acked) - committed > 1`` (an off-by-one: an ack of ``committed + 1`` while ``committed`` is
still in flight passes), skips the check when nothing was committed yet, and Faust auto-acks
messages it skips during a rebalance, so its scan can commit past unfinished messages.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("beacon.lanes")


class LeaveUnfinished(Exception):
    """Raised by a handler that is shutting down while its job waits (for a rate limit, an outage): the
    job stays unfinished without a word, its partition commits no further, and its key's lane stops; the
    caller then ``drain``s, and the job is fetched again from the committed offset at the next start."""


@dataclass(eq=False)
class Job:
    """One message to process: its key (ordering scope), partition and offset, and the payload."""

    key: Hashable
    partition: Hashable
    offset: int
    payload: Any
    started: float = 0.0
    done: bool = False
    tracker: PartitionTracker | None = field(default=None, repr=False)


class PartitionTracker:
    """The unfinished jobs of one partition, in offset order; acks the finished prefix."""

    def __init__(self, partition: Hashable, ack: Callable[[Job], None]) -> None:
        self.partition = partition
        self._ack = ack
        self._pending: dict[int, Job] = {}
        self.closed = False
        #: Offset to commit: every message below it is finished (None until one is).
        self.committable: int | None = None
        #: Last offset submitted (for lag).
        self.last_offset: int | None = None

    def add(self, job: Job) -> None:
        self._pending[job.offset] = job
        self.last_offset = job.offset
        job.tracker = self

    def complete(self, job: Job) -> None:
        job.done = True
        if self.closed:
            return
        pending = self._pending
        while pending:
            offset = next(iter(pending))
            head = pending[offset]
            if not head.done:
                break
            del pending[offset]
            self.committable = offset + 1
            self._ack(head)

    def skip(self, offset: int) -> None:
        """A record that needs no work: committable at once when nothing before it is unfinished, else
        as soon as everything before it is."""
        self.last_offset = offset
        if self._pending:
            self.add(Job(None, self.partition, offset, None, done=True))
        else:
            self.committable = offset + 1

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def lowest_unfinished(self) -> int | None:
        return next(iter(self._pending), None)


class KeyedDispatcher:
    """Runs ``handle(job)`` per key in order, across keys concurrently, acking per partition in order.

    ``handle`` must settle the job (processed or dead-lettered) and not raise; if it raises, the
    job stays unfinished (its partition stops committing) and the error is logged. It may also settle later
    jobs of the same key with it (a coalesced turn: see ``queued`` and ``wait_arrival``) and return them;
    they are finished with it, and stay in the lane (abandoned with it by a ``drain``) until then. ``LeaveUnfinished``
    is the quiet way out while stopping. ``admit``, when
    given, is awaited before each job is taken (the worker holds new work there during an outage).
    """

    def __init__(
        self,
        handle: Callable[[Job], Awaitable[list[Job] | None]],
        ack: Callable[[Job], None],
        max_in_flight: int,
        on_change: Callable[[int], None] | None = None,
        admit: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._handle = handle
        self._ack = ack
        self._admit = admit
        self._slots = asyncio.Semaphore(max_in_flight)
        self._queues: dict[Hashable, deque[Job]] = {}
        self._runners: dict[Hashable, asyncio.Task[None]] = {}
        self._trackers: dict[Hashable, PartitionTracker] = {}
        self._in_flight = 0
        self._on_change = on_change
        self._idle = asyncio.Event()
        self._idle.set()
        self._epoch = 0
        self._draining: set[Hashable] | None = None
        self._draining_all = False
        self._arrivals: dict[Hashable, asyncio.Event] = {}

    # --- submitting ------------------------------------------------------------------------

    async def submit(self, job: Job) -> None:
        """Queue ``job`` behind earlier jobs of its key; waits until admitted and while ``max_in_flight`` are
        running."""
        epoch = self._epoch
        if self._admit is not None:
            await self._admit()
        await self._slots.acquire()
        if epoch != self._epoch:
            # Partitions were revoked while we waited: this job belongs to the old assignment and
            # will be fetched again from the committed offset.
            self._slots.release()
            return
        tracker = self._trackers.get(job.partition)
        if tracker is None:
            tracker = self._trackers[job.partition] = PartitionTracker(job.partition, self._ack)
        tracker.add(job)
        self._set_in_flight(self._in_flight + 1)
        queue = self._queues.get(job.key)
        if queue is None:
            queue = self._queues[job.key] = deque((job,))
            self._runners[job.key] = asyncio.create_task(self._run_key(job.key, queue))
        else:
            queue.append(job)
            arrival = self._arrivals.get(job.key)
            if arrival is not None:
                arrival.set()

    def skip(self, partition: Hashable, offset: int) -> None:
        """Record that the message at ``offset`` of ``partition`` needs no work (another consumer's): it is
        committed with its partition's finished prefix, without a task or a slot of its own."""
        tracker = self._trackers.get(partition)
        if tracker is None:
            tracker = self._trackers[partition] = PartitionTracker(partition, self._ack)
        tracker.skip(offset)

    def queued(self, job: Job) -> list[Job]:
        """The jobs of ``job``'s key from ``job`` on, in arrival order (it first, while it runs)."""
        queue = self._queues.get(job.key)
        return list(queue) if queue else []

    async def wait_arrival(self, job: Job, count: int, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until ``job``'s key has more than ``count`` jobs queued; False when none
        came, or its partition is being drained."""
        if len(self.queued(job)) > count:
            return True
        arrival = self._arrivals[job.key] = asyncio.Event()
        try:
            async with asyncio.timeout(timeout):
                while len(self.queued(job)) <= count and not self._draining_for(job.partition):
                    arrival.clear()
                    await arrival.wait()
        except TimeoutError:
            return False
        finally:
            if self._arrivals.get(job.key) is arrival:
                del self._arrivals[job.key]
        return not self._draining_for(job.partition)

    async def _run_key(self, key: Hashable, queue: deque[Job]) -> None:
        try:
            while queue and not self._draining_for(queue[0].partition):
                job = queue[0]
                tracker = job.tracker
                try:
                    extra = await self._handle(job)
                except asyncio.CancelledError:
                    raise
                except LeaveUnfinished:
                    return  # the queue, this job first, is left for ``drain`` to abandon
                except Exception:
                    log.exception(
                        "processing message at partition %s offset %s failed unexpectedly; its partition will "
                        "not commit past it until the worker restarts. This is a bug: please report it.",
                        job.partition, job.offset,
                    )
                else:
                    if tracker is not None:
                        tracker.complete(job)
                    for other in extra or ():
                        if other.tracker is not None:
                            other.tracker.complete(other)
                        queue.remove(other)
                        self._slots.release()
                        self._set_in_flight(self._in_flight - 1)
                queue.popleft()
                self._slots.release()
                self._set_in_flight(self._in_flight - 1)
        finally:
            # A runner stopped by a drain leaves its queue for ``drain`` to abandon.
            if not queue and self._queues.get(key) is queue:
                del self._queues[key]
                self._runners.pop(key, None)

    def _draining_for(self, partition: Hashable) -> bool:
        return self._draining_all or (self._draining is not None and partition in self._draining)

    def _set_in_flight(self, value: int) -> None:
        self._in_flight = value
        if value == 0:
            self._idle.set()
        else:
            self._idle.clear()
        if self._on_change is not None:
            self._on_change(value)

    # --- observing -------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Jobs submitted and not settled: running ones plus those queued behind their key."""
        return self._in_flight

    @property
    def running(self) -> int:
        """Jobs being handled right now (one per key with work)."""
        return len(self._queues)

    def trackers(self) -> dict[Hashable, PartitionTracker]:
        return dict(self._trackers)

    def committable(self, partitions: Iterable[Hashable] | None = None) -> dict[Hashable, int]:
        """Offsets safe to commit, per partition (every message below is finished)."""
        wanted = None if partitions is None else set(partitions)
        return {
            p: t.committable
            for p, t in self._trackers.items()
            if t.committable is not None and (wanted is None or p in wanted)
        }

    # --- draining --------------------------------------------------------------------------

    async def drain(self, partitions: Iterable[Hashable] | None, timeout: float) -> dict[Hashable, int]:
        """Let the jobs of ``partitions`` (all when None) that are running finish within ``timeout``;
        abandon them after that, and abandon at once the jobs still queued behind them (they are
        fetched again from the committed offset by whoever owns the partition next). Returns the
        offsets safe to commit for those partitions. Later jobs for them start fresh trackers."""
        self._epoch += 1
        wanted: set[Hashable] | None = None if partitions is None else set(partitions)
        self._draining_all = wanted is None
        self._draining = wanted
        for arrival in self._arrivals.values():
            arrival.set()  # a coalescing turn stops waiting for more and finishes with what it has

        def mine(queue: deque[Job]) -> bool:
            return bool(queue) and (wanted is None or queue[0].partition in wanted)

        try:
            running = [self._runners[k] for k, q in self._queues.items() if mine(q) and k in self._runners]
            running = [t for t in running if not t.done()]
            if running:
                await asyncio.wait(running, timeout=timeout)
            abandoned = 0
            for key, queue in list(self._queues.items()):
                if not mine(queue):
                    continue
                runner = self._runners.pop(key, None)
                del self._queues[key]
                if runner is not None and not runner.done():
                    runner.cancel()
                abandoned += len(queue)
                for _ in queue:
                    self._slots.release()
                self._set_in_flight(self._in_flight - len(queue))
        finally:
            self._draining = None
            self._draining_all = False
        if abandoned:
            log.info(
                "left %d unfinished message(s) of revoked partitions; whoever owns them next handles them again "
                "from the last committed offset (idempotent handling keeps the outcome the same)", abandoned,
            )
        result: dict[Hashable, int] = {}
        for p in list(self._trackers):
            if wanted is None or p in wanted:
                tracker = self._trackers.pop(p)
                tracker.closed = True
                if tracker.committable is not None:
                    result[p] = tracker.committable
        return result
