"""Screenshots of the demo's REPORT.html for the README, taken in headless Chromium through selenium:

    python bench/screenshot_report.py [REPORT.html] [OUT_DIR]   # default: the demo's page, docs/

writes OUT_DIR/report-top.png (the recommendation, the first task's headline table and plots) and
OUT_DIR/report-browser.png (the example browser under "A right, B wrong"), 1400 px wide, as 256-colour
PNGs (Pillow), small enough to commit. Needs chromium and chromedriver (Debian: `apt-get install chromium
chromium-driver`) and selenium (the dev extra). tests/test_report_browser.py starts its browser here too.
"""

from __future__ import annotations

import io
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "reports" / "demo-example" / "REPORT.html"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
WIDTH = 1400
TOP_HEIGHT, BROWSER_HEIGHT = 1650, 1100  # the top: down to the first task's plots


def chromium_paths() -> tuple[str, str] | None:
    """(browser, driver) executables, found on PATH; None when either is missing. Only these are used:
    selenium's own download of a browser and driver is never reached."""
    browser = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    driver = shutil.which("chromedriver")  # Debian's chromium-driver: /usr/bin/chromedriver
    return (browser, driver) if browser and driver else None


def headless_chromium(width: int = WIDTH, height: int = 1000):
    """A headless Chromium under selenium, its console kept (driver.get_log("browser") reads it)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    paths = chromium_paths()
    if paths is None:
        raise RuntimeError("chromium and chromedriver are needed: apt-get install chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    # --no-sandbox: CI containers run as root, where Chromium's sandbox refuses to start
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"):
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(paths[1]), options=options)


def task_section(driver, task: str):
    """The page's part for one task (its <section> under an <h2> with the task's name)."""
    return driver.find_element("xpath", f"//section[h2[normalize-space()='{task}']]")


def show_a_right_b_wrong(section, a: str, b: str) -> None:
    """Sets the section's example browser to "A right, B wrong" with A and B picked, as a reader does."""
    from selenium.webdriver.support.ui import Select

    mode, pick_a, pick_b = section.find_elements("css selector", "div.browser .controls select")[:3]
    Select(pick_a).select_by_value(a)
    Select(pick_b).select_by_value(b)
    Select(mode).select_by_value("a-right-b-wrong")


def save_png(png: bytes, path: Path, height: int | None = None) -> int:
    """The screenshot cropped to `height` px and reduced to 256 colours (a page is flat colour and text:
    the palette keeps it legible at a fraction of the size); returns the file's size in bytes."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    if height:
        image = image.crop((0, 0, image.width, min(height, image.height)))
    image.quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path.stat().st_size


def screenshots(page: Path = DEMO, out: Path = REPO / "docs") -> list[tuple[Path, int]]:
    driver = headless_chromium(WIDTH, TOP_HEIGHT)
    try:
        driver.get(page.resolve().as_uri())
        saved = [(out / "report-top.png", save_png(driver.get_screenshot_as_png(), out / "report-top.png"))]
        a, b = "full", "lora"
        section = task_section(driver, "ticket-routing")
        show_a_right_b_wrong(section, a, b)
        # from B's confusion matrix down: the controls, the count and the first examples the filter keeps
        matrix = section.find_element("xpath", f".//div[@class='matrix'][h4[normalize-space()='{b}']]")
        driver.execute_script("arguments[0].scrollIntoView()", matrix)
        browser = save_png(driver.get_screenshot_as_png(), out / "report-browser.png", BROWSER_HEIGHT)
        saved.append((out / "report-browser.png", browser))
        return saved
    finally:
        driver.quit()


if __name__ == "__main__":
    args = sys.argv[1:]
    for path, size in screenshots(*(Path(a) for a in args)):
        print(f"{path}: {size / 1024:.0f} KiB")
