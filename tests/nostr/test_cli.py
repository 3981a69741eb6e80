"""``beacon nostr keygen`` and ``beacon relay start/status/stop`` as an operator runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from beacon.nostr.keys import NostrKey, parse_public_key
from beacon.nostr.relays import RelayPool
from beacon.ops.process import free_port


def beacon(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "beacon", *args], capture_output=True, text=True, env=env,
                          timeout=60, check=False)


def test_keygen_prints_a_key_pair_in_both_forms() -> None:
    result = beacon("nostr", "keygen")
    assert result.returncode == 0, result.stderr
    fields = dict(line.split(":", 1) for line in result.stdout.splitlines() if line.startswith(("private", "public")))
    values = {k.strip(): v.strip() for k, v in fields.items()}
    key = NostrKey.parse(values["private key (hex)"])
    assert NostrKey.parse(values["private key (nsec)"]) == key
    assert values["public key (hex)"] == key.pubkey == parse_public_key(values["public key (npub)"])
    assert beacon("nostr", "keygen").stdout != result.stdout  # a new key each time


async def test_relay_start_status_stop(tmp_path: Path) -> None:
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("BEACON_")},
           "BEACON_DATA_DIR": str(tmp_path), "BEACON_NOSTR_RELAY_PORT": str(port)}
    assert beacon("relay", "status", env=env).returncode == 1
    started = beacon("relay", "start", env=env)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"ws://127.0.0.1:{port}" in started.stdout
        assert "already running" in beacon("relay", "start", env=env).stdout
        status = beacon("relay", "status", env=env)
        assert status.returncode == 0 and "running" in status.stdout
        pool = RelayPool([f"ws://127.0.0.1:{port}"])
        await pool.start()
        try:
            await pool.wait_connected(10)  # a real relay answers on the port
        finally:
            await pool.close()
        assert (tmp_path / "relay" / "nostr.sqlite3").exists() and (tmp_path / "logs" / "relay.log").exists()
    finally:
        assert "stopped" in beacon("relay", "stop", env=env).stdout
    assert beacon("relay", "status", env=env).returncode == 1
