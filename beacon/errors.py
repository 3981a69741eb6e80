"""Beacon's exceptions: one root, a few meaningful subclasses.

Messages speak to the operator: what happened, to what, and what to do next.
"""

from __future__ import annotations


class BeaconError(Exception):
    """Root of every error Beacon raises on purpose."""


class ConfigError(BeaconError):
    """Settings are missing, invalid or inconsistent."""


class GroupConflictError(BeaconError):
    """Some messages of a coalesced group were recorded meanwhile by another turn (a replay grouped them
    differently): the group is not stored; the caller retries and the API then answers only the rest."""


class ServiceError(BeaconError):
    """A local service (broker, registry, database) could not be started, stopped or reached."""


class KafkaError(BeaconError):
    """A Kafka operation failed (produce not acknowledged, admin call failed, broker unreachable)."""


class KafkaAuthenticationError(KafkaError):
    """The brokers refused Beacon's credentials or certificate: retrying cannot help, fix the settings."""


class TopicMismatchError(KafkaError):
    """A topic exists with settings that differ from the configured ones."""


class SerializationError(BeaconError):
    """Bytes could not be turned into a BeaconMessage, or the reverse."""


class BadMessageError(SerializationError):
    """Bytes on a topic are not a decodable BeaconMessage: dead-letter them and go on.

    Carries where the record came from, so the operator can find it.
    """

    def __init__(self, reason: str, *, topic: str = "?", partition: int = -1, offset: int = -1) -> None:
        self.reason = reason
        self.topic = topic
        self.partition = partition
        self.offset = offset
        super().__init__(f"undecodable message on {topic} partition {partition} offset {offset}: {reason}")


class RegistryUnavailableError(BeaconError):
    """The schema registry did not answer: retry, never dead-letter."""


class NostrError(BeaconError):
    """A Nostr relay could not be reached, or refused an event."""


class BadEventError(NostrError):
    """A received Nostr event is dropped: ``reason`` is one of ``signature``, ``undecryptable``,
    ``format``, ``foreign`` (a sender that is not a configured peer) or ``target`` (not for us)."""

    def __init__(self, reason: str, detail: str, *, event_id: str = "?", sender: str = "?") -> None:
        self.reason = reason
        self.event_id = event_id
        self.sender = sender
        super().__init__(f"dropped Nostr event {event_id} from {sender}: {reason}: {detail}")
