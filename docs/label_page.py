"""The README's picture of `sgan label`: the real page, in headless Chromium, on suggestions made
for Pets-25k at 128 px (uniformly random picks: no training needed for a picture), after a few
answers by keyboard.

    python docs/label_page.py                       # writes docs/label-page.png
    python docs/label_page.py --preset pets-12k --out /tmp/page.png
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tests' headless Chromium

from conftest import chromium_driver  # noqa: E402
from sgan.config import resolve  # noqa: E402
from sgan.label import label_server  # noqa: E402
from sgan.suggest import suggest_labels  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="pets-25k-128")
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--answers", type=int, default=6, help="picks answered (by their folder's class) first")
    parser.add_argument("--out", default=str(ROOT / "docs" / "label-page.png"))
    args = parser.parse_args()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with tempfile.TemporaryDirectory() as tmp:
        suggest_labels(resolve({"preset": args.preset, "progress": False}), budget=args.budget,
                       out=tmp, strategy="random")
        server = label_server(tmp)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        driver = chromium_driver()
        try:
            driver.set_window_size(1100, 860)
            driver.get(server.url)
            wait = WebDriverWait(driver, 10)
            counter = driver.find_element(By.ID, "counter")
            wait.until(lambda d: counter.text.startswith("0 of"))
            classes = server.labeling.classes
            for n, row in enumerate(server.labeling.rows[:args.answers]):
                truth = Path(row.path).parent.name  # the folder's class: the answer a person would give
                driver.find_element(By.TAG_NAME, "body").send_keys(str(classes.index(truth) + 1))
                wait.until(lambda d: counter.text.startswith(f"{n + 1} of"))
            wait.until(lambda d: d.execute_script("return Array.from(document.images).every(i => i.complete)"))
            driver.save_screenshot(args.out)
        finally:
            driver.quit()
            server.shutdown()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
