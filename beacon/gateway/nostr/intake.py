"""NostrMQ events in: each event addressed to Beacon checked, opened and turned into a BeaconMessage,
then each sender's messages produced in ``created_at`` order (then arrival) through the framework's
produce-and-wait-for-every-ack path.

Checked, cheapest first: the proof of work (``BEACON_NOSTR_MIN_POW``), the id and signature, the
allowlist (``BEACON_NOSTR_ALLOWED_SENDERS``, before decrypting), NIP-04 decryption, the NostrMQ body, the
payload ``{"text": ...}``, the sender's rate. A failing event is dropped and counted by reason
(``beacon_gateway_webhook_dropped_total{channel="nostr"}``), logged the first time for each reason
and every 100th after: never retried, never a crash.

The BeaconMessage id derives from the event id, so the same event from two relays, or again after a
reconnect or a restart, is the same message (the relay pool passes an event on once per process; the
API records each id once, and the reply ids derive from it).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from beacon.backoff import backoff_delay
from beacon.config import Settings
from beacon.errors import BadEventError, BeaconError, KafkaError
from beacon.gateway.channel import Deliver, Parsed
from beacon.gateway.limiter import TokenBucket, sleep_unless_stopped
from beacon.gateway.metrics import WEBHOOK_DROPPED
from beacon.gateway.nostr import CHANNEL
from beacon.gateway.nostr.questions import Question, QuestionStore
from beacon.messages import BeaconMessage
from beacon.nostr import wire
from beacon.nostr.event import Event
from beacon.nostr.keys import NostrKey
from beacon.nostr.pow import leading_zero_bits

log = logging.getLogger("beacon.gateway.nostr.inbound")

#: Metadata of an inbound NostrMQ message: its ``d`` and the pubkey its replies go to.
D_META = "nostr.d"
RESPONSE_META = "nostr.response"
#: Senders whose rate bucket is kept; beyond it the fullest are forgotten (they start full again).
MAX_SENDERS = 100_000


@dataclass(order=True)
class _Pending:
    created_at: int
    arrival: int
    msg: BeaconMessage = field(compare=False)


class Intake:
    """Turns events into ordered batches for ``deliver``; ``on_event`` is the relay pool's handler."""

    def __init__(self, settings: Settings, key: NostrKey, questions: QuestionStore, allowed: set[str] | None) -> None:
        self.settings = settings
        self.key = key
        self.pubkey = key.pubkey
        self.questions = questions
        self.allowed = allowed
        self.dropped: Counter[str] = Counter()
        self.taken = 0
        self._arrival = itertools.count()
        self._buckets: dict[str, TokenBucket] = {}
        self._pending: dict[str, list[_Pending]] = {}
        self._draining: dict[str, asyncio.Task[None]] = {}
        self._deliver: Deliver | None = None
        self._stop = asyncio.Event()
        self._failing = False

    def start(self, deliver: Deliver, stop: asyncio.Event) -> None:
        self._deliver = deliver
        self._stop = stop

    async def on_event(self, event: Event, relay: str) -> None:
        """One event from a relay: never raises."""
        arrival = next(self._arrival)
        msg = self.take(event, relay)
        if msg is None:
            return
        sender = msg.user_id
        self._pending.setdefault(sender, []).append(_Pending(event.created_at, arrival, msg))
        if sender not in self._draining:
            self._draining[sender] = asyncio.create_task(self._drain(sender), name=f"nostr sender {sender[:12]}")

    def take(self, event: Event, relay: str) -> BeaconMessage | None:
        """The BeaconMessage of a good event (its question recorded), or None when it is dropped."""
        s = self.settings
        if s.nostr.min_pow and leading_zero_bits(event.id) < s.nostr.min_pow:
            self._drop("pow", event, relay, f"proof of work {leading_zero_bits(event.id)} bits < "
                       f"BEACON_NOSTR_MIN_POW={s.nostr.min_pow}")
            return None
        try:
            received = wire.open_event(self.key, event, peers=self.allowed)
        except BadEventError as exc:
            reason = "not_allowed" if exc.reason == "foreign" else exc.reason
            detail = "not in BEACON_NOSTR_ALLOWED_SENDERS" if exc.reason == "foreign" else str(exc).split(": ", 1)[-1]
            self._drop(reason, event, relay, detail)
            return None
        payload = received.payload
        if not isinstance(payload, dict) or not isinstance(payload.get("text"), str):
            self._drop("format", event, relay, 'the payload is not {"text": "..."}')
            return None
        bucket = self._bucket(received.sender)
        if not bucket.try_take():
            self._drop("rate", event, relay, f"the sender exceeds BEACON_NOSTR_SENDER_RATE={s.nostr.sender_rate}/s "
                       f"(burst {s.nostr.sender_burst})")
            return None
        msg = BeaconMessage.inbound_text(
            channel=CHANNEL, account=self.pubkey, user_id=received.sender, text=payload["text"],
            channel_message_id=event.id, channel_timestamp=datetime.fromtimestamp(event.created_at, UTC),
            metadata={D_META: received.d, RESPONSE_META: received.response},
        )
        self.questions.record(msg.id, Question(received.d, received.response))
        return msg

    def _bucket(self, sender: str) -> TokenBucket:
        bucket = self._buckets.get(sender)
        if bucket is None:
            if len(self._buckets) >= MAX_SENDERS:
                self._buckets = {k: b for k, b in self._buckets.items() if not b.full}
            bucket = self._buckets[sender] = TokenBucket(self.settings.nostr.sender_rate,
                                                         float(self.settings.nostr.sender_burst))
        return bucket

    async def _drain(self, sender: str) -> None:
        """Produce ``sender``'s pending messages, batch after batch, each batch in ``created_at`` order."""
        try:
            while self._pending.get(sender):
                # stopping: the window is cut short, and what is pending gets one more attempt
                await sleep_unless_stopped(self.settings.nostr.reorder_window, self._stop)
                batch = sorted(self._pending.pop(sender, []))
                if not await self._produce([p.msg for p in batch]):
                    self._pending[sender] = batch + self._pending.get(sender, [])
                    break
            left = self._pending.pop(sender, [])
            if left:
                log.warning("stopping with %d message(s) of %s not produced (first event %s); a relay sends them "
                            "again when the gateway re-subscribes within a minute", len(left), sender,
                            left[0].msg.channel_message_id)
        finally:
            self._draining.pop(sender, None)

    async def _produce(self, messages: list[BeaconMessage]) -> bool:
        """Deliver one batch, retrying with backoff until the broker acknowledges it; False when stopped first."""
        assert self._deliver is not None
        attempt = 0
        while True:
            try:
                await self._deliver(Parsed(messages))
            except (TimeoutError, BeaconError) as exc:
                if isinstance(exc, KafkaError) and not exc.retryable:
                    raise  # the brokers refuse it every time (credentials, authorization): stop with the reason
                attempt += 1
                if not self._failing:
                    self._failing = True
                    first = messages[0]
                    log.error("cannot produce %d NostrMQ message(s) of %s (first %s, event %s) to %s: the broker did "
                              "not acknowledge (%s). Holding them and retrying; check `beacon kafka status`.",
                              len(messages), first.user_id, first.id, first.channel_message_id,
                              self.settings.topics.inbound, str(exc) or type(exc).__name__)
                s = self.settings
                delay = backoff_delay(attempt, s.nostr.retry_base_delay, s.nostr.retry_max_delay)
                if await sleep_unless_stopped(delay, self._stop):
                    return False
                continue
            if self._failing:
                self._failing = False
                log.info("producing NostrMQ messages to %s works again", self.settings.topics.inbound)
            self.taken += len(messages)
            return True

    async def drain(self, timeout: float) -> None:
        """Wait (at most ``timeout``) for the senders' batches in progress."""
        tasks = list(self._draining.values())
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    def _drop(self, reason: str, event: Event, relay: str, detail: str) -> None:
        self.dropped[reason] += 1
        WEBHOOK_DROPPED.labels(CHANNEL, reason).inc()
        count = self.dropped[reason]
        if count == 1 or count % 100 == 0:
            log.warning("dropped NostrMQ event %s from %s (via %s): %s: %s. Not answered, not retried (%d dropped "
                        "for %s so far).", event.id, event.pubkey, relay, reason, detail, count, reason)
