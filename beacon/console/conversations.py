"""Conversations as the console shows them, read from the API layer's operator endpoints with the
service token: users found by key or text, and a user's timeline with the time each hop took."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from beacon.config import Settings
from beacon.errors import BeaconError
from beacon.http_pool import trusting
from beacon.messages import CONVERSATION_EVENTS, BeaconMessage


class ApiUnavailableError(BeaconError):
    """The API layer did not answer the console, or refused its token."""


@dataclass(frozen=True)
class Step:
    """One line of a timeline: a message, its delivery status, and how long the hops before it took."""

    message: BeaconMessage
    delivery_status: str | None
    delivery_updated_at: datetime | None
    hops: list[tuple[str, float]]


def _client(settings: Settings) -> httpx.Client:
    trust = trusting(settings.api.ca_file)
    return httpx.Client(base_url=settings.api.url.rstrip("/"), timeout=5.0, verify=trust if trust is not None else True,
                        headers={"Authorization": f"Bearer {settings.api.token.get_secret_value()}"})


def _get(settings: Settings, path: str, **params: Any) -> httpx.Response:
    try:
        with _client(settings) as client:
            r = client.get(path, params=params)
    except httpx.HTTPError as exc:
        raise ApiUnavailableError(f"the API layer at {settings.api.url} did not answer: {exc}") from exc
    if r.status_code == 401:
        raise ApiUnavailableError(f"the API layer at {settings.api.url} refused BEACON_API_TOKEN (401)")
    if r.status_code >= 500:
        raise ApiUnavailableError(f"the API layer at {settings.api.url} answered {r.status_code}: {r.text[:200]}")
    return r


class ApiRefusedError(BeaconError):
    """The API layer refused an operator's action (the detail says why: no such user, a closed window, ...)."""


def _call(settings: Settings, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    """An operator action on the API; its JSON answer. Raises ApiUnavailableError or ApiRefusedError."""
    try:
        with _client(settings) as client:
            r = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise ApiUnavailableError(f"the API layer at {settings.api.url} did not answer: {exc}") from exc
    if r.status_code == 401 or r.status_code >= 500:
        raise ApiUnavailableError(f"the API layer at {settings.api.url} answered {r.status_code}: {r.text[:200]}")
    if r.status_code >= 400:
        try:
            detail = r.json().get("detail")
        except ValueError:
            detail = r.text[:300]
        raise ApiRefusedError(f"the API refused it ({r.status_code}): {detail}")
    answer: dict[str, Any] = r.json()
    return answer


def get_user(settings: Settings, user_key: str) -> dict[str, Any] | None:
    """The user as the API knows them (handoff state included), or None when it does not."""
    r = _get(settings, f"/v1/users/{quote(user_key, safe='')}")
    if r.status_code == 404:
        return None
    r.raise_for_status()
    user: dict[str, Any] = r.json()
    return user


def take_over(settings: Settings, user_key: str, operator: str, reason: str | None) -> dict[str, Any]:
    """An operator takes the conversation over: the bot stays silent for this user until handed back."""
    return _call(settings, "PUT", f"/v1/users/{quote(user_key, safe='')}/handoff",
                 json={"operator": operator, "reason": reason or None})


def hand_back(settings: Settings, user_key: str, operator: str) -> dict[str, Any]:
    """The operator hands the conversation back to the bot."""
    return _call(settings, "DELETE", f"/v1/users/{quote(user_key, safe='')}/handoff", params={"operator": operator})


def send_text(settings: Settings, user: dict[str, Any], text: str) -> dict[str, Any]:
    """The operator's text to the user, through ``POST /v1/messages/send`` (same gateway, in order)."""
    return _call(settings, "POST", "/v1/messages/send", json={
        "channel": user["channel"], "account": user["account"], "user_id": user["user_id"], "kind": "text",
        "text": text,
    })


def find_users(settings: Settings, query: str) -> list[dict[str, Any]]:
    """The user with key ``query`` if there is one, else the users whose key or messages contain it."""
    r = _get(settings, f"/v1/users/{quote(query, safe='')}")
    if r.status_code == 200:
        return [r.json()]
    r = _get(settings, "/v1/users", q=query, limit=50)
    r.raise_for_status()
    users: list[dict[str, Any]] = r.json()["users"]
    return users


def _seconds(a: datetime | None, b: datetime | None) -> float | None:
    return None if a is None or b is None else (b - a).total_seconds()


def timeline(settings: Settings, user_key: str, limit: int = 200) -> list[Step]:
    """The user's latest messages, oldest first, each with the hops that led to it:

    - an inbound message: channel -> gateway (the channel's timestamp to the gateway's);
    - a reply: inbound -> reply (the API and worker's processing), reply -> its delivery status;
    - a handoff event (``handed_off``, ``handed_back``): none.
    """
    r = _get(settings, f"/v1/users/{quote(user_key, safe='')}/messages", limit=limit)
    r.raise_for_status()
    stored = [(BeaconMessage.model_validate(m["message"]), m.get("delivery_status"),
               datetime.fromisoformat(m["delivery_updated_at"]) if m.get("delivery_updated_at") else None)
              for m in reversed(r.json()["messages"])]
    by_id = {m.id: m for m, _, _ in stored}
    steps = []
    for msg, status, status_at in stored:
        hops: list[tuple[str, float | None]] = []
        if msg.kind in CONVERSATION_EVENTS:
            pass  # handed to a human or back: the text says by whom, no hop led to it
        elif msg.direction == "inbound":
            hops.append(("channel → gateway", _seconds(msg.channel_timestamp, msg.created_at)))
        else:
            source = by_id.get(msg.reply_to_id or "")
            hops.append(("inbound → reply", _seconds(source.created_at if source else None, msg.created_at)))
            hops.append((f"reply → {status or 'status'}", _seconds(msg.created_at, status_at)))
        steps.append(Step(msg, status, status_at, [(n, s) for n, s in hops if s is not None]))
    return steps
