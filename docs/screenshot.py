"""Remake docs/images/web_app.png, the README's picture of the web app, with the shipped method.

Run: `python docs/screenshot.py` (needs Debian's chromium + chromium-driver: `make browser`).
Starts `faceage serve` on a free port, drops the example photo on the page as a user would, waits
for the progression, moves the age slider to --age, and saves the page.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "serve"))

from serve_helpers import chromium_driver  # noqa: E402 - the browser setup the page's test uses

OUT = ROOT / "docs" / "images" / "web_app.png"
DROP = """
const [done] = arguments;
fetch("/api/example.jpg").then((r) => r.blob()).then((blob) => {
  const data = new DataTransfer();
  data.items.add(new File([blob], "example.jpg", {type: "image/jpeg"}));
  document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true}));
  done(true);
});
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--age", type=int, default=70)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    server = subprocess.Popen(
        [sys.executable, "-m", "faceage.cli", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        url = next(m.group(1) for line in server.stdout if (m := re.search(r"(http://[\d.]+:\d+)/", line)))
        with tempfile.TemporaryDirectory() as profile:
            driver = chromium_driver(shutil.which("chromium"), shutil.which("chromedriver"), Path(profile), 1280, 1180)
            try:
                driver.set_script_timeout(60)
                driver.get(url + "/")
                while driver.execute_script("return document.body.dataset.state") != "ready":
                    time.sleep(0.1)
                driver.execute_async_script(DROP)
                deadline = time.monotonic() + 300
                while driver.execute_script("return document.body.dataset.progression") != "ready":
                    if time.monotonic() > deadline:
                        raise SystemExit("the progression did not arrive within 5 minutes")
                    time.sleep(0.2)
                driver.execute_script(
                    "const s = document.getElementById('age'); s.value = arguments[0];"
                    "s.dispatchEvent(new Event('input')); s.dispatchEvent(new Event('change'));"
                    "document.getElementById('settings').open = true;",
                    args.age,
                )
                while driver.execute_script("return document.getElementById('result').dataset.targetAge") != str(
                    args.age
                ) or driver.execute_script("return document.body.classList.contains('busy')"):
                    time.sleep(0.2)
                time.sleep(1.0)  # the whole photo's image loads
                args.out.parent.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(args.out))
            finally:
                driver.quit()
    finally:
        server.terminate()
        server.wait(60)
    print(args.out)


if __name__ == "__main__":
    main()
