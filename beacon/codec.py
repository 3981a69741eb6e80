"""The one place that turns BeaconMessages into bytes and back: Avro (fastavro) in the Confluent
wire format, with schemas held in a schema registry.

Wire format: magic byte ``0``, the writer schema's registry id (4 bytes, big endian), then the
Avro body. Subjects follow the topic strategy (``<topic>-value``), named explicitly here rather
than left to a serializer default. A reader fetches the writer's schema by id (once, then cached)
and resolves it into the schema this code holds, so messages written by older and newer code
both decode. Bad bytes raise :class:`BadMessageError` (dead-letter them); a registry that does not
answer raises :class:`RegistryUnavailableError` (retry, never dead-letter); one that refuses (4xx)
raises :class:`RegistryError` (the operator must act: register the schema, fix the credentials).
"""

from __future__ import annotations

import asyncio
import importlib
import io
import json
import logging
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import fastavro

from beacon.backoff import backoff_delay
from beacon.config import Settings
from beacon.errors import BadMessageError, RegistryError, RegistryUnavailableError
from beacon.messages import BeaconMessage, InteractiveReply, Location, Media, Reaction, StatusError

log = logging.getLogger("beacon.codec")

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "beacon_message.avsc"
MAGIC = 0
_HEADER = struct.Struct(">bI")
_NESTED: dict[str, type[Any]] = {
    "media": Media,
    "location": Location,
    "reaction": Reaction,
    "interactive_reply": InteractiveReply,
    "error": StatusError,
}
T = TypeVar("T")

if TYPE_CHECKING:
    from confluent_kafka.schema_registry import SchemaRegistryClient, SchemaRegistryError

# confluent_kafka.schema_registry is imported where the registry is called, not here: it imports authlib and
# httpx2 (~0.2 s of CPU), and processes that only build records (the API's validation) never call the registry.


@cache
def _transport_errors() -> tuple[type[Exception], ...]:
    """Network errors of the registry client: it uses httpx2 when installed, else httpx."""
    errors: list[type[Exception]] = []
    for module in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(module).TransportError)
        except ImportError:
            continue
    return tuple(errors)


#: 4xx answers that mean "not now" rather than "no": retried like an outage
_RETRYABLE_4XX = frozenset({408, 429})


def refused(exc: SchemaRegistryError) -> bool:
    """Whether the registry answered the request with a refusal (a 4xx other than 408/429): asking again
    gets the same answer. 5xx, 408, 429 and no answer at all (status -1) are outages, waited out."""
    return 400 <= exc.http_status_code < 500 and exc.http_status_code not in _RETRYABLE_4XX


def load_schema_text(path: Path = SCHEMA_PATH) -> str:
    """The BeaconMessage schema as the working tree holds it (canonical JSON text)."""
    return json.dumps(json.loads(path.read_text()), separators=(",", ":"))


def subject_for(topic: str) -> str:
    """The registry subject of a topic's values (topic name strategy)."""
    return f"{topic}-value"


def make_registry_client(settings: Settings) -> SchemaRegistryClient:
    from confluent_kafka.schema_registry import SchemaRegistryClient

    # Few client-side retries: callers decide how long to keep trying (retry_registry).
    config: dict[str, Any] = {
        "url": settings.registry.url, "timeout": 5, "max.retries": 1, "retries.wait.ms": 200,
    }
    auth = registry_basic_auth(settings)
    if auth is not None:
        config["basic.auth.user.info"] = f"{auth[0]}:{auth[1]}"
    if settings.registry.ca_file is not None:
        config["ssl.ca.location"] = str(settings.registry.ca_file)
    return SchemaRegistryClient(config)


def registry_basic_auth(settings: Settings) -> tuple[str, str] | None:
    """The registry's basic-auth (user, password), or None when no user is configured."""
    if not settings.registry.username:
        return None
    password = settings.registry.password
    return settings.registry.username, password.get_secret_value() if password is not None else ""


def registry_http_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for an ``httpx.Client`` that reads the registry's REST API directly (the
    console): basic auth and the CA file, as :func:`make_registry_client` uses them."""
    options: dict[str, Any] = {"auth": registry_basic_auth(settings)}
    if settings.registry.ca_file is not None:
        options["verify"] = ssl.create_default_context(cafile=str(settings.registry.ca_file))
    return options


def to_record(msg: BeaconMessage) -> dict[str, Any]:
    """The Avro record (a dict fastavro writes) of a message."""
    record = dict(msg.__dict__)
    for name in _NESTED:
        value = record[name]
        if value is not None:
            record[name] = dict(value.__dict__)
    return record


def from_record(record: dict[str, Any]) -> BeaconMessage:
    """A message from an Avro record already checked by the reader schema.

    Schema resolution yields exactly the fields of the reader schema, which are the model's fields
    (a test holds them equal), so the model is built without a second validation: decoding is on
    every consumer's hot path.
    """
    for name, model in _NESTED.items():
        value = record[name]
        if value is not None:
            record[name] = _construct(model, value)
    return _construct(BeaconMessage, record)


def _construct(model: type[T], values: dict[str, Any]) -> T:
    obj = model.__new__(model)
    object.__setattr__(obj, "__dict__", values)
    object.__setattr__(obj, "__pydantic_fields_set__", set(values))
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


class MessageCodec:
    """Encodes and decodes BeaconMessages for one process; thread-safe, caches every schema it met."""

    def __init__(self, settings: Settings, client: SchemaRegistryClient | None = None,
                 schema_text: str | None = None) -> None:
        self.settings = settings
        self.client = client if client is not None else make_registry_client(settings)
        self.schema_text = schema_text if schema_text is not None else load_schema_text()
        self.reader_schema = fastavro.parse_schema(json.loads(self.schema_text))
        self._ids: dict[str, int] = {}  # topic -> id of our schema under its subject
        self._writers: dict[int, Any] = {}  # schema id -> parsed writer schema (None: it is ours)
        self._lock = threading.Lock()

    # --- registry ---------------------------------------------------------------------------

    def prepare(self, topics: Iterable[str]) -> None:
        """Register (or, without auto-registration, look up) our schema for each topic's values."""
        for topic in topics:
            self.schema_id(topic)

    def schema_id(self, topic: str) -> int:
        """The registry id of our schema under ``<topic>-value``; registers it when allowed."""
        known = self._ids.get(topic)
        if known is not None:
            return known
        from confluent_kafka.schema_registry import Schema, SchemaRegistryError

        subject = subject_for(topic)
        schema = Schema(self.schema_text, "AVRO")
        try:
            if self.settings.registry.auto_register:
                schema_id = self.client.register_schema(subject, schema)
            else:
                schema_id = self.client.lookup_schema(subject, schema).schema_id or 0
        except SchemaRegistryError as exc:
            if not refused(exc):
                raise self._unavailable(exc) from exc
            if exc.http_status_code == 404:
                hint = ("the schema in this code is not registered; run `beacon schemas register` (or check it with "
                        "`beacon schemas check`)")
            elif exc.http_status_code in (401, 403):
                hint = ("the registry refused Beacon's credentials; check BEACON_SCHEMA_REGISTRY_USERNAME / _PASSWORD "
                        "(`beacon config show`)")
            else:
                hint = "this schema is incompatible with the subject's history; run `beacon schemas check`"
            raise RegistryError(f"registry at {self.settings.registry.url} refused the BeaconMessage schema for "
                                f"{subject} ({exc.http_status_code}): {exc.error_message}; {hint}",
                                status=exc.http_status_code, code=exc.error_code) from exc
        except _transport_errors() as exc:
            raise self._unavailable(exc) from exc
        if not schema_id:
            raise RegistryError(
                f"registry answered no schema id for {subject}; is it a Confluent-compatible registry?")
        with self._lock:
            self._ids[topic] = schema_id
            self._writers.setdefault(schema_id, None)
        return schema_id

    def _writer(self, schema_id: int, topic: str, partition: int, offset: int) -> Any:
        try:
            return self._writers[schema_id]
        except KeyError:
            pass
        from confluent_kafka.schema_registry import SchemaRegistryError

        try:
            registered = self.client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise BadMessageError(f"unknown schema id {schema_id} (not in the registry)",
                                      topic=topic, partition=partition, offset=offset) from exc
            if refused(exc):
                raise RegistryError(f"registry at {self.settings.registry.url} refused to give schema id "
                                    f"{schema_id} ({exc.http_status_code}): {exc.error_message}; check "
                                    "BEACON_SCHEMA_REGISTRY_USERNAME / _PASSWORD (`beacon config show`)",
                                    status=exc.http_status_code, code=exc.error_code) from exc
            raise self._unavailable(exc) from exc
        except _transport_errors() as exc:
            raise self._unavailable(exc) from exc
        try:
            parsed = fastavro.parse_schema(json.loads(registered.schema_str or ""))
        except (ValueError, fastavro.schema.SchemaParseException) as exc:
            raise BadMessageError(f"schema id {schema_id} is not a usable Avro schema: {exc}",
                                  topic=topic, partition=partition, offset=offset) from exc
        if not (isinstance(parsed, dict) and parsed.get("name") == "beacon.BeaconMessage"):
            raise BadMessageError(f"schema id {schema_id} is not a BeaconMessage schema",
                                  topic=topic, partition=partition, offset=offset)
        with self._lock:
            self._writers[schema_id] = parsed
        return parsed

    def _unavailable(self, exc: Exception) -> RegistryUnavailableError:
        return RegistryUnavailableError(
            f"schema registry at {self.settings.registry.url} did not answer ({exc}); "
            "is it running (`beacon registry status`)? Beacon retries until it answers."
        )

    # --- bytes ----------------------------------------------------------------------------------

    def encode(self, msg: BeaconMessage, topic: str) -> bytes:
        """The message in the Confluent wire format, under ``<topic>-value``."""
        return self.encode_record(to_record(msg), topic)

    def encode_record(self, record: dict[str, Any], topic: str) -> bytes:
        """An Avro record of this codec's schema in the Confluent wire format."""
        buf = io.BytesIO()
        buf.write(_HEADER.pack(MAGIC, self.schema_id(topic)))
        fastavro.schemaless_writer(buf, self.reader_schema, record)
        return buf.getvalue()

    def decode(self, data: bytes | None, *, topic: str, partition: int = -1, offset: int = -1) -> BeaconMessage:
        """A message from Confluent-framed bytes; BadMessageError names where bad bytes came from."""
        return from_record(self.decode_record(data, topic=topic, partition=partition, offset=offset))

    def decode_record(self, data: bytes | None, *, topic: str, partition: int = -1, offset: int = -1) -> dict[str, Any]:
        """The Avro record in Confluent-framed bytes, resolved into this codec's schema."""
        if data is None or len(data) < _HEADER.size:
            raise BadMessageError(
                "empty value" if not data else f"only {len(data)} bytes, shorter than the 5-byte header",
                topic=topic, partition=partition, offset=offset,
            )
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise BadMessageError(f"wrong magic byte {magic} (expected 0: not Confluent-framed Avro)",
                                  topic=topic, partition=partition, offset=offset)
        writer = self._writer(schema_id, topic, partition, offset)
        body = io.BytesIO(data)
        body.seek(_HEADER.size)
        try:
            if writer is None:
                record = fastavro.schemaless_reader(body, self.reader_schema, None)
            else:
                record = fastavro.schemaless_reader(body, writer, self.reader_schema)
        except (EOFError, StopIteration, ValueError, IndexError, UnicodeDecodeError, struct.error,
                fastavro.read.SchemaResolutionError) as exc:
            raise BadMessageError(f"Avro body does not decode with schema id {schema_id}: "
                                  f"{type(exc).__name__}: {exc or 'truncated'}",
                                  topic=topic, partition=partition, offset=offset) from exc
        if body.tell() != len(data):
            raise BadMessageError(f"{len(data) - body.tell()} trailing bytes after the Avro body",
                                  topic=topic, partition=partition, offset=offset)
        if not isinstance(record, dict):
            raise BadMessageError("Avro body is not a record", topic=topic, partition=partition, offset=offset)
        return record


_codecs: dict[tuple[str, bool], MessageCodec] = {}
_codecs_lock = threading.Lock()


def get_codec(settings: Settings) -> MessageCodec:
    """The process's codec for this registry (one instance per registry URL, so caches are shared)."""
    key = (settings.registry.url, settings.registry.auto_register)
    with _codecs_lock:
        codec = _codecs.get(key)
        if codec is None:
            codec = _codecs[key] = MessageCodec(settings)
        return codec


class _RegistryOutage:
    """The registry's outage as this process sees it: said once when it starts and once when it ends,
    however many calls wait meanwhile (a worker has hundreds of messages in flight)."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.waiting = 0

    def failed(self, exc: RegistryUnavailableError) -> None:
        if self.since is None:
            self.since = time.monotonic()
            log.warning("%s; every call that needs a schema waits and retries (nothing is dead-lettered for it) "
                        "until the registry answers again", exc)

    def answered(self) -> None:
        if self.since is not None:
            log.warning("the schema registry answers again after %.1fs; %d waiting call(s) resume",
                        time.monotonic() - self.since, self.waiting)
            self.since = None


_registry_outage = _RegistryOutage()


async def retry_registry(call: Callable[..., T], *args: Any, max_delay: float = 10.0, **kwargs: Any) -> T:
    """Run a blocking codec call in a thread, retrying while the registry is unavailable.

    Registry outages are waited out with the backoff policy (:mod:`beacon.backoff`), never dead-lettered:
    the bytes are fine, only the schema lookup failed. BadMessageError and a refusal (RegistryError) pass
    through. The outage is logged once when it starts and once when it ends, not once per call or attempt.
    """
    attempt = 0
    outage = _registry_outage
    try:
        while True:
            try:
                result = await asyncio.to_thread(call, *args, **kwargs)
            except RegistryUnavailableError as exc:
                attempt += 1
                if attempt == 1:
                    outage.waiting += 1
                outage.failed(exc)
                delay = backoff_delay(attempt, 0.2, max_delay)
                log.debug("%s (attempt %d; retrying in %.1fs)", exc, attempt, delay)
                await asyncio.sleep(delay)
                continue
            outage.answered()
            return result
    finally:
        if attempt:
            outage.waiting -= 1
