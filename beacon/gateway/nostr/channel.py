"""NostrMQ as a ``Channel``: Beacon's Nostr key and relays, an event source instead of webhooks
(``beacon.gateway.nostr.intake``), replies published as NostrMQ messages. The account is Beacon's
pubkey; a user is a sender's pubkey (``nostr:<beacon pubkey>:<sender pubkey>``).

A reply goes to its question's ``response`` pubkey with payload ``{"text", "in_reply_to": <the
question's d>}`` under a fresh ``d``; a message with no question on record (a proactive send) goes to
the user's pubkey without ``in_reply_to``. A publish counts as sent when at least one relay answers
OK; when none does, the engine retries it as an outage (paused, probed, waited out). The event is
signed once per send attempt sequence (in ``build``), so a re-try publishes the same event and a
relay that already took it answers ``duplicate``, which counts as accepted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from beacon.config import Settings
from beacon.errors import ConfigError, NostrError
from beacon.gateway.channel import Action, Deliver, Limits, Parsed, Rate, SendError, UnsendableMessageError
from beacon.gateway.nostr import CHANNEL
from beacon.gateway.nostr.intake import Intake
from beacon.gateway.nostr.questions import QuestionStore
from beacon.messages import BeaconMessage
from beacon.nostr import wire
from beacon.nostr.event import Event
from beacon.nostr.keys import NostrKey, parse_public_key
from beacon.nostr.relays import RelayPool

log = logging.getLogger("beacon.gateway.nostr")

#: Seconds the listener waits at start for the relays before it says which are unreachable (it keeps trying).
CONNECT_WAIT = 10.0


def load_key(settings: Settings) -> NostrKey:
    """Beacon's key from BEACON_NOSTR_PRIVATE_KEY (ConfigError when unset or malformed)."""
    if settings.nostr.private_key is None or not settings.nostr.private_key.get_secret_value():
        raise ConfigError("BEACON_NOSTR_PRIVATE_KEY is not set: the NostrMQ gateway needs Beacon's Nostr key; make "
                          "one with `beacon nostr keygen`.")
    try:
        return NostrKey.parse(settings.nostr.private_key.get_secret_value())
    except ValueError as exc:
        raise ConfigError(f"BEACON_NOSTR_PRIVATE_KEY: {exc}") from None


class NostrChannel:
    """The NostrMQ channel (a ``beacon.gateway.channel.Channel`` and ``EventSource``)."""

    name = CHANNEL
    typing_refresh: float | None = None  # no typing on NostrMQ
    api_name = "the Nostr relays"
    account_name = "key"
    webhook_path = ""  # events, not webhooks: see ``listen``

    def __init__(self, settings: Settings) -> None:
        s = settings
        self.settings = settings
        self.key = load_key(s)
        self.pubkey = self.key.pubkey
        if not s.nostr.relays:
            raise ConfigError("BEACON_NOSTR_RELAYS is empty: set it to a JSON list of relay URLs (ws:// or wss://).")
        try:
            allowed = {parse_public_key(p) for p in s.nostr.allowed_senders}
        except ValueError as exc:
            raise ConfigError(f"BEACON_NOSTR_ALLOWED_SENDERS: {exc}") from None
        self.host = s.nostr.gateway_host
        self.port = s.nostr.gateway_port
        self.group = s.nostr.gateway_group
        self.sent_store = s.nostr.sent_store or s.data_dir / "gateway-nostr-sent.db"
        self.limits = Limits(
            account=Rate(0.0, 1.0), retry_base_delay=s.nostr.retry_base_delay,
            retry_max_delay=s.nostr.retry_max_delay, retry_max_attempts=5, user_backoff_base=s.nostr.retry_base_delay,
            auth_pause=60.0,
        )
        self.questions = QuestionStore(self.sent_store)
        self.questions.prune(s.topics.retention_ms / 1000)
        self.intake = Intake(s, self.key, self.questions, allowed or None)
        self.pool = RelayPool(list(s.nostr.relays), filters=[{"kinds": [wire.KIND], "#p": [self.pubkey]}],
                              on_event=self.intake.on_event, retry_base=s.nostr.retry_base_delay,
                              retry_max=s.nostr.retry_max_delay)
        self._started = False

    def check_settings(self) -> None:
        """Say who may write: everyone (with the proof of work asked, if any), or only the allowlist."""
        s = self.settings
        if s.nostr.allowed_senders:
            log.info("NostrMQ gateway answers only the %d pubkey(s) of BEACON_NOSTR_ALLOWED_SENDERS",
                     len(s.nostr.allowed_senders))
        else:
            log.info("NostrMQ gateway answers any sender%s", f" whose event has {s.nostr.min_pow} bits of proof of "
                     "work" if s.nostr.min_pow else " (public: consider BEACON_NOSTR_MIN_POW)")

    # --- inbound ----------------------------------------------------------------------------------

    async def listen(self, deliver: Deliver, stop: asyncio.Event) -> None:
        """Subscribe to kind-30072 events for Beacon's pubkey on every relay until ``stop``."""
        self.intake.start(deliver, stop)
        await self.pool.start()
        self._started = True
        log.info("NostrMQ gateway: Beacon is %s (%s) on %s", self.key.npub, self.pubkey,
                 ", ".join(self.settings.nostr.relays))
        try:
            await self.pool.wait_connected(CONNECT_WAIT)
        except NostrError as exc:
            log.warning("%s; still trying (messages sent meanwhile are stored by the relays and arrive on "
                        "connecting)", exc)
        await stop.wait()
        await self.intake.drain(self.settings.gateway.shutdown_timeout)
        log.info("NostrMQ gateway took %d message(s); dropped %s", self.intake.taken,
                 dict(self.intake.dropped) or "none")

    def authenticate(self, headers: Mapping[str, str], body: bytes) -> None:
        """Never called: there is no webhook (each event's signature is checked in the intake)."""

    def parse(self, body: bytes) -> Parsed:
        return Parsed()

    def routes(self) -> list[web.RouteDef]:
        return []

    async def after_produce(self, messages: list[BeaconMessage]) -> None:
        return None

    # --- outbound ---------------------------------------------------------------------------------

    def build(self, msg: BeaconMessage) -> Event | None:
        """The signed NostrMQ reply of a text message; None for a read receipt (NostrMQ has no typing or
        read state: the worker's typing indicator is settled without sending anything)."""
        if msg.kind == "read_receipt":
            return None
        if msg.kind != "text" or msg.text is None:
            raise UnsendableMessageError(f"the NostrMQ channel sends text only; message {msg.id} is {msg.kind}")
        payload: dict[str, Any] = {"text": msg.text}
        target = msg.user_id
        question = self.questions.get(msg.reply_to_id) if msg.reply_to_id else None
        if question is not None:
            payload["in_reply_to"] = question.d
            target = question.response
        return wire.build(self.key, target, payload)

    async def send(self, msg: BeaconMessage, request: Any) -> str | None:
        if request is None:
            return None
        event: Event = request
        if not self._started:
            raise SendError("not connected to the Nostr relays yet", action=Action.RETRY)
        try:
            await self.pool.publish(event, self.settings.nostr.publish_timeout)
        except NostrError as exc:
            raise SendError(str(exc), action=Action.RETRY) from exc
        return event.id

    def user_rate(self, msg: BeaconMessage) -> Rate:
        return Rate(0.0, 1.0)

    def account_of(self, msg: BeaconMessage) -> str:
        return msg.account or self.pubkey

    async def on_permanent_failure(self, msg: BeaconMessage, error: BaseException) -> None:
        return None

    async def close(self) -> None:
        await self.pool.close()
        self.questions.close()
