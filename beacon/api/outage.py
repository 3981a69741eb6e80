"""The database being unavailable: which errors mean it, the 503 the API answers for them, and one
log line per change of state (down, up again) instead of one per request."""

from __future__ import annotations

import logging
import time

from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

log = logging.getLogger(__name__)

#: Errors that mean the database could not be used (down, restarting, failing over, locked, pool
#: exhausted), not that the request was wrong: the caller retries after Retry-After.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (DBAPIError, PoolTimeoutError, OSError, TimeoutError)


class DatabaseOutage:
    """Tracks whether the database is failing, so the log says it once when it starts failing and once
    when it answers again, with how long it lasted and how many requests were answered 503."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        self.down_since: float | None = None
        self.refused = 0

    def failed(self, where: str, exc: BaseException) -> None:
        """A request could not use the database (it answers 503)."""
        self.refused += 1
        if self.down_since is None:
            self.down_since = time.monotonic()
            log.error(
                "database unavailable (%s on %s: %s): answering 503 with Retry-After %ds until it answers again; "
                "callers retry. Check the database server and BEACON_DATABASE_URL",
                type(exc).__name__,
                where,
                _first_line(exc),
                self.retry_after,
            )

    def answered(self) -> None:
        """The database answered (a new connection opened, or a readiness probe passed)."""
        if self.down_since is not None:
            log.warning(
                "database answers again after %.1fs unavailable (%d requests answered 503 meanwhile)",
                time.monotonic() - self.down_since,
                self.refused,
            )
            self.down_since = None
            self.refused = 0

    def response(self, exc: BaseException) -> JSONResponse:
        """The 503 answer: what happened, and when to retry."""
        return JSONResponse(
            {"detail": f"database unavailable, retry: {type(exc).__name__}"},
            status_code=503,
            headers={"Retry-After": str(self.retry_after)},
        )


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]
