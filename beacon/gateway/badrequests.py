"""HTTP requests refused before a handler runs: short, safe log lines, and no echo of the input.

aiohttp logs a request it cannot parse (a request line or header over its 8190-byte limit, a
malformed line) with a traceback that quotes the start of the offending bytes: for a webhook
verification URL that is the ``hub.verify_token``, and the input is the sender's, not ours. This
filter replaces such records by one line saying what was refused, from where, and nothing of the
request itself. Installed once per process by every gateway's HTTP side.

aiohttp also answers an unknown ``Expect`` header by echoing it in a 417, and a value holding bytes
that are not UTF-8 turns that into a 500; ``expect_handler`` answers 417 without the echo.
"""

from __future__ import annotations

import logging

from aiohttp import hdrs, web
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


async def expect_handler(request: web.Request) -> None:
    """``Expect: 100-continue`` continues (aiohttp's own behaviour); any other value is a 417 that
    does not repeat it."""
    if request.headers.get(hdrs.EXPECT, "").lower() == "100-continue" and request.version >= (1, 1):
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0
        return
    if request.version >= (1, 1):
        raise web.HTTPExpectationFailed(text="unknown Expect header")
