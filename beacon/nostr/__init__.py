"""NostrMQ over Nostr relays: keys, NIP-01 events, NIP-04 encryption, the NostrMQ wire format,
a relay client and the local relay. The bridge between deployments lives in ``beacon.bridge``."""
