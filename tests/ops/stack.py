"""A whole Beacon stack for end-to-end operations tests: fresh topics, groups, ports and data dir per
test, on the session's real broker and registry, each process started through the supervisor."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from beacon.config import Settings
from beacon.ops.dev import dev_plan
from beacon.ops.process import free_port, port_open

#: What a WhatsApp round trip needs, and what most end-to-end tests start: the whole `beacon dev` stack's console,
#: web chat and Telegram processes would each cost about 1.5 s of CPU to start, and keep polling Kafka, for nothing
#: those tests check.
ROUND_TRIP = ("api", "worker-1", "fake-whatsapp", "gateway-whatsapp")


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0, step: Callable[[], Any] | None = None
             ) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if step is not None:
            step()
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class Stack:
    """Settings and environment of one isolated stack."""

    settings: Settings
    env: dict[str, str]

    @classmethod
    def create(cls, base: Settings, unique: Callable[[str], str], data_dir: Path, workers: int = 1) -> Stack:
        name = unique("e2e")
        overrides: dict[str, Any] = {
            "data_dir": data_dir,
            "database_url": f"sqlite+aiosqlite:///{data_dir / 'beacon.db'}",
            "topic_in": f"{name}-in", "topic_out": f"{name}-out", "topic_dlq": f"{name}-dlq",
            "topic_partitions": 4,
            "worker_group": f"{name}-workers", "whatsapp_gateway_group": f"{name}-gateway",
            "api_port": free_port(), "whatsapp_gateway_port": free_port(), "fake_whatsapp_port": free_port(),
            "worker_web_port": free_port(), "dev_workers": workers, "console_port": free_port(),
            "telegram_gateway_group": f"{name}-gateway-telegram", "telegram_port": free_port(),
            "fake_telegram_port": free_port(),
            "webchat_port": free_port(), "webchat_gateway_group": f"{name}-gateway-webchat",
        }
        settings = base.replace(**overrides)
        env = {k: v for k, v in os.environ.items() if not k.startswith("BEACON_")}
        env.update({
            "BEACON_DATA_DIR": str(data_dir),
            "BEACON_KAFKA_BOOTSTRAP": settings.kafka.bootstrap,
            "BEACON_KAFKA_CONTROLLER_PORT": str(settings.local.kafka_controller_port),
            "BEACON_SCHEMA_REGISTRY_URL": settings.registry.url,
            "BEACON_API_URL": f"http://127.0.0.1:{settings.api.port}",
            **{f"BEACON_{k.upper()}": str(v) for k, v in overrides.items() if k != "data_dir"},
        })
        return cls(settings, env)

    def specs(self, names: Iterable[str] | None = None) -> list[Any]:
        """The processes `beacon dev` would supervise (only those named, when ``names`` is given), with this stack's
        environment."""
        plan = dev_plan(self.settings)
        wanted = None if names is None else set(names)
        return [type(s)(s.name, s.argv, env={**self.env, **s.env}, cwd=s.cwd, restart=s.restart) for s in plan.specs
                if wanted is None or s.name in wanted]

    def beacon(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "beacon", *args], env={**self.env, "COLUMNS": "200"},
                              capture_output=True, text=True, timeout=timeout)

    @property
    def fake_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.local.fake_whatsapp_port}"

    def listening(self) -> bool:
        """Whether the API, the WhatsApp gateway and the fake Cloud API accept connections."""
        s = self.settings
        return all(port_open("127.0.0.1", p) for p in (s.api.port, s.whatsapp.gateway_port, s.local.fake_whatsapp_port))

    def say(self, client: httpx.Client, user: str, text: str) -> None:
        r = client.post(f"{self.fake_url}/_fake/say", json={"from": user, "text": text})
        assert r.status_code == 200 and r.json().get("gateway_status") == 200, r.text

    def sent(self, client: httpx.Client) -> list[dict[str, Any]]:
        """Every message the fake Cloud API received from the gateway (replies, not read receipts)."""
        items = client.get(f"{self.fake_url}/_fake/sent", params={"after": 0, "wait": 0}).json()
        return [i for i in items if i["body"].get("type") == "text"]
