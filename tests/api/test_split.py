"""Long texts split at sensible boundaries, within the channel's limit, and long replies as ordered
parts with stable ids."""

from __future__ import annotations

from beacon.api.pipeline import split_long_text
from beacon.api.split import split_text, units
from beacon.messages import stable_id
from tests.api.conftest import ApiServer, inbound, process


def test_a_text_that_fits_is_one_part() -> None:
    assert split_text("short", 10) == ["short"]
    assert split_text("", 10) == [""]


def test_paragraphs_then_sentences_then_words() -> None:
    para = "First paragraph is here.\n\nSecond one follows it."
    assert split_text(para, 30) == ["First paragraph is here.", "Second one follows it."]
    sentences = "One sentence ends here. Another sentence ends there. And a third."
    assert split_text(sentences, 55) == ["One sentence ends here. Another sentence ends there.", "And a third."]
    words = "alpha beta gamma delta epsilon zeta"
    parts = split_text(words, 12)
    assert all(units(p) <= 12 for p in parts) and " ".join(parts) == words


def test_no_cut_inside_a_surrogate_pair_or_an_emoji_sequence() -> None:
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # one grapheme: man ZWJ woman ZWJ girl
    text = family * 10
    parts = split_text(text, 9)  # each family is 8 UTF-16 units: one per part
    assert parts == [family] * 10
    flags = "\U0001f1ec\U0001f1e7" * 5  # five flags, 4 units each
    assert split_text(flags, 6) == ["\U0001f1ec\U0001f1e7"] * 5
    accents = "e\u0301" * 10  # e + combining acute
    assert all(not p.startswith("\u0301") for p in split_text(accents, 3))


def test_every_part_within_the_limit_and_nothing_lost() -> None:
    text = ("Lorem ipsum dolor sit amet. " * 40 + "\n\n") * 20 + "\U0001f600" * 3000
    parts = split_text(text, 4096)
    assert len(parts) > 1 and all(units(p) <= 4096 for p in parts)
    assert "".join(parts).replace(" ", "").replace("\n", "") == text.replace(" ", "").replace("\n", "")


def test_a_long_reply_becomes_parts_with_ids_from_the_reply_id() -> None:
    reply = inbound("x").reply_text("word " * 2000)
    parts = split_long_text(reply)
    assert len(parts) == 3
    assert [p.id for p in parts] == [stable_id("reply-part", reply.id, str(n)) for n in (1, 2, 3)]
    assert [p.metadata["part"] for p in parts] == ["1/3", "2/3", "3/3"]
    assert all(p.metadata["parts_of"] == reply.id and p.reply_to_id == reply.reply_to_id for p in parts)
    short = inbound("x").reply_text("short")
    assert split_long_text(short) == [short]


async def test_the_echo_of_a_long_message_is_sent_in_parts_with_stable_ids(api: ApiServer) -> None:
    msg = inbound("A long message. " * 300)  # 4,800 characters: the echo is over WhatsApp's 4,096
    async with api.client() as client:
        first = (await process(client, msg)).json()
        again = (await process(client, msg)).json()
    texts = [r["text"] for r in first["replies"]]
    assert len(texts) == 2 and all(units(t) <= 4096 for t in texts)
    assert " ".join(texts) == f"You said: {msg.text}"
    assert again["duplicate"] is True and [r["id"] for r in again["replies"]] == [r["id"] for r in first["replies"]]
    reply_id = msg.reply_text("", index=0).id
    assert [r["id"] for r in first["replies"]] == [stable_id("reply-part", reply_id, n) for n in ("1", "2")]
