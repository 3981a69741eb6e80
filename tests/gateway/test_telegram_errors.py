"""Bot API failures -> the sender's action, and the webhook secret check."""

from __future__ import annotations

from typing import Any

import pytest

from beacon.gateway.telegram.auth import WebhookAuthError, check_secret
from beacon.gateway.telegram.errors import Action, BotApiError


def _fail(code: int, description: str, **params: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if params:
        body["parameters"] = params
    return body


def test_flood_control_slows_the_chat_or_the_bot_for_retry_after() -> None:
    err = BotApiError.from_response("sendMessage", 429, _fail(429, "Too Many Requests: retry after 35",
                                                              retry_after=35))
    assert err.action is Action.BACKOFF_USER and err.retry_after == 35.0 and not err.opt_out
    assert "retry after 35" in str(err)
    bot = BotApiError.from_response("getMe", 429, _fail(429, "Too Many Requests: retry after 3", retry_after=3),
                                    chat_scoped=False)
    assert bot.action is Action.SLOW_ACCOUNT and bot.retry_after == 3.0


@pytest.mark.parametrize("description", ["Forbidden: bot was blocked by the user", "Forbidden: user is deactivated"])
def test_blocked_or_deactivated_is_permanent_and_opts_the_user_out(description: str) -> None:
    err = BotApiError.from_response("sendMessage", 403, _fail(403, description))
    assert err.action is Action.PERMANENT and err.opt_out and err.description == description


def test_bad_requests_are_permanent_and_keep_the_migration_target() -> None:
    err = BotApiError.from_response("sendMessage", 400, _fail(400, "Bad Request: message text is empty"))
    assert err.action is Action.PERMANENT and not err.opt_out and err.code_label == "400"
    moved = BotApiError.from_response("sendMessage", 400, _fail(
        400, "Bad Request: group chat was upgraded to a supergroup chat", migrate_to_chat_id=-1001234))
    assert moved.action is Action.PERMANENT and moved.migrate_to_chat_id == -1001234


@pytest.mark.parametrize("status", [401, 404])
def test_a_refused_token_pauses_the_bot(status: int) -> None:
    desc = "Unauthorized" if status == 401 else "Not Found"
    assert BotApiError.from_response("sendMessage", status, _fail(status, desc)).action is Action.PAUSE_ACCOUNT


def test_server_errors_proxies_and_the_network_are_retried() -> None:
    assert BotApiError.from_response("sendMessage", 500, _fail(500, "Internal Server Error")).action is Action.RETRY
    proxy = BotApiError.from_response("sendMessage", 502, b"<html>bad gateway</html>")
    assert proxy.action is Action.RETRY and "without a Bot API body" in str(proxy)
    network = BotApiError("Bot API unreachable", method="sendMessage")
    assert network.action is Action.RETRY and network.code_label == "network"


def test_secret_header_missing_is_401_wrong_is_403_and_the_reason_hides_the_secret() -> None:
    check_secret("s3cr3t-value", "s3cr3t-value")
    with pytest.raises(WebhookAuthError) as missing:
        check_secret(None, "s3cr3t-value")
    assert missing.value.status == 401
    for wrong in ("nope", "s3cr3t-valuE", "s3cr3t-value\udcff"):
        with pytest.raises(WebhookAuthError) as refused:
            check_secret(wrong, "s3cr3t-value")
        assert refused.value.status == 403 and "s3cr3t" not in str(refused.value) and wrong not in str(refused.value)


def test_production_refuses_a_bot_token_without_a_real_webhook_secret() -> None:
    from pydantic import ValidationError

    from beacon.config import Settings

    base = {"env": "production", "api_token": "a-real-service-token", "telegram_bot_token": "1:abc"}
    for secret in (None, "dev-secret"):
        with pytest.raises(ValidationError, match="BEACON_TELEGRAM_WEBHOOK_SECRET"):
            Settings(**base, telegram_webhook_secret=secret)  # type: ignore[arg-type]
    assert Settings(**base, telegram_webhook_secret="a-long-random-secret").telegram.port == 8082  # type: ignore[arg-type]


def test_limits_follow_telegrams_documentation() -> None:
    from beacon.config import Settings
    from beacon.gateway.telegram.limits import bot_rate, chat_rate

    settings = Settings()
    assert bot_rate(settings).rate == 30.0
    assert chat_rate(settings, "987654321").rate == 1.0 and chat_rate(settings, "987654321").burst == 3.0
    assert chat_rate(settings, "-1001234").rate == pytest.approx(20 / 60) and chat_rate(settings, "-1").burst == 1.0
