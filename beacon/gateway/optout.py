"""Telling the API that a user can no longer be reached (blocked the bot, deactivated): any channel's
gateway calls ``PUT /v1/users/{user_key}/opt-out`` with the service token after giving such a message up."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import quote

import aiohttp

from beacon.backoff import backoff_delay
from beacon.config import Settings
from beacon.http_pool import trusting

log = logging.getLogger("beacon.gateway.optout")

ATTEMPTS = 3


async def mark_opted_out(settings: Settings, user_key: str, reason: str) -> bool:
    """Mark ``user_key`` opted out; True once the API recorded it. A few attempts, then a logged error (the
    failed status on bm_in still tells the business logic); never raises."""
    url = f"{settings.api.url.rstrip('/')}/v1/users/{quote(user_key, safe='')}/opt-out"
    headers = {"Authorization": f"Bearer {settings.api.token.get_secret_value()}"}
    last = ""
    trust = trusting(settings.api.ca_file)
    connector = aiohttp.TCPConnector(ssl=trust if trust is not None else True)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10), connector=connector) as session:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with session.put(url, json={"opted_out": True}, headers=headers) as response:
                    if response.status == 200:
                        log.info("user %s marked opted out (%s)", user_key, reason)
                        return True
                    last = f"HTTP {response.status}"
                    if response.status == 404:
                        break  # the API never heard of the user: nothing to mark
            except (TimeoutError, aiohttp.ClientError) as exc:
                last = type(exc).__name__
            if attempt < ATTEMPTS:
                await asyncio.sleep(backoff_delay(attempt, 0.5, 5.0))
    log.error("could not mark user %s opted out (%s; API answered %s). Do it with PUT /v1/users/{user_key}/opt-out "
              "if they should get no proactive messages.", user_key, reason, last)
    return False
