"""API-layer fixtures: a fresh database per backend (SQLite and PostgreSQL) and real ``beacon api``
servers on free ports, driven over real HTTP."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from beacon.api import migrate
from beacon.messages import BeaconMessage
from beacon.ops.process import free_port
from tests.conftest import make_settings, unavailable
from tests.local_http import local_http

TOKEN = "test-api-token"


def _pg_admin(url: str, sql: str) -> None:
    import asyncpg

    base = url.replace("postgresql+asyncpg://", "postgresql://")

    async def run() -> None:
        conn = await asyncpg.connect(base, timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def pg_base_url() -> str:
    """The test PostgreSQL from scripts/postgres, or unavailable()."""
    base = os.environ.get("BEACON_TEST_DATABASE_URL")
    if not base:
        unavailable('BEACON_TEST_DATABASE_URL is not set: run `eval "$(./scripts/postgres)"` first')
        raise AssertionError("unreachable")
    return base


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An empty database of each backend, for this session only."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('api-db') / 'beacon.db'}"
        return
    base = pg_base_url()
    name = f"beacon_api_{uuid.uuid4().hex[:10]}"
    try:
        _pg_admin(base, f"CREATE DATABASE {name}")
    except OSError as exc:
        unavailable(f"PostgreSQL at {base} not reachable: {exc}")
    yield base.rsplit("/", 1)[0] + "/" + name
    _pg_admin(base, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def migrated_url(database_url: str) -> str:
    """The session database at the newest migration."""
    asyncio.run(migrate.upgrade(make_settings(), url=database_url))
    return database_url


@dataclass
class ApiServer:
    """A running ``beacon api`` process."""

    base_url: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    database_url: str
    env: dict[str, str] = field(default_factory=dict)

    def client(self, token: str | None = TOKEN) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(database_url: str, workdir: Path, **env: str) -> ApiServer:
    port = free_port()
    log_path = workdir / f"api-{port}.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("BEACON_") or k == "BEACON_TEST_DATABASE_URL"}
    full_env.update(
        {
            "BEACON_DATA_DIR": str(workdir),
            "BEACON_DATABASE_URL": database_url,
            "BEACON_API_TOKEN": TOKEN,
            "BEACON_API_PORT": str(port),
            "BEACON_LOG_LEVEL": "INFO",
            **env,
        }
    )
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "beacon", "api"], env=full_env, cwd=workdir, stdout=out, stderr=subprocess.STDOUT
        )
    server = ApiServer(f"http://127.0.0.1:{port}", proc, log_path, database_url, env)
    # Generous: a `beacon api` start took over 60 s on a machine loaded far beyond its 2 cores.
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"beacon api exited with {proc.returncode}:\n{server.log()}")
        try:
            if local_http.get(server.base_url + "/readyz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.terminate()
    raise RuntimeError(f"beacon api not ready after 180s:\n{server.log()}")


def stop_server(server: ApiServer) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


@pytest.fixture(scope="session")
def api_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., ApiServer]]:
    """Start a ``beacon api`` with extra BEACON_* settings; all are stopped at the end of the session."""
    servers: list[ApiServer] = []

    def factory(database_url: str, **env: str) -> ApiServer:
        server = start_server(database_url, tmp_path_factory.mktemp("api"), **env)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        stop_server(server)


@pytest.fixture(scope="session")
def api(migrated_url: str, api_factory: Callable[..., ApiServer]) -> ApiServer:
    """The API with default settings on the session database of each backend."""
    return api_factory(migrated_url)


def inbound(
    text: str = "hello", *, user: str | None = None, account: str = "106540352242922", **extra: Any
) -> BeaconMessage:
    """A new inbound WhatsApp text from a user no other test uses (unless ``user`` is given)."""
    return BeaconMessage.inbound_text(
        channel="whatsapp",
        account=account,
        user_id=user or f"44{uuid.uuid4().int % 10**10:010d}",
        text=text,
        channel_message_id=f"wamid.{uuid.uuid4().hex}",
        profile_name="Test User",
        **extra,
    )


def as_json(msg: BeaconMessage) -> dict[str, Any]:
    return msg.model_dump(mode="json")


async def process(client: httpx.AsyncClient, msg: BeaconMessage) -> httpx.Response:
    return await client.post("/v1/messages/process", json=as_json(msg), headers={"Idempotency-Key": msg.id})


@asynccontextmanager
async def app_in_process(database_url: str, **overrides: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """The API app in this process (its lifespan run, real database), an httpx client on it and its
    ApiState: for tests that reach into the app's pool or settings."""
    from beacon.api.app import create_app

    settings = make_settings(database_url=database_url, api_token=TOKEN, **overrides)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://api", headers=headers) as client:
            yield client, app.state.beacon
