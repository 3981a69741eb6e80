"""The local broker's SASL_SSL listener (``BEACON_KAFKA_SECURITY_PROTOCOL=SASL_SSL`` with a SCRAM
mechanism): a certificate authority and a broker certificate for 127.0.0.1 made once under
``<data dir>/kafka/tls``, the broker properties of the listener, and the SCRAM user the storage
format creates (KRaft keeps SCRAM credentials in its metadata log: ``kafka-storage format
--add-scram``, KIP-900). Clients trust ``<data dir>/kafka/tls/ca.pem`` (BEACON_KAFKA_SSL_CA_FILE)."""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from beacon.config import Settings
from beacon.errors import ConfigError


def tls_dir(settings: Settings) -> Path:
    return settings.data_dir.resolve() / "kafka" / "tls"


def ca_file(settings: Settings) -> Path:
    """The PEM of the local certificate authority clients trust."""
    return tls_dir(settings) / "ca.pem"


def secured(settings: Settings) -> bool:
    """True when the local broker is to listen with SASL_SSL instead of PLAINTEXT."""
    return settings.kafka.security_protocol == "SASL_SSL"


def _check(settings: Settings) -> tuple[str, str]:
    if not settings.kafka.sasl_mechanism.startswith("SCRAM-"):
        raise ConfigError(
            f"the local broker's SASL_SSL listener uses SCRAM; BEACON_KAFKA_SASL_MECHANISM is "
            f"{settings.kafka.sasl_mechanism}: set SCRAM-SHA-512 or SCRAM-SHA-256"
        )
    password = settings.kafka.sasl_password
    if not settings.kafka.sasl_username or password is None:
        raise ConfigError("the local SASL_SSL broker needs BEACON_KAFKA_SASL_USERNAME and BEACON_KAFKA_SASL_PASSWORD")
    return settings.kafka.sasl_username, password.get_secret_value()


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def ensure_certificates(settings: Settings) -> Path:
    """Make the CA and the broker's key and certificate once; returns the broker's PEM (key + chain)."""
    folder = tls_dir(settings)
    broker_pem = folder / "broker.pem"
    if broker_pem.exists() and ca_file(settings).exists():
        return broker_pem
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    until = now + datetime.timedelta(days=3650)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_cert = (
        x509.CertificateBuilder().subject_name(_name("Beacon local CA")).issuer_name(_name("Beacon local CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(until)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                    x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    _write_private(broker_pem, key_pem + cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    ca_file(settings).write_bytes(ca_cert.public_bytes(pem))
    return broker_pem


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def broker_properties(settings: Settings, port: int, controller_port: int) -> dict[str, str]:
    """The listener properties of a SASL_SSL broker: clients and the broker itself authenticate with
    the configured SCRAM user over TLS; the controller listener stays local."""
    user, password = _check(settings)
    mechanism = settings.kafka.sasl_mechanism
    broker_pem = ensure_certificates(settings)
    jaas = f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{user}" password="{password}";'
    return {
        "listeners": f"SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"SASL_SSL://127.0.0.1:{port}",
        "inter.broker.listener.name": "SASL_SSL",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL",
        "sasl.enabled.mechanisms": mechanism,
        "sasl.mechanism.inter.broker.protocol": mechanism,
        f"listener.name.sasl_ssl.{mechanism.lower()}.sasl.jaas.config": jaas,
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(broker_pem),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(ca_file(settings)),
    }


def format_arguments(settings: Settings) -> list[str]:
    """``kafka-storage format`` arguments that create the SCRAM user (KIP-900)."""
    user, password = _check(settings)
    return ["--add-scram", f"{settings.kafka.sasl_mechanism}=[name={user},password={password}]"]
