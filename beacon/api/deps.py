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
    from beacon.bot.delivery import OutboxDelivery
    from beacon.codec import MessageCodec
    from beacon.kafka import AsyncProducer


@dataclass
class ApiState:
    """Everything a request needs, built once at start-up."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    handlers: list[Handler]
    token: bytes
    #: The outbox's delivery, running when a receiver is configured (``beacon.api.app.start_outbox``).
    outbox: OutboxDelivery | None = None
    _producer: AsyncProducer | None = field(default=None, init=False)
    _codec: MessageCodec | None = field(default=None, init=False)
    hot: HotPath = field(init=False)
    read_engine: AsyncEngine = field(init=False)
    write_lock: AbstractAsyncContextManager[Any] = field(init=False)
    writer: TurnWriter = field(init=False)
    lookup: ProcessedLookup = field(init=False)
    statuses: StatusWriter = field(init=False)
    outage: DatabaseOutage = field(init=False)

    def __post_init__(self) -> None:
        self.outage = DatabaseOutage(self.settings.api.retry_after)
        self.hot = HotPath(self.engine.dialect.name)
        sqlite = self.engine.dialect.name == "sqlite"
        # Single reads need no transaction: no BEGIN/ROLLBACK round trips. SQLite (pysqlite) begins none
        # for a read anyway, and switching its isolation level costs two trips to aiosqlite's thread.
        self.read_engine = self.engine if sqlite else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        # SQLite has one writer at a time: queue writers here instead of in its busy-wait loop.
        self.write_lock = asyncio.Lock() if sqlite else nullcontext()
        self.writer = TurnWriter(self.engine, self.hot, self.write_lock)
        self.lookup = ProcessedLookup(self.read_engine, self.hot)
        self.statuses = StatusWriter(self.engine, self.hot, self.write_lock)

    @property
    def producer(self) -> AsyncProducer:
        """The API's Kafka producer (proactive sends to bm_out), created on first use: an API that never
        sends one never connects to Kafka."""
        if self._producer is None:
            from beacon.kafka import AsyncProducer  # confluent-kafka only when a proactive send needs it

            self._producer = AsyncProducer(self.settings)
        return self._producer

    @property
    def codec(self) -> MessageCodec:
        """The API's own codec (not ``get_codec``'s: that caches on the settings' hash, which not every
        Settings has), created on first use."""
        if self._codec is None:
            from beacon.codec import MessageCodec

            self._codec = MessageCodec(self.settings)
        return self._codec

    async def close_clients(self) -> None:
        """Stop the outbox's delivery and close the producer and the registry client, those that exist."""
        if self.outbox is not None:
            await self.outbox.close()
        if self._producer is not None:
            self._producer.close()
        if self._codec is not None:
            self._codec.client.close()


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
