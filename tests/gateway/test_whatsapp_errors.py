"""Cloud API error classification by code, and outbound requests that cannot be built."""

from __future__ import annotations

import pytest

from beacon.gateway.channel import Action
from beacon.gateway.whatsapp.errors import CloudApiError, classify
from beacon.gateway.whatsapp.sends import UnsendableMessageError, build_request
from beacon.messages import BeaconMessage, stable_id


@pytest.mark.parametrize(("code", "action"), [
    (131056, Action.BACKOFF_USER), (130429, Action.SLOW_ACCOUNT), (4, Action.SLOW_ACCOUNT),
    (80007, Action.SLOW_ACCOUNT), (190, Action.PAUSE_ACCOUNT), (2, Action.RETRY), (131016, Action.RETRY),
    (131057, Action.RETRY), (131000, Action.RETRY_FEW), (131047, Action.PERMANENT), (131026, Action.PERMANENT),
    (131050, Action.PERMANENT), (130403, Action.PERMANENT), (100, Action.PERMANENT), (131008, Action.PERMANENT),
    (131009, Action.PERMANENT), (131051, Action.PERMANENT), (132001, Action.PERMANENT), (368, Action.PERMANENT),
    (131049, Action.PERMANENT),
])
def test_codes_map_to_actions_whatever_the_http_status(code: int, action: Action) -> None:
    assert classify(code, 400) is action and classify(code, 429) is action


def test_no_error_body_retries_server_errors_and_refuses_client_errors() -> None:
    assert classify(None, None) is Action.RETRY
    assert classify(None, 502) is Action.RETRY and classify(None, 429) is Action.RETRY
    assert classify(None, 404) is Action.PERMANENT


def test_error_body_is_read_into_the_exception() -> None:
    body = {"error": {"message": "(#131047) Re-engagement message", "type": "OAuthException", "code": 131047,
                      "error_data": {"messaging_product": "whatsapp", "details": "24 hours"}, "fbtrace_id": "Az"}}
    err = CloudApiError.from_response(400, body)
    assert err.code == 131047 and err.details == "24 hours" and err.action is Action.PERMANENT
    assert err.code_label == "131047" and CloudApiError.from_response(502, "oops").code_label == "http_502"


def _out(**kw: object) -> BeaconMessage:
    fields = {"id": stable_id("t"), "user_key": "whatsapp:1:2", "channel": "whatsapp", "account": "1", "user_id": "2",
              "direction": "outbound", "kind": "text", **kw}
    return BeaconMessage.model_validate(fields)


@pytest.mark.parametrize("kw", [{"kind": "text"}, {"kind": "image"}, {"kind": "interactive", "payload": "not json"},
                                {"kind": "template"}, {"kind": "read_receipt"}, {"kind": "status"}])
def test_unsendable_messages_are_refused(kw: dict[str, object]) -> None:
    with pytest.raises(UnsendableMessageError):
        build_request(_out(**kw))


def test_text_carries_the_beacon_id_and_a_plus_number() -> None:
    body = build_request(_out(text="hi"))
    assert body["to"] == "+2" and body["biz_opaque_callback_data"] == stable_id("t") and body["text"]["body"] == "hi"
