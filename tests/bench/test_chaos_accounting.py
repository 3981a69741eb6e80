"""The chaos bench's accounting counts what it claims to: a harness that always said 0 would prove nothing."""

from __future__ import annotations

from beacon.bench.chaos.load import Ledger, Offer, Reply
from beacon.bench.chaos.run import Row, account, table


def ledger_of(offers: dict[str, Offer], replies: dict[str, list[Reply]]) -> Ledger:
    ledger = Ledger()
    ledger.offers.update(offers)
    ledger.replies.update(replies)
    return ledger


def test_each_message_counts_in_the_row_it_was_written_in() -> None:
    rows = [Row("none", 0.0, started_at=100.0), Row("api-down", 10.0, started_at=200.0)]
    offers = {
        "u1:0": Offer("u1", 0, 150.0, acked_at=150.1),  # answered once
        "u1:1": Offer("u1", 1, 210.0, acked_at=210.1),  # acknowledged, never answered: lost
        "u2:0": Offer("u2", 0, 220.0, acked_at=220.1),  # answered twice: one duplicate
        "u3:0": Offer("u3", 0, 230.0),  # never acknowledged: offered, not lost
    }
    replies = {"u1:0": [Reply(1, 150.2)], "u2:0": [Reply(2, 220.2), Reply(3, 221.0)]}
    account(ledger_of(offers, replies), rows)
    none, down = rows
    assert (none.offered, none.acknowledged, none.answered, none.lost, none.duplicates) == (1, 1, 1, 0, 0)
    assert (down.offered, down.acknowledged, down.answered, down.lost, down.duplicates) == (3, 2, 1, 1, 1)
    assert none.clean and not down.clean


def test_a_reply_overtaking_an_earlier_one_of_the_same_user_is_an_order_violation() -> None:
    rows = [Row("worker-sigkill", 5.0, started_at=0.0)]
    offers = {f"u1:{n}": Offer("u1", n, 10.0 + n, acked_at=10.5 + n) for n in range(3)}
    # The fake recorded the replies to messages 0, 2, 1 in that order (seq), whatever their timestamps.
    replies = {"u1:0": [Reply(1, 11.0)], "u1:2": [Reply(2, 12.0)], "u1:1": [Reply(3, 12.5)]}
    account(ledger_of(offers, replies), rows)
    assert rows[0].order_violations == 1
    assert "| worker-sigkill | 5.0 | 3 | 3 | 0 | 0 | 1 | 0 | not drained |" in table(rows)


def test_duplicates_within_what_the_gateway_reports_it_may_have_repeated_are_clean() -> None:
    row = Row("gateway-sigkill", 3.0, offered=10, acknowledged=10, answered=10, duplicates=2, possible_duplicates=3)
    assert row.clean
    row.duplicates = 4
    assert not row.clean
