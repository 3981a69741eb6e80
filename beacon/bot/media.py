"""Reading a user's media from the API: the bytes come from the channel's gateway
(``GET <gateway>/media/{account}/{media id}`` with the service token), which holds the channel's
credentials, fetches from the channel and caches; the API never needs those credentials."""

from __future__ import annotations

from urllib.parse import quote

from beacon.config import Settings
from beacon.errors import BeaconError
from beacon.messages import BeaconMessage


class MediaUnavailable(BeaconError):
    """The bytes of a message's media cannot be read; the message says why (no media, the gateway is
    down, the channel does not know the media any more, larger than ``BEACON_MEDIA_MAX_BYTES``).
    Handlers should answer without the bytes (``turn.message.media`` still has the id, mime type, caption).
    Retryable when the cause may pass (the gateway down, slow, busy or refusing the token): left uncaught, it is
    answered 503 and the worker waits it out; otherwise 500, retried a few times, then dead-lettered."""


async def media_bytes(settings: Settings, msg: BeaconMessage) -> bytes:
    """The bytes of ``msg``'s media, fetched through its channel's gateway; ``MediaUnavailable`` when not."""
    # Imported here: aiohttp costs every API process ~0.3 s of CPU at start, and only handlers that read media need it.
    import aiohttp

    from beacon.gateway.media import MediaTooLargeError, read_bounded

    about = f"message {msg.id} ({msg.kind} of {msg.user_key})"
    media = msg.media
    if media is None or not media.id:
        raise MediaUnavailable(f"{about} has no media id to fetch" + (" (only a link: fetch it yourself)"
                                                                     if media is not None and media.link else ""))
    try:
        base = settings.gateway_url_for(msg.channel)
    except KeyError:
        raise MediaUnavailable(f"{about}: no gateway URL for channel {msg.channel!r}; set it in "
                               "BEACON_GATEWAY_URLS") from None
    url = f"{base}/media/{quote(msg.account, safe='')}/{quote(media.id, safe='')}"
    headers = {"Authorization": f"Bearer {settings.api.token.get_secret_value()}"}
    try:
        timeout = aiohttp.ClientTimeout(total=settings.gateway.media_timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url, headers=headers) as response:
            if response.status == 200:  # bounded here too: BEACON_GATEWAY_URLS could name something else
                return await read_bounded(response, settings.gateway.media_max_bytes, f"media {media.id}")
            reason = (await response.text())[:300]
            status = response.status
    except MediaTooLargeError as exc:
        raise MediaUnavailable(f"{about}: {exc}") from None
    except aiohttp.ClientConnectorError as exc:
        raise MediaUnavailable(f"{about}: the {msg.channel} gateway at {base} cannot be reached ({exc.os_error}); "
                               "is it running, and is BEACON_GATEWAY_URLS right?", retryable=True) from None
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise MediaUnavailable(f"{about}: the {msg.channel} gateway at {base} did not answer within "
                               f"{settings.gateway.media_timeout:g}s (BEACON_MEDIA_TIMEOUT; {type(exc).__name__})",
                               retryable=True) from None
    what = {401: "the gateway refused the service token (BEACON_API_TOKEN differs between the API and the gateway)",
            404: "the channel does not know this media (unknown or expired)",
            413: "the media is larger than the gateway's BEACON_MEDIA_MAX_BYTES",
            502: "the gateway could not reach the channel; try again later"}.get(status, f"HTTP {status}")
    raise MediaUnavailable(f"{about}: media {media.id} unavailable: {what}: {reason}",
                           retryable=status == 401 or status >= 500 or status in (408, 429))
