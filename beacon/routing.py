"""The channel of a BeaconMessage record, in a Kafka header, so a gateway skips other channels' records of
``bm_out`` without decoding them (every channel's gateway reads the whole topic: decoding a foreign record
cost ~0.45 ms of CPU, about all a gateway did for it).

Every producer of ``bm_out`` adds it with :func:`with_channel` (the worker's replies and typing receipts, the
API's direct sends, the bridge). A record without it (produced by an older version, or redriven from
``bm_dlq``) is decoded, as before.
"""

from __future__ import annotations

from collections.abc import Sequence

from beacon.messages import BeaconMessage
from beacon.trace import AnyHeaders, header

CHANNEL_HEADER = "beacon-channel"

Headers = list[tuple[str, bytes]]


def with_channel(msg: BeaconMessage, headers: Sequence[tuple[str, bytes]] | None = None) -> Headers:
    """``headers`` (not changed) followed by the channel header of ``msg``."""
    return [*(headers or ()), (CHANNEL_HEADER, msg.channel.encode())]


def channel_of(headers: AnyHeaders) -> str | None:
    """The channel a record's headers name, or None when they name none (decode the record to know)."""
    return header(headers, CHANNEL_HEADER)
