"""Grouped settings: every ``BEACON_*`` variable (and old alias) still sets its setting, from the environment and
from ``.env``; code builds and derives settings with flat names; secrets stay secret; everything is frozen."""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from beacon.config import FLAT_NAMES, FLAT_PATHS, SECTIONS, Settings, variables
from beacon.config_sections import KafkaSettings, McpServerSpec

#: Settings that only validate together with another one.
_COMPANIONS = {
    "env": {"BEACON_API_TOKEN": "a-real-service-token"},
    "kafka_ssl_cert_file": {"BEACON_KAFKA_SSL_KEY_FILE": "/tmp/client.key"},
    "kafka_ssl_key_file": {"BEACON_KAFKA_SSL_CERT_FILE": "/tmp/client.pem"},
}


def _value(settings: Settings, flat: str) -> Any:
    section, field = FLAT_PATHS[flat]
    return getattr(settings if section is None else getattr(settings, section), field)


def _plain(value: Any) -> Any:
    """A value without secrets' wrapping, for comparing."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, BaseModel):
        return value.model_dump()
    return value


def _sample(flat: str) -> tuple[str, Any]:
    """A variable's text that differs from the setting's default, and the value it must give."""
    info = Settings.flat_fields()[flat]
    default = _plain(info.get_default(call_default_factory=True))
    annotation: Any = info.annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    origin = typing.get_origin(annotation)
    if origin is Literal:
        choice = next(c for c in typing.get_args(annotation) if c != default and c != "PLAIN")
        return str(choice), choice
    if origin is tuple and typing.get_args(annotation)[0] is McpServerSpec:
        spec = {"name": "calc", "command": "python", "args": ["server.py"]}
        return json.dumps([spec]), (McpServerSpec(**spec).model_dump(),)
    if origin is tuple:
        if flat == "api_pipeline":  # comma-separated, not JSON
            return "commands, mybot.handlers:bot ,fallback", ("commands", "mybot.handlers:bot", "fallback")
        return json.dumps([f"x-{flat}", "y"]), (f"x-{flat}", "y")
    if origin is dict:
        return json.dumps({"k": f"v-{flat}"}), {"k": f"v-{flat}"}
    if annotation is bool:
        return str(not default).lower(), not default
    if annotation is int:
        return str((default or 0) + 1), (default or 0) + 1
    if annotation is float:
        return str((default or 0) + 1.5), (default or 0) + 1.5
    if annotation is Path:
        return f"/tmp/beacon-{flat}", Path(f"/tmp/beacon-{flat}")
    assert annotation in (str, SecretStr), (flat, annotation)
    return f"v-{flat}", f"v-{flat}"


_CASES = [(flat, variable) for flat in FLAT_NAMES for variable in variables(flat)]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for flat in FLAT_NAMES:
        for variable in variables(flat):
            monkeypatch.delenv(variable, raising=False)
    return monkeypatch


def test_the_table_covers_every_section_field_once() -> None:
    fields = [(attr, field) for attr, section in SECTIONS.items() for field in section.model_fields]
    assert sorted(p for p in FLAT_PATHS.values() if p[0] is not None) == sorted(fields)
    assert len(set(FLAT_NAMES)) == len(FLAT_NAMES)
    assert {"kafka_bootstrap", "topic_in", "database_url", "schema_auto_register", "whatsapp_gateway_port",
            "nostr_bridge_role", "mcp_servers", "fake_whatsapp_port", "env"} <= set(FLAT_NAMES)


@pytest.mark.parametrize(("flat", "variable"), _CASES, ids=[v for _, v in _CASES])
def test_every_variable_sets_its_setting_from_the_environment(
    clean_env: pytest.MonkeyPatch, flat: str, variable: str
) -> None:
    text, expected = _sample(flat)
    for name, value in {variable: text, **_COMPANIONS.get(flat, {})}.items():
        clean_env.setenv(name, value)
    assert _plain(_value(Settings(_env_file=None), flat)) == expected


@pytest.mark.parametrize(("flat", "variable"), _CASES, ids=[v for _, v in _CASES])
def test_every_variable_sets_its_setting_from_dotenv(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, flat: str, variable: str
) -> None:
    text, expected = _sample(flat)
    lines = [f"{name}='{value}'" for name, value in {variable: text, **_COMPANIONS.get(flat, {})}.items()]
    (tmp_path / ".env").write_text("\n".join(lines) + "\n")
    assert _plain(_value(Settings(_env_file=tmp_path / ".env"), flat)) == expected


def test_the_environment_wins_over_dotenv_and_keywords_over_both(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("BEACON_KAFKA_BOOTSTRAP=dotenv:1\nBEACON_TOPIC_IN=dotenv_in\n")
    clean_env.setenv("BEACON_KAFKA_BOOTSTRAP", "environment:2")
    settings = Settings(_env_file=tmp_path / ".env")
    assert (settings.kafka.bootstrap, settings.topics.inbound) == ("environment:2", "dotenv_in")
    given = Settings(_env_file=tmp_path / ".env", kafka_bootstrap="keyword:3")
    assert (given.kafka.bootstrap, given.topics.inbound) == ("keyword:3", "dotenv_in")


def test_code_builds_and_derives_settings_with_flat_names(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("BEACON_KAFKA_SASL_USERNAME", "from-env")
    base = Settings(_env_file=None, kafka_bootstrap="a:1", topic_in="t_in", whatsapp_gateway_port=9001)
    assert (base.kafka.bootstrap, base.topics.inbound, base.whatsapp.gateway_port) == ("a:1", "t_in", 9001)
    assert base.kafka.sasl_username == "from-env"  # a keyword for one field keeps the section's other variables

    changed = base.replace(kafka_bootstrap="b:2", topic_partitions=3, data_dir=Path("/tmp/x"))
    assert (changed.kafka.bootstrap, changed.topics.partitions, changed.data_dir) == ("b:2", 3, Path("/tmp/x"))
    assert (changed.topics.inbound, changed.kafka.sasl_username) == ("t_in", "from-env")  # the rest is kept
    assert base.kafka.bootstrap == "a:1"  # a copy, the original unchanged
    clean_env.setenv("BEACON_TOPIC_OUT", "changed-since")
    assert base.replace(topic_in="t2").topics.outbound == "bm_out"  # a copy does not read the variables again
    clean_env.delenv("BEACON_TOPIC_OUT")

    whole = base.replace(kafka=KafkaSettings(bootstrap="c:3"))
    assert (whole.kafka.bootstrap, whole.kafka.sasl_username) == ("c:3", None)
    assert base.model_copy(update={"topic_out": "t_out"}).topics.outbound == "t_out"  # routed through replace

    with pytest.raises(ValidationError, match="at least 1"):
        base.replace(topic_partitions=0)  # a copy is validated like the settings it comes from
    with pytest.raises(ValidationError, match="BEACON_KAFKA_SASL_USERNAME"):
        Settings(_env_file=None, kafka_security_protocol="SASL_SSL", kafka_sasl_username=None)


def test_settings_and_their_sections_are_frozen() -> None:
    settings = Settings(_env_file=None)
    with pytest.raises(ValidationError):
        settings.kafka = KafkaSettings()  # type: ignore[misc]
    with pytest.raises(ValidationError):
        settings.kafka.bootstrap = "x:1"  # type: ignore[misc]


def test_secrets_stay_secret_wherever_settings_are_printed(clean_env: pytest.MonkeyPatch) -> None:
    secret_fields = [flat for flat in FLAT_NAMES if "SecretStr" in str(Settings.flat_fields()[flat].annotation)]
    assert {"api_token", "kafka_sasl_password", "whatsapp_app_secret", "whatsapp_access_tokens",
            "telegram_bot_token", "llm_api_key", "nostr_private_key", "console_token"} <= set(secret_fields)
    for flat in secret_fields:
        text, _ = _sample(flat)
        clean_env.setenv(variables(flat)[0], text)
    settings = Settings(_env_file=None)
    for flat in secret_fields:
        shown = _value(settings, flat)
        assert isinstance(next(iter(shown.values())) if isinstance(shown, dict) else shown, SecretStr), flat
    printed = repr(settings) + str(settings) + settings.model_dump_json()
    leaked = [flat for flat in secret_fields if f"v-{flat}" in printed]
    assert not leaked
