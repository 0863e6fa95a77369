"""Headless Debian Chromium driven by selenium, and the approver page's sign-in, for browser tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL = "sudo apt-get install -y chromium chromium-driver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1100",
)
"""Without the network-related flags Chromium hangs on connections on a closed network."""
PAGE_TIMEOUT = 120
"""Seconds to wait for a page: a decision resumes the graph before the page answers."""


@contextmanager
def headless_chromium(profile_dir: Path) -> Iterator[WebDriver]:
    """A fresh headless Chromium with its own profile in ``profile_dir``; quits on exit.

    Fails the test (never skips it) when Chromium or its driver is not installed.
    """
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        pytest.fail(f"browser tests need {', '.join(missing)}; install them with: {INSTALL}", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile_dir}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(PAGE_TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()


def submit(driver: WebDriver, button_selector: str) -> None:
    """Click a submit button and wait until the next page has replaced this one."""
    button = driver.find_element(By.CSS_SELECTOR, button_selector)
    button.click()
    wait = WebDriverWait(driver, PAGE_TIMEOUT)
    wait.until(expected_conditions.staleness_of(button))
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")


def sign_in(driver: WebDriver, base_url: str, user: str, *, otp: str | None = None) -> None:
    """Open the approver page on a clean session and sign in as a demo user (password ``demo``)."""
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    driver.get(f"{base_url}/ui")
    driver.find_element(By.NAME, "username").send_keys(user)
    driver.find_element(By.NAME, "password").send_keys("demo")
    if otp:
        driver.find_element(By.NAME, "otp").send_keys(otp)
    submit(driver, "form[action='/ui/sign-in'] button[type=submit]")
    assert driver.find_element(By.ID, "signed-in-as").text.startswith(user), driver.page_source
