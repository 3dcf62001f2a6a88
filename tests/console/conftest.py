"""One server stack and one headless chromium (Debian's, through Playwright) per module; screenshots of every
page go to results/screenshots/ (not committed)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.console.stack import ADMIN_KEY, Stack, running_stack

SHOTS = Path(__file__).resolve().parents[2] / "results" / "screenshots"
VIEWPORT = {"width": 1366, "height": 860}  # a laptop screen


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise RuntimeError("Debian's chromium is missing: scripts/ensure_chromium.sh installs it")
    return found


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("console")) as s:
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(browser: Browser, stack: Stack) -> Iterator[Page]:
    """A page signed in to the console; CSP violations and script errors fail the module's last test."""
    ctx = browser.new_context(viewport=VIEWPORT, base_url=stack.url)  # type: ignore[arg-type]
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(f"script error: {e}"))
    pg.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    pg.errors = errors  # type: ignore[attr-defined]
    yield pg
    ctx.close()


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")  # the sticky header stays at the top of a full-page shot
    page.evaluate(
        "document.getElementById('toast').textContent = ''"
    )  # a passing notice would cover the page
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def open_page(page: Page, name: str) -> None:
    """Go to a console page and wait until its data has loaded (the page sets data-ready)."""
    page.goto(f"/ui/#/{name}")
    page.wait_for_selector(f"sg-{name}[data-ready]")


def sign_in(page: Page) -> None:
    page.goto("/ui/")
    page.get_by_label("Admin key").fill(ADMIN_KEY)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("sg-overview[data-ready]")
