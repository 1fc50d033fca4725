"""melp serve's page driven as a person uses it: headless Chromium (Debian's chromium and
chromium-driver; nothing is downloaded) uploads a real LUDB record (.hea + .dat; a simulated one
when MELP_REAL_DATA is unset) and a damaged file, and the test reads what the page shows.

MELP_SERVE_SCREENSHOT=FILE.png also saves the page as a screenshot (docs/serve.png is made so).
"""
from __future__ import annotations

import base64
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
selenium = pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[dev]')")
from servefixtures import model_folder, running_server, write_record  # noqa: E402

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
DRIVER = shutil.which("chromedriver") or ("/usr/lib/chromium/chromedriver" if os.path.exists("/usr/lib/chromium/chromedriver")
                                          else None)
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason="needs Chromium and its driver (Debian: apt-get install chromium chromium-driver)")


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1400,1300"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)  # no driver download
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import melp
    from melp.serve.app import create_app

    folder = os.environ.get("MELP_SERVE_MODEL")  # a trained model for the screenshot; a random one otherwise
    model_dir = Path(folder) if folder else model_folder(tmp_path_factory.mktemp("browser-model"))
    with running_server(create_app(melp.load(model_dir), str(model_dir))) as url:
        yield url


@pytest.fixture
def record_files(tmp_path):
    """A real LUDB record when the shared data is there, else a simulated one; and a damaged file."""
    root = os.environ.get("MELP_REAL_DATA")
    ludb = Path(root) / "ludb" / "data" if root else None
    if ludb and (ludb / "1.hea").is_file():
        files = [shutil.copy(ludb / f"1.{ext}", tmp_path / f"1.{ext}") for ext in ("hea", "dat")]
    else:
        files = write_record(tmp_path, "sim1", seed=3)
    damaged = tmp_path / "damaged.dat"
    damaged.write_bytes(b"this is not an ECG\n" * 200)
    return [Path(f) for f in files], damaged


def test_page_shows_findings_report_plot_and_the_damaged_files_error(browser, server, record_files):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    files, damaged = record_files
    browser.get(server + "/")
    wait = WebDriverWait(browser, 120)
    labels = wait.until(lambda d: d.find_element(By.ID, "labels").get_attribute("value").strip().splitlines())
    chooser = browser.find_element(By.ID, "files")
    chooser.send_keys("\n".join(str(f) for f in files))  # one choice of two files: one record
    chooser.send_keys(str(damaged))

    stem = files[0].stem
    card = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f'.record[data-name="{stem}"] .body'))
    findings = card.find_elements(By.CSS_SELECTOR, ".findings li")
    assert len(findings) == len(labels)
    shown = [item.find_element(By.CSS_SELECTOR, ".label").text for item in findings]
    assert sorted(shown) == sorted(labels)
    scores = [float(item.find_element(By.CSS_SELECTOR, ".score").text) for item in findings]
    assert scores == sorted(scores, reverse=True)
    assert card.find_element(By.CSS_SELECTOR, ".report").text.strip()
    image = card.find_element(By.CSS_SELECTOR, "img.plot")
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) > 400
    assert card.find_element(By.CSS_SELECTOR, "button.download").is_displayed()
    meta = browser.find_element(By.CSS_SELECTOR, f'.record[data-name="{stem}"] .meta').text
    assert f"{stem}.hea + {stem}.dat" in meta and "Hz" in meta

    error = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, '.record[data-name="damaged"] .error'))
    assert error.text.startswith("damaged.dat: cannot be read as an ECG record")
    assert not browser.find_elements(By.CSS_SELECTOR, '.record[data-name="damaged"] .findings')

    # the embedding download is a .npy file numpy reads back
    encoded = browser.execute_async_script(
        "const done = arguments[1]; const reader = new FileReader();"
        "reader.onload = () => done(reader.result.split(',')[1]); reader.readAsDataURL(npyBlob(arguments[0]));",
        [0.5, -1.25, 3.0])
    vector = np.load(io.BytesIO(base64.b64decode(encoded)), allow_pickle=False)
    assert vector.dtype == np.float32 and vector.tolist() == [0.5, -1.25, 3.0]

    shot = os.environ.get("MELP_SERVE_SCREENSHOT")
    if shot:
        browser.execute_script("document.querySelector('#labels-box').open = false; window.scrollTo(0, 0)")
        browser.save_screenshot(shot)
