"""How the API answers an error raised while it processes a message, so the worker does the right thing
with it (``beacon.streams.client`` classifies the answers):

- the message refused (:class:`Rejected`: invalid, or refused by the pipeline): its 4xx, and the worker
  dead-letters the message at once;
- a dependency down or busy (a *retryable* ``BeaconError``: the external pipeline unreachable or answering
  5xx, the broker, the registry): 503 with ``Retry-After``, and the worker waits the outage out (the
  database's own outage is :mod:`beacon.api.outage`);
- any other ``BeaconError`` (*not retryable*: this message cannot be processed as things stand): 500 with
  the reason, and the worker retries it up to ``BEACON_WORKER_RETRY_MAX_ATTEMPTS`` times, then dead-letters
  it. A 503 for it would read as an outage and hold the message, and its user's later ones, forever.
"""

from __future__ import annotations

from beacon.errors import BeaconError


class Rejected(BeaconError):
    """A message the API refuses (permanent, answered ``status_code``, a 4xx: the worker dead-letters it)."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


def status_of(exc: BeaconError) -> int:
    """The HTTP status that answers ``exc``: a refusal's own 4xx, 503 when retryable, else 500."""
    if isinstance(exc, Rejected):
        return exc.status_code
    return 503 if exc.retryable else 500


def detail_of(exc: BeaconError) -> str:
    """The answer's ``detail``: what happened and what the caller does about it."""
    if isinstance(exc, Rejected):
        return exc.detail
    if exc.retryable:
        return f"unavailable, retry: {type(exc).__name__}: {exc}"
    return f"failed for this message: {type(exc).__name__}: {exc}"


def what_next(status: int) -> str:
    """What the worker does with a message answered ``status``, for the log."""
    if status == 503:
        return "the worker waits the outage out"
    if status >= 500:
        return "the worker retries it, then dead-letters it"
    return "the worker dead-letters it"
