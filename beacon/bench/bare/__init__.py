"""The bare topology: Beacon's shape written the simplest way, the limit ``beacon bench e2e`` measures against.

A webhook handler produces each POST to a Kafka topic; worker processes consume it, call a bare HTTP
"API" for each message and produce the answer; an outbound consumer posts each answer to a bare fake
channel that records its arrival. JSON payloads, no registry, no ordering, no idempotency, auto-committed
offsets: what the hops cost on this machine, with none of Beacon's guarantees.
"""
