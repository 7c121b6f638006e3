"""Fixtures of the browser tests: the shared test PostgreSQL and a headless Chromium.

``browser`` drives Debian's ``chromium`` through its ``chromedriver`` (package
``chromium-driver``) with selenium. Where either is missing the test is skipped with the
reason; under ``CI=true`` it fails instead (``.ci/run`` installs them, so a missing one there
is a broken install, not a reason to skip).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

#: Chromium as root in a container: no sandbox, no GPU, /tmp instead of a small /dev/shm,
#: nothing fetched from the network at start, a fresh profile per test.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)


def chromium() -> tuple[str, str] | str:
    """``(chromium, chromedriver)`` paths, or why they cannot be used."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (make install installs the dev extras)"
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        missing = [n for n, p in (("chromium", browser), ("chromium-driver", driver)) if not p]
        return (
            f"Debian's {' and '.join(missing)} not installed "
            "(apt-get install chromium chromium-driver; .ci/run installs them)"
        )
    return browser, driver


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """A headless Chromium (selenium ``WebDriver``) with a fresh profile; quit afterwards."""
    found = chromium()
    if isinstance(found, str):
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser test cannot run in CI: {found}")
        pytest.skip(found)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = found
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()
