"""A user's media from the Cloud API: ``GET /<version>/<media id>?phone_number_id=<number>`` answers a URL
(valid for 5 minutes), the download of that URL needs the same Bearer token. The URL is never kept: every
fetch asks for a fresh one, and a download refused as expired (401/403/404) asks once more."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from beacon.gateway.media import (
    FetchedMedia,
    MediaFetchError,
    MediaNotFoundError,
    MediaTooLargeError,
    read_bounded,
)
from beacon.gateway.whatsapp.client import CloudApiClient
from beacon.gateway.whatsapp.errors import CloudApiError

#: Cloud API codes meaning "no such media for you" (100: invalid parameter / object does not exist).
NOT_FOUND_CODES = frozenset({100, 131052})


async def fetch_media(client: CloudApiClient, phone_number_id: str, media_id: str, max_bytes: int) -> FetchedMedia:
    """The bytes of ``media_id`` received by ``phone_number_id``, at most ``max_bytes``."""
    token = client.token_for(phone_number_id)
    if token is None:
        raise MediaFetchError(f"no access token for phone number {phone_number_id} (set BEACON_WHATSAPP_ACCESS_TOKEN "
                              "or BEACON_WHATSAPP_ACCESS_TOKENS)")
    if not media_id.isdigit():  # a Cloud API media id is a number; anything else must not reach a Graph URL
        raise MediaNotFoundError(f"{media_id!r} is not a WhatsApp media id")
    headers = {"Authorization": f"Bearer {token}"}
    url, mime = await _media_url(client, headers, phone_number_id, media_id, max_bytes)
    try:
        async with client.session.get(url, headers=headers) as response:
            if response.status in {401, 403, 404}:  # the URL expired (5 minutes) or was refused: ask once more
                url, mime = await _media_url(client, headers, phone_number_id, media_id, max_bytes)
                async with client.session.get(url, headers=headers) as again:
                    return await _download(again, media_id, mime, max_bytes)
            return await _download(response, media_id, mime, max_bytes)
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise MediaFetchError(f"the download of WhatsApp media {media_id} failed: {type(exc).__name__}: "
                              f"{exc}") from exc


async def _download(response: aiohttp.ClientResponse, media_id: str, mime: str | None,
                    max_bytes: int) -> FetchedMedia:
    if response.status != 200:
        error = MediaNotFoundError if response.status in {401, 403, 404, 410} else MediaFetchError
        raise error(f"the download of WhatsApp media {media_id} answered HTTP {response.status}")
    content = await read_bounded(response, max_bytes, f"WhatsApp media {media_id}")
    return FetchedMedia(content, mime or response.headers.get("Content-Type") or "application/octet-stream")


async def _media_url(client: CloudApiClient, headers: dict[str, str], phone_number_id: str, media_id: str,
                     max_bytes: int) -> tuple[str, str | None]:
    """The short-lived URL of the media and its mime type; refuses a media the answer says is too large."""
    url = f"{client.base}/{media_id}"
    try:
        async with client.session.get(url, params={"phone_number_id": phone_number_id}, headers=headers) as response:
            raw = await response.read()
            status = response.status
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise MediaFetchError(f"Cloud API unreachable at {url}: {type(exc).__name__}: {exc}") from exc
    try:
        data: Any = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        data = None
    if status != 200 or not isinstance(data, dict) or "error" in data or not isinstance(data.get("url"), str):
        err = CloudApiError.from_response(status, data)
        if err.code in NOT_FOUND_CODES or status == 404:
            raise MediaNotFoundError(f"WhatsApp media {media_id} of number {phone_number_id} is unknown or expired "
                                     f"(media of a webhook lives 7 days): {err}")
        raise MediaFetchError(f"the Cloud API did not give the URL of media {media_id}: {err}")
    size = data.get("file_size")
    if isinstance(size, str) and size.isdigit():  # the Cloud API sends it as a string at times
        size = int(size)
    if isinstance(size, int) and size > max_bytes:
        raise MediaTooLargeError(f"WhatsApp media {media_id} is {size} bytes, more than the {max_bytes} allowed "
                                 "(BEACON_MEDIA_MAX_BYTES)")
    mime = data.get("mime_type")
    return data["url"], mime if isinstance(mime, str) and mime else None
