"""What a channel is: the small interface a folder in ``beacon/gateway/`` implements, and the shared
vocabulary (limits, send errors and what the engine does about them) it speaks.

The shared parts do the rest: ``beacon.gateway.inbound`` receives the channel's webhooks (auth before
parse, every message produced to ``bm_in`` keyed by user and acknowledged before the 200, 503 when the
broker cannot take them) and ``beacon.gateway.outbound`` sends its replies from ``bm_out`` (per-user
order, users concurrent, in-order commits, the settled-id record, the limits, outage pause and probe,
one backoff policy, dead letters and ``failed`` statuses). ``beacon.gateway.service`` runs both.

A channel implements ``Channel`` (WhatsApp as the example, ``beacon.gateway.whatsapp.channel``):

- ``name``: the BeaconMessage ``channel`` value (``"whatsapp"``); ``api_name`` and ``account_name``
  name its API and its accounts in log lines ("the Cloud API", "number"); ``webhook_path``
  (``/webhooks/whatsapp``); ``host``/``port`` it listens on; ``group``, its consumer group on ``bm_out``;
  ``sent_store``, its SQLite file of settled ids; ``limits`` (a ``Limits``: the rate per account,
  retry timing); ``typing_refresh``, seconds after which its typing indicator must be sent again while a
  turn is processed (Telegram: 4, its indicator lasts 5 s), or None when it lasts until the reply.
- ``check_settings()``: refuse to start on unsafe settings (raise ``ConfigError``); warn on odd ones.
- ``authenticate(headers, body)``: over the raw bytes, before any parsing (WhatsApp: the
  ``X-Hub-Signature-256`` HMAC); raise ``RequestRefusedError`` with 401 (missing) or 403 (wrong).
- ``parse(body)``: the raw body -> ``Parsed`` (the BeaconMessages to produce, in order, and the items
  dropped with their reasons); raise ``MalformedRequestError`` for a body that is not the channel's at
  all (answered 400). Ids derive from the channel's own ids, so a redelivery yields the same ids.
- ``routes()``: extra HTTP routes (WhatsApp's ``GET`` verification handshake); usually ``[]``.
- ``after_produce(messages)``: called once a request's messages are safely on ``bm_in``, before the
  200 (Telegram answers a button press with ``answerCallbackQuery`` here); usually nothing.
- ``build(msg)``: an outbound BeaconMessage -> the channel's wire request (any type the channel's
  ``send`` takes); raise ``UnsendableMessageError`` for one it can never send.
- ``send(msg, request)``: make the request; return the channel's id of the sent message (or None);
  raise a ``SendError`` whose ``action`` says what the engine does next.
- ``user_rate(msg)``: the ``Rate`` of sends to the message's user (WhatsApp: the same for every user).
- ``account_of(msg)``: the scope of the per-account limit and outage pause (WhatsApp: the business
  phone number id, ``msg.account``; Telegram: the bot id).
- ``on_permanent_failure(msg, error)``: after a message was given up (Telegram marks a user who
  blocked the bot as opted out); usually nothing.
- ``close()``: release clients.

A channel whose users send media also implements ``fetch_media(account, media_id, max_bytes)``
(``beacon.gateway.media.MediaSource``); the gateway then serves it to the API at ``GET /media/...``.

A channel whose users' messages arrive as events it subscribes to rather than as webhooks (NostrMQ,
``beacon.gateway.nostr.channel``) leaves ``webhook_path`` empty (no webhook route is served) and also
implements ``EventSource``: ``listen(deliver, stop)`` runs as a task of the gateway and hands each batch
of parsed messages to ``deliver``, the same produce-and-wait-for-every-ack path a webhook takes
(``Inbound.deliver``); it raises when the broker does not acknowledge, and the channel delivers again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from aiohttp import web

from beacon.errors import BeaconError
from beacon.messages import BeaconMessage


class Action(Enum):
    """What the sender engine does about a failed send."""

    RETRY = "retry"  #: transient (5xx, network): retry with backoff; if nothing to the account succeeds, an outage
    RETRY_FEW = "retry_few"  #: unknown error: retry a few times, then give up
    BACKOFF_USER = "backoff_user"  #: too many messages to this user: back off for this user only
    SLOW_ACCOUNT = "slow_account"  #: throughput exceeded: slow the whole account (number, bot)
    PAUSE_ACCOUNT = "pause_account"  #: credentials refused: pause the account, alert the operator
    PERMANENT = "permanent"  #: never retry: dead-letter and report a failed status


class SendError(BeaconError):
    """A send the channel refused (or that never got an answer), with what to do about it.

    ``retry_after``: seconds the channel asked to wait (Telegram's ``parameters.retry_after``), used
    instead of the backoff for BACKOFF_USER and SLOW_ACCOUNT. ``opt_out``: the user will never be
    reachable (blocked the bot); with PERMANENT, ``on_permanent_failure`` records it.
    """

    def __init__(
        self,
        message: str,
        *,
        action: Action,
        code: int | None = None,
        http_status: int | None = None,
        title: str | None = None,
        details: str | None = None,
        retry_after: float | None = None,
        opt_out: bool = False,
    ) -> None:
        super().__init__(message)
        self.action = action
        self.code = code
        self.http_status = http_status
        self.title = title
        self.details = details
        self.retry_after = retry_after
        self.opt_out = opt_out

    @property
    def code_label(self) -> str:
        """The code as a metrics label (``http_<status>`` / ``network`` when there is none)."""
        if self.code is not None:
            return str(self.code)
        return f"http_{self.http_status}" if self.http_status else "network"


class UnsendableMessageError(BeaconError):
    """An outbound message that cannot become a request of its channel (dead-letter it)."""


class RequestRefusedError(BeaconError):
    """A webhook request that fails authentication: ``status`` 401 (no credentials) or 403 (wrong ones)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class MalformedRequestError(BeaconError):
    """A webhook body that is not the channel's at all (answered 400)."""


@dataclass(frozen=True)
class Dropped:
    """An item of a webhook left out, and why (for the log and the metrics)."""

    what: str  #: "message", "status", "update", ...
    reason: str  #: short, bounded, safe to log
    item_id: str | None = None  #: the channel's id of the item, when it has one
    account: str | None = None


@dataclass
class Parsed:
    """What one webhook request yields: the messages to produce, in order, and the items dropped."""

    messages: list[BeaconMessage] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)


@dataclass(frozen=True)
class Rate:
    """Sends per second (0: unlimited), and how many may go at once before that rate applies."""

    per_second: float
    burst: float


@dataclass(frozen=True)
class Limits:
    """How fast and how patiently the engine sends for one channel: the rate of each account (the rate
    of each user comes from ``Channel.user_rate``, which may differ by user: Telegram's groups are
    slower than its private chats). Retry timing feeds the one backoff policy (``beacon.backoff``).
    """

    account: Rate
    retry_base_delay: float
    retry_max_delay: float
    retry_max_attempts: int  #: failures of one message while others to its account succeed, then given up
    user_backoff_base: float  #: first back-off of a user the channel says gets too many messages
    auth_pause: float  #: seconds an account is paused when the channel refuses its credentials


class Channel(Protocol):
    """One chat channel's own parts; see the module docstring for what each does."""

    name: str
    api_name: str
    account_name: str
    webhook_path: str
    host: str
    port: int
    group: str
    sent_store: Path
    limits: Limits
    typing_refresh: float | None

    def check_settings(self) -> None: ...

    def authenticate(self, headers: Mapping[str, str], body: bytes) -> None: ...

    def parse(self, body: bytes) -> Parsed: ...

    def routes(self) -> list[web.RouteDef]: ...

    async def after_produce(self, messages: list[BeaconMessage]) -> None: ...

    def build(self, msg: BeaconMessage) -> Any: ...

    async def send(self, msg: BeaconMessage, request: Any) -> str | None: ...

    def user_rate(self, msg: BeaconMessage) -> Rate: ...

    def account_of(self, msg: BeaconMessage) -> str: ...

    async def on_permanent_failure(self, msg: BeaconMessage, error: BaseException) -> None: ...

    async def close(self) -> None: ...


#: ``Inbound.deliver``: produce a batch to bm_in and wait for every acknowledgement (raises if it does not come).
Deliver = Callable[[Parsed], Awaitable[None]]


@runtime_checkable
class EventSource(Protocol):
    """A channel that subscribes to its users' messages instead of receiving webhooks (see the module docstring)."""

    async def listen(self, deliver: Deliver, stop: asyncio.Event) -> None:
        """Hand each batch of messages to ``deliver`` until ``stop`` is set; never returns early."""
