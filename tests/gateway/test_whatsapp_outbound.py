"""bm_out through the gateway's sender to the fake Cloud API over real HTTP, with the real broker
and registry: order, every kind, no double sends, error classes, commits after settle."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from beacon.codec import MessageCodec
from beacon.config import Settings
from beacon.dlq import read_dlq_headers
from beacon.fakes.whatsapp.server import FakeCloudApi, running
from beacon.gateway.outbound import Outbound
from beacon.gateway.store import SentStore
from beacon.gateway.whatsapp.channel import WhatsAppChannel
from beacon.kafka import AsyncProducer
from beacon.messages import BeaconMessage, Media, Reaction, stable_id
from beacon.routing import with_channel
from tests.gateway.conftest import aread_topic, await_committed, end_offsets

PNID = "106540352242922"
TOKEN = "access-token"


def reply(user: str, text: str, **kw: Any) -> BeaconMessage:
    inbound = BeaconMessage.inbound_text(channel="whatsapp", account=PNID, user_id=user, text="hi",
                                         channel_message_id=f"wamid.{user}.{text}")
    return inbound.reply_text(text, **kw)


class Harness:
    def __init__(self, settings: Settings, fake: FakeCloudApi, fake_url: str, tmp: Path) -> None:
        self.settings = settings
        self.fake = fake
        self.http = httpx.AsyncClient(base_url=fake_url, timeout=30)
        self.codec = MessageCodec(settings)
        self.codec.prepare([settings.topics.inbound, settings.topics.outbound])
        self.producer = AsyncProducer(settings)
        self.tmp = tmp
        self.outbounds: list[tuple[Outbound, asyncio.Task[None], SentStore, WhatsAppChannel]] = []

    def start(self, store_name: str = "sent.db") -> Outbound:
        store = SentStore(self.tmp / store_name)
        client = WhatsAppChannel(self.settings)
        out = Outbound(self.settings, self.producer, self.codec, store, client)
        self.outbounds.append((out, asyncio.create_task(out.run()), store, client))
        return out

    async def stop_all(self) -> None:
        for out, task, store, client in self.outbounds:
            out.stop()
            await task
            await client.close()
            store.close()
        self.outbounds.clear()

    async def produce(self, msgs: list[BeaconMessage]) -> None:
        topic = self.settings.topics.outbound
        await asyncio.gather(*[self.producer.produce(topic, self.codec.encode(m, topic), key=m.user_key.encode())
                               for m in msgs])

    async def sent(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Every send, once there are ``count`` and the sender settled (committed) every record of bm_out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.fake.state.sent) < count and loop.time() < deadline:
            await self.http.get("/_fake/sent", params={"after": len(self.fake.state.sent), "wait": 1})
        return await self.settled(timeout)

    async def settled(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Every send, once the sender committed every record of bm_out: nothing more can be sent."""
        await await_committed(self.settings, self.settings.whatsapp.gateway_group, self.settings.topics.outbound,
                              timeout)
        return list(self.fake.state.sent)

    async def topic(self, topic: str) -> list[BeaconMessage]:
        """Every record of ``topic`` (call once settled), decoded."""
        return [self.codec.decode(r.value(), topic=topic) for r in await aread_topic(self.settings, topic, 0)]

    async def config(self, **kw: Any) -> None:
        await self.http.post("/_fake/config", json=kw)

    async def fault(self, **kw: Any) -> None:
        await self.http.post("/_fake/faults", json=kw)


@pytest.fixture
async def harness(registry_settings: Settings, new_topic: Callable[..., str], unique: Callable[[str], str],
                  tmp_path: Path) -> AsyncIterator[Harness]:
    fake = FakeCloudApi(access_token=TOKEN, app_secret="s", gateway_url="http://127.0.0.1:9")
    async with running(fake) as url:
        settings = registry_settings.replace(
            topic_in=new_topic(4, "bm_in"),
            topic_out=new_topic(4, "bm_out"),
            topic_dlq=new_topic(1, "dlq"),
            whatsapp_gateway_group=unique("gw"),
            whatsapp_graph_url=url,
            whatsapp_access_token=SecretStr(TOKEN),
            whatsapp_rate_limit=0.0,
            whatsapp_user_rate=0.0,
            whatsapp_retry_base_delay=0.02,
            whatsapp_retry_max_delay=0.2,
            whatsapp_user_backoff_base=0.02,
            whatsapp_auth_pause=0.2,
            gateway_max_in_flight=32,
        )
        h = Harness(settings, fake, url, tmp_path)
        try:
            yield h
        finally:
            await h.stop_all()
            await h.http.aclose()
            h.producer.close()


def _ids(sent: list[dict[str, Any]]) -> list[str]:
    return [s["body"].get("biz_opaque_callback_data") for s in sent]


async def test_order_per_user_with_many_users_in_flight(harness: Harness) -> None:
    users = [f"4477009{u:05d}" for u in range(40)]
    msgs = [reply(u, f"{u} #{i}") for i in range(8) for u in users]
    await harness.config(latency=0.005)
    harness.start()
    await harness.produce(msgs)
    sent = await harness.sent(len(msgs))
    assert sorted(_ids(sent)) == sorted(m.id for m in msgs)
    for u in users:
        texts = [s["body"]["text"]["body"] for s in sent if s["to"] == f"+{u}"]
        assert texts == [f"{u} #{i}" for i in range(8)]


async def test_every_outbound_kind_becomes_the_right_request(harness: Harness) -> None:
    base = reply("447700900001", "x")
    common = {"user_key": base.user_key, "channel": "whatsapp", "account": PNID, "user_id": "447700900001",
              "direction": "outbound"}
    buttons = {"type": "button", "body": {"text": "Pick"}, "action": {"buttons": [
        {"type": "reply", "reply": {"id": "a", "title": "A"}}, {"type": "reply", "reply": {"id": "b", "title": "B"}}]}}
    template = {"name": "hello_world", "language": {"code": "en_US"}}
    msgs = [
        reply("447700900001", "quoted", quoted_channel_message_id="wamid.Q"),
        BeaconMessage(id=stable_id("k", "1"), kind="image", media=Media(id="123", caption="pic"), **common),
        BeaconMessage(id=stable_id("k", "2"), kind="document", media=Media(link="https://x/y.pdf", filename="y.pdf"),
                      **common),
        BeaconMessage(id=stable_id("k", "3"), kind="interactive", payload=json.dumps(buttons), **common),
        BeaconMessage(id=stable_id("k", "4"), kind="template", payload=json.dumps(template), **common),
        BeaconMessage(id=stable_id("k", "5"), kind="reaction", reaction=Reaction(emoji="👍", target_id="wamid.R"),
                      **common),
        BeaconMessage(id=stable_id("k", "6"), kind="read_receipt", channel_message_id="wamid.R",
                      metadata={"typing": "true"}, **common),
    ]
    harness.start()
    await harness.produce(msgs)
    bodies = [s["body"] for s in await harness.sent(len(msgs))]
    assert len(bodies) == len(msgs)
    assert bodies[0]["text"]["body"] == "quoted" and bodies[0]["context"] == {"message_id": "wamid.Q"}
    assert bodies[0]["to"] == "+447700900001" and bodies[0]["messaging_product"] == "whatsapp"
    assert bodies[1]["image"] == {"id": "123", "caption": "pic"}
    assert bodies[2]["document"] == {"link": "https://x/y.pdf", "filename": "y.pdf"}
    assert bodies[3]["interactive"] == buttons and bodies[4]["template"] == template
    assert bodies[5]["reaction"] == {"message_id": "wamid.R", "emoji": "👍"}
    assert bodies[6] == {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.R",
                         "typing_indicator": {"type": "text"}}


async def test_a_reply_delivered_twice_is_sent_once_even_across_a_restart(harness: Harness) -> None:
    msg = reply("447700900002", "once")
    harness.start()
    await harness.produce([msg, msg])
    assert _ids(await harness.sent(1)) == [msg.id]
    await harness.stop_all()
    # a new consumer group re-reads everything; the durable store says it was sent
    group = harness.settings.whatsapp.gateway_group + "-b"
    harness.settings = harness.settings.replace(whatsapp_gateway_group=group)
    harness.start()
    await harness.produce([msg])
    assert _ids(await harness.settled()) == [msg.id]


async def test_offsets_are_committed_after_settling(harness: Harness) -> None:
    first = [reply("447700900003", f"m{i}") for i in range(5)]
    harness.start()
    await harness.produce(first)
    assert len(await harness.sent(5)) == 5
    await harness.stop_all()
    harness.start("another-store.db")  # same group, empty store: only new records may be sent
    later = reply("447700900003", "later")
    await harness.produce([later])
    assert _ids(await harness.sent(6)) == [m.id for m in [*first, later]]


async def test_131056_backs_off_that_user_only_and_keeps_order(harness: Harness) -> None:
    await harness.fault(code=131056, to="447700900010", count=3)
    slow = [reply("447700900010", f"s{i}") for i in range(3)]
    fast = [reply("447700900011", f"f{i}") for i in range(3)]
    harness.start()
    await harness.produce(slow + fast)
    sent = await harness.sent(6)
    assert [s["body"]["text"]["body"] for s in sent if s["to"] == "+447700900010"] == ["s0", "s1", "s2"]
    assert [s["body"]["text"]["body"] for s in sent if s["to"] == "+447700900011"] == ["f0", "f1", "f2"]
    assert harness.fake.state.rejected["131056"] == 3


async def test_throughput_errors_slow_the_number_and_nothing_is_lost(harness: Harness) -> None:
    await harness.config(rate_limit=20)
    msgs = [reply(f"4477009002{u:02d}", f"t{i}") for u in range(10) for i in range(6)]
    harness.start()
    await harness.produce(msgs)
    sent = await harness.sent(len(msgs), timeout=60)
    assert sorted(_ids(sent)) == sorted(m.id for m in msgs)
    assert harness.fake.state.rejected["130429"] > 0


async def test_permanent_error_dead_letters_and_reports_a_failed_status(harness: Harness) -> None:
    await harness.fault(code=131047, to="447700900020", count=1)
    doomed, after = reply("447700900020", "too late"), reply("447700900020", "next")
    harness.start()
    await harness.produce([doomed, after])
    assert _ids(await harness.sent(1)) == [after.id]
    (dlq,) = await aread_topic(harness.settings, harness.settings.topics.dlq, 1)
    info = read_dlq_headers(dlq.headers())
    assert info is not None and info.origin == "gateway-whatsapp" and "131047" in info.error_text
    assert harness.codec.decode(dlq.value(), topic=harness.settings.topics.outbound).id == doomed.id
    (status_rec,) = await aread_topic(harness.settings, harness.settings.topics.inbound, 1)
    status = harness.codec.decode(status_rec.value(), topic=harness.settings.topics.inbound)
    assert status.direction == "status" and status.status == "failed" and status.reply_to_id == doomed.id
    assert status.error is not None and status.error.code == 131047 and status_rec.key() == doomed.user_key.encode()


async def test_undecodable_records_are_dead_lettered(harness: Harness) -> None:
    harness.start()
    await harness.producer.produce(harness.settings.topics.outbound, b"\x00garbage", key=b"whatsapp:1:2")
    ok = reply("447700900030", "fine")
    await harness.produce([ok])
    assert _ids(await harness.sent(1)) == [ok.id]
    (dlq,) = await aread_topic(harness.settings, harness.settings.topics.dlq, 1)
    info = read_dlq_headers(dlq.headers())
    assert dlq.value() == b"\x00garbage" and info is not None and info.error_class == "BadMessageError"


async def test_other_channels_records_are_skipped_undecoded_and_committed_past(harness: Harness) -> None:
    topic = harness.settings.topics.outbound
    telegram = BeaconMessage.inbound_text(channel="telegram", account="1", user_id="2", text="hi",
                                          channel_message_id="tg1").reply_text("to telegram")
    mine = [reply("447700900031", f"w{i}") for i in range(3)]
    harness.start()
    await harness.produce(mine[:1])
    # Named another channel's by its header, the gateway never decodes it (this value would be dead-lettered).
    await harness.producer.produce(topic, b"\x00not avro", key=b"telegram:1:2", headers=with_channel(telegram))
    await harness.producer.produce(topic, harness.codec.encode(telegram, topic), key=telegram.user_key.encode())
    await harness.produce(mine[1:])
    assert _ids(await harness.sent(3)) == [m.id for m in mine]  # committed past every record
    assert await aread_topic(harness.settings, harness.settings.topics.dlq, 0) == []


async def test_expired_token_pauses_the_number_without_dead_lettering(harness: Harness) -> None:
    await harness.config(access_token="rotated")
    msgs = [reply("447700900040", f"p{i}") for i in range(3)]
    harness.start()
    await harness.produce(msgs)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while harness.fake.state.rejected["190"] < 2 and loop.time() < deadline:
        await asyncio.sleep(0.05)
    assert harness.fake.state.rejected["190"] >= 2 and harness.fake.state.sent == []
    await harness.config(access_token=TOKEN)
    sent = await harness.sent(3)
    assert _ids(sent) == [m.id for m in msgs]
    assert end_offsets(harness.settings, harness.settings.topics.dlq) == {0: 0}


async def test_a_message_failing_on_its_own_while_others_succeed_is_given_up_after_the_budget(
    harness: Harness,
) -> None:
    await harness.fault(code=131016, to="447700900050", count=2)
    await harness.fault(code=131000, to="447700900051")
    retried, given_up = reply("447700900050", "eventually"), reply("447700900051", "never")
    harness.start()
    await harness.produce([retried, given_up])
    assert _ids(await harness.sent(1)) == [retried.id]
    (dlq,) = await aread_topic(harness.settings, harness.settings.topics.dlq, 1)
    info = read_dlq_headers(dlq.headers())
    # only failures after another send to the number succeeded count: before that it may be an outage
    assert info is not None and info.attempts >= harness.settings.whatsapp.retry_max_attempts
    assert harness.fake.state.rejected["131016"] == 2


async def test_an_unexpected_error_is_retried_a_few_times_then_given_up_and_the_user_moves_on(
    harness: Harness,
) -> None:
    base = reply("447700900060", "x")
    broken = BeaconMessage(id=stable_id("k", "broken"), user_key=base.user_key, channel="whatsapp", account=PNID,
                           user_id="447700900060", direction="outbound", kind="contacts", payload="{not json")
    after = reply("447700900060", "after")
    harness.start()
    await harness.produce([broken, after])
    assert _ids(await harness.sent(1)) == [after.id]
    (dlq,) = await aread_topic(harness.settings, harness.settings.topics.dlq, 1)
    info = read_dlq_headers(dlq.headers())
    assert info is not None and info.attempts == harness.settings.gateway.max_attempts
    assert info.error_class == "JSONDecodeError"
    (status,) = await harness.topic(harness.settings.topics.inbound)
    assert status.status == "failed" and status.reply_to_id == broken.id


async def test_records_the_broker_refuses_as_too_large_are_settled_not_retried_for_ever(harness: Harness) -> None:
    user = "447700900070"
    huge = reply(user, "h" * 1_010_000)  # bigger than the gateway's producer takes: its dead letter cannot be kept
    noisy, after = reply(user, "noisy"), reply(user, "after")
    await harness.fault(code=131047, to=user, count=1, details="d" * 1_100_000)  # a failed status too large
    big = AsyncProducer(harness.settings, **{"message.max.bytes": 2_000_000})
    try:
        topic = harness.settings.topics.outbound
        await big.produce(topic, harness.codec.encode(huge, topic), key=huge.user_key.encode())
    finally:
        big.close()
    harness.start()
    await harness.produce([noisy, after])
    assert _ids(await harness.sent(1)) == [after.id]
    letters = await aread_topic(harness.settings, harness.settings.topics.dlq, 2)
    kept = read_dlq_headers(letters[0].headers())
    assert letters[0].value() is None and kept is not None and "too large" in kept.error_text
    assert harness.codec.decode(letters[1].value(), topic=harness.settings.topics.outbound).id == noisy.id
    statuses = await harness.topic(harness.settings.topics.inbound)
    assert [(s.status, s.reply_to_id) for s in statuses] == [("failed", huge.id), ("failed", noisy.id)]
    assert statuses[1].error is not None and len(statuses[1].error.details or "") <= 1000


async def test_a_redriven_dead_letter_is_sent_and_a_sent_reply_never_twice(harness: Harness) -> None:
    from beacon.ops.deadletters import iter_dead_letters, redrive

    user = "447700900080"
    await harness.fault(code=131047, to=user, count=1)
    doomed = reply(user, "doomed")
    harness.start()
    await harness.produce([doomed])
    await harness.settled()
    letters = await asyncio.to_thread(lambda: list(iter_dead_letters(harness.settings)))
    assert len(letters) == 1 and harness.fake.state.sent == []
    for round_ in range(2):  # the first redrive sends it; the second finds it SENT
        assert (await asyncio.to_thread(redrive, harness.settings, letters))[0] == 1
        marker = reply(user, f"marker {round_}")
        await harness.produce([marker])  # same user, after the redriven record: sent once it was handled
        await harness.sent(round_ + 2)
    assert [s["body"]["text"]["body"] for s in await harness.settled()] == ["doomed", "marker 0", "marker 1"]


async def test_an_outage_of_the_number_is_waited_out_probing_one_send_at_a_time(harness: Harness) -> None:
    harness.settings = harness.settings.replace(whatsapp_send_timeout=0.5)
    users = [f"4477009009{u:02d}" for u in range(6)]
    first = [reply(u, "before") for u in users]
    harness.start()
    await harness.produce(first)
    await harness.sent(len(first))
    during = [reply(u, f"during {i}") for i in range(3) for u in users]
    elsewhere = [BeaconMessage.inbound_text(channel="whatsapp", account="2222", user_id=u, text="hi",
                                            channel_message_id=f"wamid.other.{u}").reply_text("other number")
                 for u in users]
    refused = harness.fake.state.rejected
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    for mode, until in (("503", 6), ("hang", 9), ("500", 15)):  # down, then not answering, then failing
        await harness.http.post("/_fake/outage", json={"mode": mode, "phone_number_id": PNID})
        if mode == "503":
            await harness.produce(during)
        while refused["outage"] < until:
            assert loop.time() < deadline, f"only {refused['outage']} sends reached the fake during the outage"
            await asyncio.sleep(0.05)
        if mode == "hang":  # another number is not held back by this one's outage
            await harness.produce(elsewhere)
            while {s["phone_number_id"] for s in harness.fake.state.sent[len(first):]} != {"2222"} or len(
                    harness.fake.state.sent) < len(first) + len(elsewhere):
                assert loop.time() < deadline, "the other number's sends waited for this number's outage"
                await asyncio.sleep(0.05)
    await harness.http.delete("/_fake/outage")
    sent = await harness.sent(len(first) + len(elsewhere) + len(during))
    assert sorted(_ids(sent)) == sorted(m.id for m in first + elsewhere + during)  # each once
    for u in users:
        assert [s["body"]["text"]["body"] for s in sent if s["to"] == f"+{u}" and s["phone_number_id"] == PNID] == [
            "before"] + [f"during {i}" for i in range(3)]
    assert harness.fake.state.hanging_peak == 1  # one probe at a time, not one request per waiting user
    assert end_offsets(harness.settings, harness.settings.topics.dlq) == {0: 0}


async def test_a_cloud_api_error_code_beyond_32_bits_still_gives_a_failed_status(harness: Harness) -> None:
    odd, fine = "447700900090", "447700900091"
    await harness.fault(code=3_000_000_000, to=odd)  # unknown: retried while sends to others succeed, then given up
    doomed = reply(odd, "odd")
    others = [reply(fine, f"fine {i}") for i in range(12)]
    harness.start()
    await harness.produce([doomed])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while not harness.fake.state.rejected["3000000000"]:  # failed once: the others' successes come after it
        assert loop.time() < deadline
        await asyncio.sleep(0.02)
    await harness.produce(others)
    assert sorted(_ids(await harness.sent(len(others)))) == sorted(m.id for m in others)
    (status,) = await harness.topic(harness.settings.topics.inbound)
    assert status.status == "failed" and status.reply_to_id == doomed.id
    assert status.error is not None and status.error.code is None and "3000000000" in (status.error.message or "")
