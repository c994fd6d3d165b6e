"""The page in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium):
drop a photo through the page's drop handler, scrub the age slider (the face changes with no new
request), drag the before/after handle, a phone-width screen, a bad file's message and the notice
when more faces are found than aged. Screenshots go to FACEAGE_SCREENSHOTS (else a temporary
folder, printed with -s): look at them after a change to the page.

`make test` installs the browser (Makefile target ``browser``). Without it this test skips and says
why; with FACEAGE_REQUIRE_BROWSER=1 set it fails instead.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from faceage.assets import EXAMPLE_PHOTO

WAIT_S = 120


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
        from serve_helpers import chromium_driver
    except ImportError:
        _missing("selenium is not installed (make install: requirements-dev.txt)")
    chromium = _find("FACEAGE_CHROMIUM", "chromium", "chromium-browser")
    driver_path = _find("FACEAGE_CHROMEDRIVER", "chromedriver")
    if not chromium or not driver_path:
        _missing(
            "no chromium/chromedriver on PATH: `make browser` installs Debian's chromium and "
            "chromium-driver (needs root and apt-get)"
        )
    driver = chromium_driver(chromium, driver_path, tmp_path_factory.mktemp("chromium-profile"))
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
    """The whole-photo <img> shows an image made for ``age`` and it has loaded (natural size > 0)."""

    def check(driver):
        return driver.execute_script(
            "const img = document.getElementById('result');"
            "return !img.hidden && img.complete && img.naturalWidth > 0 && img.dataset.targetAge === arguments[0];",
            age,
        )

    return check


def _progression_ready(driver) -> bool:
    return driver.execute_script("return document.body.dataset.progression === 'ready'")


def _face_pixels(driver) -> str:
    return driver.execute_script("return document.getElementById('face').toDataURL('image/png');")


def _requests(driver) -> int:
    return int(driver.execute_script("return document.body.dataset.agingRequests || '0'"))


DROP = """
const [url, name, done] = arguments;
fetch(url).then((r) => r.blob()).then((blob) => {
  const data = new DataTransfer();
  data.items.add(new File([blob], name, {type: blob.type || "image/jpeg"}));
  const zone = document.getElementById("drop");
  zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: data, bubbles: true, cancelable: true}));
  zone.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));
  done(true);
});
"""


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    """Where the test's screenshots go (FACEAGE_SCREENSHOTS, else a temporary folder): look at them."""
    folder = Path(os.environ.get("FACEAGE_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"screenshots: {folder}")
    return folder


def many_faces_jpeg(path: Path) -> Path:
    """The example photo tiled 3 x 3: nine faces, one more than the test server ages."""
    from PIL import Image

    tile = Image.open(EXAMPLE_PHOTO).convert("RGB")
    grid = Image.new("RGB", (tile.width * 3, tile.height * 3))
    for i in range(9):
        grid.paste(tile, ((i % 3) * tile.width, (i // 3) * tile.height))
    grid.save(path, quality=80)
    return path


def test_drop_scrub_compare_and_the_messages(browser, server_url, tmp_path, screenshots):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    driver = browser
    driver.get(server_url + "/")
    _wait(driver, lambda d: d.execute_script("return document.body.dataset.state") == "ready", "the page")
    slider = driver.find_element("id", "age")
    # the method's progression ages (ipcgan reaches 5-78: every 4 years from 6 to 78)
    assert (slider.get_attribute("min"), slider.get_attribute("max"), slider.get_attribute("step")) == ("6", "78", "4")
    assert slider.get_attribute("type") == "range"  # a real range input: arrow keys work
    driver.save_screenshot(str(screenshots / "1-empty.png"))

    # drop a photo on the page: the whole photo is aged to the slider's age first...
    driver.execute_async_script(DROP, server_url + "/api/example.jpg", "dropped.jpg")
    _wait(driver, _result_shown(slider.get_attribute("value")), "the first aged picture")
    assert driver.find_element("id", "original").get_property("naturalWidth") > 0
    assert driver.find_element("id", "photo-name").text == "dropped.jpg"
    # ...then the face at every age, for the slider
    _wait(driver, _progression_ready, "the progression")
    driver.save_screenshot(str(screenshots / "2-progression.png"))
    rows = driver.find_elements("css selector", "#faces tbody tr")
    cells = [cell.text for cell in rows[0].find_elements("tag name", "td")]
    assert cells[1].endswith("estimated") and cells[2] == slider.get_attribute("value") and cells[5] in ("yes", "no")
    assert "/result.png?download=" in driver.find_element("id", "download").get_attribute("href")
    assert "/progression.gif?download=" in driver.find_element("id", "gif-download").get_attribute("href")
    assert "/strip.png?download=" in driver.find_element("id", "strip-download").get_attribute("href")
    assert driver.find_element("id", "faces-note").get_property("hidden")  # one face: nothing left out

    # scrub: while the slider is held and moved the face changes at once, without a request
    requests = _requests(driver)
    before_age = driver.find_element("id", "face").get_attribute("data-age")
    before = _face_pixels(driver)
    hold = ActionChains(driver).click_and_hold(slider).move_by_offset(-slider.size["width"] // 3, 0)
    hold.perform()
    after_age = driver.find_element("id", "face").get_attribute("data-age")
    assert int(after_age) < int(before_age) and driver.find_element("id", "age-value").text == after_age
    assert _face_pixels(driver) != before
    assert _requests(driver) == requests  # no aging request while scrubbing
    driver.save_screenshot(str(screenshots / "3-scrubbing.png"))
    ActionChains(driver).release().perform()  # letting go ages the whole photo at the new age
    _wait(driver, _result_shown(after_age), f"the whole photo at {after_age}")
    assert _requests(driver) == requests + 1

    # the keyboard moves the slider too, one progression step per key
    slider.send_keys(Keys.ARROW_RIGHT)
    assert int(driver.find_element("id", "face").get_attribute("data-age")) == int(after_age) + 4

    # drag the comparison's handle: more of the picture shows the photo's own face
    split = driver.find_element("id", "split")
    shown = _face_pixels(driver)
    canvas = driver.find_element("id", "face")
    assert split.get_attribute("value") == "50"
    # from the middle of the picture to 15 % of its width
    ActionChains(driver).move_to_element(canvas).click_and_hold().move_by_offset(
        -int(canvas.size["width"] * 0.35), 0
    ).release().perform()
    assert 5 < int(split.get_attribute("value")) < 25 and _face_pixels(driver) != shown
    driver.save_screenshot(str(screenshots / "4-handle.png"))

    # a phone-width screen: everything fits the width
    driver.set_window_size(390, 844)
    driver.save_screenshot(str(screenshots / "5-phone.png"))
    widths = driver.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth,"
        " [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)"
        ".map(e => e.tagName + '#' + e.id + '.' + e.className).slice(0, 5)];"
    )
    assert widths[0] <= widths[1] + 1, widths
    driver.set_window_size(1280, 1000)

    # a bad upload: the page shows the server's message
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo\n")
    driver.find_element("id", "photo").send_keys(str(notes))
    error = _wait(driver, lambda d: (e := d.find_element("id", "error")).is_displayed() and e, "the error message")
    assert "notes.txt: not an image" in error.text
    assert "Traceback" not in driver.page_source and str(Path(notes).parent) not in error.text
    driver.save_screenshot(str(screenshots / "6-bad-file.png"))

    # more faces than the server ages: the page says so
    driver.find_element("id", "photo").send_keys(str(many_faces_jpeg(tmp_path / "nine.jpg")))
    note = _wait(driver, lambda d: (e := d.find_element("id", "faces-note")).is_displayed() and e, "the notice")
    assert "aged the 8 largest of 9 faces found" in note.text
    driver.save_screenshot(str(screenshots / "7-many-faces.png"))

    # the page asked only its own server for anything
    resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name);")
    assert resources and all(name.startswith(server_url) or name.startswith("blob:") for name in resources)
