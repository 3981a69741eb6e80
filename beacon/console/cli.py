"""``beacon console``: serve the operator console."""

from __future__ import annotations

import secrets
from pathlib import Path

import typer

from beacon.config import DEV_PLACEHOLDER_SECRETS, Settings, get_settings
from beacon.errors import ConfigError

#: Where development keeps a generated console token, so a restarted console keeps its login link.
TOKEN_FILE = "console-token"


def dev_token(settings: Settings) -> str:
    """The generated development token in ``<data dir>/console-token`` (created once, owner-only)."""
    path: Path = settings.data_dir / TOKEN_FILE
    try:
        existing = path.read_text().strip()
    except OSError:
        existing = ""
    if existing:
        return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    path.touch(mode=0o600)
    path.write_text(token + "\n")
    return token


def console_token(settings: Settings) -> tuple[str, bool]:
    """The operator token and whether it was generated; production refuses to run without a real one."""
    configured = settings.console.token.get_secret_value() if settings.console.token else ""
    if configured and not (settings.env == "production" and configured in DEV_PLACEHOLDER_SECRETS):
        return configured, False
    if settings.env == "production":
        raise ConfigError("refusing to start the console in production without BEACON_CONSOLE_TOKEN (a long random "
                          "secret that operators log in with)")
    return dev_token(settings), True


def login_url(settings: Settings, token: str) -> str:
    return f"http://{settings.console.host}:{settings.console.port}/login?token={token}"


def console() -> None:
    """Serve the operator console on BEACON_CONSOLE_PORT (login with BEACON_CONSOLE_TOKEN)."""
    import uvicorn

    from beacon.console.app import create_app

    settings = get_settings()
    try:
        token, generated = console_token(settings)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if generated:
        typer.echo(f"Console: no BEACON_CONSOLE_TOKEN set, generated one in {settings.data_dir / TOKEN_FILE}; "
                   f"log in at {login_url(settings, token)}")
    else:
        typer.echo(f"Console: http://{settings.console.host}:{settings.console.port}/ (log in with "
                   "BEACON_CONSOLE_TOKEN)")
    uvicorn.run(create_app(settings, token), host=settings.console.host, port=settings.console.port,
                log_level="warning", access_log=False)
