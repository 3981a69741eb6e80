"""Group commit for processed messages: concurrent requests' writes share one transaction.

Each request queues its turn; one task takes whatever is queued (up to a batch) and writes it in one
transaction with a handful of multi-row statements. Under load this turns N transactions into one
(the database's commit cost is paid once per batch); with a single request in flight the batch is
just that request. Duplicates are settled by the processed-id primary key (``ON CONFLICT DO NOTHING
RETURNING``): a request whose id was already stored gets the stored replies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from beacon.api.models import Conversation, User
from beacon.api.store import HotPath, TurnRecord, _message_row, first_conversation_id, utc
from beacon.messages import stable_id

log = logging.getLogger(__name__)

#: Most turns written in one transaction.
MAX_BATCH = 200


@dataclass
class _Pending:
    record: TurnRecord
    now: datetime
    future: asyncio.Future[bytes | None]


class TurnWriter:
    """``await write(record, now)`` returns None when stored, or the stored replies (JSON) when the
    message id was processed before."""

    def __init__(self, engine: AsyncEngine, hot: HotPath, lock: AbstractAsyncContextManager[Any]) -> None:
        self.engine = engine
        self.hot = hot
        self.lock = lock
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="beacon-api-turn-writer")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def write(self, record: TurnRecord, now: datetime) -> bytes | None:
        if self._task is None or self._task.done():
            raise RuntimeError("TurnWriter is not running (start() not called or it stopped)")
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(record, now, future))
        return await future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._write(batch)
            except Exception as exc:  # settled per request below; logged by the request's error handler
                if len(batch) == 1:
                    _fail(batch, exc)
                    continue
                # One bad turn must not fail its neighbours: write them one by one.
                for pending in batch:
                    try:
                        await self._write([pending])
                    except Exception as single:  # this request answers 5xx/4xx with the error
                        _fail([pending], single)

    async def _write(self, batch: list[_Pending]) -> None:
        firsts: dict[str, _Pending] = {}
        repeats: list[_Pending] = []
        for pending in batch:
            mid = pending.record.inbound.id
            if mid in firsts:
                repeats.append(pending)  # the same id twice in one batch: concurrent duplicates
            else:
                firsts[mid] = pending
        async with self.lock, self.engine.begin() as conn:
            inserted = await self._insert_processed(conn, firsts.values())
            fresh = [p for mid, p in firsts.items() if mid in inserted]
            if fresh:
                await self._store_turns(conn, fresh)
        for pending in fresh:
            _settle(pending, None)
        stale = [p for mid, p in firsts.items() if mid not in inserted]
        stored = await self._stored_replies({p.record.inbound.id for p in stale}) if stale else {}
        for pending in stale + repeats:
            mid = pending.record.inbound.id
            replies = firsts[mid].record.replies_json if mid in inserted else stored.get(mid)
            if replies is None:
                _fail([pending], RuntimeError(f"message {mid} was neither stored nor found stored"))
            else:
                _settle(pending, replies)

    async def _insert_processed(self, conn: AsyncConnection, pendings: Iterable[_Pending]) -> set[str]:
        rows = [
            {"message_id": p.record.inbound.id, "processed_at": p.now, "replies": p.record.replies_json.decode()}
            for p in pendings
        ]
        result = await conn.execute(self.hot.insert_processed_once, rows)
        return {row[0] for row in result}

    async def _store_turns(self, conn: AsyncConnection, fresh: list[_Pending]) -> None:
        users: dict[str, dict[str, Any]] = {}
        for p in fresh:
            msg = p.record.inbound
            users[msg.user_key] = {
                "user_key": msg.user_key,
                "channel": msg.channel,
                "account": msg.account,
                "user_id": msg.user_id,
                "profile_name": msg.profile_name or (users.get(msg.user_key) or {}).get("profile_name"),
                "first_seen": p.now,
                "last_seen": p.now,
                "last_inbound_at": p.now,
                "opted_out": False,
                "conversation_id": first_conversation_id(msg.user_key),
            }
        result = await conn.execute(self.hot.upsert_users, list(users.values()))
        conversations: dict[str, str] = {}
        new_conversations = []
        for row in result:
            conversations[row.user_key] = row.conversation_id
            if utc(row.first_seen) == users[row.user_key]["first_seen"]:
                new_conversations.append(
                    {"id": row.conversation_id, "user_key": row.user_key, "started_at": row.first_seen}
                )
        if new_conversations:
            await conn.execute(self.hot.insert_conversation, new_conversations)
        rows = []
        for p in fresh:
            msg, conversation_id = p.record.inbound, conversations[p.record.inbound.user_key]
            rows.append(_message_row(msg, conversation_id, 0, p.now))
            rows += [_message_row(r, conversation_id, i + 1, p.now) for i, r in enumerate(p.record.replies)]
        await conn.execute(self.hot.insert_messages, rows)
        for p in fresh:
            if p.record.reset_conversation:
                msg, old = p.record.inbound, conversations[p.record.inbound.user_key]
                new_id = stable_id("conversation", msg.user_key, msg.id)
                await conn.execute(update(Conversation).where(Conversation.id == old).values(ended_at=p.now))
                await conn.execute(
                    self.hot.insert_conversation, {"id": new_id, "user_key": msg.user_key, "started_at": p.now}
                )
                await conn.execute(update(User).where(User.user_key == msg.user_key).values(conversation_id=new_id))

    async def _stored_replies(self, ids: set[str]) -> dict[str, bytes]:
        async with self.engine.connect() as conn:
            result = await conn.execute(self.hot.select_processed_many, {"mids": sorted(ids)})
            return {row.message_id: row.replies.encode() for row in result}


def _settle(pending: _Pending, value: bytes | None) -> None:
    if not pending.future.done():
        pending.future.set_result(value)


def _fail(batch: list[_Pending], exc: BaseException) -> None:
    for pending in batch:
        if not pending.future.done():
            pending.future.set_exception(exc)


class ProcessedLookup:
    """``await find(message_id)``: the stored replies of a processed message, or None. Lookups queued
    while one query runs are answered together by the next (one ``IN (...)`` query per batch)."""

    def __init__(self, engine: AsyncEngine, hot: HotPath) -> None:
        self.engine = engine
        self.hot = hot
        self._queue: asyncio.Queue[tuple[str, asyncio.Future[bytes | None]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="beacon-api-processed-lookup")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def find(self, message_id: str) -> bytes | None:
        if self._task is None or self._task.done():
            raise RuntimeError("ProcessedLookup is not running (start() not called or it stopped)")
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((message_id, future))
        return await future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                async with self.engine.connect() as conn:
                    result = await conn.execute(self.hot.select_processed_many, {"mids": sorted({m for m, _ in batch})})
                    found = {row.message_id: row.replies.encode() for row in result}
            except Exception as exc:  # each waiting request answers 503 with it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for mid, future in batch:
                if not future.done():
                    future.set_result(found.get(mid))
