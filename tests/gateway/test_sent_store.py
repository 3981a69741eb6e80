"""The gateway's settled-id record (a real SQLite file): what ``begin`` leaves for a restart to find."""

from __future__ import annotations

from pathlib import Path

from beacon.gateway.store import FAILED, SENDING, SENT, SentStore


def test_an_id_being_sent_is_found_sending_after_a_restart(tmp_path: Path) -> None:
    store = SentStore(tmp_path / "sent.db")
    store.begin("m1")
    store.begin("m1")  # a retry of the same send
    store.close()
    reopened = SentStore(tmp_path / "sent.db")
    assert reopened.get("m1") == (SENDING, None)
    reopened.close()


def test_a_failed_id_sent_again_is_marked_sending_so_a_restart_counts_a_possible_duplicate(tmp_path: Path) -> None:
    store = SentStore(tmp_path / "sent.db")
    store.settle("m1", FAILED, code=131047)
    store.begin("m1")  # redriven from bm_dlq: sent again
    store.close()
    reopened = SentStore(tmp_path / "sent.db")
    assert reopened.get("m1") == (SENDING, None)
    reopened.close()


def test_a_sent_id_keeps_its_state_and_channel_id(tmp_path: Path) -> None:
    store = SentStore(tmp_path / "sent.db")
    store.begin("m1")
    store.settle("m1", SENT, "wamid.1")
    store.begin("m1")
    assert store.get("m1") == (SENT, "wamid.1")
    assert store.counts() == {SENT: 1}
    store.close()
