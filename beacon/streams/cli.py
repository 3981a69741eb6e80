"""``beacon worker``: one worker process, the same as ``faust -A beacon.streams worker``."""

from __future__ import annotations

from typing import Annotated

import typer


def worker(
    web_port: Annotated[int | None, typer.Option(help="Web port (metrics); default BEACON_WORKER_WEB_PORT.")] = None,
    ensure: Annotated[bool, typer.Option(help="Create missing topics first (`beacon topics ensure`).")] = True,
) -> None:
    """Consume bm_in, call the API for each message, produce replies to bm_out (until SIGTERM)."""
    import faust

    from beacon.config import get_settings
    from beacon.errors import BeaconError
    from beacon.kafka import ensure_topics
    from beacon.streams.app import create_app

    settings = get_settings()
    if web_port is not None:
        settings = settings.replace(worker_web_port=web_port)
    if ensure:
        try:
            ensure_topics(settings)
        except BeaconError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
    if settings.workers.uvloop:
        _use_uvloop()
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level.lower())
    if settings.workers.profile is None:
        worker.execute_from_commandline()
        return
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        worker.execute_from_commandline()
    finally:
        profiler.disable()
        profiler.dump_stats(settings.workers.profile)


def _use_uvloop() -> None:
    """uvloop roughly halves the event loop's share of a worker's CPU (what `faust -L uvloop` does)."""
    try:
        import uvloop
    except ImportError:
        return
    import asyncio

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
