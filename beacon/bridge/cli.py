"""``beacon bridge nostr``."""

from __future__ import annotations

import typer

from beacon.config import get_settings
from beacon.errors import BeaconError

bridge_app = typer.Typer(help="Bridges joining this deployment to others.", no_args_is_help=True)


@bridge_app.command("nostr")
def bridge_nostr() -> None:
    """Join this deployment to its peers over NostrMQ (edge or core, from BEACON_NOSTR_BRIDGE_ROLE)."""
    from beacon.bridge.service import run_bridge

    try:
        run_bridge(get_settings())
    except BeaconError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
