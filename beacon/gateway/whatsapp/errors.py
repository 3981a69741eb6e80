"""Cloud API errors, classified by ``error.code`` (never by HTTP status: throughput errors have
been seen as 400 and as 429) into what the sender does next."""

from __future__ import annotations

from enum import Enum
from typing import Any

from beacon.errors import BeaconError


class Action(Enum):
    """What the sender does about a failed send."""

    RETRY = "retry"  #: transient: retry this message with backoff
    RETRY_FEW = "retry_few"  #: unknown error: retry a few times, then give up
    BACKOFF_USER = "backoff_user"  #: too many messages to this user: back off for this user only
    THROTTLE_NUMBER = "throttle_number"  #: throughput exceeded: slow the whole business number
    PAUSE_NUMBER = "pause_number"  #: token expired or invalid: pause the number, alert the operator
    PERMANENT = "permanent"  #: never retry: dead-letter and report a failed status


THROUGHPUT_CODES = frozenset({130429, 4, 80007})
TRANSIENT_CODES = frozenset({1, 2, 131016, 131057})
PERMANENT_CODES = frozenset({100, 131008, 131009, 131026, 131047, 131049, 131050, 130403, 131051, 368, 131052,
                             131053, 131021, 131031, 131042, 131045, 131048})


def classify(code: int | None, http_status: int | None = None) -> Action:
    """The action for a Cloud API error code (``None``: no parseable error body)."""
    if code is None:
        # no Cloud API error body: a proxy or the network. 5xx and 429 are worth retrying.
        if http_status is not None and 400 <= http_status < 500 and http_status not in {408, 429}:
            return Action.PERMANENT
        return Action.RETRY
    if code == 131056:
        return Action.BACKOFF_USER
    if code in THROUGHPUT_CODES:
        return Action.THROTTLE_NUMBER
    if code == 190:
        return Action.PAUSE_NUMBER
    if code in TRANSIENT_CODES:
        return Action.RETRY
    if code == 131000:
        return Action.RETRY_FEW
    if code in PERMANENT_CODES or 132000 <= code < 133000 or 133000 <= code < 134000:
        return Action.PERMANENT
    return Action.RETRY_FEW


class CloudApiError(BeaconError):
    """A send the Cloud API refused (or that never got an answer), with its classification."""

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        http_status: int | None = None,
        error_type: str | None = None,
        details: str | None = None,
        title: str | None = None,
        fbtrace_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.http_status = http_status
        self.error_type = error_type
        self.details = details
        self.title = title
        self.fbtrace_id = fbtrace_id
        self.action = classify(code, http_status)

    @classmethod
    def from_response(cls, http_status: int, body: Any) -> CloudApiError:
        """From an error response body ``{"error": {"message", "type", "code", "error_data", ...}}``."""
        err = body.get("error") if isinstance(body, dict) else None
        if not isinstance(err, dict):
            return cls(f"Cloud API answered HTTP {http_status} without an error body", http_status=http_status)
        code = err.get("code")
        raw_data = err.get("error_data")
        data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
        return cls(
            f"Cloud API error {code}: {err.get('message')}",
            code=int(code) if isinstance(code, int) else None,
            http_status=http_status,
            error_type=err.get("type"),
            details=data.get("details"),
            title=err.get("error_user_title") or err.get("title"),
            fbtrace_id=err.get("fbtrace_id"),
        )

    @property
    def code_label(self) -> str:
        """The code as a metrics label (``http_<status>`` / ``network`` when there is none)."""
        if self.code is not None:
            return str(self.code)
        return f"http_{self.http_status}" if self.http_status else "network"
