"""Group commit for the processing endpoint: concurrent requests' reads and writes share queries.

Each request queues its work and awaits a future; one task per kind of work takes whatever is
queued (up to a batch) and does it with a handful of multi-row statements in one transaction.
Under load this turns N transactions into one (the commit cost is paid once per batch); with a
single request in flight the batch is that request alone. Duplicates are settled by the
processed-id primary key (``ON CONFLICT DO NOTHING RETURNING``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import orjson
from sqlalchemy import insert, update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from beacon.api.events import apply_event
from beacon.api.handoff import WAITING, change_handoff
from beacon.api.models import Conversation, MessageGroupMember, User
from beacon.api.store import HotPath, TurnRecord, _message_row, first_conversation_id, utc
from beacon.bot.persist import save_turn_effects
from beacon.errors import GroupConflictError
from beacon.groups import group_id
from beacon.messages import HANDED_OFF, STATUS_ORDER, BeaconMessage, stable_id

log = logging.getLogger(__name__)

#: Most requests served by one batch.
MAX_BATCH = 200

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Job(Generic[T, R]):
    item: T
    future: asyncio.Future[R]


class Batcher(Generic[T, R]):
    """Runs queued jobs in batches in one background task. A batch that fails for anything but an
    unreachable database is retried one job at a time, so one bad job fails alone."""

    name = "batcher"

    def __init__(self, engine: AsyncEngine, hot: HotPath) -> None:
        self.engine = engine
        self.hot = hot
        self._queue: asyncio.Queue[Job[T, R]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"beacon-api-{self.name}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def submit(self, item: T) -> R:
        if self._task is None or self._task.done():
            raise RuntimeError(f"the API's {self.name} is not running (start() not called or it stopped)")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(Job(item, future))
        return await future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._on_live_connection(batch)
            except Exception as exc:  # settled on the jobs: each request answers with its error
                if len(batch) == 1 or _unreachable(exc):
                    _fail(batch, exc)  # e.g. the database is unreachable: all fail (503), workers retry
                    continue
                for job in batch:
                    try:
                        await self._on_live_connection([job])
                    except Exception as single:  # this job's request answers with the error
                        _fail([job], single)

    async def _on_live_connection(self, batch: list[Job[T, R]]) -> None:
        """``_process``, and once more when the pooled connection it got was dead (a database restart or
        failover since it was last used). The pool then drops it and every connection older than the failure,
        so the second try opens a new one; pooled connections are not pinged before use (a round trip, or three,
        per checkout). The first try's transaction did not commit, or if it did, the second finds its rows
        (processed ids, delivery states) and answers as for a repeat."""
        try:
            await self._process(batch)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            log.info("%s: a pooled database connection was dead (%s: the database restarted?); trying %d "
                     "request(s) once more on a new one", self.name, type(exc.orig).__name__, len(batch))
            await self._process(batch)

    async def _process(self, batch: list[Job[T, R]]) -> None:
        raise NotImplementedError


def _unreachable(exc: BaseException) -> bool:
    """The database could not be reached or used at all (not a problem of one job's data)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (OperationalError, InterfaceError, TimeoutError, OSError))


def _settle(job: Job[Any, R], value: R) -> None:
    if not job.future.done():
        job.future.set_result(value)


def _fail(batch: list[Job[Any, Any]], exc: BaseException) -> None:
    for job in batch:
        if not job.future.done():
            job.future.set_exception(exc)


def _refuse_split_groups(jobs: Iterable[Job[TurnJob, bytes | None]], inserted: set[str]) -> None:
    """A coalesced group is recorded whole or not at all: when only some of its messages were new (others were
    recorded meanwhile, by a replay that grouped them differently) the transaction is abandoned."""
    for job in jobs:
        members = job.item.record.members
        new = sum(1 for m in members if m.id in inserted)
        if 0 < new < len(members):
            raise GroupConflictError(
                f"{len(members) - new} of the {len(members)} messages of group "
                f"{group_id([m.id for m in members])} (user {members[-1].user_key}) were answered meanwhile; "
                "not storing it (the worker retries, and the rest is answered on its own)"
            )


def _split_repeats(batch: list[Job[T, R]], key: Any) -> tuple[dict[str, Job[T, R]], list[Job[T, R]]]:
    """The first job per message id, and the later ones (concurrent duplicates in one batch)."""
    firsts: dict[str, Job[T, R]] = {}
    repeats: list[Job[T, R]] = []
    for job in batch:
        mid = key(job.item)
        if mid in firsts:
            repeats.append(job)
        else:
            firsts[mid] = job
    return firsts, repeats


@dataclass(frozen=True)
class Lookup:
    """What the processing endpoint reads before a turn: the message's id and its user."""

    message_id: str
    user_key: str


@dataclass(frozen=True)
class Seen:
    """The stored replies (JSON) of a message processed before, else None; the user's handoff state
    (WAITING, OPERATOR) or None when the bot answers."""

    replies: bytes | None
    handoff: str | None


class ProcessedLookup(Batcher[Lookup, Seen]):
    """``await submit(Lookup(message_id, user_key))``: both reads a turn starts with, for a whole batch of
    requests in one connection and one query, instead of a connection and queries per message."""

    name = "processed-lookup"

    async def _process(self, batch: list[Job[Lookup, Seen]]) -> None:
        mids = sorted({job.item.message_id for job in batch})
        keys = sorted({job.item.user_key for job in batch})
        found: dict[str, bytes] = {}
        handoffs: dict[str, str] = {}
        async with self.engine.connect() as conn:
            for kind, key, value in await conn.execute(self.hot.select_seen, {"mids": mids, "keys": keys}):
                if kind == "p":
                    found[key] = value.encode()
                else:
                    handoffs[key] = str(value)
        for job in batch:
            _settle(job, Seen(found.get(job.item.message_id), handoffs.get(job.item.user_key)))


async def stored_replies(engine: AsyncEngine, hot: HotPath, ids: set[str]) -> dict[str, bytes]:
    async with engine.connect() as conn:
        result = await conn.execute(hot.select_processed_many, {"mids": sorted(ids)})
        return {row.message_id: row.replies.encode() for row in result}


@dataclass
class TurnJob:
    record: TurnRecord
    now: datetime


class TurnWriter(Batcher[TurnJob, "bytes | None"]):
    """``await submit(TurnJob)``: None when stored, or the stored replies (JSON) when the message id
    was processed before."""

    name = "turn-writer"

    def __init__(self, engine: AsyncEngine, hot: HotPath, lock: AbstractAsyncContextManager[Any]) -> None:
        super().__init__(engine, hot)
        self.lock = lock

    async def write(self, record: TurnRecord, now: datetime) -> bytes | None:
        return await self.submit(TurnJob(record, now))

    async def _process(self, batch: list[Job[TurnJob, bytes | None]]) -> None:
        firsts, repeats = _split_repeats(batch, lambda item: item.record.inbound.id)
        async with self.lock, self.engine.begin() as conn:
            rows = [
                {"message_id": m.id, "processed_at": j.item.now, "replies": j.item.record.replies_json.decode()}
                for j in firsts.values()
                for m in j.item.record.members
            ]
            inserted = {row[0] for row in await conn.execute(self.hot.insert_processed_once, rows)}
            _refuse_split_groups(firsts.values(), inserted)
            fresh = [j.item for mid, j in firsts.items() if mid in inserted]
            if fresh:
                await self._store_turns(conn, fresh)
        stale = [j for mid, j in firsts.items() if mid not in inserted]
        stored = await stored_replies(self.engine, self.hot, {j.item.record.inbound.id for j in stale}) if stale else {}
        for mid, job in firsts.items():
            if mid in inserted:
                _settle(job, None)
        for job in stale + repeats:
            mid = job.item.record.inbound.id
            replies = firsts[mid].item.record.replies_json if mid in inserted else stored.get(mid)
            if replies is None:
                _fail([job], RuntimeError(f"message {mid} was neither stored nor found stored"))
            else:
                _settle(job, replies)

    async def _store_turns(self, conn: AsyncConnection, fresh: list[TurnJob]) -> None:
        users: dict[str, dict[str, Any]] = {}
        for turn in fresh:
            msg = turn.record.inbound
            users[msg.user_key] = {
                "user_key": msg.user_key,
                "channel": msg.channel,
                "account": msg.account,
                "user_id": msg.user_id,
                "profile_name": msg.profile_name or (users.get(msg.user_key) or {}).get("profile_name"),
                "first_seen": turn.now,
                "last_seen": turn.now,
                "last_inbound_at": turn.now,
                "opted_out": False,
                "conversation_id": first_conversation_id(msg.user_key),
            }
        conversations: dict[str, str] = {}
        new_conversations = []
        for row in await conn.execute(self.hot.upsert_users, list(users.values())):
            conversations[row.user_key] = row.conversation_id
            if utc(row.first_seen) == users[row.user_key]["first_seen"]:
                new_conversations.append(
                    {"id": row.conversation_id, "user_key": row.user_key, "started_at": row.first_seen}
                )
        if new_conversations:
            await conn.execute(self.hot.insert_conversation, new_conversations)
        rows = []
        for turn in fresh:
            conversation_id = conversations[turn.record.inbound.user_key]
            members = turn.record.members
            rows += [_message_row(m, conversation_id, i, turn.now) for i, m in enumerate(members)]
            rows += [_message_row(r, conversation_id, len(members) + i, turn.now)
                     for i, r in enumerate(turn.record.replies)]
        await conn.execute(self.hot.insert_messages, rows)
        groups = [
            {"message_id": m.id, "group_id": group_id([x.id for x in turn.record.members]), "position": i,
             "size": len(turn.record.members), "created_at": turn.now}
            for turn in fresh if turn.record.earlier
            for i, m in enumerate(turn.record.members)
        ]
        if groups:
            await conn.execute(insert(MessageGroupMember), groups)
        for turn in fresh:  # after the inserts: an edit may name a message stored in this same batch
            await apply_event(conn, turn.record.inbound, turn.now)
        if any(turn.record.state_json is not None or turn.record.outbox for turn in fresh):
            await save_turn_effects(conn, [(turn.record, turn.now) for turn in fresh])
        for turn in fresh:
            if turn.record.handoff is not None:
                by, reason = turn.record.handoff
                msg = turn.record.inbound
                await change_handoff(
                    conn, msg, WAITING, by=by, reason=reason, now=turn.now, event_id=stable_id(HANDED_OFF, msg.id),
                    seq=len(turn.record.members) + len(turn.record.replies), when_handed_off=False,
                )
        for turn in fresh:
            if turn.record.reset_conversation:
                msg, old = turn.record.inbound, conversations[turn.record.inbound.user_key]
                new_id = stable_id("conversation", msg.user_key, msg.id)
                await conn.execute(update(Conversation).where(Conversation.id == old).values(ended_at=turn.now))
                await conn.execute(
                    self.hot.insert_conversation, {"id": new_id, "user_key": msg.user_key, "started_at": turn.now}
                )
                await conn.execute(update(User).where(User.user_key == msg.user_key).values(conversation_id=new_id))


@dataclass
class StatusJob:
    message: BeaconMessage
    now: datetime


class StatusWriter(Batcher[StatusJob, bool]):
    """``await submit(StatusJob)``: True when applied, False when the status id was processed before.
    Delivery state only moves forward (STATUS_ORDER), however late a status arrives."""

    name = "status-writer"

    def __init__(self, engine: AsyncEngine, hot: HotPath, lock: AbstractAsyncContextManager[Any]) -> None:
        super().__init__(engine, hot)
        self.lock = lock

    async def _process(self, batch: list[Job[StatusJob, bool]]) -> None:
        firsts, repeats = _split_repeats(batch, lambda item: item.message.id)
        async with self.lock, self.engine.begin() as conn:
            rows = [{"message_id": mid, "processed_at": j.item.now, "replies": "[]"} for mid, j in firsts.items()]
            inserted = {row[0] for row in await conn.execute(self.hot.insert_processed_once, rows)}
            fresh = [j.item for mid, j in firsts.items() if mid in inserted]
            if fresh:
                await self._apply(conn, fresh)
        for mid, job in firsts.items():
            _settle(job, mid in inserted)
        for job in repeats:
            _settle(job, False)

    async def _apply(self, conn: AsyncConnection, fresh: list[StatusJob]) -> None:
        furthest: dict[str, dict[str, Any]] = {}
        by_cmid: list[dict[str, Any]] = []
        by_id: list[dict[str, Any]] = []
        both: list[dict[str, Any]] = []
        for job in fresh:
            msg = job.message
            status = msg.status or "unknown"
            rank = STATUS_ORDER.get(status, 0)
            cmid = msg.channel_message_id
            if cmid and rank >= (furthest.get(cmid) or {}).get("rank", -1):
                error = orjson.dumps(msg.error.model_dump(mode="json")).decode() if msg.error else None
                furthest[cmid] = {
                    "channel_message_id": cmid,
                    "user_key": msg.user_key,
                    "status": status,
                    "rank": rank,
                    "error": error,
                    "updated_at": job.now,
                }
            params = {"status": status, "rank": rank, "now": job.now, "cmid": cmid, "rid": msg.reply_to_id}
            if cmid and msg.reply_to_id:
                both.append(params)
            elif cmid:
                by_cmid.append(params)
            elif msg.reply_to_id:
                by_id.append(params)
        if furthest:
            await conn.execute(self.hot.upsert_delivery, list(furthest.values()))
        # Order does not matter: each update only raises the state (rank < new rank).
        for statement, many in (
            (self.hot.update_delivery_both, both),
            (self.hot.update_delivery_by_cmid, by_cmid),
            (self.hot.update_delivery_by_id, by_id),
        ):
            if many:
                await conn.execute(statement, many)
