"""Where each reply goes: the ``d`` and ``response`` pubkey of every question the gateway took.

A reply on bm_out carries only the id of the BeaconMessage it answers (``reply_to_id``), while NostrMQ
wants it sent to the question's ``response`` pubkey with ``in_reply_to`` = the question's ``d``. The
gateway records both when it takes a question, in its SQLite file of settled ids (one gateway process
per channel writes it), before the question is produced, so a reply can never find it missing.
Rows older than bm_out's retention are pruned with the settled ids.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from beacon.gateway.store import open_local_db


@dataclass(frozen=True)
class Question:
    """Where the answers to one question go."""

    d: str
    response: str


class QuestionStore:
    """BeaconMessage id of a question -> its ``d`` and ``response`` pubkey."""

    def __init__(self, path: Path) -> None:
        self._db = open_local_db(path)
        self._db.execute("CREATE TABLE IF NOT EXISTS nostr_questions (id TEXT PRIMARY KEY, d TEXT NOT NULL, "
                         "response TEXT NOT NULL, at REAL NOT NULL)")
        self._db.execute("CREATE INDEX IF NOT EXISTS nostr_questions_at ON nostr_questions (at)")

    def record(self, message_id: str, question: Question) -> None:
        self._db.execute("INSERT OR REPLACE INTO nostr_questions (id, d, response, at) VALUES (?, ?, ?, ?)",
                         (message_id, question.d, question.response, time.time()))

    def get(self, message_id: str) -> Question | None:
        row = self._db.execute("SELECT d, response FROM nostr_questions WHERE id = ?", (message_id,)).fetchone()
        return None if row is None else Question(row[0], row[1])

    def prune(self, older_than_seconds: float) -> int:
        cur = self._db.execute("DELETE FROM nostr_questions WHERE at < ?", (time.time() - older_than_seconds,))
        return cur.rowcount

    def close(self) -> None:
        self._db.close()
