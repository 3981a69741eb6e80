"""Beacon's settings: one typed object, read from ``BEACON_*`` variables and an optional ``.env``.

Every process (gateway, worker, API, the local services and the operations commands) reads
this same class, so a name means the same thing everywhere. Secrets are ``SecretStr`` and are
never logged. Defaults work on a laptop: local Kafka, local registry, SQLite in the data dir.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

#: The coalescing window when an LLM answers and ``BEACON_COALESCE_WINDOW_MS`` is unset: people type a
#: follow-up within a second or two; longer holds every answer back for everyone.
DEFAULT_AGENT_COALESCE_MS = 1500

#: Secrets shipped as defaults for local development; refused when ``BEACON_ENV=production``.
DEV_PLACEHOLDER_SECRETS = frozenset({"dev-token", "dev-secret", "dev-verify-token", "changeme", ""})


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


class Settings(BaseSettings):
    """All of Beacon's settings. Field ``foo_bar`` is read from ``BEACON_FOO_BAR``."""

    model_config = SettingsConfigDict(
        env_prefix="BEACON_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        populate_by_name=True,  # a renamed setting reads its old variable too (validation_alias), code uses its name
    )

    # --- general --------------------------------------------------------------------------
    env: Literal["development", "production"] = Field(
        "development", description="`production` refuses placeholder secrets and unsigned webhooks."
    )
    data_dir: Path = Field(Path(".beacon"), description="Where local state lives: broker data, SQLite, logs.")
    log_level: str = Field("INFO", description="Log level of every Beacon process.")
    otel_endpoint: str | None = Field(
        None, description="OTLP/HTTP endpoint (e.g. `http://127.0.0.1:4318`) every process exports its OpenTelemetry "
        "spans to (`/v1/traces` is appended); unset, no span is made and the OpenTelemetry SDK is not even imported."
    )

    # --- Kafka ----------------------------------------------------------------------------
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers.")
    kafka_controller_port: int = Field(
        9093, description="Port of the local broker's KRaft controller listener (local Kafka only)."
    )
    kafka_heap: str = Field("384m", description="JVM heap (-Xmx/-Xms) of the local broker.")
    kafka_cluster_heap: str = Field(
        "256m", description="JVM heap of each node of the local cluster (`beacon kafka start --brokers 3`)."
    )
    kafka_start_timeout: float = Field(60.0, description="Seconds `beacon kafka start` waits for the broker.")
    kafka_request_timeout: float = Field(
        5.0, description="Seconds before a Kafka request (admin call, produce) is reported as failed."
    )
    kafka_linger_ms: float = Field(
        5.0,
        description="Milliseconds a producer waits to batch messages (gateway webhooks, worker replies): 5 ms "
        "measured ~10% more end-to-end capacity than 2 ms on 2 cores, for a few ms of latency.",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT",
        description="How every Kafka client (gateways, workers, API, operations commands) talks to the brokers: "
        "`SASL_SSL` for managed clusters (Confluent Cloud, MSK, Aiven), `SSL` for TLS or mutual TLS.",
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN",
        description="SASL mechanism with SASL_PLAINTEXT / SASL_SSL (Confluent Cloud: PLAIN; MSK: SCRAM-SHA-512).",
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name (Confluent Cloud: the API key).")
    kafka_sasl_password: SecretStr | None = Field(
        None, description="SASL password (Confluent Cloud: the API secret); never logged."
    )
    kafka_ssl_ca_file: Path | None = Field(
        None, description="PEM file of the certificate authorities that sign the brokers' certificates; unset: the "
        "system's trust store."
    )
    kafka_ssl_cert_file: Path | None = Field(
        None, description="PEM client certificate for mutual TLS (with BEACON_KAFKA_SSL_KEY_FILE)."
    )
    kafka_ssl_key_file: Path | None = Field(None, description="PEM private key of the client certificate.")
    kafka_ssl_key_password: SecretStr | None = Field(None, description="Password of an encrypted client key.")
    topic_in: str = Field("bm_in", description="Inbound topic: messages and statuses from channels.")
    topic_out: str = Field("bm_out", description="Outbound topic: replies to send through channels.")
    topic_dlq: str = Field("bm_dlq", description="Dead-letter topic.")
    topic_partitions: int = Field(12, description="Partitions of bm_in / bm_out (and bm_dlq).")
    topic_replication_factor: int = Field(1, description="Replication factor of Beacon's topics.")
    topic_min_insync_replicas: int | None = Field(
        None, description="min.insync.replicas of Beacon's topics (2 in production with 3 replicas)."
    )
    topic_retention_ms: int = Field(
        7 * 24 * 3600 * 1000, description="Retention of bm_in / bm_out in milliseconds (default 7 days)."
    )
    dlq_retention_ms: int = Field(
        30 * 24 * 3600 * 1000, description="Retention of bm_dlq in milliseconds (default 30 days)."
    )

    # --- schema registry ------------------------------------------------------------------
    schema_registry_url: str = Field(
        "http://127.0.0.1:8081/apis/ccompat/v7", description="The registry's Confluent-compatible URL."
    )
    schema_registry_username: str | None = Field(
        None, description="Basic-auth user of the schema registry (Confluent Cloud: the registry API key)."
    )
    schema_registry_password: SecretStr | None = Field(
        None, description="Basic-auth password of the schema registry; never logged."
    )
    schema_registry_ca_file: Path | None = Field(
        None, description="PEM file of the certificate authorities that sign an https registry's certificate; "
        "unset: the system's trust store."
    )
    schema_auto_register: bool = Field(
        True,
        description="Register the BeaconMessage schema for bm_in/bm_out at start-up; false = only look it up "
        "(production, where `beacon schemas register` runs in the deploy pipeline).",
    )
    schema_compatibility: str = Field(
        "FULL_TRANSITIVE",
        description="Compatibility level set on the BeaconMessage subjects by `beacon schemas register`: FULL so "
        "producers and consumers can upgrade in any order, TRANSITIVE because retained messages of every "
        "earlier version may be replayed.",
    )
    registry_heap: str = Field("256m", description="JVM heap of the local schema registry.")
    registry_start_timeout: float = Field(90.0, description="Seconds `beacon registry start` waits.")

    # --- API layer ------------------------------------------------------------------------
    api_url: str = Field("http://127.0.0.1:8000", description="Where workers reach the API layer.")
    api_token: SecretStr = Field(SecretStr("dev-token"), description="Service token workers send the API.")
    api_host: str = Field("127.0.0.1", description="Interface the API layer listens on.")
    api_port: int = Field(8000, description="Port of the API layer.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default SQLite at <data dir>/beacon.db."
    )
    db_pool_size: int = Field(20, description="Database connections kept open per API process.")
    db_max_overflow: int = Field(
        0,
        description="Extra connections above the pool size, opened and closed under load (connection churn "
        "costs more than queueing for a pooled one, hence 0).",
    )
    db_pool_timeout: float = Field(
        10.0, description="Seconds to wait for a pooled connection (then the request is answered 503)."
    )
    db_pool_pre_ping: bool = Field(
        True,
        description="Test each pooled connection before use (one round trip), so a connection left dead by a "
        "database restart or failover is replaced, never handed to a request.",
    )
    db_sqlite_busy_timeout: float = Field(
        10.0, description="Seconds a SQLite write waits for another writer's lock before answering 503."
    )
    api_retry_after: int = Field(
        5, description="Seconds the API asks callers to wait (`Retry-After`) when it answers 503 (database down)."
    )
    api_max_body_bytes: int = Field(
        8 * 1024 * 1024,
        description="Largest request body the API accepts (else 413, before reading it); must hold a worker's "
        "batch of BEACON_WORKER_API_BATCH messages.",
    )
    served_channels: tuple[str, ...] = Field(
        ("whatsapp",),
        description="Channels this deployment runs a gateway for (JSON list); `POST /v1/messages/send` refuses "
        "others with 422, since nothing would deliver them.",
    )

    # --- WhatsApp gateway -----------------------------------------------------------------
    gateway_host: str = Field("127.0.0.1", description="Interface every channel's gateway listens on.")
    whatsapp_gateway_port: int = Field(
        8080, validation_alias=AliasChoices("BEACON_WHATSAPP_GATEWAY_PORT", "BEACON_GATEWAY_PORT"),
        description="Port of the WhatsApp gateway (`BEACON_GATEWAY_PORT`, its first name, works too).",
    )
    whatsapp_graph_url: str = Field("https://graph.facebook.com", description="Cloud API base URL.")
    whatsapp_api_version: str = Field("v23.0", description="Graph API version used for sends.")
    whatsapp_access_token: SecretStr | None = Field(None, description="Cloud API access token.")
    whatsapp_app_secret: SecretStr | None = Field(None, description="App secret that signs webhooks.")
    whatsapp_verify_token: SecretStr | None = Field(None, description="Webhook verification token.")
    whatsapp_allow_unsigned: bool = Field(
        False, description="Development only: accept webhooks without a signature when no app secret is set."
    )
    whatsapp_rate_limit: float = Field(80.0, description="Sends per second per business number (0 = off).")
    whatsapp_gateway_group: str = Field(
        "beacon-gateway-whatsapp",
        validation_alias=AliasChoices("BEACON_WHATSAPP_GATEWAY_GROUP", "BEACON_GATEWAY_GROUP"),
        description="Consumer group of the WhatsApp gateway on bm_out (`BEACON_GATEWAY_GROUP`, its first name, works "
        "too).",
    )
    gateway_url: str | None = Field(
        None, description="Where the fake Cloud API posts webhooks; default http://127.0.0.1:<gateway port>."
    )
    gateway_ack_timeout: float = Field(
        3.0, description="Seconds a webhook waits for the broker's acknowledgement before answering 503."
    )
    gateway_max_body_bytes: int = Field(3 * 1024 * 1024, description="Largest webhook body accepted (else 413).")
    gateway_max_in_flight: int = Field(512, description="Outbound sends in flight at once, across users.")
    gateway_max_pending: int = Field(
        20000, description="bm_out records taken from Kafka but not yet settled before fetching pauses."
    )
    gateway_shutdown_timeout: float = Field(15.0, description="Seconds to finish in-flight sends on SIGTERM.")
    gateway_typing_max_seconds: float = Field(
        60.0,
        description="Longest a gateway keeps a typing indicator alive (Telegram's lasts 5 s, so it is sent again "
        "every BEACON_TELEGRAM_TYPING_REFRESH seconds) while no message to that user has gone out since.",
    )
    gateway_max_attempts: int = Field(
        5, description="Attempts at one outbound message that fails with an unexpected error (a bug, a record it "
        "cannot handle) before it is dead-lettered with a failed status, so one user is never held back for ever."
    )
    gateway_max_record_bytes: int = Field(
        900_000, description="Largest record the gateway produces (the broker refuses larger ones): a bigger "
        "inbound message is delivered as `unsupported` with a too-large error, a bigger status without content."
    )
    gateway_urls: dict[str, str] = Field(
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
    whatsapp_phone_number_id: str = Field(
        "106540352242922", description="Business phone number id the fake Cloud API and `beacon dev` use."
    )
    whatsapp_access_tokens: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='Per-number access tokens as JSON {"<phone_number_id>": "<token>"}; others use the default.',
    )
    whatsapp_send_timeout: float = Field(10.0, description="Seconds before one Cloud API send is abandoned.")
    whatsapp_user_rate: float = Field(
        1 / 6, description="Sustained sends per second to one user (Cloud API pair limit; 0 = off)."
    )
    whatsapp_user_burst: int = Field(45, description="Burst of sends to one user before the pair rate applies.")
    whatsapp_retry_base_delay: float = Field(0.5, description="First retry delay of a transient send failure.")
    whatsapp_retry_max_delay: float = Field(30.0, description="Upper bound of one send retry delay in seconds.")
    whatsapp_retry_max_attempts: int = Field(
        6, description="Attempts at a message whose sends fail on their own (unknown errors; any retryable error "
        "while other sends to the same number succeed) before dead-lettering."
    )
    whatsapp_user_backoff_base: float = Field(
        4.0, description="131056 backoff for that user: base * 4^(n-1) seconds for the n-th in a row."
    )
    whatsapp_auth_pause: float = Field(
        60.0, description="Seconds sending pauses for a number after error 190 (token expired) before retrying."
    )
    whatsapp_sent_store: Path | None = Field(
        None, description="SQLite file of settled outbound ids; default <data dir>/gateway-whatsapp-sent.db."
    )
    fake_whatsapp_host: str = Field("127.0.0.1", description="Interface the fake Cloud API listens on.")

    # --- Telegram gateway -----------------------------------------------------------------
    telegram_bot_token: SecretStr | None = Field(
        None, description="Bot API token from @BotFather, `<bot id>:<secret>`; the bot id is the account."
    )
    telegram_api_url: str = Field("https://api.telegram.org", description="Bot API base URL (the fake's in dev).")
    telegram_webhook_secret: SecretStr | None = Field(
        None, description="Secret Telegram sends in `X-Telegram-Bot-Api-Secret-Token` (1-256 of A-Z a-z 0-9 _ -); "
        "`beacon telegram set-webhook` registers it."
    )
    telegram_host: str = Field("127.0.0.1", description="Interface the Telegram gateway listens on.")
    telegram_port: int = Field(8082, description="Port of the Telegram gateway (`POST /webhooks/telegram`).")
    telegram_rate_limit: float = Field(30.0, description="Sends per second per bot across chats (0 = off).")
    telegram_chat_rate: float = Field(1.0, description="Sustained sends per second to one chat (0 = off).")
    telegram_chat_burst: int = Field(3, description="Burst of sends to one chat before the chat rate applies.")
    telegram_group_rate_per_minute: float = Field(
        20.0, description="Sends per minute to one group or supergroup chat (negative chat id; 0 = off)."
    )
    telegram_send_timeout: float = Field(10.0, description="Seconds before one Bot API call is abandoned.")
    telegram_max_file_bytes: int = Field(
        20 * 1024 * 1024, description="Largest file fetched from the Bot API (`getFile` serves up to 20 MB)."
    )
    telegram_gateway_group: str = Field(
        "beacon-gateway-telegram", description="Consumer group of the Telegram gateway on bm_out."
    )
    telegram_sent_store: Path | None = Field(
        None, description="SQLite file of settled outbound ids; default <data dir>/gateway-telegram-sent.db."
    )
    telegram_typing_refresh: float = Field(
        4.0,
        description="Seconds between two `sendChatAction typing` while a turn is processed (Telegram shows one for "
        "5 s, or until the reply).",
    )
    telegram_retry_base_delay: float = Field(
        0.5, description="First retry delay of a failed Bot API call (also the back-off of a chat when a 429 names "
        "no retry_after)."
    )
    telegram_retry_max_delay: float = Field(30.0, description="Upper bound of one Bot API retry delay in seconds.")
    telegram_retry_max_attempts: int = Field(
        6, description="Attempts at a message whose sends fail on their own (5xx or network errors while other "
        "sends of the bot succeed) before dead-lettering."
    )
    telegram_auth_pause: float = Field(
        60.0, description="Seconds sending pauses after the Bot API refused the token (401/404) before retrying."
    )
    fake_telegram_host: str = Field("127.0.0.1", description="Interface the fake Bot API listens on.")
    fake_telegram_port: int = Field(8091, description="Port of the fake Bot API (`beacon fake-telegram`).")
    telegram_gateway_url: str | None = Field(
        None, description="Where the fake Bot API posts updates when no webhook was set; default "
        "http://127.0.0.1:<telegram port>/webhooks/telegram."
    )

    # --- web chat gateway -----------------------------------------------------------------
    webchat_host: str = Field("127.0.0.1", description="Interface the web chat gateway listens on.")
    webchat_port: int = Field(8083, description="Port of the web chat gateway (the chat page and its WebSocket).")
    webchat_secret: SecretStr | None = Field(
        None, description="Signs the visitor cookie; production refuses to start the web chat without one "
        "(development falls back to a fixed dev secret, with a warning)."
    )
    webchat_site: str = Field("default", description="The site this web chat serves: the account in its user keys "
                              "(`webchat:<site>:<visitor id>`).")
    webchat_allowed_origins: tuple[str, ...] = Field(
        (), description="Origins allowed to open the chat WebSocket (JSON list, e.g. [\"https://example.com\"]); "
        "empty = only the page's own origin. Others are refused 403."
    )
    webchat_max_message_chars: int = Field(4000, description="Longest message a visitor may send (characters).")
    webchat_visitor_rate: float = Field(1.0, description="Messages per second one visitor may send, sustained.")
    webchat_visitor_burst: int = Field(
        10, description="Messages one visitor may send at once before the rate applies."
    )
    webchat_gateway_group: str = Field(
        "beacon-gateway-webchat", description="Consumer group of the web chat gateway on bm_out (each site's gateway "
        "reads every web chat reply and delivers its own site's: give each site a group of its own)."
    )
    webchat_history_store: Path | None = Field(
        None, description="SQLite file of the visitors' conversations; default <data dir>/gateway-webchat-history.db."
    )

    # --- workers --------------------------------------------------------------------------
    worker_group: str = Field("beacon-workers", description="Consumer group (Faust app id) of the workers.")
    worker_web_port: int = Field(6066, description="Port of a worker's web server (metrics, health).")
    worker_max_in_flight: int = Field(1000, description="Messages a worker processes at once, across users.")
    worker_api_timeout: float = Field(30.0, description="Seconds a worker waits for one API call.")
    worker_retry_max_attempts: int = Field(
        8,
        description="API attempts before a message that fails on its own (a 5xx or timeout while the API's /readyz "
        "answers) is dead-lettered; attempts made while the API is unreachable do not count.",
    )
    worker_retry_base_delay: float = Field(0.2, description="First retry delay in seconds (doubles each time).")
    worker_retry_max_delay: float = Field(10.0, description="Upper bound of one retry delay in seconds.")
    worker_api_probe_timeout: float = Field(
        2.0, description="Seconds a worker waits for the API's /readyz while probing whether it is back."
    )
    worker_api_probe_max_delay: float = Field(
        5.0,
        description="Upper bound in seconds of the delay between two /readyz probes while the API is unreachable "
        "(exponential from BEACON_WORKER_RETRY_BASE_DELAY, with jitter).",
    )
    worker_shutdown_timeout: float = Field(20.0, description="Seconds to finish in-flight work on shutdown.")
    worker_typing_delay: float = Field(
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
    worker_rebalance_timeout: float = Field(
        8.0, description="Seconds to finish in-flight work of revoked partitions before abandoning it."
    )
    worker_session_timeout: float = Field(
        10.0, description="Kafka session timeout of a worker: how soon a dead worker's partitions move."
    )
    worker_commit_interval: float = Field(1.0, description="Seconds between a worker's offset commits.")
    worker_web_host: str = Field("127.0.0.1", description="Interface a worker's web server (metrics) binds.")
    worker_api_batch: int = Field(
        256,
        description="Most messages (of different users) a worker sends the API in one request; batches form only "
        "while earlier requests are in flight, so light traffic goes one by one. 1 = one request per message.",
    )
    worker_api_batch_requests: int = Field(
        4,
        description="Batch requests a worker keeps in flight at once (raised when needed so that batch requests "
        "times batch size covers BEACON_WORKER_MAX_IN_FLIGHT: a slow API must not cap the messages in flight).",
    )
    worker_api_connections: int = Field(
        0, description="Most HTTP connections a worker opens to the API (0 = BEACON_WORKER_MAX_IN_FLIGHT)."
    )
    worker_uvloop: bool = Field(True, description="Run the worker's event loop on uvloop (when installed).")
    worker_profile: Path | None = Field(
        None, description="Write a cProfile of the worker process to this file when it exits (benchmarks)."
    )
    worker_pipeline: Literal["api", "echo"] = Field(
        "api",
        description="`api` calls the API layer; `echo` answers `You said: <text>` in process (benchmarks only).",
    )

    # --- LLM agent and integrations -------------------------------------------------------
    llm_base_url: str | None = Field(None, description="OpenAI-compatible endpoint for the agent handler.")
    llm_model: str = Field("gpt-4o-mini", description="Model name sent to the LLM endpoint.")
    llm_api_key: SecretStr | None = Field(None, description="API key for the LLM endpoint.")
    llm_timeout: float = Field(30.0, description="Seconds the agent waits for one LLM call before its fallback reply.")
    llm_system_prompt: str = Field(
        "You are Beacon, a helpful assistant answering chat messages briefly.",
        description="System prompt the agent sends first.",
    )
    llm_history_messages: int = Field(20, description="Most conversation messages the agent sends the LLM.")
    llm_history_chars: int = Field(8000, description="Character budget of the history the agent sends the LLM.")
    llm_max_tool_rounds: int = Field(4, description="Tool-call rounds the agent allows per message.")
    llm_fallback_reply: str = Field(
        "Sorry, I can't answer right now. Please try again in a moment.",
        description="Reply sent when the LLM fails or times out.",
    )
    mcp_servers: tuple[McpServerSpec, ...] = Field(
        (),
        description='MCP servers whose tools the agent may call, as JSON: [{"name": "calc", "command": "python", '
        '"args": ["server.py"]} (stdio) or {"name": "web", "url": "http://host/mcp"} (streamable HTTP)].',
    )
    mcp_timeout: float = Field(10.0, description="Seconds for connecting to an MCP server or one tool call.")

    # --- API layer: pipeline, window, hook -------------------------------------------------
    api_pipeline: Annotated[tuple[str, ...], NoDecode] = Field(
        ("commands", "agent", "hook", "fallback"),
        description="Ordered handlers of the API pipeline, comma-separated or a JSON list: built-ins (commands, "
        "agent, hook, fallback; agent runs only with BEACON_LLM_BASE_URL, hook only with BEACON_HOOK_URL), "
        "your own by import path (`mybot.handlers:bot`) or entry point name (group `beacon.handlers`).",
    )
    api_workers: int = Field(1, description="uvicorn worker processes of `beacon api`.")
    db_auto_migrate: bool = Field(
        False, description="`beacon api` applies pending migrations at start-up instead of refusing to start."
    )
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
    outbox_url: str | None = Field(
        None, description="Where the API POSTs each outbox event your handlers record (JSON, header "
        "`Idempotency-Key` = event id); a 2xx marks it done, anything else is retried with backoff.",
    )
    outbox_callback: str | None = Field(
        None, description="Import path of an async function taking a beacon.bot.OutboxItem, called for each "
        "outbox event instead of BEACON_OUTBOX_URL (raising = retry with backoff).",
    )
    outbox_poll_interval: float = Field(
        1.0, description="Seconds between looks for due outbox events (a turn that records one wakes it at once)."
    )
    outbox_retry_base_delay: float = Field(1.0, description="First delay before re-delivering a failed outbox event.")
    outbox_retry_max_delay: float = Field(300.0, description="Upper bound of one outbox re-delivery delay.")
    outbox_timeout: float = Field(
        10.0, description="Seconds one outbox delivery may take; also the lease that keeps other API "
        "processes from delivering the same event meanwhile.",
    )

    # --- Nostr (NostrMQ) ------------------------------------------------------------------
    nostr_private_key: SecretStr | None = Field(
        None, description="This deployment's Nostr private key, 64 hex digits or `nsec1...` (`beacon nostr keygen`)."
    )
    nostr_relays: tuple[str, ...] = Field(
        ("ws://127.0.0.1:7447",), description="JSON list of relay URLs NostrMQ messages go through."
    )
    nostr_peers: tuple[str, ...] = Field(
        (), description="JSON list of pubkeys (hex or `npub`) the bridge accepts messages from; all others are "
        "dropped and counted."
    )
    nostr_relay_port: int = Field(7447, description="Port of the local relay (`beacon relay start`), on 127.0.0.1.")
    nostr_publish_timeout: float = Field(5.0, description="Seconds to wait for the relays' OK to one event.")
    nostr_event_ttl: int = Field(
        600, description="NIP-40 expiration of the bridge's events in seconds: relays that honour it delete them "
        "then (a missed message or acknowledgement is re-sent, so none needs to live long)."
    )
    nostr_bridge_role: Literal["edge", "core"] = Field(
        "edge", description="`edge`: forward bm_in to the core and take replies into bm_out; `core`: take "
        "edges' messages into bm_in and forward their replies from bm_out."
    )
    nostr_bridge_core: str | None = Field(None, description="Pubkey (hex or `npub`) of the core an edge forwards to.")
    nostr_bridge_forward: tuple[str, ...] = Field(
        (), description="JSON list of user-key prefixes an edge forwards (e.g. `whatsapp:1065`); empty: all of bm_in."
    )
    nostr_bridge_routes: dict[str, str] = Field(
        {}, description="Core: JSON object mapping `channel:account` (or `channel`) to the edge pubkey its replies "
        "go to; replies of other accounts stay."
    )
    nostr_bridge_group: str = Field("beacon-nostr-bridge", description="Consumer group of `beacon bridge nostr`.")
    nostr_bridge_ack_timeout: float = Field(
        3.0, description="Seconds the bridge waits for a message's acknowledgement before sending it again."
    )
    nostr_bridge_retry_base_delay: float = Field(0.2, description="First delay before re-sending an unacknowledged "
                                                 "message (doubles each time, with jitter).")
    nostr_bridge_retry_max_delay: float = Field(10.0, description="Upper bound of one re-send delay in seconds.")
    nostr_bridge_max_in_flight: int = Field(
        200, description="Messages the bridge has awaiting acknowledgement at once, across users (one per user)."
    )
    nostr_bridge_dedupe_window: float = Field(
        3600.0, description="Seconds of the destination topic the bridge reads at start to rebuild the ids it "
        "already produced (its dedupe memory across restarts)."
    )

    nostr_gateway_host: str = Field("127.0.0.1", description="Interface `beacon gateway nostr` serves `/healthz` "
                                    "and `/metrics` on.")
    nostr_gateway_port: int = Field(8085, description="Port of `beacon gateway nostr` (`/healthz`, `/metrics`).")
    nostr_gateway_group: str = Field(
        "beacon-gateway-nostr", description="Consumer group of the NostrMQ gateway on bm_out."
    )
    nostr_sent_store: Path | None = Field(
        None, description="SQLite file of the NostrMQ gateway's settled reply ids and the questions they answer "
        "(default `<data dir>/gateway-nostr-sent.db`)."
    )
    nostr_min_pow: int = Field(
        0, ge=0, le=64, description="NIP-13 proof of work (leading zero bits of the event id) a NostrMQ message "
        "needs to be taken (public bots); 0 = none."
    )
    nostr_allowed_senders: tuple[str, ...] = Field(
        (), description="JSON list of pubkeys (hex or `npub`) the NostrMQ gateway answers (private bots); empty: "
        "everyone."
    )
    nostr_sender_rate: float = Field(
        1.0, ge=0, description="Messages per second one sender may send the NostrMQ gateway (0 = off); "
        "beyond it (and its burst) they are dropped and counted."
    )
    nostr_sender_burst: int = Field(10, ge=1, description="Messages one sender may send at once before "
                                    "`BEACON_NOSTR_SENDER_RATE` applies.")
    nostr_reorder_window: float = Field(
        0.2, ge=0, description="Seconds the NostrMQ gateway holds a sender's events to put them in `created_at` "
        "order before producing them."
    )
    nostr_retry_base_delay: float = Field(0.2, description="First delay before re-publishing a reply no relay "
                                          "accepted (or re-producing an inbound batch the broker refused).")
    nostr_retry_max_delay: float = Field(10.0, description="Upper bound of one NostrMQ gateway retry delay.")

    # --- console --------------------------------------------------------------------------
    console_host: str = Field("127.0.0.1", description="Interface the operator console listens on.")
    console_port: int = Field(8084, description="Port of the operator console (`beacon console`).")
    console_token: SecretStr | None = Field(
        None, description="Operator login token of the console; production refuses to start without one, "
        "development generates one and prints the login URL."
    )
    console_sample_seconds: float = Field(
        2.0, description="Seconds between two samples of bm_in/bm_out end offsets for the console's chart."
    )
    console_chart_minutes: float = Field(5.0, description="Minutes of messages per second the console's chart shows.")

    # --- dev supervisor -------------------------------------------------------------------
    dev_workers: int = Field(2, description="Worker processes `beacon dev` starts.")
    fake_whatsapp_port: int = Field(8090, description="Port of the fake Cloud API in `beacon dev`.")

    @field_validator("api_pipeline", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        """``commands,mybot.handlers:bot,fallback`` or a JSON list."""
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @field_validator("topic_partitions", "topic_replication_factor")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least 1")
        return value

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> Settings:
        if self.kafka_security_protocol.startswith("SASL_") and (
            not self.kafka_sasl_username or self.kafka_sasl_password is None
        ):
            raise ValueError(
                f"BEACON_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs BEACON_KAFKA_SASL_USERNAME and "
                "BEACON_KAFKA_SASL_PASSWORD"
            )
        if (self.kafka_ssl_cert_file is None) != (self.kafka_ssl_key_file is None):
            raise ValueError("BEACON_KAFKA_SSL_CERT_FILE and BEACON_KAFKA_SSL_KEY_FILE go together (mutual TLS)")
        return self

    @model_validator(mode="after")
    def _no_placeholders_in_production(self) -> Settings:
        if self.env != "production":
            return self
        problems = []
        if self.api_token.get_secret_value() in DEV_PLACEHOLDER_SECRETS:
            problems.append("BEACON_API_TOKEN is a development placeholder")
        if self.whatsapp_allow_unsigned:
            problems.append("BEACON_WHATSAPP_ALLOW_UNSIGNED must be false")
        if self.whatsapp_app_secret is not None and (
            self.whatsapp_app_secret.get_secret_value() in DEV_PLACEHOLDER_SECRETS
        ):
            problems.append("BEACON_WHATSAPP_APP_SECRET is a development placeholder")
        if self.telegram_bot_token is not None and (
            self.telegram_webhook_secret is None
            or self.telegram_webhook_secret.get_secret_value() in DEV_PLACEHOLDER_SECRETS
        ):
            problems.append("BEACON_TELEGRAM_WEBHOOK_SECRET must be set to a real secret when a Telegram bot token is")
        if problems:
            raise ValueError("refusing production settings: " + "; ".join(problems))
        return self

    def coalesce_window(self) -> float | None:
        """Seconds of the coalescing window (``BEACON_COALESCE_WINDOW_MS``, resolved), or None when it is off."""
        window = self.coalesce_window_ms
        if window is None:
            window = DEFAULT_AGENT_COALESCE_MS if self.llm_base_url else 0
        return window / 1000 if window > 0 else None

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to SQLite in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'beacon.db').resolve()}"

    def gateway_url_for(self, channel: str) -> str:
        """Base URL of ``channel``'s gateway (``BEACON_GATEWAY_URLS``, else 127.0.0.1 on its port setting)."""
        if channel in self.gateway_urls:
            return self.gateway_urls[channel].rstrip("/")
        ports = {"whatsapp": self.whatsapp_gateway_port, "telegram": self.telegram_port, "webchat": self.webchat_port}
        if channel not in ports:
            raise KeyError(channel)
        return f"http://127.0.0.1:{ports[channel]}"

    @property
    def kafka_port(self) -> int:
        """The port of the first bootstrap server (the local broker listens there)."""
        first = self.kafka_bootstrap.split(",")[0]
        return int(first.rsplit(":", 1)[1])

    @property
    def registry_port(self) -> int:
        """The port of the schema registry URL (the local registry listens there)."""
        return urlparse(self.schema_registry_url).port or 80

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()


def env_name(field: str) -> str:
    """The environment variable of a setting: ``BEACON_<FIELD>``, or the first of its alias choices."""
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
        return alias.choices[0]
    return f"BEACON_{field.upper()}"


def settings_markdown() -> str:
    """Every setting as a Markdown table (variable, default, meaning): the README embeds it."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, info in Settings.model_fields.items():
        default = info.get_default(call_default_factory=True)
        if isinstance(default, SecretStr):
            shown = "(secret, dev placeholder)" if default.get_secret_value() else "(secret)"
        elif default is None:
            shown = "(unset)"
        else:
            shown = f"`{default}`"
        meaning = (info.description or "").replace("|", "\\|")
        rows.append(f"| `{env_name(name)}` | {shown} | {meaning} |")
    return "\n".join(rows)
