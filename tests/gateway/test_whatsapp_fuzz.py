"""Property tests of the webhook endpoint and parser (hypothesis), over real HTTP into the real broker.

Any body with any headers is answered 2xx or 4xx, never 5xx, and without the right signature it is
refused whatever it contains (the signature is checked before anything is parsed). Signed JSON shaped
like Cloud API notifications, with any field missing, mistyped or arbitrary, is never a 5xx, and the
parser only ever raises MalformedWebhookError. Each test prints how many cases it ran.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pydantic import SecretStr

from beacon.codec import MessageCodec
from beacon.config import Settings
from beacon.gateway.inbound import Inbound
from beacon.gateway.whatsapp.channel import WEBHOOK_PATH, WhatsAppChannel
from beacon.gateway.whatsapp.parse import MalformedWebhookError, parse_notification
from beacon.gateway.whatsapp.signature import HEADER, sign
from beacon.kafka import AsyncProducer
from tests.gateway.conftest import end_offsets, serve

SECRET = "fuzz-secret"
FIXTURES_REUSED = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]

json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(
    max_size=30)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=10), inner, max_size=4), max_leaves=20)


def maybe(shaped: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the right shape, sometimes anything at all."""
    return shaped | json_values


def fields(**shaped: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """An object whose keys are each present or not, with a right-shaped or arbitrary value."""
    return st.fixed_dictionaries({}, optional={k: maybe(v) for k, v in shaped.items()})


ids = st.text(min_size=0, max_size=40)
users = st.sampled_from(["447700900123", "US.1234", "", "unknown", "4477\x00", "a:b"]) | st.text(max_size=20)
types = st.sampled_from(["text", "image", "audio", "document", "sticker", "video", "location", "contacts",
                         "interactive", "button", "reaction", "order", "system", "unsupported", "edit",
                         "revoke"]) | st.text(max_size=8)
message = fields(id=ids, type=types, timestamp=st.integers(-(2**64), 2**64).map(str) | st.integers(),
                 text=fields(body=st.text(max_size=50)), image=fields(id=ids, mime_type=st.text(max_size=10)),
                 location=fields(latitude=st.floats() | st.text(max_size=5), longitude=st.floats()),
                 interactive=fields(type=st.sampled_from(["button_reply", "list_reply", "nfm_reply",
                                                          "call_permission_reply"]),
                                    button_reply=fields(id=ids, title=st.text(max_size=10)),
                                    call_permission_reply=fields(response=st.text(max_size=6))),
                 edit=fields(original_message_id=ids, message=fields(type=types, text=fields(body=st.text()))),
                 revoke=fields(original_message_id=ids), unsupported=fields(type=types),
                 system=fields(type=st.sampled_from(["user_changed_number", "x"]), wa_id=users, body=st.text()),
                 reaction=fields(message_id=ids, emoji=st.text(max_size=2)), context=fields(id=ids, **{"from": users}),
                 errors=st.lists(fields(code=st.integers(-(2**40), 2**40), title=st.text(max_size=10)), max_size=2),
                 referral=json_values, **{"from": users})
status = fields(id=ids, status=st.sampled_from(["sent", "delivered", "read", "failed"]) | st.text(max_size=5),
                recipient_id=users, timestamp=st.integers().map(str),
                errors=st.lists(fields(code=st.integers(-(2**40), 2**40), error_data=fields(details=st.text())),
                                max_size=2),
                conversation=fields(id=ids, origin=fields(type=st.text(max_size=5))),
                pricing=fields(billable=st.booleans(), category=st.text(max_size=5)),
                biz_opaque_callback_data=st.text(max_size=20))
contact = fields(wa_id=users, user_id=users, profile=fields(name=st.text(max_size=10)))
value = fields(messaging_product=st.just("whatsapp"), metadata=fields(phone_number_id=st.sampled_from(["1065", ""])),
               contacts=st.lists(contact, max_size=3), messages=st.lists(message, max_size=4),
               statuses=st.lists(status, max_size=3), errors=st.lists(json_values, max_size=2))
change = fields(field=st.sampled_from(["messages", "account_update"]), value=value)
notification = fields(object=st.just("whatsapp_business_account"),
                      entry=st.lists(fields(id=ids, changes=st.lists(change, max_size=3)), max_size=3))

#: Any header bytes but line breaks and the ones that frame the request (the test sets those itself).
FRAMING = {b"content-length", b"transfer-encoding", b"host", b"connection", HEADER.lower().encode()}
header_names = (st.binary(min_size=1, max_size=20) | st.sampled_from([b"Content-Type", b"Content-Encoding", b"Expect",
                                                                        b"X-Forwarded-For", b"Upgrade"])).filter(
    lambda h: b"\r" not in h and b"\n" not in h and b":" not in h and h.strip().lower() not in FRAMING)
header_values = st.binary(max_size=60).filter(lambda v: b"\r" not in v and b"\n" not in v) | st.sampled_from(
    [b"application/json", b"gzip", b"100-continue", b"websocket", b"text/plain; charset=utf-16"])
headers = st.lists(st.tuples(header_names, header_values), max_size=5)


@pytest.fixture
async def endpoint(registry_settings: Settings, new_topic: Callable[..., str]) -> AsyncIterator[tuple[str, Settings]]:
    settings = registry_settings.replace(
        topic_in=new_topic(1, "bm_in"),
        whatsapp_app_secret=SecretStr(SECRET),
        whatsapp_verify_token=SecretStr("vt"),
    )
    codec = MessageCodec(settings)
    codec.prepare([settings.topics.inbound])
    producer = AsyncProducer(settings)
    try:
        async with serve(Inbound(settings, producer, codec, WhatsAppChannel(settings)).app) as url:
            yield url + WEBHOOK_PATH, settings
    finally:
        producer.close()


def dumps(doc: Any) -> bytes:
    """JSON as Meta sends it (non-ASCII escaped); integers of any size, as a JSON text may hold."""
    return json.dumps(doc).encode()


def post(url: str, body: bytes, extra: list[tuple[bytes, bytes]], signature: bytes | None) -> int:
    """One POST written byte for byte (an HTTP client would refuse odd headers), from a worker thread while
    the test's loop serves the gateway; the answer's status code."""
    parts = urlsplit(url)
    lines = [f"POST {parts.path} HTTP/1.1".encode(), f"Host: {parts.netloc}".encode(),
             f"Content-Length: {len(body)}".encode(), b"Connection: close"]
    lines += [name + b": " + value for name, value in extra]
    if signature is not None:
        lines.append(HEADER.encode() + b": " + signature)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        answer = b""
        while chunk := sock.recv(65536):  # the server closes the connection after its answer
            answer += chunk
    while answer.startswith(b"HTTP/1.1 1"):  # interim answers (100 Continue) come before the real one
        answer = answer.split(b"\r\n\r\n", 1)[-1]
    status_line = answer.split(b"\r\n", 1)[0].split()
    assert len(status_line) >= 2, f"no HTTP answer: {answer[:100]!r}"
    return int(status_line[1])


async def test_any_body_with_any_headers_is_never_a_5xx_and_unsigned_is_always_refused(
    endpoint: tuple[str, Settings],
) -> None:
    url, settings = endpoint
    runs: list[int] = []
    signatures = st.none() | header_values | st.builds(lambda b: sign(b, "not-the-secret").encode(),
                                                       st.binary(max_size=10))

    @hsettings(max_examples=200, deadline=None, suppress_health_check=FIXTURES_REUSED, database=None)
    @given(body=st.binary(max_size=3000) | json_values.map(dumps) | notification.map(dumps), extra=headers,
           signature=signatures)
    # what it found once, kept: a signature that is not UTF-8, an unknown Expect echoed, gzip that is not
    @example(body=b"{}", extra=[], signature=b"\x80")
    @example(body=b"", extra=[(b"Expect", b"\x80")], signature=None)
    @example(body=b"\x00\x00", extra=[(b"Content-Encoding", b"gzip")], signature=None)
    def case(body: bytes, extra: list[tuple[bytes, bytes]], signature: bytes | None) -> None:
        status = post(url, body, extra, signature)
        runs.append(status)
        assert 400 <= status < 500, f"a body without the right signature was answered {status}"

    await asyncio.to_thread(case)
    # refused whatever it held: not one of them reached bm_in
    assert end_offsets(settings, settings.topics.inbound) == {0: 0}
    print(f"unsigned or wrongly signed: {len(runs)} cases, answers {sorted(set(runs))}")


async def test_signed_json_shaped_like_cloud_api_webhooks_is_never_a_5xx(endpoint: tuple[str, Settings]) -> None:
    url, _settings = endpoint
    runs: list[int] = []

    @hsettings(max_examples=200, deadline=None, suppress_health_check=FIXTURES_REUSED, database=None)
    @given(doc=notification | json_values, extra=headers)
    def case(doc: Any, extra: list[tuple[bytes, bytes]]) -> None:
        body = dumps(doc)
        status = post(url, body, extra, sign(body, SECRET).encode())
        runs.append(status)
        assert status < 500, f"a signed webhook was answered {status}: {body[:300]!r}"

    await asyncio.to_thread(case)
    print(f"signed Cloud-API-shaped JSON: {len(runs)} cases, answers {sorted(set(runs))}")


@hsettings(max_examples=1000, deadline=None, database=None)
@given(doc=notification | json_values)
def test_the_parser_keeps_or_drops_each_item_and_only_refuses_a_body_that_is_no_notification(doc: Any) -> None:
    try:
        parsed = parse_notification(dumps(doc))
    except MalformedWebhookError:
        return
    for msg in parsed.messages:
        assert msg.user_id and ":" not in msg.user_id and "\x00" not in msg.user_id
        assert msg.user_key == f"whatsapp:{msg.account}:{msg.user_id}"
