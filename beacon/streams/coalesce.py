"""Coalescing in a worker: a user's rapid messages gathered in their lane and answered as one turn.

When a user's text or media message reaches the head of their lane (``beacon.lanes``), the messages already
queued behind it join it, and the worker waits for more while each arrives within ``BEACON_COALESCE_WINDOW_MS``
of the previous one (a debounce, never longer than ``MAX_HOLD`` windows from the first, at most ``MAX_GROUP``
messages). The group goes to the API as one ``MessageGroup`` (one call, one answer). The rules of what merges
are ``beacon.groups``': a command ends the group and is answered on its own after it; statuses and events queued
among the messages are skipped (they stay in the lane and are settled right after the group, never merged).

Other users are never held: each user has their own lane, and the wait holds only this one. Offsets: the group's
jobs are finished together when the group is settled, and the lanes commit a partition only up to its lowest
unfinished message, so a worker killed mid-group leaves every message of it to be processed again; the API
records groups and never answers a message twice (``beacon.api.routers.process.process_group``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from beacon.errors import BadMessageError
from beacon.groups import MAX_GROUP, mergeable
from beacon.lanes import Job, KeyedDispatcher
from beacon.messages import EVENT_KINDS, INBOUND, BeaconMessage
from beacon.streams.processor import MessageProcessor, Record

log = logging.getLogger("beacon.streams")

#: A burst is held at most this many windows from its first message, however steadily the user types.
MAX_HOLD = 4


class Coalescer:
    """Settles the job at the head of a lane together with the user's messages that follow it closely."""

    def __init__(self, dispatcher: KeyedDispatcher, processor: MessageProcessor, window: float,
                 record_of: Callable[[Job], Record]) -> None:
        self.dispatcher = dispatcher
        self.processor = processor
        self.window = window
        self.record_of = record_of

    async def handle(self, head: Job) -> list[Job]:
        """Settle ``head`` (and the jobs it gathers, which are returned for the lane to finish with it)."""
        record = self.record_of(head)
        try:
            msg = await self.processor.decode(record)
        except BadMessageError:
            await self.processor.handle(record, head.started)  # decodes again, and dead-letters it
            return []
        if not mergeable(msg):
            await self.processor.handle(record, head.started, msg)
            return []
        members = [(head, record, msg)]
        await self._gather(head, members)
        if len(members) == 1:
            await self.processor.handle(record, head.started, msg)
            return []
        await self.processor.handle_group([(r, m) for _, r, m in members], head.started)
        return [job for job, _, _ in members[1:]]

    async def _gather(self, head: Job, members: list[tuple[Job, Record, BeaconMessage]]) -> None:
        seen = 1
        hold_until = head.started + MAX_HOLD * self.window
        while len(members) < MAX_GROUP:
            queued = self.dispatcher.queued(head)
            if seen < len(queued):
                job = queued[seen]
                seen += 1
                record = self.record_of(job)
                try:
                    msg = await self.processor.decode(record)
                except BadMessageError:
                    return  # dead-lettered on its own when its turn comes
                if msg.direction != INBOUND or msg.kind in EVENT_KINDS:
                    continue  # a status or an event: left in the lane, settled after the group
                if not mergeable(msg):
                    return  # a command: answered on its own, after the group
                members.append((job, record, msg))
                continue
            remaining = min(members[-1][0].started + self.window, hold_until) - time.monotonic()
            if remaining <= 0 or not await self.dispatcher.wait_arrival(head, len(queued), remaining):
                return
