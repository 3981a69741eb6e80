"""The ``beacon`` command: one subcommand for every process and operation.

Sub-apps live beside what they drive (``beacon/ops/cli.py``, ``beacon/api/cli.py``, ...) and
import their heavy dependencies inside commands, so ``beacon --help`` stays fast.
"""

from __future__ import annotations

import typer
from pydantic import ValidationError

from beacon.api.cli import api_app, fake_openai_app
from beacon.bench.cli import bench_app
from beacon.bridge.cli import bridge_app
from beacon.config import get_settings, variable_of
from beacon.config_cli import config_app
from beacon.console.cli import console
from beacon.fakes.telegram.cli import fake_telegram_app
from beacon.fakes.whatsapp.cli import fake_whatsapp_app
from beacon.gateway.cli import gateway_app
from beacon.gateway.telegram.cli import telegram_app
from beacon.logs import setup_logging
from beacon.nostr.cli import nostr_app, relay_app
from beacon.ops.cli import kafka_app, registry_app, schemas_app, topics_app
from beacon.ops.commands import dev, dlq_app, lag, replay, scale
from beacon.streams.cli import worker

app = typer.Typer(
    help="Beacon: a queue-based backend for chat bots (gateways -> Kafka -> Faust workers -> API).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(config_app, name="config")
app.add_typer(kafka_app, name="kafka")
app.add_typer(topics_app, name="topics")
app.add_typer(registry_app, name="registry")
app.add_typer(schemas_app, name="schemas")
app.add_typer(bench_app, name="bench")
app.add_typer(gateway_app, name="gateway")
app.add_typer(fake_whatsapp_app, name="fake-whatsapp")
app.add_typer(fake_telegram_app, name="fake-telegram")
app.add_typer(telegram_app, name="telegram")
app.add_typer(api_app, name="api")
app.add_typer(fake_openai_app, name="fake-openai")
app.command("replay")(replay)
app.command("lag")(lag)
app.add_typer(dlq_app, name="dlq")
app.command("dev")(dev)
app.command("console")(console)
app.command("scale")(scale)
app.command("worker")(worker)
app.add_typer(nostr_app, name="nostr")
app.add_typer(relay_app, name="relay")
app.add_typer(bridge_app, name="bridge")


def main() -> None:
    """Entry point of the ``beacon`` console script."""
    try:
        settings = get_settings()
    except ValidationError as exc:
        problems = "; ".join(
            (f"{variable_of(err['loc'])}: " if err["loc"] else "") + err["msg"]
            for err in exc.errors()
        )
        typer.echo(f"error: invalid settings: {problems}", err=True)
        raise SystemExit(2) from exc
    setup_logging(settings.log_level)
    app()
