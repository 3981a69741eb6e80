"""The running development stack's card: ``<data dir>/dev-stack.json``, written by ``beacon dev``.

``beacon dev`` gives its processes settings of its own (the fake Cloud API's URL and the development
app secret that signs webhooks, per-worker ports), so a command run in another terminal with the
plain settings would not find them: ``beacon bench e2e`` posted unsigned webhooks, the gateway refused
every one and the bench printed ``sent 0``. The card says what the stack really runs with, and the
pid of each supervised process (rewritten when one restarts), so tools can find and measure it.

The file is readable by its owner only; it holds the app secret only when the gateway talks to the
fake (that secret is the development placeholder). It is removed when ``beacon dev`` stops, and a
card whose supervisor is gone is ignored.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from beacon.config import Settings

FILE_NAME = "dev-stack.json"


@dataclass
class StackCard:
    """Where the running stack listens, what its gateway checks, and the pid of each process."""

    supervisor_pid: int
    gateway_url: str
    fake_url: str | None
    phone_number_id: str
    #: The app secret the gateway verifies webhooks with (only when it talks to the fake).
    whatsapp_app_secret: str | None
    kafka_bootstrap: str
    processes: dict[str, int] = field(default_factory=dict)
    #: Process name -> the URL of its health check (``/healthz``), for the console's overview.
    health_urls: dict[str, str] = field(default_factory=dict)


def path(settings: Settings) -> Path:
    return settings.data_dir / FILE_NAME


def write(settings: Settings, card: StackCard) -> Path:
    """Write the card atomically, readable by its owner only."""
    target = path(settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(asdict(card), fh, indent=2)
    tmp.replace(target)
    return target


def read(settings: Settings) -> StackCard | None:
    """The card of a stack that is running now, or None (no card, unreadable, or its supervisor is gone)."""
    try:
        data = json.loads(path(settings).read_text())
        card = StackCard(**data)
    except (OSError, ValueError, TypeError):
        return None
    try:
        os.kill(card.supervisor_pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return card


def remove(settings: Settings) -> None:
    path(settings).unlink(missing_ok=True)
