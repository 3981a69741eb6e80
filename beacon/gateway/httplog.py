"""Short, safe log lines for HTTP requests refused before any handler ran.

aiohttp logs a request it cannot parse (a request line or header over its 8190-byte limit, a
malformed line) with a traceback that quotes the start of the offending bytes: for a webhook
verification URL that is the ``hub.verify_token``, and the input is the sender's, not ours. This
filter replaces such records by one line saying what was refused, from where, and nothing of the
request itself. Installed once per process by every gateway's HTTP side.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError, LineTooLong

SERVER_LOGGER = "aiohttp.server"


class RefusedRequestFilter(logging.Filter):
    """Rewrites aiohttp's "Error handling request" records for unparseable requests; others pass as they are."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        what = ("a request line or header longer than the server accepts" if isinstance(exc, LineTooLong)
                else "a malformed HTTP request")
        record.msg = "refused %s from %s (%s, answered %s); its content is not logged"
        record.args = (what, str(remote)[:100], type(exc).__name__, exc.code)
        record.exc_info = None
        record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def install_refused_request_filter() -> None:
    """Add the filter to aiohttp's server logger (once per process)."""
    logger = logging.getLogger(SERVER_LOGGER)
    if not any(isinstance(f, RefusedRequestFilter) for f in logger.filters):
        logger.addFilter(RefusedRequestFilter())
