"""Beacon's exceptions: one root, a few meaningful subclasses.

Messages speak to the operator: what happened, to what, and what to do next. Every error says whether
trying the same thing again may succeed (``retryable``): each class sets the default, an instance may
say otherwise (``retryable=`` when raised). Retry loops give up at once on an error that is not retryable.
Control-flow exceptions that are not failures (``beacon.lanes.LeaveUnfinished``) stay outside this tree.
"""

from __future__ import annotations


class BeaconError(Exception):
    """Root of every error Beacon raises on purpose."""

    #: Whether trying the same thing again may succeed (an outage), or never will (a refusal, a bad input).
    retryable: bool = False

    def __init__(self, *args: object, retryable: bool | None = None) -> None:
        super().__init__(*args)
        if retryable is not None:
            self.retryable = retryable


class ConfigError(BeaconError):
    """Settings are missing, invalid or inconsistent."""


class GroupConflictError(BeaconError):
    """Some messages of a coalesced group were recorded meanwhile by another turn (a replay grouped them
    differently): the group is not stored; the caller retries and the API then answers only the rest."""


class ServiceError(BeaconError):
    """A local service (broker, registry, database) could not be started, stopped or reached."""

    retryable = True


class KafkaError(BeaconError):
    """A Kafka operation failed (produce not acknowledged, admin call failed, broker unreachable).

    ``code`` is librdkafka's error code when the client gave one (``confluent_kafka.KafkaError``'s
    constants), ``fatal`` whether the client itself is unusable from now on. Retryable unless fatal or
    the code says the broker refuses this request every time (:func:`beacon.kafka.kafka_error` decides).
    """

    retryable = True  # a broker that does not answer is waited out

    def __init__(self, message: str, *, code: int | None = None, fatal: bool = False,
                 retryable: bool | None = None) -> None:
        super().__init__(message, retryable=False if fatal else retryable)
        self.code = code
        self.fatal = fatal


class KafkaAuthenticationError(KafkaError):
    """The brokers refused Beacon's credentials or certificate: retrying cannot help, fix the settings."""

    retryable = False


class TopicMismatchError(KafkaError):
    """A topic exists with settings that differ from the configured ones."""

    retryable = False


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


class RegistryError(BeaconError):
    """The schema registry refused a request (a 4xx other than 408/429: the schema is not registered or
    is incompatible, the credentials are wrong): retrying the same request cannot help, the operator must act.
    ``status`` is the HTTP status, ``code`` the registry's own error code when it gave one."""

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class RegistryUnavailableError(RegistryError):
    """The schema registry did not answer (connection, timeout, 5xx, 408, 429): retry, never dead-letter."""

    retryable = True


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
