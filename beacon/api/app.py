"""The FastAPI application of the API layer."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy import event
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from beacon import otel
from beacon.api import migrate
from beacon.api.db import make_engine, make_sessionmaker
from beacon.api.deps import ApiState
from beacon.api.failures import detail_of, status_of, what_next
from beacon.api.guard import Guard
from beacon.api.handlers import build_pipeline
from beacon.api.handoff import refresh_waiting
from beacon.api.outage import DATABASE_UNAVAILABLE
from beacon.api.pipeline import Handler
from beacon.api.routers import handoff, health, operator, process
from beacon.api.shortcut import ProcessShortcut
from beacon.bot.delivery import OutboxDelivery, make_sink
from beacon.config import Settings, get_settings
from beacon.errors import BeaconError

log = logging.getLogger(__name__)
#: Paths of the endpoints workers call (whose answers the log explains in the worker's terms).
PROCESSING = "/v1/messages/process"


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app; start-up opens the database, checks its migrations and builds the pipeline."""
    settings = settings or get_settings()
    otel.setup(settings, "api")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings)
        if settings.database.auto_migrate:
            await migrate.upgrade(settings)
        await migrate.check_schema(engine)
        handlers = build_pipeline(settings)
        state = ApiState(
            settings=settings,
            engine=engine,
            sessions=make_sessionmaker(engine),
            handlers=handlers,
            token=settings.api.token.get_secret_value().encode(),
        )
        app.state.beacon = state
        # A new connection opened means the database answers (again).
        event.listen(engine.sync_engine, "connect", lambda *_: state.outage.answered())
        state.writer.start()
        state.lookup.start()
        state.statuses.start()
        for handler in handlers:
            start = getattr(handler, "start", None)
            if start is not None:
                await start()
        start_outbox(state, handlers)
        await refresh_waiting(state.read_engine)
        log.info(
            "API ready on %s with pipeline %s",
            engine.url.render_as_string(hide_password=True),
            ", ".join(h.name for h in handlers),
        )
        try:
            yield
        finally:
            for handler in handlers:
                close = getattr(handler, "close", None)
                if close is not None:
                    await close()
            await state.writer.close()
            await state.lookup.close()
            await state.statuses.close()
            await state.close_clients()
            await engine.dispose()

    app = FastAPI(
        title="Beacon API",
        version="1",
        summary="Business logic of Beacon: workers post each inbound message and status; operators look up "
        "users and send proactive messages.",
        lifespan=lifespan,
    )
    app.include_router(process.router)
    app.include_router(operator.router)
    app.include_router(handoff.router)
    app.include_router(health.router)
    # Added first, so it runs inside the Guard: token and body size are checked before it reads the body.
    app.add_middleware(ProcessShortcut)
    app.add_middleware(
        Guard,
        token=settings.api.token.get_secret_value().encode(),
        max_body_bytes=settings.api.max_body_bytes,
    )

    async def database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        state: ApiState = request.app.state.beacon
        state.outage.failed(f"{request.method} {request.url.path}", exc)
        return state.outage.response(exc)

    for error in DATABASE_UNAVAILABLE:
        app.add_exception_handler(error, database_unavailable)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code != 405:
            return await http_exception_handler(request, exc)
        # Starlette's Allow names the methods of the first route of the path only; a path with several
        # routes (PUT and DELETE of /v1/users/{user_key}/handoff) allows all of theirs.
        allowed = sorted({method for route in app.router.routes if isinstance(route, APIRoute)
                          and route.matches(request.scope)[0] is Match.PARTIAL for method in route.methods or ()})
        return JSONResponse({"detail": exc.detail}, status_code=405, headers={"Allow": ", ".join(allowed)})

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        # ASCII JSON: the input echoed in the errors may hold a lone surrogate, which is not UTF-8.
        body = json.dumps({"detail": jsonable_encoder(exc.errors())}, ensure_ascii=True, default=repr)
        return Response(body, status_code=422, media_type="application/json")

    @app.exception_handler(BeaconError)
    async def beacon_error(request: Request, exc: BeaconError) -> JSONResponse:
        code = status_of(exc)
        log.error("%s on %s %s (answered %d: %s): %s", type(exc).__name__, request.method, request.url.path, code,
                  what_next(code) if request.url.path.startswith(PROCESSING) else "the caller decides", exc)
        headers = {"Retry-After": str(settings.api.retry_after)} if code == 503 else None
        return JSONResponse({"detail": detail_of(exc)}, status_code=code, headers=headers)

    app.openapi = lambda: contract(app)  # type: ignore[method-assign]
    return app


def start_outbox(state: ApiState, handlers: list[Handler]) -> None:
    """Deliver outbox events when a receiver is configured; else say where they wait (once)."""
    sink = make_sink(state.settings)
    if sink is not None:
        delivery = OutboxDelivery(state.settings, state.engine, *sink)
        delivery.start()
        state.outbox = delivery
    elif any(getattr(handler, "needs_context", False) for handler in handlers):
        log.info("no BEACON_OUTBOX_URL or BEACON_OUTBOX_CALLBACK: outbox events your handlers record stay in "
                 "table outbox, undelivered, until one is set")


def contract(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, with the models of the NDJSON batch lines among its components."""
    if app.openapi_schema is None:
        document = FastAPI.openapi(app)
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for name, schema in process.BATCH_LINE_MODELS.items():
            schemas.setdefault(name, schema)
        app.openapi_schema = document
    return app.openapi_schema


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory beacon.api.app:app_from_env`` (several workers)."""
    return create_app(get_settings())
