"""The sections of Beacon's settings that configure a channel (WhatsApp, Telegram, web chat, NostrMQ) or the
NostrMQ bridge; ``beacon.config_sections`` explains how a field maps to its ``BEACON_*`` variable."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import AliasChoices, Field, SecretStr

from beacon.config_sections import Section


class WhatsAppSettings(Section):
    """The WhatsApp channel: Cloud API credentials, its gateway, send limits and retries."""

    env_prefix: ClassVar[str] = "whatsapp_"

    gateway_port: int = Field(
        8080, validation_alias=AliasChoices("BEACON_WHATSAPP_GATEWAY_PORT", "BEACON_GATEWAY_PORT"),
        description="Port of the WhatsApp gateway (`BEACON_GATEWAY_PORT`, its first name, works too).",
    )
    graph_url: str = Field("https://graph.facebook.com", description="Cloud API base URL.")
    api_version: str = Field("v23.0", description="Graph API version used for sends.")
    access_token: SecretStr | None = Field(None, description="Cloud API access token.")
    app_secret: SecretStr | None = Field(None, description="App secret that signs webhooks.")
    verify_token: SecretStr | None = Field(None, description="Webhook verification token.")
    allow_unsigned: bool = Field(
        False, description="Development only: accept webhooks without a signature when no app secret is set."
    )
    rate_limit: float = Field(80.0, description="Sends per second per business number (0 = off).")
    gateway_group: str = Field(
        "beacon-gateway-whatsapp",
        validation_alias=AliasChoices("BEACON_WHATSAPP_GATEWAY_GROUP", "BEACON_GATEWAY_GROUP"),
        description="Consumer group of the WhatsApp gateway on bm_out (`BEACON_GATEWAY_GROUP`, its first name, works "
        "too).",
    )
    phone_number_id: str = Field(
        "106540352242922", description="Business phone number id the fake Cloud API and `beacon dev` use."
    )
    access_tokens: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='Per-number access tokens as JSON {"<phone_number_id>": "<token>"}; others use the default.',
    )
    send_timeout: float = Field(10.0, description="Seconds before one Cloud API send is abandoned.")
    user_rate: float = Field(
        1 / 6, description="Sustained sends per second to one user (Cloud API pair limit; 0 = off)."
    )
    user_burst: int = Field(45, description="Burst of sends to one user before the pair rate applies.")
    retry_base_delay: float = Field(0.5, description="First retry delay of a transient send failure.")
    retry_max_delay: float = Field(30.0, description="Upper bound of one send retry delay in seconds.")
    retry_max_attempts: int = Field(
        6, description="Attempts at a message whose sends fail on their own (unknown errors; any retryable error "
        "while other sends to the same number succeed) before dead-lettering."
    )
    user_backoff_base: float = Field(
        4.0, description="131056 backoff for that user: base * 4^(n-1) seconds for the n-th in a row."
    )
    auth_pause: float = Field(
        60.0, description="Seconds sending pauses for a number after error 190 (token expired) before retrying."
    )
    sent_store: Path | None = Field(
        None, description="SQLite file of settled outbound ids; default <data dir>/gateway-whatsapp-sent.db."
    )


class TelegramSettings(Section):
    """The Telegram channel: Bot API credentials, its gateway, send limits and retries."""

    env_prefix: ClassVar[str] = "telegram_"

    bot_token: SecretStr | None = Field(
        None, description="Bot API token from @BotFather, `<bot id>:<secret>`; the bot id is the account."
    )
    api_url: str = Field("https://api.telegram.org", description="Bot API base URL (the fake's in dev).")
    webhook_secret: SecretStr | None = Field(
        None, description="Secret Telegram sends in `X-Telegram-Bot-Api-Secret-Token` (1-256 of A-Z a-z 0-9 _ -); "
        "`beacon telegram set-webhook` registers it."
    )
    host: str = Field("127.0.0.1", description="Interface the Telegram gateway listens on.")
    port: int = Field(8082, description="Port of the Telegram gateway (`POST /webhooks/telegram`).")
    rate_limit: float = Field(30.0, description="Sends per second per bot across chats (0 = off).")
    chat_rate: float = Field(1.0, description="Sustained sends per second to one chat (0 = off).")
    chat_burst: int = Field(3, description="Burst of sends to one chat before the chat rate applies.")
    group_rate_per_minute: float = Field(
        20.0, description="Sends per minute to one group or supergroup chat (negative chat id; 0 = off)."
    )
    send_timeout: float = Field(10.0, description="Seconds before one Bot API call is abandoned.")
    max_file_bytes: int = Field(
        20 * 1024 * 1024, description="Largest file fetched from the Bot API (`getFile` serves up to 20 MB)."
    )
    gateway_group: str = Field(
        "beacon-gateway-telegram", description="Consumer group of the Telegram gateway on bm_out."
    )
    sent_store: Path | None = Field(
        None, description="SQLite file of settled outbound ids; default <data dir>/gateway-telegram-sent.db."
    )
    typing_refresh: float = Field(
        4.0,
        description="Seconds between two `sendChatAction typing` while a turn is processed (Telegram shows one for "
        "5 s, or until the reply).",
    )
    retry_base_delay: float = Field(
        0.5, description="First retry delay of a failed Bot API call (also the back-off of a chat when a 429 names "
        "no retry_after)."
    )
    retry_max_delay: float = Field(30.0, description="Upper bound of one Bot API retry delay in seconds.")
    retry_max_attempts: int = Field(
        6, description="Attempts at a message whose sends fail on their own (5xx or network errors while other "
        "sends of the bot succeed) before dead-lettering."
    )
    auth_pause: float = Field(
        60.0, description="Seconds sending pauses after the Bot API refused the token (401/404) before retrying."
    )
    gateway_url: str | None = Field(
        None, description="Where the fake Bot API posts updates when no webhook was set; default "
        "http://127.0.0.1:<telegram port>/webhooks/telegram."
    )


class WebChatSettings(Section):
    """The web chat channel: its page, visitors' limits, history."""

    env_prefix: ClassVar[str] = "webchat_"

    host: str = Field("127.0.0.1", description="Interface the web chat gateway listens on.")
    port: int = Field(8083, description="Port of the web chat gateway (the chat page and its WebSocket).")
    secret: SecretStr | None = Field(
        None, description="Signs the visitor cookie; production refuses to start the web chat without one "
        "(development falls back to a fixed dev secret, with a warning)."
    )
    site: str = Field("default", description="The site this web chat serves: the account in its user keys "
                              "(`webchat:<site>:<visitor id>`).")
    allowed_origins: tuple[str, ...] = Field(
        (), description="Origins allowed to open the chat WebSocket (JSON list, e.g. [\"https://example.com\"]); "
        "empty = only the page's own origin. Others are refused 403."
    )
    max_message_chars: int = Field(4000, description="Longest message a visitor may send (characters).")
    visitor_rate: float = Field(1.0, description="Messages per second one visitor may send, sustained.")
    visitor_burst: int = Field(
        10, description="Messages one visitor may send at once before the rate applies."
    )
    gateway_group: str = Field(
        "beacon-gateway-webchat", description="Consumer group of the web chat gateway on bm_out (each site's gateway "
        "reads every web chat reply and delivers its own site's: give each site a group of its own)."
    )
    history_store: Path | None = Field(
        None, description="SQLite file of the visitors' conversations; default <data dir>/gateway-webchat-history.db."
    )


class NostrSettings(Section):
    """The NostrMQ channel: identity, relays, peers and the gateway's limits."""

    env_prefix: ClassVar[str] = "nostr_"

    private_key: SecretStr | None = Field(
        None, description="This deployment's Nostr private key, 64 hex digits or `nsec1...` (`beacon nostr keygen`)."
    )
    relays: tuple[str, ...] = Field(
        ("ws://127.0.0.1:7447",), description="JSON list of relay URLs NostrMQ messages go through."
    )
    peers: tuple[str, ...] = Field(
        (), description="JSON list of pubkeys (hex or `npub`) the bridge accepts messages from; all others are "
        "dropped and counted."
    )
    publish_timeout: float = Field(5.0, description="Seconds to wait for the relays' OK to one event.")
    event_ttl: int = Field(
        600, description="NIP-40 expiration of the bridge's events in seconds: relays that honour it delete them "
        "then (a missed message or acknowledgement is re-sent, so none needs to live long)."
    )
    gateway_host: str = Field("127.0.0.1", description="Interface `beacon gateway nostr` serves `/healthz` "
                                    "and `/metrics` on.")
    gateway_port: int = Field(8085, description="Port of `beacon gateway nostr` (`/healthz`, `/metrics`).")
    gateway_group: str = Field(
        "beacon-gateway-nostr", description="Consumer group of the NostrMQ gateway on bm_out."
    )
    sent_store: Path | None = Field(
        None, description="SQLite file of the NostrMQ gateway's settled reply ids and the questions they answer "
        "(default `<data dir>/gateway-nostr-sent.db`)."
    )
    min_pow: int = Field(
        0, ge=0, le=64, description="NIP-13 proof of work (leading zero bits of the event id) a NostrMQ message "
        "needs to be taken (public bots); 0 = none."
    )
    allowed_senders: tuple[str, ...] = Field(
        (), description="JSON list of pubkeys (hex or `npub`) the NostrMQ gateway answers (private bots); empty: "
        "everyone."
    )
    sender_rate: float = Field(
        1.0, ge=0, description="Messages per second one sender may send the NostrMQ gateway (0 = off); "
        "beyond it (and its burst) they are dropped and counted."
    )
    sender_burst: int = Field(10, ge=1, description="Messages one sender may send at once before "
                                    "`BEACON_NOSTR_SENDER_RATE` applies.")
    reorder_window: float = Field(
        0.2, ge=0, description="Seconds the NostrMQ gateway holds a sender's events to put them in `created_at` "
        "order before producing them."
    )
    retry_base_delay: float = Field(0.2, description="First delay before re-publishing a reply no relay "
                                          "accepted (or re-producing an inbound batch the broker refused).")
    retry_max_delay: float = Field(10.0, description="Upper bound of one NostrMQ gateway retry delay.")


class BridgeSettings(Section):
    """`beacon bridge nostr`: forwarding between deployments over NostrMQ."""

    env_prefix: ClassVar[str] = "nostr_bridge_"

    role: Literal["edge", "core"] = Field(
        "edge", description="`edge`: forward bm_in to the core and take replies into bm_out; `core`: take "
        "edges' messages into bm_in and forward their replies from bm_out."
    )
    core: str | None = Field(None, description="Pubkey (hex or `npub`) of the core an edge forwards to.")
    forward: tuple[str, ...] = Field(
        (), description="JSON list of user-key prefixes an edge forwards (e.g. `whatsapp:1065`); empty: all of bm_in."
    )
    routes: dict[str, str] = Field(
        {}, description="Core: JSON object mapping `channel:account` (or `channel`) to the edge pubkey its replies "
        "go to; replies of other accounts stay."
    )
    group: str = Field("beacon-nostr-bridge", description="Consumer group of `beacon bridge nostr`.")
    ack_timeout: float = Field(
        3.0, description="Seconds the bridge waits for a message's acknowledgement before sending it again."
    )
    retry_base_delay: float = Field(0.2, description="First delay before re-sending an unacknowledged "
                                                 "message (doubles each time, with jitter).")
    retry_max_delay: float = Field(10.0, description="Upper bound of one re-send delay in seconds.")
    max_in_flight: int = Field(
        200, description="Messages the bridge has awaiting acknowledgement at once, across users (one per user)."
    )
    dedupe_window: float = Field(
        3600.0, description="Seconds of the destination topic the bridge reads at start to rebuild the ids it "
        "already produced (its dedupe memory across restarts)."
    )
