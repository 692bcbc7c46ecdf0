"""Debian's chromium (`which chromium`), headless, through Playwright: never a downloaded
browser. Started the way FIELD_NOTES says works on these machines."""
import contextlib
import shutil
from pathlib import Path
from typing import Iterator, Optional

import pytest

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--no-proxy-server"]


def chromium_path() -> str:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is not installed: run scripts/setup, which installs it "
                    "with apt-get (this test never downloads a browser)")
    return chromium


@contextlib.contextmanager
def chromium(profile: Optional[Path] = None) -> Iterator:
    """A persistent context on `profile`, or (no profile) a browser whose new_context() gives
    each test empty storage and cookies."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        if profile is not None:
            target = playwright.chromium.launch_persistent_context(
                str(profile), executable_path=chromium_path(), headless=True,
                args=CHROMIUM_ARGS, viewport={"width": 1200, "height": 900})
        else:
            target = playwright.chromium.launch(executable_path=chromium_path(), headless=True,
                                                args=CHROMIUM_ARGS)
        try:
            yield target
        finally:
            target.close()


def open_page(context, url: str):
    """A new tab on url that records every request (page.requests) and every console or page
    error (page.console_errors)."""
    page = context.new_page()
    page.requests = []
    page.on("request", lambda request: page.requests.append(request))
    page.console_errors = []
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
    page.on("pageerror", lambda error: page.console_errors.append(str(error)))
    page.goto(url)
    return page
