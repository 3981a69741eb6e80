"""Logging set-up shared by every Beacon process."""

from __future__ import annotations

import logging
import sys


def setup_logging(level: str = "INFO", process: str = "beacon") -> None:
    """Log lines to stderr as ``time level process logger: message``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s %(levelname)s {process} %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Per-request lines of HTTP clients drown what matters; their warnings still show.
    for noisy in ("httpx", "httpcore", "httpx2", "httpcore2"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
