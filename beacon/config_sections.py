"""The sections of Beacon's settings, one model per thing they configure (``settings.kafka``, ``settings.topics``...).

Each field keeps the environment variable it always had: ``BEACON_`` + the section's ``env_prefix`` + the field's
name (``settings.kafka.bootstrap`` is ``BEACON_KAFKA_BOOTSTRAP``), unless ``flat_names`` names it otherwise
(``settings.topics.inbound`` is ``BEACON_TOPIC_IN``). ``beacon.config.Settings`` reads them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode


class McpServerSpec(BaseModel):
    """An MCP server whose tools the agent may call: a command (stdio) or a URL (streamable HTTP)."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="Prefix of its tools' names as the LLM sees them.")
    command: str | None = Field(None, description="Executable started with stdio transport.")
    args: tuple[str, ...] = Field((), description="Arguments of the command.")
    url: str | None = Field(None, description="Streamable HTTP endpoint, e.g. http://127.0.0.1:8000/mcp.")

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerSpec:
        if (self.command is None) == (self.url is None):
            raise ValueError(f"MCP server {self.name!r} needs exactly one of `command` (stdio) or `url` (HTTP)")
        return self


class Section(BaseModel):
    """A group of settings; its fields' variables are ``BEACON_<env_prefix><field>`` unless ``flat_names`` says."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    #: What the section's variables start with after ``BEACON_`` (lower case), e.g. ``kafka_``.
    env_prefix: ClassVar[str] = ""
    #: Fields whose flat name (the variable without ``BEACON_``, lower case) does not follow ``env_prefix``.
    flat_names: ClassVar[dict[str, str]] = {}
    #: Fields whose flat name is their own name (``settings.api.hook_url`` is ``BEACON_HOOK_URL``).
    own_names: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def flat_name(cls, field: str) -> str:
        """The setting's flat name, e.g. ``kafka_bootstrap`` for ``KafkaSettings.bootstrap``."""
        if field in cls.own_names:
            return field
        return cls.flat_names.get(field, cls.env_prefix + field)


class KafkaSettings(Section):
    """How every Kafka client (gateways, workers, API, operations commands) reaches the brokers: address,
    timeouts, batching, TLS and SASL."""

    env_prefix: ClassVar[str] = "kafka_"

    bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers.")
    request_timeout: float = Field(
        5.0, description="Seconds before a Kafka request (admin call, produce) is reported as failed."
    )
    linger_ms: float = Field(
        5.0,
        description="Milliseconds a producer waits to batch messages (worker replies, the API; a gateway has "
        "BEACON_GATEWAY_LINGER_MS): 5 ms measured ~10% more end-to-end capacity than 2 ms on 2 cores, for a few "
        "ms of latency.",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT",
        description="How every Kafka client (gateways, workers, API, operations commands) talks to the brokers: "
        "`SASL_SSL` for managed clusters (Confluent Cloud, MSK, Aiven), `SSL` for TLS or mutual TLS.",
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN",
        description="SASL mechanism with SASL_PLAINTEXT / SASL_SSL (Confluent Cloud: PLAIN; MSK: SCRAM-SHA-512).",
    )
    sasl_username: str | None = Field(None, description="SASL user name (Confluent Cloud: the API key).")
    sasl_password: SecretStr | None = Field(
        None, description="SASL password (Confluent Cloud: the API secret); never logged."
    )
    ssl_ca_file: Path | None = Field(
        None, description="PEM file of the certificate authorities that sign the brokers' certificates; unset: the "
        "system's trust store."
    )
    ssl_cert_file: Path | None = Field(
        None, description="PEM client certificate for mutual TLS (with BEACON_KAFKA_SSL_KEY_FILE)."
    )
    ssl_key_file: Path | None = Field(None, description="PEM private key of the client certificate.")
    ssl_key_password: SecretStr | None = Field(None, description="Password of an encrypted client key.")

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL_") and (not self.sasl_username or self.sasl_password is None):
            raise ValueError(
                f"BEACON_KAFKA_SECURITY_PROTOCOL={self.security_protocol} needs BEACON_KAFKA_SASL_USERNAME and "
                "BEACON_KAFKA_SASL_PASSWORD"
            )
        if (self.ssl_cert_file is None) != (self.ssl_key_file is None):
            raise ValueError("BEACON_KAFKA_SSL_CERT_FILE and BEACON_KAFKA_SSL_KEY_FILE go together (mutual TLS)")
        return self


class RegistrySettings(Section):
    """The schema registry: where it is, its credentials, and how Beacon registers the BeaconMessage schema."""

    env_prefix: ClassVar[str] = "schema_registry_"
    flat_names: ClassVar[dict[str, str]] = {"auto_register": "schema_auto_register",
                                            "compatibility": "schema_compatibility"}

    url: str = Field(
        "http://127.0.0.1:8081/apis/ccompat/v7", description="The registry's Confluent-compatible URL."
    )
    username: str | None = Field(
        None, description="Basic-auth user of the schema registry (Confluent Cloud: the registry API key)."
    )
    password: SecretStr | None = Field(
        None, description="Basic-auth password of the schema registry; never logged."
    )
    ca_file: Path | None = Field(
        None, description="PEM file of the certificate authorities that sign an https registry's certificate; "
        "unset: the system's trust store."
    )
    auto_register: bool = Field(
        True,
        description="Register the BeaconMessage schema for bm_in/bm_out at start-up; false = only look it up "
        "(production, where `beacon schemas register` runs in the deploy pipeline).",
    )
    compatibility: str = Field(
        "FULL_TRANSITIVE",
        description="Compatibility level set on the BeaconMessage subjects by `beacon schemas register`: FULL so "
        "producers and consumers can upgrade in any order, TRANSITIVE because retained messages of every "
        "earlier version may be replayed.",
    )


class TopicSettings(Section):
    """Beacon's topics: names, partitions, replication and retention."""

    env_prefix: ClassVar[str] = "topic_"
    flat_names: ClassVar[dict[str, str]] = {"inbound": "topic_in", "outbound": "topic_out", "dlq": "topic_dlq"}
    own_names: ClassVar[frozenset[str]] = frozenset({"dlq_retention_ms"})

    inbound: str = Field("bm_in", description="Inbound topic: messages and statuses from channels.")
    outbound: str = Field("bm_out", description="Outbound topic: replies to send through channels.")
    dlq: str = Field("bm_dlq", description="Dead-letter topic.")
    partitions: int = Field(12, description="Partitions of bm_in / bm_out (and bm_dlq).")
    replication_factor: int = Field(1, description="Replication factor of Beacon's topics.")
    min_insync_replicas: int | None = Field(
        None, description="min.insync.replicas of Beacon's topics (2 in production with 3 replicas)."
    )
    retention_ms: int = Field(
        7 * 24 * 3600 * 1000, description="Retention of bm_in / bm_out in milliseconds (default 7 days)."
    )
    dlq_retention_ms: int = Field(
        30 * 24 * 3600 * 1000, description="Retention of bm_dlq in milliseconds (default 30 days)."
    )

    @field_validator("partitions", "replication_factor")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least 1")
        return value


class ApiSettings(Section):
    """The API layer: where it listens and is reached, its pipeline of handlers, the customer-service window and
    the external hook."""

    env_prefix: ClassVar[str] = "api_"
    own_names: ClassVar[frozenset[str]] = frozenset({"served_channels", "hook_url", "hook_token", "hook_timeout",
                                                     "window_hours", "window_template", "history_command_size"})

    url: str = Field("http://127.0.0.1:8000", description="Where workers reach the API layer.")
    ca_file: Path | None = Field(
        None, description="PEM file of the certificate authorities that sign an https BEACON_API_URL's certificate "
        "(trusted by workers, gateways and the console); unset: the system's trust store."
    )
    token: SecretStr = Field(SecretStr("dev-token"), description="Service token workers send the API.")
    host: str = Field("127.0.0.1", description="Interface the API layer listens on.")
    port: int = Field(8000, description="Port of the API layer.")
    retry_after: int = Field(
        5, description="Seconds the API asks callers to wait (`Retry-After`) when it answers 503 (database down)."
    )
    max_body_bytes: int = Field(
        8 * 1024 * 1024,
        description="Largest request body the API accepts (else 413, before reading it); must hold a worker's "
        "batch of BEACON_WORKER_API_BATCH messages.",
    )
    served_channels: tuple[str, ...] = Field(
        ("whatsapp",),
        description="Channels this deployment runs a gateway for (JSON list); `POST /v1/messages/send` refuses "
        "others with 422, since nothing would deliver them.",
    )
    pipeline: Annotated[tuple[str, ...], NoDecode] = Field(
        ("commands", "agent", "hook", "fallback"),
        description="Ordered handlers of the API pipeline, comma-separated or a JSON list: built-ins (commands, "
        "agent, hook, fallback; agent runs only with BEACON_LLM_BASE_URL, hook only with BEACON_HOOK_URL), "
        "your own by import path (`mybot.handlers:bot`) or entry point name (group `beacon.handlers`).",
    )
    workers: int = Field(1, description="uvicorn worker processes of `beacon api`.")
    hook_url: str | None = Field(
        None, description="External pipeline: URL that receives the message JSON and returns {'replies': [...]}."
    )
    hook_token: SecretStr | None = Field(None, description="Bearer token sent to the external pipeline hook.")
    hook_timeout: float = Field(10.0, description="Seconds the external pipeline hook may take.")
    window_hours: float = Field(
        24.0, description="Customer-service window: free-form replies only this long after the user last wrote."
    )
    window_template: str | None = Field(
        None,
        description="JSON of the Cloud API template object sent instead of a free-form reply outside the window; "
        "unset: such replies are refused with a reason.",
    )
    history_command_size: int = Field(5, description="Messages `/history` shows.")

    @field_validator("pipeline", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        """``commands,mybot.handlers:bot,fallback`` or a JSON list."""
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [name.strip() for name in value.split(",") if name.strip()]
        return value


class DatabaseSettings(Section):
    """The API layer's database: URL, connection pool, migrations."""

    env_prefix: ClassVar[str] = "db_"
    flat_names: ClassVar[dict[str, str]] = {"url": "database_url"}

    url: str | None = Field(
        None, description="SQLAlchemy URL; default SQLite at <data dir>/beacon.db."
    )
    pool_size: int = Field(20, description="Database connections kept open per API process.")
    max_overflow: int = Field(
        0,
        description="Extra connections above the pool size, opened and closed under load (connection churn "
        "costs more than queueing for a pooled one, hence 0).",
    )
    pool_timeout: float = Field(
        10.0, description="Seconds to wait for a pooled connection (then the request is answered 503)."
    )
    pool_pre_ping: bool = Field(
        False,
        description="Test each pooled connection before use (with asyncpg a BEGIN, a ping and a ROLLBACK: about "
        "14% of the API's CPU per request). Off, a connection left dead by a database restart or failover fails "
        "its first use, the pool drops it and every older one, and the processing endpoints try the request "
        "once more on a new connection (other routes answer that one request 503). PostgreSQL only: a SQLite "
        "connection (a local file) is never pinged.",
    )
    sqlite_busy_timeout: float = Field(
        10.0, description="Seconds a SQLite write waits for another writer's lock before answering 503."
    )
    sqlite_on_loop: bool = Field(
        True,
        description="Run SQLite statements, commits and rollbacks on the API's event loop instead of a trip "
        "each to aiosqlite's thread; one that finds the database locked waits for it on that thread (up to "
        "BEACON_DB_SQLITE_BUSY_TIMEOUT), never on the loop. Off: every call goes to the thread.",
    )
    auto_migrate: bool = Field(
        False, description="`beacon api` applies pending migrations at start-up instead of refusing to start."
    )


class OutboxSettings(Section):
    """Delivery of the outbox events handlers record."""

    env_prefix: ClassVar[str] = "outbox_"

    url: str | None = Field(
        None, description="Where the API POSTs each outbox event your handlers record (JSON, header "
        "`Idempotency-Key` = event id); a 2xx marks it done, anything else is retried with backoff.",
    )
    callback: str | None = Field(
        None, description="Import path of an async function taking a beacon.bot.OutboxItem, called for each "
        "outbox event instead of BEACON_OUTBOX_URL (raising = retry with backoff).",
    )
    poll_interval: float = Field(
        1.0, description="Seconds between looks for due outbox events (a turn that records one wakes it at once)."
    )
    retry_base_delay: float = Field(1.0, description="First delay before re-delivering a failed outbox event.")
    retry_max_delay: float = Field(300.0, description="Upper bound of one outbox re-delivery delay.")
    timeout: float = Field(
        10.0, description="Seconds one outbox delivery may take; also the lease that keeps other API "
        "processes from delivering the same event meanwhile.",
    )


class GatewaySettings(Section):
    """What every channel's gateway shares: webhook intake, outbound sending, media fetching."""

    env_prefix: ClassVar[str] = "gateway_"
    own_names: ClassVar[frozenset[str]] = frozenset({"media_max_bytes", "media_cache_bytes", "media_cache_dir",
                                                     "media_timeout"})

    host: str = Field("127.0.0.1", description="Interface every channel's gateway listens on.")
    url: str | None = Field(
        None, description="Where the fake Cloud API posts webhooks; default http://127.0.0.1:<gateway port>."
    )
    ack_timeout: float = Field(
        3.0, description="Seconds a webhook waits for the broker's acknowledgement before answering 503."
    )
    linger_ms: float = Field(
        1.0, ge=0, description="Milliseconds a gateway's producer waits to batch webhooks' messages for bm_in "
        "(BEACON_KAFKA_LINGER_MS is the workers'): each webhook waits for its ack, so the linger is added to every "
        "answer. Measured with `beacon bench gateway` on 2 cores: time to the 200 at 100/s p50 4.9 ms at 1, 9.2 "
        "at 5, 4.2 at 0; webhooks/s at full speed 1,280-1,380 at 1, 1,190-1,270 at 5, 1,070-1,080 at 0."
    )
    max_body_bytes: int = Field(3 * 1024 * 1024, description="Largest webhook body accepted (else 413).")
    max_in_flight: int = Field(512, description="Outbound sends in flight at once, across users.")
    max_pending: int = Field(
        20000, description="bm_out records taken from Kafka but not yet settled before fetching pauses."
    )
    shutdown_timeout: float = Field(15.0, description="Seconds to finish in-flight sends on SIGTERM.")
    typing_max_seconds: float = Field(
        60.0,
        description="Longest a gateway keeps a typing indicator alive (Telegram's lasts 5 s, so it is sent again "
        "every BEACON_TELEGRAM_TYPING_REFRESH seconds) while no message to that user has gone out since.",
    )
    max_attempts: int = Field(
        5, description="Attempts at one outbound message that fails with an unexpected error (a bug, a record it "
        "cannot handle) before it is dead-lettered with a failed status, so one user is never held back for ever."
    )
    max_record_bytes: int = Field(
        900_000, description="Largest record the gateway produces (the broker refuses larger ones): a bigger "
        "inbound message is delivered as `unsupported` with a too-large error, a bigger status without content."
    )
    urls: dict[str, str] = Field(
        default_factory=dict,
        description='Where the API reaches each channel\'s gateway for media bytes, as JSON {"whatsapp": '
        '"http://127.0.0.1:8080", "telegram": "http://127.0.0.1:8082"}; a channel not named uses '
        "http://127.0.0.1:<its gateway port>.",
    )
    media_max_bytes: int = Field(
        16 * 1024 * 1024, description="Largest media file a gateway fetches from its channel for the API "
        "(`GET /media/...`, else 413; never read past it)."
    )
    media_cache_bytes: int = Field(
        512 * 1024 * 1024, description="Total size of a gateway's cache of fetched media (least recently read "
        "files evicted first; 0 = no cache)."
    )
    media_cache_dir: Path | None = Field(
        None, description="Directory of a gateway's media cache; default <data dir>/media-cache/<channel>."
    )
    media_timeout: float = Field(
        30.0, description="Seconds `turn.media_bytes()` waits for the gateway (which fetches from the channel)."
    )


class WorkerSettings(Section):
    """The workers: consumer group, concurrency, API calls, retries, shutdown."""

    env_prefix: ClassVar[str] = "worker_"
    own_names: ClassVar[frozenset[str]] = frozenset({"coalesce_window_ms"})

    group: str = Field("beacon-workers", description="Consumer group (Faust app id) of the workers.")
    web_port: int = Field(6066, description="Port of a worker's web server (metrics, health).")
    max_in_flight: int = Field(1000, description="Messages a worker processes at once, across users.")
    api_timeout: float = Field(30.0, description="Seconds a worker waits for one API call.")
    retry_max_attempts: int = Field(
        8,
        description="API attempts before a message that fails on its own (a 5xx or timeout while the API's /readyz "
        "answers) is dead-lettered; attempts made while the API is unreachable do not count.",
    )
    retry_base_delay: float = Field(0.2, description="First retry delay in seconds (doubles each time).")
    retry_max_delay: float = Field(10.0, description="Upper bound of one retry delay in seconds.")
    api_probe_timeout: float = Field(
        2.0, description="Seconds a worker waits for the API's /readyz while probing whether it is back."
    )
    api_probe_max_delay: float = Field(
        5.0,
        description="Upper bound in seconds of the delay between two /readyz probes while the API is unreachable "
        "(exponential from BEACON_WORKER_RETRY_BASE_DELAY, with jitter).",
    )
    shutdown_timeout: float = Field(20.0, description="Seconds to finish in-flight work on shutdown.")
    typing_delay: float = Field(
        1.0,
        description="Seconds a user's message may be in processing (an LLM taking seconds) before the worker asks "
        "the channel to show typing (a `read_receipt` with typing on bm_out: WhatsApp marks the message read and "
        "shows typing, Telegram sends `typing`). Faster answers show none. 0 = never.",
    )
    coalesce_window_ms: int | None = Field(
        None,
        description="Coalescing: a user's text and media messages that arrive within this many milliseconds of "
        "each other (debounce), or queue up behind one in processing, are answered together as one turn (one API "
        "call, one LLM request, one reply). Commands (`/word`), statuses and events are never merged. Empty "
        "(default): 1500 when `BEACON_LLM_BASE_URL` is set (an LLM answers: merging saves paid calls and confused "
        "replies), else off (built-in replies take milliseconds). 0 = off.",
    )
    rebalance_timeout: float = Field(
        8.0, description="Seconds to finish in-flight work of revoked partitions before abandoning it."
    )
    session_timeout: float = Field(
        10.0, description="Kafka session timeout of a worker: how soon a dead worker's partitions move."
    )
    commit_interval: float = Field(1.0, description="Seconds between a worker's offset commits.")
    web_host: str = Field("127.0.0.1", description="Interface a worker's web server (metrics) binds.")
    api_batch: int = Field(
        256,
        description="Most messages (of different users) a worker sends the API in one request; batches form only "
        "while earlier requests are in flight, so light traffic goes one by one. 1 = one request per message.",
    )
    api_batch_requests: int = Field(
        4,
        description="Batch requests a worker keeps in flight at once (raised when needed so that batch requests "
        "times batch size covers BEACON_WORKER_MAX_IN_FLIGHT: a slow API must not cap the messages in flight).",
    )
    api_connections: int = Field(
        0, description="Most HTTP connections a worker opens to the API (0 = BEACON_WORKER_MAX_IN_FLIGHT)."
    )
    uvloop: bool = Field(True, description="Run the worker's event loop on uvloop (when installed).")
    profile: Path | None = Field(
        None, description="Write a cProfile of the worker process to this file when it exits (benchmarks)."
    )
    pipeline: Literal["api", "echo"] = Field(
        "api",
        description="`api` calls the API layer; `echo` answers `You said: <text>` in process (benchmarks only).",
    )


class LlmSettings(Section):
    """The LLM agent handler and the MCP servers whose tools it may call."""

    env_prefix: ClassVar[str] = "llm_"
    own_names: ClassVar[frozenset[str]] = frozenset({"mcp_servers", "mcp_timeout"})

    base_url: str | None = Field(None, description="OpenAI-compatible endpoint for the agent handler.")
    model: str = Field("gpt-4o-mini", description="Model name sent to the LLM endpoint.")
    api_key: SecretStr | None = Field(None, description="API key for the LLM endpoint.")
    timeout: float = Field(30.0, description="Seconds the agent waits for one LLM call before its fallback reply.")
    system_prompt: str = Field(
        "You are Beacon, a helpful assistant answering chat messages briefly.",
        description="System prompt the agent sends first.",
    )
    history_messages: int = Field(20, description="Most conversation messages the agent sends the LLM.")
    history_chars: int = Field(8000, description="Character budget of the history the agent sends the LLM.")
    max_tool_rounds: int = Field(4, description="Tool-call rounds the agent allows per message.")
    fallback_reply: str = Field(
        "Sorry, I can't answer right now. Please try again in a moment.",
        description="Reply sent when the LLM fails or times out.",
    )
    mcp_servers: tuple[McpServerSpec, ...] = Field(
        (),
        description='MCP servers whose tools the agent may call, as JSON: [{"name": "calc", "command": "python", '
        '"args": ["server.py"]} (stdio) or {"name": "web", "url": "http://host/mcp"} (streamable HTTP)].',
    )
    mcp_timeout: float = Field(10.0, description="Seconds for connecting to an MCP server or one tool call.")


class ConsoleSettings(Section):
    """The operator console (`beacon console`)."""

    env_prefix: ClassVar[str] = "console_"

    host: str = Field("127.0.0.1", description="Interface the operator console listens on.")
    port: int = Field(8084, description="Port of the operator console (`beacon console`).")
    token: SecretStr | None = Field(
        None, description="Operator login token of the console; production refuses to start without one, "
        "development generates one and prints the login URL."
    )
    sample_seconds: float = Field(
        2.0, description="Seconds between two samples of bm_in/bm_out end offsets for the console's chart."
    )
    chart_minutes: float = Field(5.0, description="Minutes of messages per second the console's chart shows.")


class LocalServiceSettings(Section):
    """The local services Beacon runs for development: Kafka, the registry, the relay, the fakes, `beacon dev`."""

    env_prefix: ClassVar[str] = ""

    kafka_controller_port: int = Field(
        9093, description="Port of the local broker's KRaft controller listener (local Kafka only)."
    )
    kafka_heap: str = Field("384m", description="JVM heap (-Xmx/-Xms) of the local broker.")
    kafka_cluster_heap: str = Field(
        "256m", description="JVM heap of each node of the local cluster (`beacon kafka start --brokers 3`)."
    )
    kafka_start_timeout: float = Field(60.0, description="Seconds `beacon kafka start` waits for the broker.")
    registry_heap: str = Field("256m", description="JVM heap of the local schema registry.")
    registry_start_timeout: float = Field(90.0, description="Seconds `beacon registry start` waits.")
    fake_whatsapp_host: str = Field("127.0.0.1", description="Interface the fake Cloud API listens on.")
    fake_telegram_host: str = Field("127.0.0.1", description="Interface the fake Bot API listens on.")
    fake_telegram_port: int = Field(8091, description="Port of the fake Bot API (`beacon fake-telegram`).")
    nostr_relay_port: int = Field(7447, description="Port of the local relay (`beacon relay start`), on 127.0.0.1.")
    dev_workers: int = Field(2, description="Worker processes `beacon dev` starts.")
    fake_whatsapp_port: int = Field(8090, description="Port of the fake Cloud API in `beacon dev`.")
