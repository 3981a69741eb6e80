"""The web chat's "send": a reply from ``bm_out`` is recorded in the visitor's history and pushed to
their open sockets. Recording it is the settlement: a reply id recorded before (a redelivered
record) is neither recorded nor pushed again, so a page shows each reply once.
"""

from __future__ import annotations

import logging

from beacon.gateway.webchat import CHANNEL
from beacon.gateway.webchat.connections import Connections
from beacon.gateway.webchat.frames import message_frame
from beacon.gateway.webchat.history import History
from beacon.gateway.webchat.metrics import REPLIES
from beacon.messages import OUTBOUND, BeaconMessage

log = logging.getLogger("beacon.gateway.webchat")

#: Outbound kinds a page has nothing to show for.
NOT_SHOWN = frozenset({"read_receipt", "reaction", "status"})


class Replies:
    """Delivers outbound BeaconMessages of one site to its visitors."""

    def __init__(self, site: str, history: History, connections: Connections) -> None:
        self.site = site
        self.history = history
        self.connections = connections

    def is_mine(self, msg: BeaconMessage) -> bool:
        return msg.channel == CHANNEL and msg.account == self.site and msg.direction == OUTBOUND

    async def deliver(self, msg: BeaconMessage) -> None:
        """Record the reply and show it on the visitor's open pages (once per reply id)."""
        if msg.kind in NOT_SHOWN:
            REPLIES.labels("skipped").inc()
            return
        frame = message_frame(msg, "bot")
        seq = self.history.add(self.site, msg.user_id, msg.id, frame)
        if seq is None:
            REPLIES.labels("duplicate").inc()
            return
        pushed = await self.connections.push(msg.user_id, {**frame, "seq": seq})
        REPLIES.labels("delivered" if pushed else "recorded").inc()
