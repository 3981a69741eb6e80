"""FastAPI dependencies: the app's state and the service-token check."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from beacon.api.guard import UNAUTHORIZED, token_matches
from beacon.api.outage import DatabaseOutage
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
    outage: DatabaseOutage = field(init=False)

    def __post_init__(self) -> None:
        self.outage = DatabaseOutage(self.settings.api_retry_after)
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


#: The service token in the OpenAPI document (``securitySchemes``); the check itself runs first, in
#: ``beacon.api.guard``, before any body is read; this dependency repeats it for routes mounted elsewhere.
service_token = HTTPBearer(
    scheme_name="serviceToken",
    description="The service token: `Authorization: Bearer <BEACON_API_TOKEN>`.",
    auto_error=False,
)


async def require_token(
    state: StateDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(service_token)]
) -> None:
    """401 unless ``Authorization: Bearer <BEACON_API_TOKEN>``."""
    given = f"Bearer {credentials.credentials}".encode() if credentials else b""
    if not token_matches(given, state.token):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, detail=UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"}
        )


Authorized = Depends(require_token)
