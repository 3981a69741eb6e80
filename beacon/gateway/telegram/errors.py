"""Bot API failures, classified into what the sender does next.

A failed call answers ``{"ok": false, "error_code", "description", "parameters": {"retry_after",
"migrate_to_chat_id"}}``. The description is the only detail Telegram gives, so blocked users
are recognised by it.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from beacon.errors import BeaconError


class Action(Enum):
    """What the sender does about a failed call (the same vocabulary as WhatsApp's)."""

    RETRY = "retry"  #: transient (5xx, network): retry with backoff
    RETRY_FEW = "retry_few"  #: unknown: retry a few times, then give up
    BACKOFF_USER = "backoff_user"  #: flood control for one chat: wait ``retry_after`` for that chat only
    SLOW_ACCOUNT = "slow_account"  #: flood control for the whole bot: slow every chat for ``retry_after``
    PAUSE_ACCOUNT = "pause_account"  #: token refused: pause the bot and alert the operator
    PERMANENT = "permanent"  #: never retry: dead-letter and report a failed status


#: Descriptions of a 403 that mean the user will never receive from this bot again (opt the user out).
OPT_OUT_PHRASES = ("bot was blocked by the user", "user is deactivated", "bot was kicked",
                   "bot is not a member", "bot can't initiate conversation")


def classify(http_status: int | None, error_code: int | None, description: str, *,
             retry_after: float | None = None, chat_scoped: bool = True) -> Action:
    """The action for a failure (``http_status``/``error_code`` None: the network failed)."""
    code = error_code if error_code is not None else http_status
    if code is None:
        return Action.RETRY
    if code == 429:
        return Action.BACKOFF_USER if chat_scoped else Action.SLOW_ACCOUNT
    if code in {401, 404}:
        return Action.PAUSE_ACCOUNT  # the token is wrong or revoked (the Bot API answers 404 for a bad token too)
    if code >= 500 or code == 408:
        return Action.RETRY
    if 400 <= code < 500:
        return Action.PERMANENT
    return Action.RETRY_FEW


class FileTooLargeError(BeaconError):
    """A file is larger than the bound the caller set: it is not fetched (or no further than the bound)."""


class BotApiError(BeaconError):
    """A Bot API call that failed (or never got an answer), with its classification.

    The message never contains the bot token (it is part of every Bot API URL).
    """

    def __init__(self, message: str, *, method: str, http_status: int | None = None, error_code: int | None = None,
                 description: str = "", retry_after: float | None = None, migrate_to_chat_id: int | None = None,
                 chat_scoped: bool = True, action: Action | None = None) -> None:
        super().__init__(message)
        self.method = method
        self.http_status = http_status
        self.error_code = error_code
        self.description = description
        self.retry_after = retry_after
        self.migrate_to_chat_id = migrate_to_chat_id
        self.action = action or classify(http_status, error_code, description, retry_after=retry_after,
                                         chat_scoped=chat_scoped)
        lowered = description.lower()
        self.opt_out = (error_code or http_status) == 403 and any(p in lowered for p in OPT_OUT_PHRASES)

    @classmethod
    def from_response(cls, method: str, http_status: int, body: Any, *, chat_scoped: bool = True) -> BotApiError:
        """From an answer with ``ok`` false (or no Bot API body at all: a proxy's error page)."""
        if not isinstance(body, dict) or body.get("ok") is not False:
            return cls(f"Bot API {method} answered HTTP {http_status} without a Bot API body", method=method,
                       http_status=http_status, chat_scoped=chat_scoped)
        raw_code = body.get("error_code")
        code = raw_code if isinstance(raw_code, int) and not isinstance(raw_code, bool) else None
        description = str(body.get("description") or "")[:500]
        raw_params = body.get("parameters")
        params: dict[str, Any] = raw_params if isinstance(raw_params, dict) else {}
        retry_after = params.get("retry_after")
        migrate = params.get("migrate_to_chat_id")
        return cls(
            f"Bot API {method} failed: {code or http_status} {description}".rstrip()
            + (f" (retry after {retry_after}s)" if isinstance(retry_after, int | float) else ""),
            method=method,
            http_status=http_status,
            error_code=code,
            description=description,
            retry_after=float(retry_after) if isinstance(retry_after, int | float) else None,
            migrate_to_chat_id=migrate if isinstance(migrate, int) else None,
            chat_scoped=chat_scoped,
        )

    @property
    def status(self) -> int | None:
        """The Bot API's error code, else the HTTP status (None: no answer)."""
        return self.error_code or self.http_status

    @property
    def code_label(self) -> str:
        """The code as a metrics label (``network`` when the call got no answer)."""
        return str(self.status) if self.status is not None else "network"
