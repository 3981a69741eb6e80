"""The outbox a turn writes side effects to: ``turn.outbox.add("order_placed", {...})``.

Events are stored in the transaction that stores the turn's replies and state, so they exist
exactly when the turn counts (a rerun of the same message id stores nothing again), and are
delivered after the commit by ``beacon.bot.delivery``: at least once, each with a stable id to
use as an idempotency key downstream."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from beacon.messages import stable_id


@dataclass(frozen=True)
class OutboxItem:
    """One side effect: ``kind`` and JSON ``data``; ``id`` is stable per (message id, position), so a
    receiver that remembers ids applies each event once."""

    id: str
    kind: str
    data: dict[str, Any]
    message_id: str
    user_key: str
    created_at: datetime | None = None
    attempts: int = 0
    #: The trace of the message whose turn recorded it (``beacon.trace``), when known: the delivery carries it.
    trace_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The body POSTed to BEACON_OUTBOX_URL."""
        return {
            "id": self.id,
            "kind": self.kind,
            "data": self.data,
            "message_id": self.message_id,
            "user_key": self.user_key,
            "attempt": self.attempts + 1,
        }


@dataclass
class Outbox:
    """The side effects one turn records; saved only if the turn's replies are (see module doc)."""

    message_id: str = ""
    user_key: str = ""
    items: list[OutboxItem] = field(default_factory=list)

    def add(self, kind: str, data: dict[str, Any] | None = None) -> OutboxItem:
        """Record a side effect to deliver after the turn commits; returns it (its id is the
        idempotency key to hand on). ``data`` must be JSON-serialisable."""
        payload = data or {}
        orjson.dumps(payload)  # refuse what cannot be stored now, in the handler, not at commit time
        item = OutboxItem(
            id=stable_id("outbox", self.message_id, str(len(self.items))),
            kind=kind,
            data=payload,
            message_id=self.message_id,
            user_key=self.user_key,
        )
        self.items.append(item)
        return item
