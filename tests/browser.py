"""Headless Chromium for the demos' browser tests (Debian `chromium` + `chromium-driver`, which `.ci/run` installs)."""

import shutil
from contextlib import contextmanager

import pytest

requires_chromium = pytest.mark.skipif(
    shutil.which("chromium") is None or shutil.which("chromedriver") is None,
    reason="Debian chromium and chromium-driver are not installed (.ci/run installs them)",
)


@contextmanager
def headless_chromium():
    """A Selenium driver for a headless Chromium with no network side traffic; quits on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        yield driver
    finally:
        driver.quit()
