"""Headless Debian Chromium driven by selenium, and the approver page's sign-in, for browser tests.

Waits are explicit and never hold an element across a navigation: :func:`submit` marks the
current document, clicks, and waits until a different, fully loaded document is there, so a
later lookup can never resolve against the page being left ("Node with given id does not
belong to the document", stale elements).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
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
_LEAVING = "data-test-leaving"
"""Attribute put on the document being left, so the next one can be told from it."""


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
    driver.set_script_timeout(PAGE_TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()


def _new_document_loaded(driver: WebDriver) -> bool:
    return bool(
        driver.execute_script(
            f"return document.readyState === 'complete' && !document.documentElement.hasAttribute('{_LEAVING}')"
        )
    )


def submit(driver: WebDriver, button_selector: str) -> None:
    """Click a submit button and wait until another document has replaced this one and finished loading.

    Between the click and the next document a script may run in neither; such transient driver
    errors are retried until :data:`PAGE_TIMEOUT`.
    """
    button = WebDriverWait(driver, PAGE_TIMEOUT).until(
        expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, button_selector))
    )
    driver.execute_script(f"document.documentElement.setAttribute('{_LEAVING}', '')")
    button.click()
    WebDriverWait(driver, PAGE_TIMEOUT, poll_frequency=0.1, ignored_exceptions=(WebDriverException,)).until(
        _new_document_loaded, message=f"no new page after clicking {button_selector}"
    )


def element(driver: WebDriver, selector: str, *, timeout: float = 10) -> WebElement:
    """The element matching the CSS ``selector`` on the current page, waiting up to ``timeout`` for it."""
    return WebDriverWait(driver, timeout).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, selector)),
        message=f"nothing matches {selector}",
    )


def text_of(driver: WebDriver, selector: str, *, timeout: float = 10) -> str:
    """The visible text of the element matching ``selector``, read once it is there."""
    return element(driver, selector, timeout=timeout).text


def sign_in(driver: WebDriver, base_url: str, user: str, *, otp: str | None = None) -> None:
    """Open the approver page on a clean session and sign in as a demo user (password ``demo``)."""
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    driver.get(f"{base_url}/ui")
    element(driver, "input[name=username]").send_keys(user)
    element(driver, "input[name=password]").send_keys("demo")
    if otp:
        element(driver, "input[name=otp]").send_keys(otp)
    submit(driver, "form[action='/ui/sign-in'] button[type=submit]")
    assert text_of(driver, "#signed-in-as").startswith(user), driver.page_source
