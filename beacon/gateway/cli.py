"""``beacon gateway <channel>``: one persistent gateway process per channel."""

from __future__ import annotations

import typer

from beacon.config import get_settings

gateway_app = typer.Typer(help="Channel gateways: webhooks into bm_in, bm_out back out.", no_args_is_help=True)


@gateway_app.command("whatsapp")
def whatsapp() -> None:
    """The WhatsApp gateway: Cloud API webhooks into bm_in, and the sender of bm_out's WhatsApp messages."""
    from beacon.errors import BeaconError
    from beacon.gateway.service import run
    from beacon.gateway.whatsapp.channel import WhatsAppChannel

    try:
        run(get_settings(), WhatsAppChannel)
    except BeaconError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


@gateway_app.command("telegram")
def telegram() -> None:
    """The Telegram gateway: Bot API webhooks into bm_in, and the sender of bm_out's Telegram messages."""
    from beacon.errors import BeaconError
    from beacon.gateway.service import run
    from beacon.gateway.telegram.channel import TelegramChannel

    try:
        run(get_settings(), TelegramChannel)
    except BeaconError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


@gateway_app.command("webchat")
def webchat() -> None:
    """The web chat gateway: the chat page on BEACON_WEBCHAT_PORT, visitors' messages into bm_in, replies live."""
    from beacon.errors import BeaconError
    from beacon.gateway.webchat.service import run

    try:
        run(get_settings())
    except BeaconError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


@gateway_app.command("nostr")
def nostr() -> None:
    """The NostrMQ gateway: kind-30072 events for Beacon's pubkey into bm_in, replies published to the relays."""
    from beacon.errors import BeaconError
    from beacon.gateway.nostr.channel import NostrChannel
    from beacon.gateway.service import run

    try:
        run(get_settings(), NostrChannel)
    except BeaconError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
