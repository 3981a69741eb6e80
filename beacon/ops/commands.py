"""Operations commands: ``beacon replay``, ``beacon lag`` (and ``beacon dlq``, ``beacon dev``, ``beacon scale``).

Heavy imports stay inside the commands so ``beacon --help`` is fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from beacon.config import get_settings
from beacon.errors import BeaconError


def _fail(exc: BeaconError) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(1)


def _parse_partitions(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return sorted({int(p) for p in text.replace(" ", "").split(",") if p})
    except ValueError as exc:
        raise typer.BadParameter(f"--partitions wants numbers separated by commas, got {text!r}") from exc


def replay(
    group: Annotated[str, typer.Option("--group", "-g", help="Consumer group whose offsets move.")],
    topic: Annotated[str, typer.Option("--topic", "-t", help="Topic whose offsets move.")],
    to_datetime: Annotated[
        str | None, typer.Option(help="ISO 8601 time (UTC if no zone): first message at or after it.")
    ] = None,
    to_earliest: Annotated[bool, typer.Option("--to-earliest", help="The oldest message kept.")] = False,
    to_latest: Annotated[bool, typer.Option("--to-latest", help="The end: skip everything unread.")] = False,
    to_offset: Annotated[int | None, typer.Option(help="This offset on each chosen partition.")] = None,
    shift_by: Annotated[
        int | None, typer.Option(help="Move the committed offset by N (negative: back, re-read N).")
    ] = None,
    partitions: Annotated[str | None, typer.Option(help="Only these partitions, e.g. 0,3,7 (default all).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan, change nothing.")] = False,
) -> None:
    """Reset a consumer group's committed offsets (refused while the group has active members)."""
    from rich.console import Console
    from rich.table import Table

    from beacon.ops import replay as rp

    chosen = [
        name
        for name, given in (
            ("--to-datetime", to_datetime is not None),
            ("--to-earliest", to_earliest),
            ("--to-latest", to_latest),
            ("--to-offset", to_offset is not None),
            ("--shift-by", shift_by is not None),
        )
        if given
    ]
    if len(chosen) != 1:
        typer.echo(
            "error: give exactly one of --to-datetime, --to-earliest, --to-latest, --to-offset, --shift-by"
            + (f" (got {', '.join(chosen)})" if chosen else ""),
            err=True,
        )
        raise typer.Exit(2)
    mode: rp.Mode
    value = 0
    when = None
    settings = get_settings()
    try:
        if to_datetime is not None:
            mode, when = "datetime", rp.parse_datetime(to_datetime)
        elif to_earliest:
            mode = "earliest"
        elif to_latest:
            mode = "latest"
        elif to_offset is not None:
            mode, value = "offset", to_offset
        else:
            mode, value = "shift", shift_by or 0
        result = rp.plan(
            settings, group=group, topic=topic, mode=mode, value=value, when=when,
            partitions=_parse_partitions(partitions),
        )
        if not dry_run:
            result = rp.apply(settings, result)
    except BeaconError as exc:
        raise _fail(exc) from exc
    table = Table(title=f"group {group} on {topic}" + (" (dry run: nothing changed)" if dry_run else ""))
    for col in ("partition", "before", "after", "earliest", "end"):
        table.add_column(col, justify="right")
    for m in result.moves:
        table.add_row(str(m.partition), "-" if m.before is None else str(m.before), str(m.after), str(m.low),
                      str(m.high))
    Console().print(table)
    moved = sum(1 for m in result.moves if m.before != m.after)
    verb = "would move" if dry_run else "moved"
    typer.echo(f"{verb} {moved} of {len(result.moves)} partition(s).")


def lag(
    group: Annotated[
        str | None, typer.Option("--group", "-g", help="Consumer group (default: Beacon's workers and gateway).")
    ] = None,
    topic: Annotated[str | None, typer.Option("--topic", "-t", help="Only this topic.")] = None,
) -> None:
    """Print each partition's lag (end offset minus committed offset) for a consumer group."""
    from rich.console import Console
    from rich.table import Table

    from beacon.ops.lag import default_groups, group_lag, total_lag

    settings = get_settings()
    pairs = [(group, topic)] if group else [(g, topic or t) for g, t in default_groups(settings)]
    console = Console()
    try:
        for g, t in pairs:
            rows = group_lag(settings, g, t)
            table = Table(title=f"group {g}")
            for col in ("topic", "partition", "committed", "end", "lag"):
                table.add_column(col, justify="right" if col != "topic" else "left")
            for r in rows:
                table.add_row(r.topic, str(r.partition), "-" if r.committed is None else str(r.committed),
                              str(r.high), str(r.lag))
            console.print(table)
            console.print(f"group {g}: total lag {total_lag(rows)} over {len(rows)} partition(s)")
    except BeaconError as exc:
        raise _fail(exc) from exc
