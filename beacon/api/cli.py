"""``beacon api`` serves the API layer; ``beacon api migrate`` applies database migrations."""

from __future__ import annotations

import asyncio
import logging

import typer

from beacon.config import get_settings


def _quiet_alembic() -> None:
    """Alembic logs every plugin at INFO when imported; keep its warnings only."""
    logging.getLogger("alembic").setLevel(logging.WARNING)


api_app = typer.Typer(help="The API layer (FastAPI): business logic, database, LLM agent.", invoke_without_command=True)


@api_app.callback()
def serve(
    ctx: typer.Context,
    host: str = typer.Option(None, help="Interface (default BEACON_API_HOST)."),
    port: int = typer.Option(None, help="Port (default BEACON_API_PORT)."),
    workers: int = typer.Option(None, help="uvicorn worker processes (default BEACON_API_WORKERS)."),
) -> None:
    """Serve the API layer under uvicorn (refuses to start when the database is not migrated)."""
    if ctx.invoked_subcommand is not None:
        return
    _quiet_alembic()
    import uvicorn
    from sqlalchemy import make_url
    from sqlalchemy.exc import DBAPIError

    from beacon.api import migrate
    from beacon.api.db import make_engine
    from beacon.api.handlers import build_pipeline
    from beacon.errors import BeaconError

    settings = get_settings()

    async def check() -> None:
        build_pipeline(settings)  # unknown handler names fail here, before the server starts
        engine = make_engine(settings)
        try:
            if settings.database.auto_migrate:
                await migrate.upgrade(settings)
            await migrate.check_schema(engine)
        finally:
            await engine.dispose()

    try:
        asyncio.run(check())
    except BeaconError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(2) from exc
    except (OSError, DBAPIError) as exc:
        url = make_url(settings.resolved_database_url).render_as_string(hide_password=True)
        typer.echo(f"error: cannot use the database {url}: {exc}", err=True)
        raise SystemExit(2) from exc
    n = workers or settings.api.workers
    common = {
        "host": host or settings.api.host,
        "port": port or settings.api.port,
        "log_level": settings.log_level.lower(),
        "access_log": False,
        "lifespan": "on",
    }
    if n > 1:
        uvicorn.run("beacon.api.app:app_from_env", factory=True, workers=n, **common)  # type: ignore[arg-type]
    else:
        from beacon.api.app import create_app

        uvicorn.run(create_app(settings), **common)  # type: ignore[arg-type]


@api_app.command()
def migrate(
    revision: str = typer.Argument("head", help="Target revision (default: the newest)."),
    down: bool = typer.Option(False, "--down", help="Downgrade to REVISION instead (e.g. base)."),
) -> None:
    """Apply (or roll back) database migrations."""
    _quiet_alembic()
    from beacon.api import migrate as migrations

    logging.getLogger("alembic.runtime.migration").setLevel(logging.INFO)
    settings = get_settings()
    if down:
        current = asyncio.run(migrations.downgrade(settings, revision))
    else:
        current = asyncio.run(migrations.upgrade(settings, revision))
    from sqlalchemy import make_url

    url = make_url(settings.resolved_database_url).render_as_string(hide_password=True)
    typer.echo(f"database {url} at migration {current or 'base'}")


fake_openai_app = typer.Typer(
    help="A local fake OpenAI-compatible chat-completions server (for the agent in dev and tests).",
    invoke_without_command=True,
)


@fake_openai_app.callback()
def fake_openai(
    host: str = typer.Option("127.0.0.1", help="Interface."),
    port: int = typer.Option(8095, help="Port; point BEACON_LLM_BASE_URL at http://HOST:PORT/v1."),
    api_key: str = typer.Option(None, help="Require this bearer key (default: accept any)."),
) -> None:
    """Serve the fake: echoes text, calls tools on `!tool NAME {json}`, fails on `!fail`."""
    from beacon.fakes.openai import serve

    serve(host, port, api_key)
