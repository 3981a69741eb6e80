"""Security settings reach every client from one place: librdkafka properties, Faust's credentials, the
registry client; operator-facing descriptions never carry a secret."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from beacon.codec import make_registry_client, registry_http_options
from beacon.config import Settings
from beacon.kafka import common_config
from beacon.kafka_security import connection_environment, describe_listener, faust_credentials, librdkafka_security
from tests.conftest import make_settings

PASSWORD = "pw-that-must-not-leak"


def test_plaintext_is_the_default_and_adds_no_credentials() -> None:
    assert librdkafka_security(make_settings()) == {"security.protocol": "plaintext"}
    assert faust_credentials(make_settings()) is None


def test_sasl_ssl_settings_reach_every_confluent_client(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    settings = make_settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
                             kafka_sasl_username="beacon", kafka_sasl_password=PASSWORD, kafka_ssl_ca_file=ca)
    config = common_config(settings)
    assert config["security.protocol"] == "sasl_ssl"
    assert config["sasl.mechanism"] == "SCRAM-SHA-512"
    assert (config["sasl.username"], config["sasl.password"]) == ("beacon", PASSWORD)
    assert config["ssl.ca.location"] == str(ca)
    described = describe_listener(settings)
    assert "SASL_SSL" in described and "SCRAM-SHA-512" in described and PASSWORD not in described


def test_mutual_tls_certificates_are_passed_and_must_come_in_pairs(tmp_path: Path) -> None:
    settings = make_settings(kafka_security_protocol="SSL", kafka_ssl_cert_file=tmp_path / "c.pem",
                             kafka_ssl_key_file=tmp_path / "k.pem")
    config = librdkafka_security(settings)
    assert config["ssl.certificate.location"] == str(tmp_path / "c.pem")
    assert config["ssl.key.location"] == str(tmp_path / "k.pem")
    with pytest.raises(ValidationError, match="go together"):
        make_settings(kafka_security_protocol="SSL", kafka_ssl_cert_file=tmp_path / "c.pem")


def test_sasl_without_credentials_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="needs BEACON_KAFKA_SASL_USERNAME"):
        make_settings(kafka_security_protocol="SASL_SSL")


def test_faust_gets_sasl_credentials_with_the_mechanism() -> None:
    settings = make_settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="SCRAM-SHA-256",
                             kafka_sasl_username="beacon", kafka_sasl_password=PASSWORD)
    credentials = faust_credentials(settings)
    assert credentials.username == "beacon" and credentials.password == PASSWORD
    assert str(credentials.mechanism.value) == "SCRAM-SHA-256"
    assert credentials.protocol.value == "SASL_PLAINTEXT"


def test_registry_client_gets_basic_auth() -> None:
    settings = make_settings(schema_registry_username="reg", schema_registry_password=PASSWORD)
    client = make_registry_client(settings)
    assert client._rest_client.auth == ("reg", PASSWORD)
    assert registry_http_options(settings)["auth"] == ("reg", PASSWORD)
    assert registry_http_options(make_settings())["auth"] is None


def test_a_child_process_environment_carries_the_whole_connection(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-256",
                             kafka_sasl_username="beacon", kafka_sasl_password=PASSWORD,
                             kafka_ssl_ca_file=tmp_path / "ca.pem", schema_registry_username="reg",
                             schema_registry_password="reg-secret")
    for name, value in connection_environment(settings).items():
        monkeypatch.setenv(name, value)
    child = Settings(_env_file=None)
    assert librdkafka_security(child) == librdkafka_security(settings)
    assert child.kafka.bootstrap == settings.kafka.bootstrap
    assert registry_http_options(child) == registry_http_options(settings)
