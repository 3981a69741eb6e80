"""``beacon nostr keygen``, ``beacon nostr say`` and ``beacon relay start/stop/status``."""

from __future__ import annotations

from typing import Annotated

import typer

from beacon.config import get_settings
from beacon.errors import BeaconError

nostr_app = typer.Typer(help="Nostr identity of this deployment (NostrMQ).", no_args_is_help=True)
relay_app = typer.Typer(help="The local Nostr relay (nostr-relay from PyPI, a background process).",
                        no_args_is_help=True)


def _mb(value: int | None) -> str:
    return "?" if value is None else f"{value / 1024 / 1024:.0f} MB"


@nostr_app.command("keygen")
def keygen() -> None:
    """Print a new private key (hex and nsec) and its public key (hex and npub). Keep the private key secret."""
    from beacon.nostr.keys import NostrKey

    key = NostrKey.generate()
    typer.echo(f"private key (hex):  {key.secret.hex()}")
    typer.echo(f"private key (nsec): {key.nsec}")
    typer.echo(f"public key (hex):   {key.pubkey}")
    typer.echo(f"public key (npub):  {key.npub}")
    typer.echo("Set BEACON_NOSTR_PRIVATE_KEY to either private form; give peers the public key.")


@nostr_app.command("say")
def say(
    text: Annotated[str, typer.Argument(help="What the user writes.")],
    to: Annotated[str | None, typer.Option("--to", help="The bot's pubkey (npub or hex); default: this "
                                           "deployment's (BEACON_NOSTR_PRIVATE_KEY, or beacon dev --with-nostr's).")]
    = None,
    relay: Annotated[list[str] | None, typer.Option("--relay", help="Relay URL (repeatable); default "
                                                    "BEACON_NOSTR_RELAYS, else the local relay.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the first reply.")] = 30.0,
) -> None:
    """Play a NostrMQ user: send TEXT to the bot from a throwaway key and print its replies."""
    import asyncio

    from beacon.nostr import say as saying

    settings = get_settings()
    try:
        said = asyncio.run(saying.say(text, to=saying.bot_pubkey(settings, to),
                                      relays=saying.relay_urls(settings, relay), timeout=timeout))
    except BeaconError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    for reply in said.replies:
        typer.echo(reply)


@relay_app.command("start")
def relay_start() -> None:
    """Start the local relay; harmless if it already runs."""
    from beacon.nostr import relay_local

    settings = get_settings()
    try:
        st, took = relay_local.start(settings)
    except BeaconError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    if took is None:
        typer.echo(f"Nostr relay already running at {st.url} (pid {st.pid}, RSS {_mb(st.rss_bytes)}).")
    else:
        typer.echo(f"Nostr relay started at {st.url} in {took:.1f}s (pid {st.pid}, RSS {_mb(st.rss_bytes)}); "
                   f"data in {st.data_dir}, log in {settings.log_dir / 'relay.log'}.")


@relay_app.command("stop")
def relay_stop() -> None:
    """Stop the local relay cleanly (SIGTERM, then wait)."""
    from beacon.nostr import relay_local

    typer.echo("Nostr relay stopped." if relay_local.stop(get_settings()) else "Nostr relay was not running.")


@relay_app.command("status")
def relay_status() -> None:
    """Say whether the local relay runs, where, and its memory. Exit code 1 if not running."""
    from beacon.nostr import relay_local

    st = relay_local.status(get_settings())
    if not st.running:
        typer.echo(f"Nostr relay is not running (data dir {st.data_dir}). Start it with `beacon relay start`.")
        raise typer.Exit(1)
    typer.echo(f"Nostr relay running at {st.url} (pid {st.pid}, RSS {_mb(st.rss_bytes)}), data in {st.data_dir}.")
