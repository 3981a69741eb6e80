"""FastAPI dependencies: the app's state and the service-token check."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

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


def get_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.beacon
    return state


StateDep = Annotated[ApiState, Depends(get_state)]


def require_token(request: Request, state: StateDep) -> None:
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
