"""How Beacon's Kafka clients authenticate and encrypt, said once: the librdkafka properties every
confluent-kafka client gets (:mod:`beacon.kafka`) and the credentials Faust's aiokafka clients get
(:mod:`beacon.streams.app`), both from the ``BEACON_KAFKA_SECURITY_*``, ``_SASL_*`` and ``_SSL_*``
settings. Secrets go to the clients only, never into a description or a log line."""

from __future__ import annotations

import ssl
from typing import Any

from pydantic import SecretStr

from beacon.config import Settings


def uses_sasl(settings: Settings) -> bool:
    return settings.kafka_security_protocol.startswith("SASL_")


def uses_tls(settings: Settings) -> bool:
    return settings.kafka_security_protocol in ("SSL", "SASL_SSL")


def librdkafka_security(settings: Settings) -> dict[str, Any]:
    """The librdkafka properties of the configured protocol, mechanism, credentials and certificates."""
    config: dict[str, Any] = {"security.protocol": settings.kafka_security_protocol.lower()}
    if uses_sasl(settings):
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
        config["sasl.username"] = settings.kafka_sasl_username or ""
        password = settings.kafka_sasl_password
        config["sasl.password"] = password.get_secret_value() if password is not None else ""
    if uses_tls(settings):
        if settings.kafka_ssl_ca_file is not None:
            config["ssl.ca.location"] = str(settings.kafka_ssl_ca_file)
        if settings.kafka_ssl_cert_file is not None:
            config["ssl.certificate.location"] = str(settings.kafka_ssl_cert_file)
        if settings.kafka_ssl_key_file is not None:
            config["ssl.key.location"] = str(settings.kafka_ssl_key_file)
        if settings.kafka_ssl_key_password is not None:
            config["ssl.key.password"] = settings.kafka_ssl_key_password.get_secret_value()
    return config


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """A client TLS context trusting the configured CA file (else the system's), with the client
    certificate for mutual TLS when one is configured."""
    cafile = str(settings.kafka_ssl_ca_file) if settings.kafka_ssl_ca_file is not None else None
    context = ssl.create_default_context(cafile=cafile)
    if settings.kafka_ssl_cert_file is not None and settings.kafka_ssl_key_file is not None:
        password = settings.kafka_ssl_key_password
        context.load_cert_chain(
            str(settings.kafka_ssl_cert_file), str(settings.kafka_ssl_key_file),
            password.get_secret_value() if password is not None else None,
        )
    return context


def faust_credentials(settings: Settings) -> Any:
    """Faust's ``broker_credentials`` (its aiokafka consumer and producer): None for PLAINTEXT."""
    import faust  # the worker's dependency, imported only where Faust runs

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context(settings))
    password = settings.kafka_sasl_password
    secret = password.get_secret_value() if password is not None else ""
    context = ssl_context(settings) if protocol == "SASL_SSL" else None
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username, password=secret, ssl_context=context,
        mechanism=settings.kafka_sasl_mechanism,
    )


def connection_environment(settings: Settings) -> dict[str, str]:
    """The ``BEACON_*`` variables that carry the Kafka connection (bootstrap and security) and the
    registry's to a child process started with an environment of its own (benchmarks)."""
    values = {
        "BEACON_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "BEACON_KAFKA_SECURITY_PROTOCOL": settings.kafka_security_protocol,
        "BEACON_KAFKA_SASL_MECHANISM": settings.kafka_sasl_mechanism,
        "BEACON_KAFKA_SASL_USERNAME": settings.kafka_sasl_username,
        "BEACON_KAFKA_SASL_PASSWORD": settings.kafka_sasl_password,
        "BEACON_KAFKA_SSL_CA_FILE": settings.kafka_ssl_ca_file,
        "BEACON_KAFKA_SSL_CERT_FILE": settings.kafka_ssl_cert_file,
        "BEACON_KAFKA_SSL_KEY_FILE": settings.kafka_ssl_key_file,
        "BEACON_KAFKA_SSL_KEY_PASSWORD": settings.kafka_ssl_key_password,
        "BEACON_SCHEMA_REGISTRY_URL": settings.schema_registry_url,
        "BEACON_SCHEMA_REGISTRY_USERNAME": settings.schema_registry_username,
        "BEACON_SCHEMA_REGISTRY_PASSWORD": settings.schema_registry_password,
        "BEACON_SCHEMA_REGISTRY_CA_FILE": settings.schema_registry_ca_file,
    }
    return {
        name: value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        for name, value in values.items() if value is not None
    }


def describe_listener(settings: Settings) -> str:
    """Where and how clients connect, for error messages: ``SASL_SSL (SCRAM-SHA-512, user beacon) at
    host:port``; never the password."""
    how: str = settings.kafka_security_protocol
    if uses_sasl(settings):
        how += f" ({settings.kafka_sasl_mechanism}, user {settings.kafka_sasl_username})"
    return f"{how} at {settings.kafka_bootstrap}"
