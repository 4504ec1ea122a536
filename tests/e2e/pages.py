"""Checks any dashboard page test can run: axe-core, sideways scrolling, a screenshot.

axe-core is the npm package the Makefile installs beside the virtualenv (``make axe``); it is
injected into the page by Playwright, so the dashboard never ships it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Collection
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, ViewportSize

__all__ = ["ARTIFACTS", "NARROW", "WIDE", "axe_problems", "check_page", "screenshot"]

ARTIFACTS = Path(__file__).parents[2] / "test-artifacts"
WIDE = ViewportSize(width=1400, height=900)
NARROW = ViewportSize(width=390, height=844)
BLOCKING = ("serious", "critical")
"""The impacts that fail a page; moderate and minor ones are left to judgement."""


def axe_path() -> Path:
    """Where ``make axe`` puts axe-core: under the virtualenv that runs the tests."""
    given = os.environ.get("RUNTRACK_AXE")
    return Path(given) if given else Path(sys.prefix) / "node_modules/axe-core/axe.min.js"


@cache
def axe_source() -> str:
    path = axe_path()
    if not path.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"CI must have axe-core at {path}: the Makefile's axe target installs it")
        pytest.skip(f"no axe-core at {path}: run 'make axe' (npm install axe-core)")
    return path.read_text()


async def axe_problems(page: Page) -> dict[str, str]:
    """Each serious or critical axe-core violation on the page as it is now: rule id → what
    and where."""
    if not await page.evaluate("typeof window.axe === 'object'"):
        await page.evaluate(axe_source())
    result: dict[str, Any] = await page.evaluate(
        "async () => await axe.run(document, { resultTypes: ['violations'] })"
    )
    return {
        violation["id"]: f"{violation['id']} ({violation['impact']}): {violation['help']} at "
        + "; ".join(" ".join(node["target"]) for node in violation["nodes"][:5])
        for violation in result["violations"]
        if violation["impact"] in BLOCKING
    }


async def sideways_overflow(page: Page) -> str | None:
    """What scrolls sideways, if the page is wider than the window."""
    widths: dict[str, Any] = await page.evaluate(
        """() => {
          const inner = window.innerWidth, scroll = document.documentElement.scrollWidth;
          const name = (e) => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "")
            + (typeof e.className === "string" && e.className ? "." + e.className : "");
          const wide = [...document.querySelectorAll("body *")]
            .filter((e) => e.getBoundingClientRect().right > inner + 0.5
              || (e.scrollWidth > e.clientWidth && getComputedStyle(e).overflowX === "visible"))
            .slice(0, 5).map(name);
          return { inner, scroll, wide };
        }"""
    )
    if widths["scroll"] <= widths["inner"]:
        return None
    return f"scrollWidth {widths['scroll']} > innerWidth {widths['inner']}: {widths['wide']}"


async def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def check_page(page: Page, name: str, known: Collection[str] = ()) -> list[str]:
    """axe-core and sideways scrolling on the page as shown, and ``NAME-WIDTH.png`` of it.

    Returns the problems (empty when the page passes), each naming the page and the width, so
    a test can check every page at every size and report them all at once. ``known`` names
    axe rules a page is known to break (reported, owned elsewhere): they do not fail it, but
    one that no longer shows up does, so the list cannot outlive the fix.
    """
    width = page.viewport_size["width"] if page.viewport_size else 0
    where = f"{name} at {width} px"
    await screenshot(page, f"{name}-{width}")
    found = await axe_problems(page)
    problems = [f"{where}: {text}" for rule, text in found.items() if rule not in known]
    problems += [
        f"{where}: {rule} is fixed: drop it from the known" for rule in known if rule not in found
    ]
    overflow = await sideways_overflow(page)
    if overflow is not None:
        problems.append(f"{where} scrolls sideways: {overflow}")
    return problems
