"""Which peer a message goes to: an edge sends its selected users' messages to its core; a core sends
each reply to the edge that serves the reply's channel and account."""

from __future__ import annotations

from dataclasses import dataclass

from beacon.config import Settings
from beacon.errors import ConfigError
from beacon.nostr.keys import parse_public_key


@dataclass(frozen=True)
class Routes:
    """Routing of one bridge: ``peer_for(user_key)`` is the pubkey to send to, or None to leave it."""

    role: str
    core: str | None
    forward_prefixes: tuple[str, ...]
    edges: dict[str, str]

    @classmethod
    def from_settings(cls, settings: Settings) -> Routes:
        try:
            core = parse_public_key(settings.bridge.core) if settings.bridge.core else None
            edges = {k: parse_public_key(v) for k, v in settings.bridge.routes.items()}
        except ValueError as exc:
            raise ConfigError(f"BEACON_NOSTR_BRIDGE_CORE / BEACON_NOSTR_BRIDGE_ROUTES: {exc}") from exc
        if settings.bridge.role == "edge" and core is None:
            raise ConfigError("an edge bridge needs BEACON_NOSTR_BRIDGE_CORE: the pubkey of the core to forward to")
        if settings.bridge.role == "core" and not edges:
            raise ConfigError("a core bridge needs BEACON_NOSTR_BRIDGE_ROUTES, e.g. "
                              '{"whatsapp:106540352242922": "<edge pubkey>"}')
        return cls(settings.bridge.role, core, settings.bridge.forward, edges)

    @property
    def peers(self) -> set[str]:
        """Every pubkey this bridge sends to."""
        return {self.core} if self.core else set(self.edges.values())

    def peer_for(self, user_key: str) -> str | None:
        if self.role == "edge":
            if self.forward_prefixes and not any(user_key.startswith(p) for p in self.forward_prefixes):
                return None
            return self.core
        channel, _, rest = user_key.partition(":")
        account = rest.partition(":")[0]
        return self.edges.get(f"{channel}:{account}") or self.edges.get(channel)
