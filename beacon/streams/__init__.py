"""Beacon's workers: a Faust app on bm_in (``faust -A beacon.streams worker`` or ``beacon worker``).

``beacon.streams.app`` is built on first access from the process's settings (``BEACON_*``), so
importing the package for its parts does not construct a Faust app.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "app":
        from beacon.config import get_settings
        from beacon.streams.app import create_app

        app = create_app(get_settings())
        globals()["app"] = app
        return app
    raise AttributeError(name)
