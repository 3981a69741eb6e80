"""``beacon dev``: the whole stack on one machine, supervised, on the embedded defaults.

Order: Kafka and the schema registry (background services from ``ops/``), topics, the
BeaconMessage schema registered, database migrations; then, supervised, the API layer, the
workers (``BEACON_DEV_WORKERS``, each with its own web port), the operator console, the web chat
gateway (its URL printed first: a newcomer opens it and types ``/ping``), the fake Cloud API and the WhatsApp
gateway pointed at it — or, when real Cloud API credentials are set, the gateway alone, talking to
Meta — and the same for Telegram: the fake Bot API and the Telegram gateway, or the gateway alone
when a real ``BEACON_TELEGRAM_BOT_TOKEN`` is set. Each process logs to ``<data dir>/logs/<name>.log``;
a crash is reported and restarted.
Ctrl-C stops everything, including Kafka and the registry when this command started them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from beacon.config import DEV_PLACEHOLDER_SECRETS, Settings
from beacon.console.cli import console_token, login_url
from beacon.errors import ServiceError
from beacon.nostr import relay_local
from beacon.nostr.keys import NostrKey
from beacon.ops import stackfile
from beacon.ops.process import port_open
from beacon.ops.supervisor import Child, ProcessSpec, Supervisor

#: Development credentials shared by the fake Cloud API and the gateway (see CONTRACTS.md).
DEV_ACCESS_TOKEN = "dev-access-token"
DEV_APP_SECRET = "dev-secret"
DEV_VERIFY_TOKEN = "dev-verify-token"
SAMPLE_USER = "447700900123"
#: Development credentials of the fake Bot API and the Telegram gateway.
DEV_TELEGRAM_TOKEN = "123456789:dev-fake-telegram-token"
DEV_TELEGRAM_SECRET = "dev-telegram-webhook-secret"
SAMPLE_CHAT = "987654321"

if TYPE_CHECKING:
    from beacon.ops.reload import Reloader

Say = Callable[[str], None]


@dataclass
class DevPlan:
    """The supervised processes ``beacon dev`` runs and the addresses it announces."""

    specs: list[ProcessSpec]
    endpoints: list[tuple[str, str]] = field(default_factory=list)
    uses_fake: bool = True
    #: What tools in another terminal need to find this stack (``beacon bench e2e``).
    card: stackfile.StackCard | None = None


def has_real_credentials(settings: Settings) -> bool:
    """True when a real Cloud API access token is configured (then the gateway talks to Meta)."""
    token = settings.whatsapp.access_token
    return token is not None and token.get_secret_value() not in DEV_PLACEHOLDER_SECRETS | {DEV_ACCESS_TOKEN}


def has_real_telegram_token(settings: Settings) -> bool:
    """True when a real Telegram bot token is configured (then the Telegram gateway talks to Telegram)."""
    token = settings.telegram.bot_token
    return token is not None and token.get_secret_value() not in DEV_PLACEHOLDER_SECRETS | {DEV_TELEGRAM_TOKEN}


def beacon_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "beacon", *args]


def dev_nostr_key(settings: Settings) -> NostrKey:
    """Beacon's Nostr key in ``beacon dev --with-nostr``: BEACON_NOSTR_PRIVATE_KEY when set, else one made once
    and kept in ``<data dir>/nostr-dev-key`` (so the bot's npub stays the same between runs)."""
    if settings.nostr.private_key is not None and settings.nostr.private_key.get_secret_value():
        return NostrKey.parse(settings.nostr.private_key.get_secret_value())
    path = settings.data_dir / "nostr-dev-key"
    if path.exists():
        return NostrKey.parse(path.read_text())
    key = NostrKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(key.secret.hex())
    return key


def dev_plan(settings: Settings, workers: int | None = None, nostr_key: NostrKey | None = None) -> DevPlan:
    """Which processes to run, with which environment (a pure function of the settings); with ``nostr_key``,
    the NostrMQ gateway too (``--with-nostr``: Beacon is that key on the local relay)."""
    n = settings.local.dev_workers if workers is None else workers
    fake = not has_real_credentials(settings)
    gateway_url = f"http://127.0.0.1:{settings.whatsapp.gateway_port}"
    fake_url = f"http://127.0.0.1:{settings.local.fake_whatsapp_port}"
    common: dict[str, str] = {"BEACON_API_URL": f"http://127.0.0.1:{settings.api.port}"}
    whatsapp: dict[str, str] = {}
    if fake:
        whatsapp = {
            "BEACON_WHATSAPP_GRAPH_URL": fake_url,
            "BEACON_WHATSAPP_ACCESS_TOKEN": DEV_ACCESS_TOKEN,
            "BEACON_WHATSAPP_APP_SECRET": DEV_APP_SECRET,
            "BEACON_WHATSAPP_VERIFY_TOKEN": DEV_VERIFY_TOKEN,
            "BEACON_GATEWAY_URL": gateway_url,
            # The fake applies no throughput limit; Meta's default 80 msg/s per number would cap the stack.
            # With real credentials the setting (default 80) applies.
            "BEACON_WHATSAPP_RATE_LIMIT": "0",
        }
    webchat_url = f"http://127.0.0.1:{settings.webchat.port}/"
    # The API accepts proactive sends (`POST /v1/messages/send`) for every channel dev runs a gateway for.
    channels = ["whatsapp", "telegram", "webchat"] + (["nostr"] if nostr_key is not None else [])
    served = {"BEACON_SERVED_CHANNELS": json.dumps(channels)}
    # The API reads users' media through the gateways (`turn.media_bytes()`), which hold the channels' credentials.
    gateways = {"BEACON_GATEWAY_URLS": json.dumps({"whatsapp": gateway_url,
                                                   "telegram": f"http://127.0.0.1:{settings.telegram.port}"})}
    specs = [ProcessSpec("api", beacon_argv("api"), env={**common, **served, **gateways})]
    endpoints = [("web chat", f"{webchat_url}  (open it in a browser and type /ping)"),
                 ("API layer", f"http://127.0.0.1:{settings.api.port}  (docs at /docs, metrics at /metrics)")]
    for i in range(n):
        port = settings.workers.web_port + i
        specs.append(ProcessSpec(f"worker-{i + 1}", beacon_argv("worker"),
                                 env={**common, "BEACON_WORKER_WEB_PORT": str(port)}))
        endpoints.append((f"worker {i + 1}", f"http://127.0.0.1:{port}  (metrics at /metrics)"))
    console_url = f"http://127.0.0.1:{settings.console.port}"
    specs.append(ProcessSpec("console", beacon_argv("console"), env=common))
    endpoints.append(("console", f"{console_url}  (login link below)"))
    if fake:
        specs.append(ProcessSpec("fake-whatsapp", beacon_argv("fake-whatsapp"), env={**common, **whatsapp}))
        endpoints.append(("fake Cloud API", fake_url))
    specs.append(ProcessSpec("gateway-whatsapp", beacon_argv("gateway", "whatsapp"), env={**common, **whatsapp}))
    endpoints.append(("WhatsApp gateway", f"{gateway_url}/webhooks/whatsapp  (metrics at /metrics)"))
    telegram: dict[str, str] = {}
    if not has_real_telegram_token(settings):
        telegram = {
            "BEACON_TELEGRAM_BOT_TOKEN": DEV_TELEGRAM_TOKEN,
            "BEACON_TELEGRAM_API_URL": f"http://127.0.0.1:{settings.local.fake_telegram_port}",
            "BEACON_TELEGRAM_WEBHOOK_SECRET": DEV_TELEGRAM_SECRET,
        }
        specs.append(ProcessSpec("fake-telegram", beacon_argv("fake-telegram"), env={**common, **telegram}))
        endpoints.append(("fake Bot API", f"http://127.0.0.1:{settings.local.fake_telegram_port}"))
    specs.append(ProcessSpec("gateway-telegram", beacon_argv("gateway", "telegram"), env={**common, **telegram}))
    endpoints.append(("Telegram gateway",
                      f"http://127.0.0.1:{settings.telegram.port}/webhooks/telegram  (metrics at /metrics)"))
    specs.append(ProcessSpec("gateway-webchat", beacon_argv("gateway", "webchat"), env=common))
    nostr_health = f"http://127.0.0.1:{settings.nostr.gateway_port}/healthz"
    if nostr_key is not None:
        relay = relay_local.url(settings)
        nostr = {"BEACON_NOSTR_PRIVATE_KEY": nostr_key.secret.hex(), "BEACON_NOSTR_RELAYS": json.dumps([relay])}
        specs.append(ProcessSpec("gateway-nostr", beacon_argv("gateway", "nostr"), env={**common, **nostr}))
        endpoints.append(("Nostr (NostrMQ)", f"{nostr_key.npub} on {relay}  (health at {nostr_health})"))
    health = {"api": f"http://127.0.0.1:{settings.api.port}/healthz", "gateway-whatsapp": f"{gateway_url}/healthz",
              "console": f"{console_url}/healthz",
              "gateway-telegram": f"http://127.0.0.1:{settings.telegram.port}/healthz",
              "gateway-webchat": f"{webchat_url}healthz", "gateway-nostr": nostr_health}
    health.update({f"worker-{i + 1}": f"http://127.0.0.1:{settings.workers.web_port + i}/healthz" for i in range(n)})
    if fake:
        health["fake-whatsapp"] = f"{fake_url}/healthz"
    card = stackfile.StackCard(
        supervisor_pid=0, gateway_url=gateway_url, fake_url=fake_url if fake else None,
        phone_number_id=settings.whatsapp.phone_number_id,
        whatsapp_app_secret=DEV_APP_SECRET if fake else None, kafka_bootstrap=settings.kafka.bootstrap,
        health_urls={name: health[name] for name in (s.name for s in specs) if name in health},
    )
    return DevPlan(specs, endpoints, fake, card)


def _how(took: float | None) -> str:
    return f"  (started in {took:.1f}s)" if took is not None else "  (already running)"


def prepare(settings: Settings, say: Say) -> list[Callable[[], object]]:
    """Start Kafka and the registry, ensure topics, register the schema, migrate the database.

    A broker or registry that already answers at the configured address (started earlier, or in
    Docker) is used as it is. Returns the stop functions of the services this call started (to undo
    on Ctrl-C).
    """
    from beacon.kafka import ensure_topics
    from beacon.ops import kafka_local, registry_local, schemas

    started: list[Callable[[], object]] = []
    took = kafka_local.ensure(settings)
    say(f"Kafka          {settings.kafka.bootstrap}{_how(took)}")
    if took is not None:
        started.append(lambda: kafka_local.stop(settings))
    took = registry_local.ensure(settings)
    say(f"Registry       {settings.registry.url}{_how(took)}")
    if took is not None:
        started.append(lambda: registry_local.stop(settings))
    report = ensure_topics(settings)
    say(f"Topics         {settings.topics.inbound}, {settings.topics.outbound}, {settings.topics.dlq}"
        + (f"  (created {', '.join(report.created)})" if report.created else ""))
    for problem in report.mismatches:
        say(f"  warning: {problem}")
    # As `beacon schemas register`: the subjects' compatibility level is set first, so the registry
    # refuses an incompatible change from now on (a bare registration would leave it at NONE).
    schemas.register(settings)
    say("Schemas        BeaconMessage registered for " + ", ".join(
        f"{t}-value" for t in (settings.topics.inbound,
                               settings.topics.outbound)) + f"  ({settings.registry.compatibility})")
    result = subprocess.run(beacon_argv("api", "migrate"), capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise ServiceError(f"`beacon api migrate` failed (exit {result.returncode}):\n{result.stdout}{result.stderr}")
    say(f"Database       migrated ({settings.resolved_database_url.split('://', 1)[0]})")
    return started


def wait_listening(sup: Supervisor, ports: list[int], timeout: float) -> list[int]:
    """Supervise while waiting for ``ports`` to accept connections; returns those still closed."""
    deadline = time.monotonic() + timeout
    waiting = list(ports)
    while waiting and time.monotonic() < deadline and not sup.stopping.is_set():
        sup.poll()
        waiting = [p for p in waiting if not port_open("127.0.0.1", p)]
        time.sleep(0.2)
    return waiting


def run(settings: Settings, *, workers: int | None = None, keep_services: bool = False, with_nostr: bool = False,
        say: Say = print, reload: bool = False) -> int:
    """Run the stack until SIGINT/SIGTERM; returns the exit code. ``reload``: restart the API when
    ``beacon/`` or the code of the pipeline's own handlers changes (``beacon.ops.reload``)."""
    nostr_key = dev_nostr_key(settings) if with_nostr else None
    plan = dev_plan(settings, workers, nostr_key)
    card = plan.card
    if card is not None:
        card.supervisor_pid = os.getpid()

    def record_pid(child: Child) -> None:
        if card is not None and child.proc is not None:
            card.processes[child.spec.name] = child.proc.pid
            stackfile.write(settings, card)

    sup = Supervisor(settings.log_dir.resolve(), report=lambda line: say(f"[supervisor] {line}"), on_spawn=record_pid)
    sup.install_signal_handlers()
    started = prepare(settings, say)
    if with_nostr:
        status, took = relay_local.start(settings)
        say(f"Nostr relay    {status.url}{_how(took)}")
        if took is not None:
            started.append(lambda: relay_local.stop(settings))
    reloader: Reloader | None = None
    try:
        # Before the console starts: a generated token is written once, and both read the same file.
        token, _generated = console_token(settings)
        for spec in plan.specs:
            sup.add(spec)
        ports = [settings.api.port, settings.whatsapp.gateway_port, settings.telegram.port, settings.console.port]
        ports += [settings.local.fake_whatsapp_port] if plan.uses_fake else []
        ports += [] if has_real_telegram_token(settings) else [settings.local.fake_telegram_port]
        ports += [settings.webchat.port]
        ports += [settings.nostr.gateway_port] if with_nostr else []
        closed = wait_listening(sup, ports, timeout=90)
        say("")
        say(f"Chat with the bot: open http://127.0.0.1:{settings.webchat.port}/ in a browser")
        say("")
        say("Beacon is running:")
        for name, where in plan.endpoints:
            say(f"  {name:<17} {where}")
        say(f"  {'logs':<17} {settings.log_dir.resolve()}/<process>.log")
        say(f"  {'console login':<17} {login_url(settings, token)}")
        if closed:
            say(f"  (still not listening on port(s) {', '.join(map(str, closed))}: see the logs)")
        say("")
        fake_telegram = not has_real_telegram_token(settings)
        if plan.uses_fake or fake_telegram:
            say("Talk to the bot (in another terminal):")
        if plan.uses_fake:
            say(f'  beacon fake-whatsapp say --from {SAMPLE_USER} "hello"')
            say(f'  beacon fake-whatsapp say --from {SAMPLE_USER} "/help"')
        if fake_telegram:
            say(f'  beacon fake-telegram say --chat {SAMPLE_CHAT} "/ping"')
        if nostr_key is not None:
            say('  beacon nostr say "/ping"')
            say(f"Beacon on Nostr: {nostr_key.npub} (hex {nostr_key.pubkey}); any NostrMQ client sending "
                f'{{"text": "/ping"}} to it through {relay_local.url(settings)} gets "pong".')
        if not plan.uses_fake:
            say("Real Cloud API credentials are set: the gateway talks to Meta. Point your app's webhook at "
                f"the gateway's /webhooks/whatsapp (port {settings.whatsapp.gateway_port}).")
        if not fake_telegram:
            say("A real Telegram bot token is set: the Telegram gateway talks to Telegram. Register its webhook "
                f"with `beacon telegram set-webhook https://<public host>/webhooks/telegram` (port "
                f"{settings.telegram.port}).")
        if reload:
            from beacon.ops.reload import Reloader, watched_paths

            reloader = Reloader(watched_paths(settings), "api", say)
            reloader.start()
            say("Reloading the API when these change: " + ", ".join(str(p) for p in reloader.paths))
        say("Ctrl-C stops everything.")
        sup.run(each=reloader.apply if reloader is not None else None)
    finally:
        if reloader is not None:
            reloader.stop()
        sup.stop()
        stackfile.remove(settings)
        if not keep_services:
            for stop in reversed(started):
                stop()
        say("Beacon stopped.")
    return 0
