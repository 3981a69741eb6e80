"""A gateway's cache of the media it fetched from its channel: files on disk, keyed by channel, account
and media id, bounded in total size, the least recently read evicted first.

Each entry is one file named by the SHA-256 of its key, holding the content type, a newline, then the
bytes; it is written to a temporary name and renamed, so a reader never sees half a file. Reading an
entry touches its modification time, which is its recency (so the order survives restarts).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("beacon.gateway.media")


@dataclass(frozen=True)
class FetchedMedia:
    """A media file's bytes and content type."""

    content: bytes
    content_type: str


class MediaCache:
    """``get``/``put`` by (channel, account, media id); ``max_bytes`` 0 keeps nothing."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._clock = 0
        self._sizes: OrderedDict[Path, int] = OrderedDict()  #: least recently read first
        if max_bytes > 0:
            directory.mkdir(parents=True, exist_ok=True)
            found = []
            for path in directory.iterdir():
                if path.name.endswith(".tmp"):
                    path.unlink(missing_ok=True)  # a write interrupted by a crash
                elif path.is_file():
                    stat = path.stat()
                    found.append((stat.st_mtime_ns, path, stat.st_size))
            for _mtime, path, size in sorted(found):
                self._sizes[path] = size
            self._evict()

    @property
    def total_bytes(self) -> int:
        return sum(self._sizes.values())

    def _path(self, channel: str, account: str, media_id: str) -> Path:
        key = hashlib.sha256(f"{channel}\0{account}\0{media_id}".encode()).hexdigest()
        return self.directory / key

    def get(self, channel: str, account: str, media_id: str) -> FetchedMedia | None:
        """The cached media, or None (also when its file went missing or is damaged)."""
        if self.max_bytes <= 0:
            return None
        path = self._path(channel, account, media_id)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            self._sizes.pop(path, None)
            return None
        head, sep, content = raw.partition(b"\n")
        if not sep:
            path.unlink(missing_ok=True)
            self._sizes.pop(path, None)
            return None
        if path in self._sizes:
            self._sizes.move_to_end(path)
        self._touch(path)
        return FetchedMedia(content, head.decode("ascii", "replace"))

    def put(self, channel: str, account: str, media_id: str, media: FetchedMedia) -> None:
        """Keep ``media`` (not when it alone is larger than the cache), evicting the least recently read."""
        size = len(media.content) + len(media.content_type) + 1
        if self.max_bytes <= 0 or size > self.max_bytes:
            return
        path = self._path(channel, account, media_id)
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_bytes(media.content_type.encode("ascii", "replace") + b"\n" + media.content)
            tmp.replace(path)
            self._touch(path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            log.warning("media %s of %s:%s not cached: %s (it is served anyway; check the disk of %s)", media_id,
                        channel, account, exc, self.directory)
            return
        self._sizes[path] = size
        self._sizes.move_to_end(path)
        self._evict()

    def _touch(self, path: Path) -> None:
        """Record the recency in the file's mtime, explicitly to the nanosecond and strictly increasing (the
        kernel's own timestamps are coarse: two reads in a row could tie)."""
        self._clock = max(time.time_ns(), self._clock + 1)
        with contextlib.suppress(OSError):
            os.utime(path, ns=(self._clock, self._clock))

    def _evict(self) -> None:
        total = self.total_bytes
        while total > self.max_bytes and self._sizes:
            path, size = self._sizes.popitem(last=False)
            total -= size
            path.unlink(missing_ok=True)
