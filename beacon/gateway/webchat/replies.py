"""The web chat's "send": a reply from ``bm_out`` is recorded in the visitor's history and pushed to
their open sockets. A reply id recorded before is neither recorded nor pushed again, so a page shows
each reply once even if the engine's settled-id record were lost.
"""

from __future__ import annotations

from beacon.gateway.webchat import CHANNEL
from beacon.gateway.webchat.connections import Connections
from beacon.gateway.webchat.frames import message_frame
from beacon.gateway.webchat.history import History
from beacon.gateway.webchat.metrics import REPLIES
from beacon.messages import OUTBOUND, BeaconMessage

#: Outbound kinds a page has nothing to show for.
NOT_SHOWN = frozenset({"read_receipt", "reaction", "status"})


class Replies:
    """Delivers outbound BeaconMessages of one site to its visitors."""

    def __init__(self, site: str, history: History, connections: Connections) -> None:
        self.site = site
        self.history = history
        self.connections = connections

    def shows(self, msg: BeaconMessage) -> bool:
        """True for a reply of this site a page can show (another site's gateway delivers its own)."""
        return (msg.channel == CHANNEL and msg.account == self.site and msg.direction == OUTBOUND
                and msg.kind not in NOT_SHOWN)

    def skipped(self) -> None:
        REPLIES.labels("skipped").inc()

    async def deliver(self, msg: BeaconMessage) -> int | None:
        """Record the reply and show it on the visitor's open pages; its ``seq``, None if delivered before."""
        frame = message_frame(msg, "bot")
        seq = self.history.add(self.site, msg.user_id, msg.id, frame)
        if seq is None:
            REPLIES.labels("duplicate").inc()
            return None
        pushed = await self.connections.push(msg.user_id, {**frame, "seq": seq})
        REPLIES.labels("delivered" if pushed else "recorded").inc()
        return seq
