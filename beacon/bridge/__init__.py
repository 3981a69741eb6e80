"""``beacon bridge nostr``: joins deployments over NostrMQ, adding acknowledgements, redelivery,
per-user order and deduplication to what NostrMQ carries."""
