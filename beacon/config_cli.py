"""``beacon config``: inspect the settings every process reads."""

from __future__ import annotations

from typing import Annotated

import typer

config_app = typer.Typer(help="Inspect Beacon's settings.", no_args_is_help=True)


@config_app.command("show")
def show(json_output: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False) -> None:
    """Print the effective settings grouped by what they configure, secrets masked, and where each value
    came from (environment, .env, default)."""
    from beacon.config import get_settings
    from beacon.config_report import as_json, as_text, entries

    found = entries(get_settings())
    typer.echo(as_json(found) if json_output else as_text(found))
