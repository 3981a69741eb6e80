"""``beacon telegram set-webhook URL`` and ``beacon telegram info``: the bot's webhook registration."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from beacon.config import get_settings

telegram_app = typer.Typer(help="The Telegram bot's webhook: register it, show its state.", no_args_is_help=True)


def _run(method: str, *args: Any) -> Any:
    from beacon.errors import BeaconError
    from beacon.gateway.telegram.client import BotApiClient

    settings = get_settings()

    async def main() -> Any:
        async with BotApiClient.from_settings(settings) as client:
            return await getattr(client, method)(*args)

    try:
        return asyncio.run(main())
    except BeaconError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@telegram_app.command("set-webhook")
def set_webhook(
    url: Annotated[str, typer.Argument(help="Public HTTPS URL of the gateway's POST /webhooks/telegram.")],
) -> None:
    """Point the bot's webhook at URL, with BEACON_TELEGRAM_WEBHOOK_SECRET and the Update types Beacon handles."""
    from beacon.gateway.telegram.parse import HANDLED_UPDATES

    secret = get_settings().telegram.webhook_secret
    if secret is None:
        typer.echo("warning: BEACON_TELEGRAM_WEBHOOK_SECRET is unset: anyone who finds the URL can post Updates",
                   err=True)
    _run("set_webhook", url, secret.get_secret_value() if secret else None, HANDLED_UPDATES)
    typer.echo(f"webhook set to {url} for {', '.join(HANDLED_UPDATES)}"
               + (" with the secret header" if secret else ""))


@telegram_app.command("info")
def info() -> None:
    """Print getWebhookInfo: the URL, pending updates and the last delivery error."""
    data = _run("get_webhook_info")
    typer.echo(f"url: {data.get('url') or '(none)'}")
    typer.echo(f"pending_update_count: {data.get('pending_update_count', 0)}")
    if data.get("allowed_updates"):
        typer.echo(f"allowed_updates: {', '.join(data['allowed_updates'])}")
    when = data.get("last_error_date")
    if isinstance(when, int):
        typer.echo(f"last_error_date: {datetime.fromtimestamp(when, UTC).isoformat()}")
        typer.echo(f"last_error_message: {data.get('last_error_message', '')}")
    else:
        typer.echo("last_error: none")
