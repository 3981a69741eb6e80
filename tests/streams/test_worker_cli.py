"""The worker process as ``beacon worker`` builds it (``beacon.streams.cli``)."""

from __future__ import annotations

import logging
from pathlib import Path

from beacon.streams.app import create_app
from beacon.streams.cli import make_worker
from tests.conftest import make_settings


def test_libraries_debug_lines_stay_off_at_warning(tmp_path: Path) -> None:
    """At BEACON_LOG_LEVEL=WARNING no library builds debug records (aiokafka logs one per partition per fetch):
    Faust's terminal spinner would set the root logger to DEBUG, doubling a worker's CPU per message."""
    settings = make_settings(data_dir=tmp_path, log_level="WARNING")
    worker = make_worker(create_app(settings), settings)
    worker.redirect_stdouts = False  # keep pytest's capture of stdout and stderr
    root = logging.getLogger()
    level, handlers = root.level, root.handlers[:]
    try:
        worker._setup_logging()
        enabled = {name: logging.getLogger(name).isEnabledFor(logging.DEBUG)
                   for name in ("aiokafka.consumer.fetcher", "faust", "mode", "aiohttp")}
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers
    assert enabled == dict.fromkeys(enabled, False)
