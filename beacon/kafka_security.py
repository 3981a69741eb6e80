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
    return settings.kafka.security_protocol.startswith("SASL_")


def uses_tls(settings: Settings) -> bool:
    return settings.kafka.security_protocol in ("SSL", "SASL_SSL")


def librdkafka_security(settings: Settings) -> dict[str, Any]:
    """The librdkafka properties of the configured protocol, mechanism, credentials and certificates."""
    config: dict[str, Any] = {"security.protocol": settings.kafka.security_protocol.lower()}
    if uses_sasl(settings):
        config["sasl.mechanism"] = settings.kafka.sasl_mechanism
        config["sasl.username"] = settings.kafka.sasl_username or ""
        password = settings.kafka.sasl_password
        config["sasl.password"] = password.get_secret_value() if password is not None else ""
    if uses_tls(settings):
        if settings.kafka.ssl_ca_file is not None:
            config["ssl.ca.location"] = str(settings.kafka.ssl_ca_file)
        if settings.kafka.ssl_cert_file is not None:
            config["ssl.certificate.location"] = str(settings.kafka.ssl_cert_file)
        if settings.kafka.ssl_key_file is not None:
            config["ssl.key.location"] = str(settings.kafka.ssl_key_file)
        if settings.kafka.ssl_key_password is not None:
            config["ssl.key.password"] = settings.kafka.ssl_key_password.get_secret_value()
    return config


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """A client TLS context trusting the configured CA file (else the system's), with the client
    certificate for mutual TLS when one is configured."""
    cafile = str(settings.kafka.ssl_ca_file) if settings.kafka.ssl_ca_file is not None else None
    context = ssl.create_default_context(cafile=cafile)
    if settings.kafka.ssl_cert_file is not None and settings.kafka.ssl_key_file is not None:
        password = settings.kafka.ssl_key_password
        context.load_cert_chain(
            str(settings.kafka.ssl_cert_file), str(settings.kafka.ssl_key_file),
            password.get_secret_value() if password is not None else None,
        )
    return context


def faust_credentials(settings: Settings) -> Any:
    """Faust's ``broker_credentials`` (its aiokafka consumer and producer): None for PLAINTEXT."""
    import faust  # the worker's dependency, imported only where Faust runs

    protocol = settings.kafka.security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context(settings))
    password = settings.kafka.sasl_password
    secret = password.get_secret_value() if password is not None else ""
    context = ssl_context(settings) if protocol == "SASL_SSL" else None
    return faust.SASLCredentials(
        username=settings.kafka.sasl_username, password=secret, ssl_context=context,
        mechanism=settings.kafka.sasl_mechanism,
    )


def connection_environment(settings: Settings) -> dict[str, str]:
    """The ``BEACON_*`` variables that carry the Kafka connection (bootstrap and security) and the
    registry's to a child process started with an environment of its own (benchmarks)."""
    values = {
        "BEACON_KAFKA_BOOTSTRAP": settings.kafka.bootstrap,
        "BEACON_KAFKA_SECURITY_PROTOCOL": settings.kafka.security_protocol,
        "BEACON_KAFKA_SASL_MECHANISM": settings.kafka.sasl_mechanism,
        "BEACON_KAFKA_SASL_USERNAME": settings.kafka.sasl_username,
        "BEACON_KAFKA_SASL_PASSWORD": settings.kafka.sasl_password,
        "BEACON_KAFKA_SSL_CA_FILE": settings.kafka.ssl_ca_file,
        "BEACON_KAFKA_SSL_CERT_FILE": settings.kafka.ssl_cert_file,
        "BEACON_KAFKA_SSL_KEY_FILE": settings.kafka.ssl_key_file,
        "BEACON_KAFKA_SSL_KEY_PASSWORD": settings.kafka.ssl_key_password,
        "BEACON_SCHEMA_REGISTRY_URL": settings.registry.url,
        "BEACON_SCHEMA_REGISTRY_USERNAME": settings.registry.username,
        "BEACON_SCHEMA_REGISTRY_PASSWORD": settings.registry.password,
        "BEACON_SCHEMA_REGISTRY_CA_FILE": settings.registry.ca_file,
    }
    return {
        name: value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        for name, value in values.items() if value is not None
    }


def describe_listener(settings: Settings) -> str:
    """Where and how clients connect, for error messages: ``SASL_SSL (SCRAM-SHA-512, user beacon) at
    host:port``; never the password."""
    how: str = settings.kafka.security_protocol
    if uses_sasl(settings):
        how += f" ({settings.kafka.sasl_mechanism}, user {settings.kafka.sasl_username})"
    return f"{how} at {settings.kafka.bootstrap}"
