"""The external pipeline: an HTTP hook that receives the message and returns replies."""

from __future__ import annotations

import logging
from typing import Any

import httpx
from pydantic import ValidationError

from beacon.api import metrics
from beacon.api.failures import Rejected
from beacon.api.pipeline import Answer, Turn
from beacon.config import Settings
from beacon.errors import BeaconError
from beacon.messages import OUTBOUND, BeaconMessage

log = logging.getLogger(__name__)


#: What the hook answers when it refuses this message (the message's own fault: the API answers 422 and the
#: worker dead-letters it). Any other failure is the hook's: down, busy or misconfigured (a wrong URL or token)
#: is waited out (503); an answer that is not a list of replies fails this message (500: retried, then
#: dead-lettered).
REFUSALS = frozenset({400, 409, 413, 415, 422})


class HookError(BeaconError):
    """The external pipeline failed: retryable (answered 503, the worker waits it out) when the hook could not be
    reached or answered an error status other than a refusal; not when it answered something unusable (500)."""


class HookHandler:
    """POSTs ``{"message": <BeaconMessage JSON>}`` to BEACON_HOOK_URL. The hook answers
    ``{"replies": ["text", {"kind": "image", "media": {...}}, ...]}``, or ``{"replies": null}`` / 204
    to pass the message on to the next handler."""

    name = "hook"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = settings.api.hook_url or ""
        self._http: httpx.AsyncClient | None = None

    async def start(self) -> None:
        headers = {}
        if self.settings.api.hook_token is not None:
            headers["Authorization"] = f"Bearer {self.settings.api.hook_token.get_secret_value()}"
        self._http = httpx.AsyncClient(headers=headers, timeout=self.settings.api.hook_timeout)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def handle(self, turn: Turn) -> Answer | None:
        assert self._http is not None, "HookHandler.start() was not called"
        msg = turn.message
        try:
            resp = await self._http.post(self.url, json={"message": msg.model_dump(mode="json")})
        except httpx.HTTPError as exc:
            metrics.HOOK_CALLS.labels("failed").inc()
            raise HookError(f"external pipeline {self.url} unreachable for message {msg.id}: {exc!r}",
                            retryable=True) from exc
        if resp.status_code == 204:
            metrics.HOOK_CALLS.labels("pass").inc()
            return None
        if resp.status_code != 200:
            metrics.HOOK_CALLS.labels("failed").inc()
            what = (f"external pipeline {self.url} answered HTTP {resp.status_code} for message {msg.id}: "
                    f"{resp.text[:300]}")
            if resp.status_code in REFUSALS:
                raise Rejected(422, f"refused by the {what}")
            raise HookError(what, retryable=True)
        try:
            replies = resp.json().get("replies")
            answer = None if replies is None else [self._reply(msg, item) for item in replies]
        except (ValueError, AttributeError, TypeError, ValidationError) as exc:
            metrics.HOOK_CALLS.labels("failed").inc()
            raise HookError(
                f"external pipeline {self.url} answered something unusable for message {msg.id}: {exc}"
            ) from exc
        metrics.HOOK_CALLS.labels("pass" if answer is None else "ok").inc()
        return answer

    @staticmethod
    def _reply(inbound: BeaconMessage, item: Any) -> str | BeaconMessage:
        if isinstance(item, str):
            return item
        if not isinstance(item, dict):
            raise TypeError(f"a reply must be a string or an object, not {type(item).__name__}")
        fields = {k: v for k, v in item.items() if k in BeaconMessage.model_fields}
        return BeaconMessage.model_validate(
            {
                "kind": "text",
                **fields,
                "id": "pending",
                "user_key": inbound.user_key,
                "channel": inbound.channel,
                "account": inbound.account,
                "user_id": inbound.user_id,
                "direction": OUTBOUND,
            }
        )
