"""Cloud API errors, classified by ``error.code`` (never by HTTP status: throughput errors have
been seen as 400 and as 429) into what the sender engine does next (``beacon.gateway.channel.Action``;
the account is the business phone number)."""

from __future__ import annotations

from typing import Any

from beacon.gateway.channel import Action, SendError

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
        return Action.SLOW_ACCOUNT
    if code == 190:
        return Action.PAUSE_ACCOUNT
    if code in TRANSIENT_CODES:
        return Action.RETRY
    if code == 131000:
        return Action.RETRY_FEW
    if code in PERMANENT_CODES or 132000 <= code < 133000 or 133000 <= code < 134000:
        return Action.PERMANENT
    return Action.RETRY_FEW


class CloudApiError(SendError):
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
        super().__init__(message, action=classify(code, http_status), code=code, http_status=http_status,
                         title=title, details=details)
        self.error_type = error_type
        self.fbtrace_id = fbtrace_id

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
