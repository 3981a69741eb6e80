"""FastAPI dependencies: the app's state and the service-token check."""

from __future__ import annotations

import asyncio
import hmac
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from beacon.api.store import HotPath
from beacon.api.writer import ProcessedLookup, StatusWriter, TurnWriter
from beacon.config import Settings

if TYPE_CHECKING:
    from beacon.api.pipeline import Handler


@dataclass
class ApiState:
    """Everything a request needs, built once at start-up."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    handlers: list[Handler]
    token: bytes
    extras: dict[str, Any] = field(default_factory=dict)
    hot: HotPath = field(init=False)
    read_engine: AsyncEngine = field(init=False)
    write_lock: AbstractAsyncContextManager[Any] = field(init=False)
    writer: TurnWriter = field(init=False)
    lookup: ProcessedLookup = field(init=False)
    statuses: StatusWriter = field(init=False)

    def __post_init__(self) -> None:
        self.hot = HotPath(self.engine.dialect.name)
        # Single reads need no transaction: no BEGIN/ROLLBACK round trips.
        self.read_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        # SQLite has one writer at a time: queue writers here instead of in its busy-wait loop.
        self.write_lock = asyncio.Lock() if self.engine.dialect.name == "sqlite" else nullcontext()
        self.writer = TurnWriter(self.engine, self.hot, self.write_lock)
        self.lookup = ProcessedLookup(self.read_engine, self.hot)
        self.statuses = StatusWriter(self.engine, self.hot, self.write_lock)


async def get_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.beacon
    return state


StateDep = Annotated[ApiState, Depends(get_state)]


async def require_token(request: Request, state: StateDep) -> None:
    """401 unless ``Authorization: Bearer <BEACON_API_TOKEN>``."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), state.token):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing or wrong service token: send 'Authorization: Bearer <BEACON_API_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


Authorized = Depends(require_token)
