"""Liveness, readiness (the database answers) and Prometheus metrics."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy import text

from beacon.api.deps import StateDep

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Always 200 while the process runs.")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


#: Seconds the readiness probe waits for the database (a failing-over host may not answer at all).
READY_TIMEOUT = 3.0


class Readiness(BaseModel):
    status: str = Field(description="ok, or unavailable.")
    database: str = Field(description="ok, or why the database cannot be used.")


@router.get(
    "/readyz",
    summary="200 when the database answers, else 503 with Retry-After.",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "The database does not answer (retry after Retry-After)."}},
)
async def readyz(state: StateDep) -> JSONResponse:
    try:
        async with asyncio.timeout(READY_TIMEOUT), state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means not ready; reported, not swallowed
        state.outage.failed("GET /readyz", exc)
        return JSONResponse(
            {"status": "unavailable", "database": f"{type(exc).__name__}: {exc}"[:500]},
            status_code=503,
            headers={"Retry-After": str(state.settings.api.retry_after)},
        )
    state.outage.answered()
    return JSONResponse({"status": "ok", "database": "ok"})


@router.get(
    "/metrics",
    summary="Prometheus metrics.",
    response_class=Response,
    responses={200: {"description": "Prometheus text format.", "content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}}},
)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
