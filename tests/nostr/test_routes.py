"""Which peer a bridged message goes to, and the settings a bridge refuses to start with."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

from beacon.bridge.routes import Routes
from beacon.bridge.service import Bridge
from beacon.errors import ConfigError
from beacon.nostr.keys import NostrKey
from tests.conftest import make_settings


def test_an_edge_forwards_its_selected_users_to_its_core() -> None:
    core = NostrKey.generate()
    routes = Routes.from_settings(make_settings(nostr_bridge_core=core.npub,
                                                nostr_bridge_forward=("whatsapp:1065", "telegram:")))
    assert routes.peer_for("whatsapp:106540352242922:447700900123") == core.pubkey
    assert routes.peer_for("telegram:42:7") == core.pubkey
    assert routes.peer_for("whatsapp:999:1") is None
    assert Routes.from_settings(make_settings(nostr_bridge_core=core.pubkey)).peer_for("webchat:s:v") == core.pubkey


def test_a_core_sends_replies_by_channel_and_account() -> None:
    a, b = NostrKey.generate(), NostrKey.generate()
    routes = Routes.from_settings(make_settings(nostr_bridge_role="core",
                                                nostr_bridge_routes={"whatsapp:1065": a.npub, "telegram": b.pubkey}))
    assert routes.peer_for("whatsapp:1065:447700900123") == a.pubkey
    assert routes.peer_for("whatsapp:1066:447700900123") is None  # another account stays here
    assert routes.peer_for("telegram:99:5") == b.pubkey  # a whole channel
    assert routes.peers == {a.pubkey, b.pubkey}


def test_a_bridge_refuses_incomplete_settings() -> None:
    me, core = NostrKey.generate(), NostrKey.generate()
    with pytest.raises(ConfigError, match="BEACON_NOSTR_PRIVATE_KEY"):
        Bridge(make_settings(nostr_bridge_core=core.pubkey, nostr_peers=(core.pubkey,)))
    with pytest.raises(ConfigError, match="BEACON_NOSTR_PRIVATE_KEY"):
        Bridge(make_settings(nostr_private_key=SecretStr("nsec1nope"), nostr_bridge_core=core.pubkey))
    with pytest.raises(ConfigError, match="BEACON_NOSTR_BRIDGE_CORE"):
        Bridge(make_settings(nostr_private_key=SecretStr(me.nsec)))
    with pytest.raises(ConfigError, match="BEACON_NOSTR_PEERS must list"):
        Bridge(make_settings(nostr_private_key=SecretStr(me.nsec), nostr_bridge_core=core.pubkey))
    with pytest.raises(ConfigError, match="BEACON_NOSTR_BRIDGE_ROUTES"):
        Bridge(make_settings(nostr_private_key=SecretStr(me.nsec), nostr_bridge_role="core"))
    bridge = Bridge(make_settings(nostr_private_key=SecretStr(me.secret.hex()), nostr_bridge_core=core.npub,
                                  nostr_peers=json.loads(json.dumps([core.npub]))))
    assert (bridge.source, bridge.destination, bridge.peers) == ("bm_in", "bm_out", {core.pubkey})
