"""The keyed dispatcher on its own: order per key, concurrency across keys, in-order acks, drains."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict

from beacon.lanes import Job, KeyedDispatcher


async def test_keys_run_in_order_concurrently_and_in_flight_stays_bounded() -> None:
    done: dict[object, list[int]] = defaultdict(list)
    running: set[object] = set()
    peak = 0

    async def handle(job: Job) -> None:
        nonlocal peak
        assert job.key not in running, "two jobs of one key ran at once"
        running.add(job.key)
        peak = max(peak, len(running))
        await asyncio.sleep(random.uniform(0, 0.003))
        running.discard(job.key)
        done[job.key].append(job.payload)

    acked: list[Job] = []
    dispatcher = KeyedDispatcher(handle, acked.append, max_in_flight=20)
    offsets: dict[int, int] = defaultdict(int)
    for i in range(50):
        for key in range(40):
            partition = key % 4
            await dispatcher.submit(Job(f"k{key}", partition, offsets[partition], i))
            offsets[partition] += 1
            assert dispatcher.in_flight <= 20
    while dispatcher.in_flight:
        await asyncio.sleep(0.01)

    assert all(seq == list(range(50)) for seq in done.values()) and len(done) == 40
    assert 1 < peak <= 20
    for partition in range(4):
        assert [j.offset for j in acked if j.partition == partition] == list(range(offsets[partition]))
    assert dispatcher.committable() == {p: offsets[p] for p in range(4)}


async def test_a_partition_is_acked_only_up_to_its_lowest_unfinished_message() -> None:
    gates = {k: asyncio.Event() for k in "abc"}

    async def handle(job: Job) -> None:
        await gates[job.key].wait()  # type: ignore[index]

    acked: list[int] = []
    dispatcher = KeyedDispatcher(handle, lambda j: acked.append(j.offset), max_in_flight=10)
    for offset, key in enumerate("abc"):
        await dispatcher.submit(Job(key, 0, offset, None))
    gates["c"].set()
    gates["b"].set()
    await asyncio.sleep(0.01)
    assert acked == [] and dispatcher.committable() == {}
    gates["a"].set()
    await asyncio.sleep(0.01)
    assert acked == [0, 1, 2] and dispatcher.committable() == {0: 3}


async def test_drain_finishes_running_work_abandons_queued_work_and_reports_safe_offsets() -> None:
    release = asyncio.Event()
    handled: list[int] = []

    async def handle(job: Job) -> None:
        if job.offset in (1, 3):
            await release.wait()
        handled.append(job.offset)

    dispatcher = KeyedDispatcher(handle, lambda j: None, max_in_flight=3)
    await dispatcher.submit(Job("a", 0, 0, None))
    await asyncio.sleep(0.01)
    await dispatcher.submit(Job("b", 0, 1, None))  # running, blocked
    await dispatcher.submit(Job("b", 0, 2, None))  # queued behind it
    await dispatcher.submit(Job("c", 0, 3, None))  # running, blocked
    blocked = asyncio.create_task(dispatcher.submit(Job("d", 0, 4, None)))  # waits for a slot
    await asyncio.sleep(0.01)

    asyncio.get_running_loop().call_later(0.05, release.set)
    safe = await dispatcher.drain(None, timeout=5)
    await blocked

    assert sorted(handled) == [0, 1, 3]  # 2 was queued (abandoned), 4 arrived during the drain (dropped)
    assert safe == {0: 2}  # 0 and 1 done, 2 not: commit up to 2
    assert dispatcher.in_flight == 0


async def test_drain_abandons_work_that_outlives_the_timeout() -> None:
    async def handle(job: Job) -> None:
        await asyncio.sleep(10)

    dispatcher = KeyedDispatcher(handle, lambda j: None, max_in_flight=5)
    await dispatcher.submit(Job("a", 0, 0, None))
    await asyncio.sleep(0.01)
    assert await dispatcher.drain([0], timeout=0.05) == {}
    assert dispatcher.in_flight == 0
    await dispatcher.submit(Job("a", 0, 0, None))  # a new assignment starts afresh
    assert dispatcher.in_flight == 1


async def test_a_handler_settles_queued_jobs_of_its_key_with_it_and_they_commit_only_with_it() -> None:
    """Coalescing's use of the lanes: the head job waits for a follower, takes the queued ones (skipping one
    it leaves for later), and they are finished with it; nothing commits before the group is done."""
    release = asyncio.Event()
    handled: list[list[int]] = []

    async def handle(job: Job) -> list[Job] | None:
        if job.payload != 0:
            handled.append([job.payload])
            return None
        assert await dispatcher.wait_arrival(job, 1, timeout=5)  # the next one arrives while the head waits
        await release.wait()
        followers = [j for j in dispatcher.queued(job)[1:] if j.payload != 2]  # 2: left in the lane
        handled.append([job.payload] + [j.payload for j in followers])
        return followers

    acked: list[int] = []
    dispatcher = KeyedDispatcher(handle, lambda j: acked.append(j.offset), max_in_flight=10)
    await dispatcher.submit(Job("u", 0, 0, 0))
    await asyncio.sleep(0.01)
    for n in (1, 2, 3):
        await dispatcher.submit(Job("u", 0, n, n))
    assert not await dispatcher.wait_arrival(Job("other", 0, 9, None), 0, timeout=0.01)
    await asyncio.sleep(0.01)
    assert acked == [] and dispatcher.committable() == {}
    release.set()
    while dispatcher.in_flight:
        await asyncio.sleep(0.01)
    assert handled == [[0, 1, 3], [2]]
    assert acked == [0, 1, 2, 3] and dispatcher.committable() == {0: 4}


async def test_a_skipped_message_commits_with_its_partition_s_finished_prefix_and_takes_no_slot() -> None:
    release = asyncio.Event()

    async def handle(job: Job) -> None:
        await release.wait()

    dispatcher = KeyedDispatcher(handle, lambda _job: None, max_in_flight=1)
    dispatcher.skip("p", 0)  # nothing before it: committable at once
    assert dispatcher.committable() == {"p": 1}
    await dispatcher.submit(Job("k", "p", 1, None))
    dispatcher.skip("p", 2)  # behind an unfinished message: waits for it
    dispatcher.skip("q", 7)
    assert dispatcher.committable() == {"p": 1, "q": 8} and dispatcher.in_flight == 1
    release.set()
    while dispatcher.in_flight:
        await asyncio.sleep(0.01)
    assert dispatcher.committable() == {"p": 3, "q": 8}
