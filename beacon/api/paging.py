"""Keyset paging of a user's messages by a unique cursor: ``(created_at, seq, id)``.

Messages of one batched webhook share their ``created_at``, so a cursor of the time alone would skip
(or repeat) the rows sharing it; the message id settles every tie. The cursor is opaque to callers:
URL-safe base64 of ``[created_at, seq, id]``. A plain ISO 8601 time is accepted too ("older than
this"), converted to UTC whatever its offset.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from sqlalchemy import ColumnElement, and_, or_

from beacon.api.models import Message
from beacon.api.store import utc
from beacon.api.wire import FIELD_LIMITS, text_problems


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the next page holds the messages strictly older than this one."""

    created_at: datetime
    seq: int
    id: str

    def encode(self) -> str:
        raw = orjson.dumps([self.created_at.isoformat(), self.seq, self.id])
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def older(self) -> ColumnElement[bool]:
        """The rows after this cursor in the page order (created_at, seq, id, all descending)."""
        return or_(
            Message.created_at < self.created_at,
            and_(
                Message.created_at == self.created_at,
                or_(Message.seq < self.seq, and_(Message.seq == self.seq, Message.id < self.id)),
            ),
        )


def cursor_of(row: Message) -> Cursor:
    return Cursor(utc(row.created_at), row.seq, row.id)


def parse_before(value: str) -> Cursor | datetime:
    """A cursor from ``next_before``, or a time; ValueError says why neither."""
    try:
        return _as_utc(datetime.fromisoformat(value))
    except (ValueError, OverflowError):
        pass
    try:
        created_at, seq, message_id = orjson.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        if not (isinstance(created_at, str) and isinstance(seq, int) and isinstance(message_id, str)):
            raise ValueError("wrong field types")
        if not -(2**31) <= seq < 2**31 or len(message_id) > FIELD_LIMITS["id"] or text_problems(message_id):
            raise ValueError("values out of range")
        return Cursor(_as_utc(datetime.fromisoformat(created_at)), seq, message_id)
    except (ValueError, TypeError, OverflowError, binascii.Error) as exc:
        raise ValueError(
            f"`before` is neither a cursor from `next_before` nor an ISO 8601 time ({type(exc).__name__})"
        ) from exc


def _as_utc(value: datetime) -> datetime:
    """A time in UTC: naive means UTC; an offset is applied (SQLite compares the stored UTC text)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
