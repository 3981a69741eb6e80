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


dlq_app = typer.Typer(help="The dead-letter topic: list, show and redrive records.", no_args_is_help=True)

_SourceOpt = Annotated[str | None, typer.Option("--source-topic", help="Only records dead-lettered from this topic.")]
_ClassOpt = Annotated[str | None, typer.Option("--error-class", help="Only records with this error class.")]
_OriginOpt = Annotated[str | None, typer.Option("--origin", help="Only records dead-lettered by this process.")]


@dlq_app.command("list")
def dlq_list(
    limit: Annotated[int, typer.Option(help="Show the last N matching records.")] = 50,
    source_topic: _SourceOpt = None,
    error_class: _ClassOpt = None,
    origin: _OriginOpt = None,
) -> None:
    """List dead-lettered records (newest last): where from, why, and the content where it decodes."""
    from rich.console import Console
    from rich.table import Table

    from beacon.ops import deadletters as dl

    settings = get_settings()
    try:
        letters = dl.select(dl.iter_dead_letters(settings), source_topic=source_topic, error_class=error_class,
                            origin=origin)
    except BeaconError as exc:
        raise _fail(exc) from exc
    shown = sorted(letters, key=lambda d: (d.info.time.timestamp() if d.info and d.info.time else 0, d.ref))
    shown = shown[-limit:] if limit > 0 else shown
    table = Table(title=f"{settings.topics.dlq}: {len(letters)} record(s)" + (
        f", last {len(shown)} shown" if len(shown) < len(letters) else ""))
    for col in ("ref", "time", "origin", "source", "error", "attempts", "content"):
        table.add_column(col)
    for d in shown:
        info = d.info
        table.add_row(
            d.ref,
            info.time.strftime("%Y-%m-%d %H:%M:%S") if info and info.time else "-",
            info.origin if info else "-",
            f"{info.topic}[{info.partition}]@{info.offset}" if info else "(no headers)",
            info.error_class if info else "-",
            str(info.attempts) if info else "-",
            dl.summary(dl.decode(settings, d)),
        )
    Console().print(table)
    typer.echo("Show one with `beacon dlq show REF`; republish with `beacon dlq redrive REF ...` or `--all`.")


@dlq_app.command("show")
def dlq_show(ref: Annotated[str, typer.Argument(help="<partition>:<offset> on the dead-letter topic.")]) -> None:
    """Show one dead-lettered record: every header, the key, and the message decoded (or its raw bytes)."""
    import json

    from beacon.ops import deadletters as dl

    settings = get_settings()
    try:
        wanted = dl.parse_ref(ref)
        found = list(dl.iter_dead_letters(settings, only=[wanted]))
    except BeaconError as exc:
        raise _fail(exc) from exc
    if not found:
        typer.echo(f"error: no record {ref} on {settings.topics.dlq} (see `beacon dlq list`)", err=True)
        raise typer.Exit(1)
    d = found[0]
    typer.echo(f"record {settings.topics.dlq} {d.ref}")
    if d.info:
        i = d.info
        typer.echo(f"  source:     {i.topic} partition {i.partition} offset {i.offset}")
        typer.echo(f"  origin:     {i.origin}   attempts: {i.attempts}   time: {i.time.isoformat() if i.time else '-'}")
        typer.echo(f"  error:      {i.error_class}: {i.error_text}")
    else:
        typer.echo("  (no dead-letter headers)")
    for k, v in d.headers:
        if not k.startswith("beacon.dlq."):
            typer.echo(f"  header {k}: {v.decode('utf-8', errors='replace')}")
    typer.echo(f"  key:        {d.key.decode('utf-8', errors='replace') if d.key is not None else '-'}")
    decoded = dl.decode(settings, d)
    if decoded.message is not None:
        typer.echo("  message:")
        typer.echo(json.dumps(decoded.message.model_dump(mode="json", exclude_none=True), indent=2, ensure_ascii=False))
    else:
        typer.echo(f"  not decodable: {decoded.problem}")
        raw = d.value or b""
        typer.echo(f"  value ({len(raw)} bytes): {raw[:512]!r}{' ...' if len(raw) > 512 else ''}")


@dlq_app.command("redrive")
def dlq_redrive(
    refs: Annotated[list[str] | None, typer.Argument(help="<partition>:<offset> of each record to republish.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every record matching the filters.")] = False,
    source_topic: _SourceOpt = None,
    error_class: _ClassOpt = None,
    origin: _OriginOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be republished, send nothing.")] = False,
) -> None:
    """Republish chosen records (original key and bytes) to their source topic."""
    from rich.progress import Progress

    from beacon.ops import deadletters as dl

    if bool(refs) == all_:
        typer.echo("error: name records (REF ...) or pass --all (with optional filters), not both", err=True)
        raise typer.Exit(2)
    settings = get_settings()
    try:
        only = [dl.parse_ref(r) for r in refs] if refs else None
        letters = dl.select(dl.iter_dead_letters(settings, only=only), source_topic=source_topic,
                            error_class=error_class, origin=origin)
    except BeaconError as exc:
        raise _fail(exc) from exc
    if only is not None:
        missing = sorted({f"{p}:{o}" for p, o in only} - {d.ref for d in letters})
        if missing:
            typer.echo(f"error: not on {settings.topics.dlq} (or filtered out): {', '.join(missing)}", err=True)
            raise typer.Exit(1)
    if dry_run:
        for d in letters:
            typer.echo(f"would redrive {d.ref} -> {d.info.topic if d.info else '(no source topic)'}")
        typer.echo(f"{len(letters)} record(s) would be republished (dry run).")
        return
    with Progress(transient=len(letters) < 1000) as progress:
        task = progress.add_task("redriving", total=len(letters))
        sent, problems = dl.redrive(settings, letters, on_sent=lambda _d: progress.advance(task))
    for problem in problems:
        typer.echo(f"problem: {problem}", err=True)
    typer.echo(f"redrove {sent} of {len(letters)} record(s) to their source topics.")
    if problems:
        raise typer.Exit(1)


def dev(
    workers: Annotated[int | None, typer.Option(help="Worker processes (default BEACON_DEV_WORKERS).")] = None,
    keep_services: Annotated[
        bool, typer.Option("--keep-services", help="Leave Kafka and the registry running on exit.")
    ] = False,
    with_nostr: Annotated[
        bool, typer.Option("--with-nostr", help="Also the local Nostr relay and the NostrMQ gateway; prints the "
                           "bot's npub.")
    ] = False,
    reload: Annotated[
        bool, typer.Option("--reload", help="Restart the API when beacon/ or the pipeline's own handler code changes.")
    ] = False,
) -> None:
    """The whole stack, supervised: Kafka, registry, API, workers, fake Cloud API, WhatsApp gateway."""
    from beacon.ops import dev as dev_mod

    try:
        code = dev_mod.run(get_settings(), workers=workers, keep_services=keep_services, with_nostr=with_nostr,
                           reload=reload)
    except BeaconError as exc:
        raise _fail(exc) from exc
    raise typer.Exit(code)


def scale(
    min_workers: Annotated[int, typer.Option("--min", help="Fewest workers (0 allows scaling to zero).")] = 1,
    max_workers: Annotated[int, typer.Option("--max", help="Most workers (never above the partition count).")] = 4,
    up_lag: Annotated[int, typer.Option(help="Add a worker when lag per worker exceeds this.")] = 500,
    down_lag: Annotated[int, typer.Option(help="Remove one when the rest would each carry less than this.")] = 50,
    cooldown: Annotated[float, typer.Option(help="Seconds after a change before the next one.")] = 30.0,
    interval: Annotated[float, typer.Option(help="Seconds between lag checks.")] = 5.0,
) -> None:
    """A local autoscaler: runs `beacon worker` processes, more or fewer following the workers' lag on bm_in."""
    from beacon.ops.scale import ScalePolicy, Scaler

    try:
        policy = ScalePolicy(min_workers, max_workers, up_lag, down_lag, cooldown)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    settings = get_settings()
    typer.echo(f"scaling workers of group {settings.workers.group} on {settings.topics.inbound} between {min_workers} "
               f"and {max_workers}; logs in {settings.log_dir.resolve()}; Ctrl-C stops all.")
    Scaler(settings, policy).run(interval)
