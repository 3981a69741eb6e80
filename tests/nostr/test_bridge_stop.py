"""``beacon bridge nostr`` stops on SIGTERM even while its core is away and every slot waits for an
acknowledgement (the consumer loop is then held waiting to hand over its next record)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from beacon.codec import MessageCodec
from beacon.config import Settings
from beacon.kafka import AsyncProducer
from beacon.messages import BeaconMessage
from beacon.nostr import relay_local
from beacon.nostr.keys import NostrKey
from beacon.ops.process import tail
from tests.nostr.conftest import relay_settings
from tests.nostr.test_bridge import BridgeProcess


@pytest.mark.slow
async def test_an_edge_whose_core_never_answers_stops_on_sigterm(
    registry_settings: Settings, new_topic: Callable[..., str], unique: Callable[[str], str], tmp_path: Path
) -> None:
    settings = registry_settings
    relay = relay_settings(tmp_path / "relay")
    relay_local.start(relay)
    edge_in, edge_out, edge_dlq = new_topic(1, "edge-in"), new_topic(1, "edge-out"), new_topic(1, "edge-dlq")
    edge_key, core_key = NostrKey.generate(), NostrKey.generate()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEACON_")}
    env.update({
        "BEACON_KAFKA_BOOTSTRAP": settings.kafka.bootstrap, "BEACON_SCHEMA_REGISTRY_URL": settings.registry.url,
        "BEACON_NOSTR_RELAYS": json.dumps([relay_local.url(relay)]), "BEACON_DATA_DIR": str(tmp_path / "edge"),
        "BEACON_TOPIC_IN": edge_in, "BEACON_TOPIC_OUT": edge_out, "BEACON_TOPIC_DLQ": edge_dlq,
        "BEACON_NOSTR_PRIVATE_KEY": edge_key.nsec, "BEACON_NOSTR_PEERS": json.dumps([core_key.npub]),
        "BEACON_NOSTR_BRIDGE_ROLE": "edge", "BEACON_NOSTR_BRIDGE_CORE": core_key.pubkey,
        "BEACON_NOSTR_BRIDGE_GROUP": unique("bridge-edge"), "BEACON_NOSTR_BRIDGE_MAX_IN_FLIGHT": "1",
        "BEACON_NOSTR_BRIDGE_ACK_TIMEOUT": "0.5",
    })
    codec = MessageCodec(settings)
    producer = AsyncProducer(settings)
    for user in ("u1", "u2", "u3"):  # three users, one slot: the second record waits for the first's ack
        msg = BeaconMessage.inbound_text(channel="whatsapp", account="106540352242922", user_id=user, text="hi")
        await producer.produce(edge_in, codec.encode(msg, edge_in), key=msg.user_key)
    producer.close()
    edge = BridgeProcess(env, tmp_path / "edge.log")
    try:
        edge.start()
        assert edge.proc is not None
        deadline = time.monotonic() + 60
        while "re-sending with backoff" not in edge.log.read_text():  # the only slot is waiting for the core
            assert edge.proc.poll() is None and time.monotonic() < deadline, tail(edge.log)
            await asyncio.sleep(0.2)
        edge.proc.terminate()
        try:
            code = await asyncio.to_thread(edge.proc.wait, 30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the bridge did not stop within 30 s of SIGTERM:\n{tail(edge.log)}")
        assert code == 0, tail(edge.log)
        assert "bridge stopped" in edge.log.read_text()
    finally:
        edge.stop()
        relay_local.stop(relay)
