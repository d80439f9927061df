"""Debian's Chromium driven by Playwright, as the browser tests and the demo use it.

Playwright's own browser download does not work offline; it drives the
``chromium`` package instead (``make install`` installs it).  Pages are
tested in this real browser against the real server.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from playwright.async_api import Browser, async_playwright

ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]


def chromium_path() -> Path:
    """The chromium binary Debian installs (the wrapper script is not what Playwright wants)."""
    for candidate in ("/usr/lib/chromium/chromium", shutil.which("chromium") or ""):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    raise FileNotFoundError("chromium is not installed (make install installs it)")


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(chromium_path()), args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()
