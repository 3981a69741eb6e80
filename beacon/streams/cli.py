"""``beacon worker``: one worker process, the same as ``faust -A beacon.streams worker``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    import faust

    from beacon.config import Settings
    from beacon.streams.app import BeaconApp


def worker(
    web_port: Annotated[int | None, typer.Option(help="Web port (metrics); default BEACON_WORKER_WEB_PORT.")] = None,
    ensure: Annotated[bool, typer.Option(help="Create missing topics first (`beacon topics ensure`).")] = True,
) -> None:
    """Consume bm_in, call the API for each message, produce replies to bm_out (until SIGTERM)."""
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
    worker = make_worker(create_app(settings), settings)
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


def make_worker(app: BeaconApp, settings: Settings) -> faust.Worker:
    """The Faust worker that runs ``app``, logging at ``BEACON_LOG_LEVEL``.

    Without its terminal spinner: at WARNING and above, Faust's spinner sets the root logger to DEBUG
    (so it can spin on every line), which makes every library's debug call build and filter a record
    (aiokafka logs one per partition per fetch): measured, it doubled a worker's CPU per message
    (5.0 -> 2.6 ms at 100 msg/s with the HTTP stub API). A worker runs under a supervisor, not on a terminal.
    """
    import faust

    worker = faust.Worker(app, loglevel=settings.log_level.lower())
    worker.spinner = None
    return worker


def _use_uvloop() -> None:
    """uvloop roughly halves the event loop's share of a worker's CPU (what `faust -L uvloop` does)."""
    try:
        import uvloop
    except ImportError:
        return
    import asyncio

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
