"""Browser fixtures: Debian's Chromium driven headless by Playwright (sync API).

One browser per test module, a fresh context and page per test; each page collects what the browser
reported as errors (console errors, uncaught exceptions, dialogs such as an ``alert`` an injected
script would open) so a test can assert there were none. Chromium comes from apt (`./scripts/test`
installs it); without it the tests skip locally and fail in CI.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import unavailable

CHROMIUM = Path(os.environ.get("BEACON_TEST_CHROMIUM", "/usr/bin/chromium"))
#: Flags known to work headless in containers on this kind of machine (no GPU, no sandbox as root).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: Where screenshots go when BEACON_SCREENSHOTS=1 (the README shows them).
DOCS = Path(__file__).resolve().parents[2] / "docs"


@dataclass
class BrowserPage:
    """A Playwright page and the errors the browser reported while a test used it."""

    page: Any
    errors: list[str] = field(default_factory=list)

    def screenshot(self, name: str) -> None:
        """Save ``docs/<name>.png`` when BEACON_SCREENSHOTS=1 (so ordinary runs leave the tree clean)."""
        if os.environ.get("BEACON_SCREENSHOTS") == "1":
            self.page.screenshot(path=str(DOCS / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium per test module. Not per session: Playwright's sync API keeps an event loop running in
    this thread while it is open, and every asyncio test collected after the browser tests would fail with
    "cannot be called from a running event loop"."""
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing; install it with `apt-get install chromium` (./scripts/test does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed; run ./scripts/setup")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def browser_page(browser: Any) -> Iterator[BrowserPage]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    seen = BrowserPage(page)
    page.on("console", lambda m: seen.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda exc: seen.errors.append(f"uncaught: {exc}"))

    def on_dialog(dialog: Any) -> None:
        seen.errors.append(f"dialog {dialog.type}: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    try:
        yield seen
    finally:
        context.close()
