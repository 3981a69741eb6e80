"""Faust's aiokafka consumer, run on the worker's own event loop instead of a thread of its own.

faust-streaming always runs aiokafka in a ``ConsumerThread``: a second thread with a second event
loop, reached through a method queue. Every fetch (``getmany``), commit and seek then crosses
threads twice (a queued call, a future resolved with ``call_soon_threadsafe``), each crossing
waking the other loop through its self-pipe; the two loops also contend for the GIL. Beacon's
worker has nothing that blocks its loop (the work is I/O: HTTP to the API, confluent-kafka's
producer polled from its own thread), so the thread buys nothing and costs CPU on every fetch.

:class:`LoopConsumer` keeps everything of Faust's consumer (fetcher, agents, rebalance callbacks,
commits through ``_filter_committable_offsets``) and replaces only where its delegate runs:
:class:`LoopConsumerThread` is the same aiokafka driver started as a plain service on the app's
loop, and its calls to the "thread" are direct awaits. The rebalance callbacks still go through
Faust's method queue, so each runs in a task of its own as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.transport.drivers.aiokafka import Transport as AIOKafkaTransport
from mode import Service
from mode.services import ServiceTask
from mode.utils.futures import maybe_async


class LoopConsumerThread(AIOKafkaConsumerThread):
    """Faust's aiokafka consumer "thread", started on the parent loop: no thread, no method queue."""

    wait_for_shutdown = False  # nothing else sets the shutdown event: stopping is done in ``on_stop``

    def __init__(self, consumer: Any, *, loop: Any, **kwargs: Any) -> None:
        super().__init__(consumer, loop=loop, thread_loop=loop, **kwargs)

    async def start(self) -> None:
        self._thread_started.set()
        await self._default_start()

    async def stop(self) -> None:
        await Service.stop(self)

    def _stopped_set(self) -> None:
        self._stopped.set()

    async def on_stop(self) -> None:
        await self.on_thread_stop()  # stops the aiokafka consumer

    async def _stop_children(self) -> None:
        await self._default_stop_children()

    async def _stop_futures(self) -> None:
        await self._default_stop_futures()

    async def _stop_exit_stacks(self) -> None:
        await self._default_stop_exit_stacks()

    def _get_tasks(self) -> Iterable[ServiceTask]:
        # The keepalive wakes the parent loop for a thread's sake: there is no thread.
        return (task for task in super()._get_tasks() if task.fun.__name__ != "_thread_keepalive")

    async def call_thread(self, fun: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        return await maybe_async(fun(*args, **kwargs))


class LoopConsumer(AIOKafkaConsumer):
    """Faust's aiokafka consumer whose delegate runs on the app's loop (:class:`LoopConsumerThread`)."""

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return LoopConsumerThread(self, loop=self.loop, beacon=self.beacon)


class LoopTransport(AIOKafkaTransport):
    """Faust's aiokafka transport with :class:`LoopConsumer` as its consumer."""

    Consumer = LoopConsumer
