"""Wire compatibility with the reference NostrMQ library (Node, humansinstitute/nostrMQ), both ways,
through the real local relay.

The reference is not published on npm and is never part of this tree: build it outside (clone,
``npm install``, ``npx tsc``) and point ``BEACON_NOSTRMQ_REFERENCE`` at its folder; without it
these tests are skipped.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest

from beacon.nostr import wire
from beacon.nostr.event import Event
from beacon.nostr.keys import NostrKey
from beacon.nostr.relays import RelayPool

REFERENCE = os.environ.get("BEACON_NOSTRMQ_REFERENCE", "")

# Our own driver of the reference's public API: send one payload, or print the first message received.
DRIVER = """
const ref = await import(process.env.REF_INDEX);
if (process.argv[2] === "send") {
  const id = await ref.send({ payload: JSON.parse(process.argv[4]), target: process.argv[3] });
  console.log(JSON.stringify({ sent: id }));
  process.exit(0);
} else {
  const handle = ref.receive({ onMessage: (payload, sender, raw) => {
    console.log(JSON.stringify({ payload, sender, kind: raw.kind }));
    process.exit(0);
  } });
  setTimeout(() => process.exit(3), 30000);
}
"""


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    index = Path(REFERENCE) / "dist" / "index.js"
    if not REFERENCE or not index.exists() or shutil.which("node") is None:
        pytest.skip("set BEACON_NOSTRMQ_REFERENCE to a built checkout of the reference NostrMQ library")
    driver = tmp_path / "driver.mjs"
    driver.write_text(DRIVER)
    return driver


def _env(key: NostrKey, relay_url: str, tmp: Path, reference: Path) -> dict[str, str]:
    return {**os.environ, "NOSTR_PRIVKEY": key.secret.hex(), "NOSTR_RELAYS": relay_url,
            "NOSTRMQ_CACHE_DIR": str(tmp / "cache"), "REF_INDEX": str(Path(REFERENCE) / "dist" / "index.js")}


async def test_beacon_opens_what_the_reference_sends(relay_url: str, reference: Path, tmp_path: Path) -> None:
    beacon, node = NostrKey.generate(), NostrKey.generate()
    got: asyncio.Queue[Event] = asyncio.Queue()

    async def on_event(event: Event, _url: str) -> None:
        await got.put(event)

    pool = RelayPool([relay_url], on_event=on_event, filters=[{"kinds": [30072], "#p": [beacon.pubkey]}])
    await pool.start()
    try:
        await pool.wait_connected(10)
        payload = {"text": "héllo from node ✓", "n": [1, 2]}
        proc = await asyncio.create_subprocess_exec(
            "node", str(reference), "send", beacon.pubkey, json.dumps(payload),
            env=_env(node, relay_url, tmp_path, reference), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, out.decode()
        event = await asyncio.wait_for(got.get(), 10)
        opened = wire.open_event(beacon, event, peers={node.pubkey})
        assert opened.payload == payload
        assert opened.sender == opened.response == node.pubkey
        assert event.tag("p") == beacon.pubkey and event.tag("d")
    finally:
        await pool.close()


async def test_the_reference_opens_what_beacon_sends(relay_url: str, reference: Path, tmp_path: Path) -> None:
    beacon, node = NostrKey.generate(), NostrKey.generate()
    proc = await asyncio.create_subprocess_exec(
        "node", str(reference), "receive", env=_env(node, relay_url, tmp_path, reference),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    pool = RelayPool([relay_url])
    await pool.start()
    try:
        assert proc.stdout is not None
        while True:  # the reference says when its subscription is open
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert line, "the reference receiver exited before subscribing"
            if b"Subscribed to messages" in line:
                break
        await pool.wait_connected(10)
        payload = {"text": "pong ünïcode", "in_reply_to": "abc"}
        await pool.publish(wire.build(beacon, node.pubkey, payload), 5)
        result: dict[str, object] = {}
        while not result:
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert line, "the reference receiver exited without a message"
            if line.startswith(b"{"):
                result = json.loads(line)
        assert result == {"payload": payload, "sender": beacon.pubkey, "kind": 30072}
    finally:
        await pool.close()
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
