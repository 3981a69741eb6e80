"""What `beacon dev` runs: the fake Cloud API unless real credentials are set, distinct worker ports, real settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from beacon.config import Settings
from beacon.ops.dev import dev_plan, has_real_credentials, has_real_telegram_token


def _settings(**kw: object) -> Settings:
    return Settings(_env_file=None, **kw)  # type: ignore[arg-type]


def test_dev_plan_uses_the_fake_with_dev_credentials_and_one_port_per_worker() -> None:
    plan = dev_plan(_settings(dev_workers=3, worker_web_port=7000, fake_whatsapp_port=8999,
                              whatsapp_gateway_port=8181))
    names = [s.name for s in plan.specs]
    assert names == ["api", "worker-1", "worker-2", "worker-3", "console", "fake-whatsapp", "gateway-whatsapp",
                     "fake-telegram", "gateway-telegram", "gateway-webchat"]
    ports = [s.env["BEACON_WORKER_WEB_PORT"] for s in plan.specs if s.name.startswith("worker")]
    assert ports == ["7000", "7001", "7002"]
    gateway = next(s for s in plan.specs if s.name == "gateway-whatsapp")
    assert gateway.env["BEACON_WHATSAPP_GRAPH_URL"] == "http://127.0.0.1:8999"
    assert gateway.env["BEACON_WHATSAPP_APP_SECRET"] == "dev-secret"
    fake = next(s for s in plan.specs if s.name == "fake-whatsapp")
    assert fake.env["BEACON_GATEWAY_URL"] == "http://127.0.0.1:8181"
    assert list(gateway.argv[-3:]) == ["beacon", "gateway", "whatsapp"]


def test_real_credentials_send_the_gateway_to_meta_without_a_fake() -> None:
    settings = _settings(whatsapp_access_token=SecretStr("EAAG-real-token"))
    assert has_real_credentials(settings)
    plan = dev_plan(settings, workers=1)
    assert [s.name for s in plan.specs] == ["api", "worker-1", "console", "gateway-whatsapp", "fake-telegram",
                                            "gateway-telegram", "gateway-webchat"]
    assert "BEACON_WHATSAPP_GRAPH_URL" not in plan.specs[3].env
    assert not has_real_credentials(_settings(whatsapp_access_token=SecretStr("dev-access-token")))


def test_telegram_runs_against_its_fake_with_one_secret_unless_a_real_token_is_set() -> None:
    plan = dev_plan(_settings(fake_telegram_port=8991, telegram_port=8182), workers=1)
    fake = next(s for s in plan.specs if s.name == "fake-telegram")
    gateway = next(s for s in plan.specs if s.name == "gateway-telegram")
    assert gateway.env["BEACON_TELEGRAM_API_URL"] == "http://127.0.0.1:8991"
    shared = ("BEACON_TELEGRAM_BOT_TOKEN", "BEACON_TELEGRAM_WEBHOOK_SECRET")
    assert all(fake.env[k] == gateway.env[k] and gateway.env[k] for k in shared)
    assert list(gateway.argv[-3:]) == ["beacon", "gateway", "telegram"]
    real = _settings(telegram_bot_token=SecretStr("7000001:real-token"))
    assert has_real_telegram_token(real)
    assert [s.name for s in dev_plan(real, workers=1).specs][-2:] == ["gateway-telegram", "gateway-webchat"]
    assert "fake-telegram" not in [s.name for s in dev_plan(real, workers=1).specs]


def test_every_variable_beacon_dev_sets_is_a_setting() -> None:
    fields = {f"BEACON_{name.upper()}" for name in Settings.flat_fields()}
    for spec in dev_plan(_settings()).specs:
        assert set(spec.env) <= fields, set(spec.env) - fields


def test_the_web_chat_url_is_announced_first() -> None:
    plan = dev_plan(_settings(webchat_port=8383))
    assert plan.endpoints[0][0] == "web chat"
    assert plan.endpoints[0][1].startswith("http://127.0.0.1:8383/")
    webchat = next(s for s in plan.specs if s.name == "gateway-webchat")
    assert list(webchat.argv[-3:]) == ["beacon", "gateway", "webchat"]


def test_the_api_accepts_proactive_sends_to_the_web_chat(monkeypatch: pytest.MonkeyPatch) -> None:
    api = next(s for s in dev_plan(_settings()).specs if s.name == "api")
    monkeypatch.setenv("BEACON_SERVED_CHANNELS", api.env["BEACON_SERVED_CHANNELS"])
    assert set(Settings(_env_file=None).api.served_channels) == {"whatsapp", "telegram", "webchat"}


def test_the_api_reaches_each_gateway_for_media(monkeypatch: pytest.MonkeyPatch) -> None:
    api = next(s for s in dev_plan(_settings(telegram_port=8382)).specs if s.name == "api")
    monkeypatch.setenv("BEACON_GATEWAY_URLS", api.env["BEACON_GATEWAY_URLS"])
    settings = Settings(_env_file=None)
    assert settings.gateway_url_for("telegram") == "http://127.0.0.1:8382"
    assert settings.gateway_url_for("whatsapp") == f"http://127.0.0.1:{_settings().whatsapp.gateway_port}"


def test_with_nostr_adds_the_nostr_gateway_on_the_local_relay_and_announces_the_npub() -> None:
    from beacon.nostr.keys import NostrKey

    settings = _settings(nostr_relay_port=7999)
    assert "gateway-nostr" not in [s.name for s in dev_plan(settings).specs]  # off by default
    key = NostrKey.generate()
    plan = dev_plan(settings, nostr_key=key)
    gateway = next(s for s in plan.specs if s.name == "gateway-nostr")
    assert list(gateway.argv[-3:]) == ["beacon", "gateway", "nostr"]
    assert gateway.env["BEACON_NOSTR_RELAYS"] == '["ws://127.0.0.1:7999"]'
    assert NostrKey.parse(gateway.env["BEACON_NOSTR_PRIVATE_KEY"]).pubkey == key.pubkey
    assert ("Nostr (NostrMQ)", f"{key.npub} on ws://127.0.0.1:7999  (health at http://127.0.0.1:8085/healthz)") \
        in plan.endpoints
    assert "nostr" in next(s for s in plan.specs if s.name == "api").env["BEACON_SERVED_CHANNELS"]


def test_the_dev_nostr_key_is_made_once_and_kept_private(tmp_path: Path) -> None:
    from beacon.ops.dev import dev_nostr_key

    settings = _settings(data_dir=tmp_path)
    key = dev_nostr_key(settings)
    assert dev_nostr_key(settings).pubkey == key.pubkey  # the same npub on every run
    assert (tmp_path / "nostr-dev-key").stat().st_mode & 0o077 == 0
    configured = _settings(data_dir=tmp_path, nostr_private_key=SecretStr("11" * 32))
    assert dev_nostr_key(configured).secret == bytes.fromhex("11" * 32)
