"""The page in headless Debian Chromium (selenium + chromedriver) against a real server: type a review and see
the label and the highlighted words; type a word and see the attention matrix; draw a forecast. Screenshots
must not be blank. ``RNNKIT_SCREENSHOTS=DIR`` keeps them."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from serve_helpers import running_server, seasonal_csv

from rnnkit.serve.app import create_app

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
        reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
    ),
]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1100,1400"]  # fmt: skip


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (the dev extra)")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="rnnkit-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver, css: str, timeout: float = 20):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(EC.visibility_of_element_located((By.CSS_SELECTOR, css)))


def screenshot_is_not_blank(driver, name: str, tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    png = driver.get_screenshot_as_png()
    path = tmp_path / f"{name}.png"
    path.write_bytes(png)
    if os.environ.get("RNNKIT_SCREENSHOTS"):
        keep = Path(os.environ["RNNKIT_SCREENSHOTS"])
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, keep / path.name)
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float)
    assert pixels.shape[0] > 300 and pixels.shape[1] > 300
    assert pixels.std() > 10, f"the screenshot {path} looks blank (std {pixels.std():.1f})"
    assert len(np.unique(pixels.astype(int))) > 20  # text, bars and highlighting: many grey levels


def load(driver, url: str) -> None:
    driver.get(url)
    wait_for(driver, "body[data-ready='true']")


def test_type_a_review_and_see_the_label_and_highlighted_words(browser, attention_run, tmp_path):
    from selenium.webdriver.common.by import By

    with running_server(create_app(attention_run)) as url:
        load(browser, url + "/")
        assert "text-classification" in browser.find_element(By.ID, "subtitle").text
        box = browser.find_element(By.ID, "text-input")
        box.send_keys("a superb and moving film, great cast")
        browser.find_element(By.ID, "predict-button").click()
        label = wait_for(browser, "#label")
        assert label.text in ("pos", "neg")
        marks = browser.find_elements(By.CSS_SELECTOR, "#tokens mark.tok")
        assert [m.text for m in marks] == ["a", "superb", "and", "moving", "film", ",", "great", "cast"]
        weights = [float(m.get_attribute("data-weight")) for m in marks]
        assert abs(sum(weights) - 1) < 1e-3  # attention weights
        backgrounds = {m.value_of_css_property("background-color") for m in marks}
        assert len(backgrounds) > 1  # highlighted by weight, not all alike
        assert "attention" in browser.find_element(By.CSS_SELECTOR, ".legend").text
        assert browser.find_elements(By.CSS_SELECTOR, "#plot-list img")  # the run's plots are shown
        screenshot_is_not_blank(browser, "text-classification", tmp_path)

        # an error is shown on the page, not thrown away
        box.clear()
        box.send_keys("x" * 30)
        browser.execute_script("document.getElementById('text-input').value = 'x'.repeat(30000)")
        browser.find_element(By.ID, "predict-button").click()
        status = wait_for(browser, "#status.error")
        assert "at most" in status.text


def test_saliency_highlighting_when_the_run_pools_otherwise(browser, max_run, tmp_path):
    from selenium.webdriver.common.by import By

    with running_server(create_app(max_run)) as url:
        load(browser, url + "/")
        assert browser.find_element(By.ID, "saliency").is_selected()
        browser.find_element(By.ID, "text-input").send_keys("dull plot, awful cast")
        browser.find_element(By.ID, "predict-button").click()
        wait_for(browser, "#label")
        marks = browser.find_elements(By.CSS_SELECTOR, "#tokens mark.tok")
        assert [m.text for m in marks] == ["dull", "plot", ",", "awful", "cast"]
        assert "saliency" in browser.find_element(By.CSS_SELECTOR, ".legend").text
        screenshot_is_not_blank(browser, "text-classification-saliency", tmp_path)


def test_type_a_word_and_see_the_attention_matrix(browser, seq2seq_run, tmp_path):
    from selenium.webdriver.common.by import By

    with running_server(create_app(seq2seq_run)) as url:
        load(browser, url + "/")
        browser.find_element(By.ID, "text-input").send_keys("abcd")
        browser.find_element(By.ID, "predict-button").click()
        wait_for(browser, "#attention")
        heads = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#attention thead th")]
        assert heads[1:] == ["a", "b", "c", "d"]
        rows = browser.find_elements(By.CSS_SELECTOR, "#attention tbody tr")
        assert rows and all(len(r.find_elements(By.TAG_NAME, "td")) == 4 for r in rows)
        screenshot_is_not_blank(browser, "seq2seq", tmp_path)


def test_paste_a_history_and_see_the_forecast_plot(browser, forecasting_run, tmp_path):
    from selenium.webdriver.common.by import By

    with running_server(create_app(forecasting_run)) as url:
        load(browser, url + "/")
        assert browser.find_element(By.ID, "file-input").get_attribute("accept") == ".csv"
        browser.execute_script("document.getElementById('file-text').value = arguments[0]", seasonal_csv(36))
        browser.find_element(By.ID, "predict-button").click()
        wait_for(browser, "#forecast-plot")
        assert browser.find_elements(By.CSS_SELECTOR, "#forecast-plot polygon.band")
        assert browser.find_elements(By.CSS_SELECTOR, "#forecast-plot path.forecast")
        screenshot_is_not_blank(browser, "forecast", tmp_path)
