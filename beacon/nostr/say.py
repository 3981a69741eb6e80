"""``beacon nostr say``: play a NostrMQ user writing to a Beacon bot and print its replies.

A throwaway key (or ``--key``) subscribes to NostrMQ messages for itself on the relays, sends the text
as payload ``{"text": ...}`` to the bot's pubkey, and prints the text of each reply that answers it
(``in_reply_to`` = the question's ``d``), waiting ``quiet`` seconds after the first for more.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from beacon.config import Settings
from beacon.errors import BadEventError, BeaconError
from beacon.nostr import relay_local, wire
from beacon.nostr.event import Event
from beacon.nostr.keys import NostrKey, parse_public_key
from beacon.nostr.relays import RelayPool


class NoReplyError(BeaconError):
    """The bot did not answer in time."""


@dataclass
class Said:
    question: Event
    replies: list[str]


def bot_pubkey(settings: Settings, to: str | None) -> str:
    """``to`` (hex or npub), else the pubkey of BEACON_NOSTR_PRIVATE_KEY, else of `beacon dev --with-nostr`'s key."""
    if to:
        try:
            return parse_public_key(to)
        except ValueError as exc:
            raise BeaconError(f"--to {to!r}: {exc}") from None
    if settings.nostr.private_key is not None and settings.nostr.private_key.get_secret_value():
        return NostrKey.parse(settings.nostr.private_key.get_secret_value()).pubkey
    path = settings.data_dir / "nostr-dev-key"
    if path.exists():
        return NostrKey.parse(path.read_text()).pubkey
    raise BeaconError("no bot to write to: give --to NPUB, or set BEACON_NOSTR_PRIVATE_KEY, or run "
                      "`beacon dev --with-nostr` first (it keeps its key in <data dir>/nostr-dev-key)")


def relay_urls(settings: Settings, relays: list[str] | None) -> list[str]:
    return list(relays or settings.nostr.relays or [relay_local.url(settings)])


async def say(text: str, *, to: str, relays: list[str], key: NostrKey | None = None, timeout: float = 30.0,
              quiet: float = 1.0) -> Said:
    """Send ``text`` to ``to`` and collect the replies to it; NoReplyError when none comes in ``timeout``."""
    me = key or NostrKey.generate()
    replies: list[str] = []
    first = asyncio.Event()
    question: Event | None = None

    async def on_event(event: Event, _relay: str) -> None:
        try:
            received = wire.open_event(me, event)
        except BadEventError:
            return
        payload = received.payload
        if received.sender != to or not isinstance(payload, dict) or question is None:
            return
        if payload.get("in_reply_to") not in (None, question.tag("d")):
            return  # an answer to an earlier question of this key
        replies.append(str(payload.get("text", payload)))
        first.set()

    pool = RelayPool(relays, on_event=on_event, filters=[{"kinds": [wire.KIND], "#p": [me.pubkey]}])
    await pool.start()
    try:
        await pool.wait_connected(10)
        question = wire.build(me, to, {"text": text})
        await pool.publish(question)
        try:
            await asyncio.wait_for(first.wait(), timeout)
        except TimeoutError:
            raise NoReplyError(f"no reply from {to[:16]}... on {relays} within {timeout:.0f}s (is `beacon gateway "
                               "nostr` running on these relays, with a worker and the API?)") from None
        await asyncio.sleep(quiet)
        return Said(question, replies)
    finally:
        await pool.close()
