"""The gateway's media cache on disk: keyed by channel, account and media id, bounded in total size with
the least recently read evicted first, kept across restarts."""

from __future__ import annotations

from pathlib import Path

from beacon.gateway.mediacache import FetchedMedia, MediaCache


def media(size: int, fill: bytes = b"x") -> FetchedMedia:
    return FetchedMedia(fill * size, "image/jpeg")


def test_an_entry_is_keyed_by_channel_account_and_media_id(tmp_path: Path) -> None:
    cache = MediaCache(tmp_path, 10_000)
    cache.put("whatsapp", "100", "m1", FetchedMedia(b"one", "image/png"))
    assert cache.get("whatsapp", "100", "m1") == FetchedMedia(b"one", "image/png")
    assert cache.get("whatsapp", "200", "m1") is None
    assert cache.get("telegram", "100", "m1") is None
    assert cache.get("whatsapp", "100", "m2") is None


def test_the_least_recently_read_is_evicted_past_the_bound_and_the_order_survives_a_restart(tmp_path: Path) -> None:
    cache = MediaCache(tmp_path, 3 * 1011)  # three entries of 1000 bytes plus "image/jpeg\n"
    for name in ("a", "b", "c"):
        cache.put("whatsapp", "1", name, media(1000))
    assert cache.get("whatsapp", "1", "a") is not None  # a is now the most recently read; b the least
    cache.put("whatsapp", "1", "d", media(1000))
    assert cache.get("whatsapp", "1", "b") is None
    assert all(cache.get("whatsapp", "1", n) is not None for n in ("c", "a", "d"))
    assert cache.total_bytes <= 3 * 1011
    assert len(list(tmp_path.iterdir())) == 3

    again = MediaCache(tmp_path, 2 * 1011)  # a smaller bound after a restart evicts the oldest read: c
    assert again.get("whatsapp", "1", "c") is None
    assert again.get("whatsapp", "1", "a") is not None and again.get("whatsapp", "1", "d") is not None


def test_a_file_larger_than_the_whole_cache_is_not_kept_and_zero_keeps_nothing(tmp_path: Path) -> None:
    cache = MediaCache(tmp_path / "small", 100)
    cache.put("whatsapp", "1", "big", media(500))
    assert cache.get("whatsapp", "1", "big") is None
    off = MediaCache(tmp_path / "off", 0)
    off.put("whatsapp", "1", "m", media(10))
    assert off.get("whatsapp", "1", "m") is None
    assert not (tmp_path / "off").exists()
