"""The web chat's own rules that need no running stack: signed visitor cookies, message ids that
deduplicate a resend but never collide across visitors, interactive replies flattened for the page,
and production refusing to sign cookies with a development secret."""

from __future__ import annotations

import orjson
import pytest
from pydantic import SecretStr

from beacon.config import Settings
from beacon.errors import ConfigError
from beacon.gateway.webchat.frames import BadFrameError, inbound_message, message_frame
from beacon.gateway.webchat.identity import VisitorCookies
from beacon.gateway.webchat.service import cookie_secret
from beacon.messages import OUTBOUND, BeaconMessage


def test_a_cookie_is_accepted_only_by_the_site_and_secret_that_signed_it() -> None:
    cookies = VisitorCookies("s3cret-s3cret", "shop")
    visitor, value = cookies.issue()
    assert cookies.visitor(value) == visitor
    assert VisitorCookies("s3cret-s3cret", "blog").visitor(value) is None
    assert VisitorCookies("another-secret", "shop").visitor(value) is None
    other, _ = cookies.issue()
    assert cookies.visitor(f"{other}.{value.split('.')[1]}") is None  # someone else's id with my signature
    for bad in (None, "", "no-dot", "a.b.c", value + "x"):
        assert cookies.visitor(bad) is None


def test_a_resend_keeps_its_id_and_two_visitors_never_share_one() -> None:
    frame = {"type": "send", "client_id": "0b9f6c1e-5d2a-4f", "text": "hi"}
    first = inbound_message(frame, site="shop", visitor="alice", max_chars=100)
    again = inbound_message(dict(frame), site="shop", visitor="alice", max_chars=100)
    bob = inbound_message(frame, site="shop", visitor="bob", max_chars=100)
    assert first.id == again.id != bob.id
    assert first.user_key == "webchat:shop:alice" and first.channel == "webchat" and first.account == "shop"
    with pytest.raises(BadFrameError) as too_long:
        inbound_message({**frame, "text": "x" * 101}, site="shop", visitor="alice", max_chars=100)
    assert too_long.value.code == "too_large" and too_long.value.client_id == frame["client_id"]
    with pytest.raises(BadFrameError):
        inbound_message({**frame, "client_id": "<script>"}, site="shop", visitor="alice", max_chars=100)


def test_a_button_press_becomes_an_interactive_reply_and_a_list_is_flattened() -> None:
    pressed = inbound_message({"type": "send", "client_id": "abcdefgh12", "reply": {
        "type": "list_reply", "id": "row-2", "title": "Blue"}}, site="shop", visitor="alice", max_chars=100)
    assert pressed.kind == "interactive" and pressed.interactive_reply is not None
    assert (pressed.interactive_reply.type, pressed.interactive_reply.id) == ("list_reply", "row-2")
    assert message_frame(pressed, "user")["text"] == "Blue"
    listing = {"type": "list", "body": {"text": "Pick a colour"}, "action": {"button": "Colours", "sections": [
        {"title": "Warm", "rows": [{"id": "row-1", "title": "Red"}]},
        {"title": "Cool", "rows": [{"id": "row-2", "title": "Blue", "description": "like the sea"}]}]}}
    reply = BeaconMessage(id="r1", user_key="webchat:shop:alice", channel="webchat", account="shop", user_id="alice",
                          direction=OUTBOUND, kind="interactive", payload=orjson.dumps(listing).decode())
    shown = message_frame(reply, "bot")["interactive"]
    assert shown["body"] == "Pick a colour"
    assert shown["list"]["label"] == "Colours"
    assert [[r["title"] for r in s["rows"]] for s in shown["list"]["sections"]] == [["Red"], ["Blue"]]


def test_production_refuses_to_sign_cookies_without_a_real_secret() -> None:
    prod = {"env": "production", "api_token": SecretStr("a-real-service-token")}
    with pytest.raises(ConfigError, match="BEACON_WEBCHAT_SECRET"):
        cookie_secret(Settings(_env_file=None, **prod))  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        cookie_secret(Settings(_env_file=None, webchat_secret=SecretStr("dev-secret"), **prod))  # type: ignore[arg-type]
    real = "k3y-" + "x" * 40
    assert cookie_secret(Settings(_env_file=None, webchat_secret=SecretStr(real), **prod)) == real  # type: ignore[arg-type]
    assert cookie_secret(Settings(_env_file=None)) != ""  # development falls back to the dev secret
