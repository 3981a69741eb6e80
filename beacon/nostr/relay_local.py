"""The local Nostr relay: ``nostr-relay`` from PyPI (SQLite storage) as a background service.

Its config, database and pid file live under ``<data dir>/relay``, its log in ``<data dir>/logs``;
it listens on 127.0.0.1 at ``BEACON_NOSTR_RELAY_PORT``. Events survive a restart (SQLite), so a
subscriber that re-subscribes with ``since`` gets what was stored while it was away.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from beacon.config import Settings
from beacon.ops.process import BackgroundService, port_open

#: What the relay checks before it stores an event. ``is_signed`` can be left out (``verify_signatures=False``)
#: only by tests that must push forged events through a real relay to prove the receiver drops them.
VALIDATORS = (
    "nostr_relay.validators.is_not_too_large",
    "nostr_relay.validators.is_signed",
    "nostr_relay.validators.is_recent",
    "nostr_relay.validators.is_not_hellthread",
)


@dataclass(frozen=True)
class RelayStatus:
    running: bool
    pid: int | None
    url: str
    rss_bytes: int | None
    data_dir: Path


def relay_dir(settings: Settings) -> Path:
    return settings.data_dir.resolve() / "relay"


def url(settings: Settings) -> str:
    return f"ws://127.0.0.1:{settings.local.nostr_relay_port}"


def _service(settings: Settings) -> BackgroundService:
    folder = relay_dir(settings)
    return BackgroundService(
        name=f"Nostr relay on 127.0.0.1:{settings.local.nostr_relay_port}",
        pid_file=folder / "relay.pid",
        log_file=settings.data_dir.resolve() / "logs" / "relay.log",
        marker=str(folder / "config.yaml"),
    )


def write_config(settings: Settings, *, verify_signatures: bool = True) -> Path:
    """The relay's config.yaml: SQLite storage in the relay dir, loopback on the configured port."""
    folder = relay_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    port = settings.local.nostr_relay_port
    config: dict[str, Any] = {
        "DEBUG": False,
        "relay_name": "beacon local relay",
        "relay_description": "Beacon's local Nostr relay for development and tests",
        "storage": {
            "sqlalchemy.url": f"sqlite+aiosqlite:///{folder / 'nostr.sqlite3'}",
            "num_concurrent_reqs": 10,
            "num_concurrent_adds": 2,
            "validators": [v for v in VALIDATORS if verify_signatures or not v.endswith("is_signed")],
        },
        "verification": {"nip05_verification": "disabled", "expiration": 86400 * 30, "update_frequency": 3600},
        "gunicorn": {"bind": f"127.0.0.1:{port}", "workers": 1, "loglevel": "warning", "reload": False},
        "authentication": {"enabled": False, "valid_urls": [url(settings)], "actions": {"save": "a", "query": "a"}},
        "message_timeout": 1800,
        "subscription_limit": 32,
        "max_limit": 6000,
        "hellthread_limit": 100,
        "oldest_event": 31536000,
        # Deletes events past their NIP-40 expiration (the bridge's) every minute rather than every five: the
        # relay's cost of storing a kind-30072 event grows with how many of the author's it holds.
        "garbage_collector": {"collect_interval": 60},
    }
    path = folder / "config.yaml"
    # JSON is valid YAML: the relay reads it with its own YAML loader, and Beacon needs no YAML library.
    path.write_text(json.dumps(config, indent=2))
    return path


def status(settings: Settings) -> RelayStatus:
    svc = _service(settings)
    pid = svc.pid()
    return RelayStatus(pid is not None, pid, url(settings), svc.rss_bytes(), relay_dir(settings))


def start(settings: Settings, *, verify_signatures: bool = True,
          timeout: float = 30.0) -> tuple[RelayStatus, float | None]:
    """Start the relay (harmless if it runs); returns its status and the seconds starting took (None if it ran)."""
    svc = _service(settings)
    if svc.pid() is not None:
        return status(settings), None
    config = write_config(settings, verify_signatures=verify_signatures)
    argv = [sys.executable, "-c", "from nostr_relay.cli import main; main()", "-c", str(config), "serve",
            "--use-uvicorn"]
    _, took = svc.start(argv, ready=lambda: port_open("127.0.0.1", settings.local.nostr_relay_port), timeout=timeout,
                        cwd=relay_dir(settings))
    return status(settings), took


def stop(settings: Settings) -> bool:
    """Stop the relay cleanly (SIGTERM, then wait); False when it was not running."""
    return _service(settings).stop(timeout=10.0)
