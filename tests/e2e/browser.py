"""Headless Chromium (Debian's package) driven by Playwright, for what only a browser does."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from playwright.async_api import Browser, async_playwright

FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have Chromium: the Makefile installs Debian's chromium package")
        pytest.skip(
            "no Chromium on this machine: run 'make system-deps' (apt-get install chromium)"
        )
    return found


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    path = chromium_path()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=path, args=FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


@asynccontextmanager
async def fresh_contexts(browser: Browser) -> AsyncIterator[Browser]:
    """A module's shared browser for one block: the contexts (and their pages) the block
    opened are closed at its end, as closing a browser of its own closed them, so no page of
    one test lives on into the next."""
    try:
        yield browser
    finally:
        for context in browser.contexts:
            await context.close()
