"""Headless Chromium for the pages requesters see (Playwright driving Debian's Chromium)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from playwright.async_api import Browser, async_playwright


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CHROMIUM_PATH"), shutil.which("chromium"),
                      shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if candidate:
            return candidate
    return None


@asynccontextmanager
async def headless_chromium() -> AsyncIterator[Browser]:
    path = chromium_path()
    if path is None:
        reason = ("no Chromium on this machine (deploy/local/ensure-chromium.sh installs it "
                  "with apt-get as root; or set CHROMIUM_PATH)")
        print(f"SKIPPED: {reason}")
        pytest.skip(reason)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=path,
                                                   args=["--no-sandbox"])
        try:
            yield browser
        finally:
            await browser.close()
