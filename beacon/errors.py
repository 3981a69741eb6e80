"""Beacon's exceptions: one root, a few meaningful subclasses.

Messages speak to the operator: what happened, to what, and what to do next.
"""

from __future__ import annotations


class BeaconError(Exception):
    """Root of every error Beacon raises on purpose."""


class ConfigError(BeaconError):
    """Settings are missing, invalid or inconsistent."""


class ServiceError(BeaconError):
    """A local service (broker, registry, database) could not be started, stopped or reached."""


class KafkaError(BeaconError):
    """A Kafka operation failed (produce not acknowledged, admin call failed, broker unreachable)."""


class TopicMismatchError(KafkaError):
    """A topic exists with settings that differ from the configured ones."""


class SerializationError(BeaconError):
    """Bytes could not be turned into a BeaconMessage, or the reverse."""


class RegistryUnavailableError(BeaconError):
    """The schema registry did not answer: retry, never dead-letter."""
