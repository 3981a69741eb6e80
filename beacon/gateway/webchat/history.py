"""Each visitor's conversation, kept by the gateway so a reload or a reconnect shows it again.

SQLite in the data dir (like the WhatsApp gateway's settled-id store: one process writes it, an
indexed lookup costs microseconds on the event loop). A message is recorded once per BeaconMessage
id: a visitor's message once the broker acknowledged it, a bot reply once delivered from ``bm_out``.
``seq`` orders the record; a reconnecting page asks for what follows the last ``seq`` it has, so
replies produced while it was away are shown in order, once. The record of delivered reply ids is
also what makes a redelivered ``bm_out`` record a no-op.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

from beacon.gateway.store import open_local_db

#: Most messages one reconnect replays (older ones stay in the store).
REPLAY_LIMIT = 1000


class History:
    """(site, visitor) -> the ordered page frames of their conversation."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = open_local_db(path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, site TEXT NOT NULL, "
            "visitor TEXT NOT NULL, id TEXT NOT NULL UNIQUE, frame BLOB NOT NULL, at REAL NOT NULL)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS messages_visitor ON messages (site, visitor, seq)")

    def add(self, site: str, visitor: str, message_id: str, frame: dict[str, Any]) -> int | None:
        """Record a message; its ``seq``, or None when this id was recorded before."""
        cur = self._db.execute(
            "INSERT OR IGNORE INTO messages (site, visitor, id, frame, at) VALUES (?, ?, ?, ?, ?)",
            (site, visitor, message_id, orjson.dumps(frame), time.time()),
        )
        return cur.lastrowid if cur.rowcount == 1 else None

    def frame(self, message_id: str) -> dict[str, Any] | None:
        """The recorded frame of a message id (with its ``seq``), or None."""
        row = self._db.execute("SELECT seq, frame FROM messages WHERE id = ?", (message_id,)).fetchone()
        return None if row is None else {**orjson.loads(row[1]), "seq": row[0]}

    def after(self, site: str, visitor: str, seq: int) -> list[dict[str, Any]]:
        """The visitor's messages recorded after ``seq``, oldest first, each with its ``seq``."""
        rows = self._db.execute(
            "SELECT seq, frame FROM (SELECT seq, frame FROM messages WHERE site = ? AND visitor = ? AND seq > ? "
            "ORDER BY seq DESC LIMIT ?) ORDER BY seq",
            (site, visitor, seq, REPLAY_LIMIT),
        ).fetchall()
        return [{**orjson.loads(frame), "seq": row_seq} for row_seq, frame in rows]

    def close(self) -> None:
        self._db.close()
