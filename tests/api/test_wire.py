"""The API's check of what it accepts: its quick answer for the usual message agrees with the thorough walk."""

from __future__ import annotations

import pytest

from beacon.api import wire
from beacon.codec import to_record
from beacon.messages import INBOUND, STATUS, BeaconMessage, Media, StatusError

GOOD = BeaconMessage(
    id="wamid-1", user_key="whatsapp:106540352242922:447700900123", channel="whatsapp", account="106540352242922",
    user_id="447700900123", direction=INBOUND, kind="text", text="héllo ✓", profile_name="Zoë",
    channel_message_id="wamid.HBgLNDQ3NzAwOTAwMTIzFQIAEhgU", metadata={"k": "v"},
)
STATUS_MSG = GOOD.model_copy(update={"id": "st-1", "direction": STATUS, "kind": "status", "text": None,
                                     "status": "failed", "error": StatusError(code=131047, title="re-engagement")})

BAD = {
    "nul in text": GOOD.model_copy(update={"text": "a\x00b"}),
    "lone surrogate": GOOD.model_copy(update={"text": "a\ud800b"}),
    "nul in a metadata key": GOOD.model_copy(update={"metadata": {"k\x00": "v"}}),
    "surrogate in a metadata value": GOOD.model_copy(update={"metadata": {"k": "\udfff"}}),
    "surrogate in a metadata key": GOOD.model_copy(update={"metadata": {"\ud800k": "v"}}),
    "nul in a media caption": GOOD.model_copy(update={"kind": "image", "media": Media(id="m1", caption="a\x00")}),
    "user id too long": GOOD.model_copy(update={"user_id": "9" * 129}),
    "error code past 32 bits": STATUS_MSG.model_copy(update={"error": StatusError(code=2**40, title="x")}),
}


@pytest.mark.parametrize("msg", [GOOD, STATUS_MSG], ids=["inbound", "status"])
def test_a_carriable_message_is_answered_by_the_quick_check(msg: BeaconMessage) -> None:
    assert wire._carriable(msg, to_record(msg))
    assert wire.message_problems(msg) == [] == wire.described_problems(msg, to_record(msg))


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_problem_is_named_as_the_thorough_walk_names_it(name: str) -> None:
    msg = BAD[name]
    assert not wire._carriable(msg, to_record(msg))
    problems = wire.message_problems(msg)
    assert problems and problems == wire.described_problems(msg, to_record(msg))
