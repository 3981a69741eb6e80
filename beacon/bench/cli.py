"""``beacon bench ...``: one subcommand per benchmark module."""

from __future__ import annotations

import typer

bench_app = typer.Typer(help="Benchmarks that print their figures.", no_args_is_help=True)
