"""NostrMQ as a channel: kind-30072 events on Nostr relays in, NostrMQ replies out (``beacon gateway nostr``)."""

CHANNEL = "nostr"
