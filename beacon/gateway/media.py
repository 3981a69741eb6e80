"""Media for the API: ``GET /media/{account}/{media id}`` on a channel's gateway answers the bytes of a
file a user sent (an image, a voice note, a document), with its content type.

The gateway holds the channel's credentials, so the API never needs them: it asks the gateway, which
fetches from the channel (the channel's ``fetch_media``: WhatsApp media id -> URL -> bytes, Telegram
``file_id`` -> ``getFile`` -> bytes), at most ``BEACON_MEDIA_MAX_BYTES`` (413 beyond, never read
further), and keeps what it fetched in a ``MediaCache``. The route requires the service token
(``Authorization: Bearer <BEACON_API_TOKEN>``, compared in constant time): 401 without it.

Answers: 200 with the bytes; 401 no or wrong token; 404 the channel does not know the media (an
unknown or expired id); 413 larger than the bound; 502 the channel could not be asked (unreachable,
5xx, credentials refused), worth trying again later.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol, runtime_checkable

import aiohttp
from aiohttp import web

from beacon.api.guard import token_matches
from beacon.config import Settings
from beacon.errors import BeaconError
from beacon.gateway.mediacache import FetchedMedia, MediaCache
from beacon.gateway.metrics import MEDIA_REQUESTS

__all__ = ["FetchedMedia", "MediaFetchError", "MediaNotFoundError", "MediaService", "MediaSource",
           "MediaTooLargeError", "read_bounded"]

log = logging.getLogger("beacon.gateway.media")

MEDIA_PATH = "/media/{account}/{media_id}"


class MediaNotFoundError(BeaconError):
    """The channel does not know this media id (never existed, or expired: WhatsApp keeps a webhook's
    media for 7 days)."""


class MediaTooLargeError(BeaconError):
    """The media is larger than the bound (``BEACON_MEDIA_MAX_BYTES``); it was not read past it."""


class MediaFetchError(BeaconError):
    """The channel could not be asked for the media (unreachable, 5xx, credentials refused): try later."""


#: Bytes read from the channel at a time while bounding a download.
CHUNK = 64 * 1024


async def read_bounded(response: aiohttp.ClientResponse, max_bytes: int, what: str) -> bytes:
    """The body of ``response``, refusing (``MediaTooLargeError``) as soon as it passes ``max_bytes``."""
    if response.content_length is not None and response.content_length > max_bytes:
        raise MediaTooLargeError(f"{what} is {response.content_length} bytes, more than the {max_bytes} allowed "
                                 "(BEACON_MEDIA_MAX_BYTES)")
    chunks: list[bytes] = []
    total = 0
    async for chunk in response.content.iter_chunked(CHUNK):
        total += len(chunk)
        if total > max_bytes:
            raise MediaTooLargeError(f"{what} is larger than the {max_bytes} bytes allowed (BEACON_MEDIA_MAX_BYTES; "
                                     "stopped reading)")
        chunks.append(chunk)
    return b"".join(chunks)


@runtime_checkable
class MediaSource(Protocol):
    """A channel that can fetch the media its users send (WhatsApp, Telegram)."""

    name: str

    async def fetch_media(self, account: str, media_id: str, max_bytes: int) -> FetchedMedia:
        """The bytes of ``media_id`` of ``account``, at most ``max_bytes``; raises ``MediaNotFoundError``,
        ``MediaTooLargeError`` or ``MediaFetchError``."""
        ...


class MediaService:
    """The media route of one channel's gateway, its cache and its bound."""

    def __init__(self, settings: Settings, source: MediaSource) -> None:
        self.source = source
        self.channel = source.name
        self.max_bytes = settings.gateway.media_max_bytes
        self.token = settings.api.token.get_secret_value().encode()
        directory = settings.gateway.media_cache_dir or settings.data_dir / "media-cache"
        self.cache = MediaCache(directory / source.name, settings.gateway.media_cache_bytes)
        self._fetching: dict[tuple[str, str], asyncio.Task[FetchedMedia]] = {}
        self._failing = False  #: the last fetch failed with MediaFetchError (logged once until one succeeds)

    def routes(self) -> list[web.RouteDef]:
        return [web.get(MEDIA_PATH, self.serve)]

    async def serve(self, request: web.Request) -> web.Response:
        if not token_matches(request.headers.get("Authorization", "").encode(), self.token):
            MEDIA_REQUESTS.labels(self.channel, "unauthorized").inc()
            return web.Response(status=401, text="missing or wrong service token: send 'Authorization: Bearer "
                                "<BEACON_API_TOKEN>'", headers={"WWW-Authenticate": "Bearer"})
        account, media_id = request.match_info["account"], request.match_info["media_id"]
        try:
            media = await self.get(account, media_id)
        except MediaNotFoundError as exc:
            return self._refuse("not_found", 404, exc)
        except MediaTooLargeError as exc:
            return self._refuse("too_large", 413, exc)
        except MediaFetchError as exc:
            if not self._failing:  # once per outage of the channel, not once per media
                log.warning("media %s of %s %s not fetched: %s. The API gets 502 (MediaUnavailable) until the "
                            "channel answers again.", media_id, self.channel, account, exc)
            self._failing = True
            return self._refuse("channel_error", 502, exc)
        return web.Response(body=media.content, headers={"Content-Type": media.content_type})

    def _refuse(self, outcome: str, status: int, exc: BaseException) -> web.Response:
        MEDIA_REQUESTS.labels(self.channel, outcome).inc()
        return web.Response(status=status, text=str(exc))

    async def get(self, account: str, media_id: str) -> FetchedMedia:
        """From the cache, else from the channel (one fetch for concurrent asks of the same media)."""
        cached = self.cache.get(self.channel, account, media_id)
        if cached is not None:
            MEDIA_REQUESTS.labels(self.channel, "cached").inc()
            return cached
        key = (account, media_id)
        task = self._fetching.get(key)
        if task is None:
            task = asyncio.create_task(self._fetch(account, media_id))
            self._fetching[key] = task
            task.add_done_callback(lambda _t: self._fetching.pop(key, None))
        return await asyncio.shield(task)

    async def _fetch(self, account: str, media_id: str) -> FetchedMedia:
        media = await self.source.fetch_media(account, media_id, self.max_bytes)
        if len(media.content) > self.max_bytes:  # a channel's own bound must never let more through
            raise MediaTooLargeError(f"media {media_id} is {len(media.content)} bytes, more than the "
                                     f"{self.max_bytes} allowed (BEACON_MEDIA_MAX_BYTES)")
        if self._failing:
            log.info("media of %s fetched again: the channel answers", self.channel)
            self._failing = False
        MEDIA_REQUESTS.labels(self.channel, "fetched").inc()
        await asyncio.to_thread(self.cache.put, self.channel, account, media_id, media)
        return media
