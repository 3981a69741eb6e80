"""The durable record of settled outbound ids, so a reply delivered twice from ``bm_out`` is sent once.

SQLite in the data dir: it survives restarts and kills (WAL; each settle is its own transaction,
in the OS before the offset can be committed), needs no extra service, answers an indexed lookup
in microseconds from the event loop, and there is one gateway process per channel (each with its own
file), so nothing else writes it. A compacted Kafka topic would need a full read at start and a second produce per send.
Before each request the id is marked ``sending``; finding that mark after a restart means the
channel may have accepted the first attempt (counted as a possible duplicate).
Rows older than the bm_out retention are pruned: no redelivery can be older.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

SENDING = "sending"
SENT = "sent"
FAILED = "failed"


def open_local_db(path: Path) -> sqlite3.Connection:
    """A gateway's own SQLite file (created with its folder): autocommit, WAL, usable from the loop's
    threads. Each statement is its own transaction, in the OS before the call returns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


class SentStore:
    """id -> (state, the channel's message id) for every outbound message the gateway tried or settled.

    (The column keeps its first name, ``wamid``, so files written before other channels existed still open.)
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = open_local_db(path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS settled (id TEXT PRIMARY KEY, state TEXT NOT NULL, wamid TEXT, "
            "code INTEGER, at REAL NOT NULL)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS settled_at ON settled (at)")

    def get(self, message_id: str) -> tuple[str, str | None] | None:
        row = self._db.execute("SELECT state, wamid FROM settled WHERE id = ?", (message_id,)).fetchone()
        return None if row is None else (row[0], row[1])

    def begin(self, message_id: str) -> None:
        """Mark ``message_id`` as being sent (before the request leaves). A ``failed`` id sent again (redriven
        from bm_dlq) is marked too, so a restart during that send counts it as a possible duplicate; a ``sent``
        one keeps its state (never sent again, whatever asks)."""
        self._db.execute("INSERT INTO settled (id, state, at) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                         "state = excluded.state, wamid = NULL, code = NULL, at = excluded.at "
                         "WHERE settled.state = ?", (message_id, SENDING, time.time(), FAILED))

    def settle(self, message_id: str, state: str, channel_id: str | None = None, code: int | None = None) -> None:
        self._db.execute("INSERT OR REPLACE INTO settled (id, state, wamid, code, at) VALUES (?, ?, ?, ?, ?)",
                         (message_id, state, channel_id, code, time.time()))

    def prune(self, older_than_seconds: float) -> int:
        cur = self._db.execute("DELETE FROM settled WHERE at < ?", (time.time() - older_than_seconds,))
        return cur.rowcount

    def counts(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT state, count(*) FROM settled GROUP BY state").fetchall())

    def close(self) -> None:
        self._db.close()
