"""The page in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium):
upload a photo, drag the age slider, see the aged result; a bad upload shows its message.

`make test` installs the browser (Makefile target ``browser``). Without it this test skips and says
why; with FACEAGE_REQUIRE_BROWSER=1 set it fails instead.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from faceage.assets import EXAMPLE_PHOTO

WAIT_S = 60


def _find(env: str, *names: str) -> str | None:
    if os.environ.get(env):
        return os.environ[env]
    return next((path for path in map(shutil.which, names) if path), None)


def _missing(reason: str):
    if os.environ.get("FACEAGE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (FACEAGE_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed (make install: requirements-dev.txt)")
    chromium = _find("FACEAGE_CHROMIUM", "chromium", "chromium-browser")
    driver_path = _find("FACEAGE_CHROMEDRIVER", "chromedriver")
    if not chromium or not driver_path:
        _missing(
            "no chromium/chromedriver on PATH: `make browser` installs Debian's chromium and "
            "chromium-driver (needs root and apt-get)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    # headless, and no background connections: this machine reaches no other server
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    # an explicit driver path: Selenium Manager (which would download one) is never run
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(WAIT_S)
    yield driver
    driver.quit()


def _wait(driver, condition, what: str):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT_S, poll_frequency=0.1).until(condition)
    except TimeoutException:
        status = driver.find_element("id", "status").text
        error = driver.find_element("id", "error").text
        raise AssertionError(f"timed out waiting for {what}; status {status!r}, error {error!r}") from None


def _result_shown(age: str):
    """The result <img> shows an image made for ``age`` and it has loaded (natural size > 0)."""

    def check(driver):
        return driver.execute_script(
            "const img = document.getElementById('result');"
            "return document.body.dataset.state === 'done' && !img.hidden && img.complete"
            " && img.naturalWidth > 0 && img.naturalHeight > 0 && img.dataset.targetAge === arguments[0];",
            age,
        )

    return check


def test_upload_move_the_slider_get_the_aged_photo_and_bad_upload_message(browser, server_url, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains

    driver = browser
    driver.get(server_url + "/")
    _wait(driver, lambda d: d.execute_script("return document.body.dataset.state") == "ready", "the page")
    slider = driver.find_element("id", "age")
    assert slider.get_attribute("min") == "5" and slider.get_attribute("max") == "78"  # the method's range

    # upload a photo: it is aged at once to the slider's age
    driver.find_element("id", "photo").send_keys(str(EXAMPLE_PHOTO))
    _wait(driver, _result_shown(slider.get_attribute("value")), "the first result")
    assert driver.find_element("id", "original").get_property("naturalWidth") > 0

    # drag the slider to the left: the photo is aged again to the new age
    before = slider.get_attribute("value")
    ActionChains(driver).click_and_hold(slider).move_by_offset(-slider.size["width"] // 3, 0).release().perform()
    after = slider.get_attribute("value")
    assert int(after) < int(before)
    assert driver.find_element("id", "age-value").text == after
    _wait(driver, _result_shown(after), f"the result at age {after}")
    size = driver.execute_script(
        "const i = document.getElementById('result');return [i.naturalWidth, i.naturalHeight];"
    )
    assert size == [512, 512]  # the whole photo, at its own size
    rows = driver.find_elements("css selector", "#faces tbody tr")
    assert len(rows) >= 1
    cells = [cell.text for cell in rows[0].find_elements("tag name", "td")]
    assert cells[2] == after and cells[5] in ("yes", "no")  # target column, same-person column
    assert "/result.png?download=" in driver.find_element("id", "download").get_attribute("href")
    assert driver.find_element("id", "error").get_property("hidden")

    # a bad upload: the page shows the server's message
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo\n")
    driver.find_element("id", "photo").send_keys(str(notes))
    error = _wait(driver, lambda d: (e := d.find_element("id", "error")).is_displayed() and e, "the error message")
    assert "notes.txt: not an image" in error.text
    assert "Traceback" not in driver.page_source and str(Path(notes).parent) not in error.text

    # the page asked only its own server for anything
    resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name);")
    assert resources and all(name.startswith(server_url) or name.startswith("blob:") for name in resources)
