"""report.html of a grid trained here (2 variants × 2 seeds on digits, a variant whose cells fail, a seed
still pending), opened in a real headless Chromium: the numbers in the rendered page equal the metrics
files', clicking a column header sorts the rows both ways, the screenshot is not blank. Also without a
browser: the page fetches nothing and its links are relative, so a copied results folder keeps working.

The browser tests skip where Debian's chromium / chromium-driver are not installed, unless
VITSTUDY_REQUIRE_BROWSER=1 (CI sets it), where they fail instead.
"""

import io
import json
import os
import re
import shutil
import statistics
import zipfile
from pathlib import Path
from urllib.parse import unquote

import pytest

from vitstudy.cli import main
from vitstudy.config.manifest import load
from vitstudy.results.table import for_manifest
from vitstudy.results.write import write

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
if os.environ.get("VITSTUDY_REQUIRE_BROWSER") == "1":
    def needs_browser(test):  # CI: a missing browser is a failure, not a skip
        return test
else:
    needs_browser = pytest.mark.skipif(not (CHROMIUM.exists() and DRIVER.exists()),
                                       reason="no Chromium: apt-get install chromium chromium-driver")

GRID = """
name: page
defaults:
  model: {preset: vit_micro, embed_dim: 32, depth: 2, num_heads: 2}
  data: {dataset: digits, batch_size: 256}
  train: {epochs: 1, lr: 3.0e-3}
  log: {progress_bar: false}
grid:
  - {model.head: [cls, gap]}
  - {model.head: [gap], model.position: [none]}
seeds: [0, 1]
"""
METRIC = "test/acc1"


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """The grid trained once for the module; the report of the same manifest with a third seed, which
    no cell has run yet. The (gap, none) cells fail: each finds a checkpoint to resume from that is whole
    (one cut short would restart the cell) but not a torch checkpoint."""
    tmp = tmp_path_factory.mktemp("page")
    manifest, out = tmp / "page.yaml", tmp / "results"
    manifest.write_text(GRID)
    for cell in load(manifest).cells:
        if cell.spec.model.position == "none":
            (load(manifest).cell_dir(out, cell)).mkdir(parents=True)
            with zipfile.ZipFile(load(manifest).cell_dir(out, cell) / "last.ckpt", "w") as z:
                z.writestr("archive/data.txt", "not a checkpoint")
    assert main(["run-grid", str(manifest), "--out", str(out), "--workers", "1"]) == 1  # two failed
    assert (out / "page" / "report.html").is_file()  # run-grid writes the page with the tables
    pending = tmp / "pending.yaml"
    pending.write_text(GRID.replace("seeds: [0, 1]", "seeds: [0, 1, 2]"))
    report, where = for_manifest(pending, out)
    write(report, where)
    return where


def record(folder: Path, run_id: str) -> dict:
    return json.loads((folder / run_id / "metrics.json").read_text())


def test_the_page_fetches_nothing_and_its_links_are_relative(grid, tmp_path):
    page = (grid / "report.html").read_text()
    assert not re.search(r"""(src|href|action)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//|@import", page, re.I)
    assert "default-src 'none'" in page  # and the browser is told to refuse any fetch there might be
    copy = tmp_path / "copied"
    shutil.copytree(grid, copy)  # results copied off a cluster: every link still lands
    links = re.findall(r'<a href="([^"#]+)" data-file="([^"]+)"', (copy / "report.html").read_text())
    assert {f for _, f in links} >= {"metrics.json", "tb/", "last.ckpt", "traceback.txt"}
    assert len([f for _, f in links if f == "metrics.json"]) == 6  # 3 rows × 2 seeds run; seed 2 pending
    for href, _ in links:
        assert not href.startswith(("/", "..")) and (copy / unquote(href)).exists(), href
    assert 'id="manifest-text"' in page and "model.position: [none]" in page
    env = record(grid, links[0][0].split("/")[0])["env"]  # one checkout, one set of versions
    for key in ("commit", "torch", "lightning", "vitstudy"):
        assert re.search(f'<dd data-key="{key}">([^<]*)</dd>', page)[1] == str(env[key])


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(arg)
    options.binary_location = str(CHROMIUM)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(DRIVER)))
    yield driver
    driver.quit()


@pytest.fixture
def opened(grid, browser):
    browser.get((grid / "report.html").as_uri())
    return browser


def rows(driver) -> list:
    return driver.find_elements("css selector", "#report-table tbody tr")


def text(element) -> str:
    """The element's text in the DOM (Selenium's `.text` is "" for a cell scrolled out of its box)."""
    return element.get_attribute("textContent").strip()


def leading(text: str) -> float:
    return float(re.match(r"[+-]?\d+(\.\d+)?", text.strip()).group())


@needs_browser
def test_the_numbers_on_the_page_are_the_metrics_files(grid, opened):
    seeds = opened.find_elements("css selector", "section.group tr[data-run-id]")
    assert len(seeds) == 9
    statuses = [s.get_attribute("data-status") for s in seeds]
    assert sorted(statuses) == ["done"] * 4 + ["failed"] * 2 + ["pending"] * 3
    for seed in seeds:
        run_id = seed.get_attribute("data-run-id")
        status = text(seed.find_element("css selector", "td.status"))
        assert status == seed.get_attribute("data-status")
        if status == "pending":
            assert not (grid / run_id).exists()
            continue
        rec = record(grid, run_id)
        assert status == rec["status"]
        if status == "failed":  # its error, as the record says, on the line below it
            error = text(opened.find_element("css selector", f'tr[data-error-of="{run_id}"]'))
            assert rec["error"]["message"].splitlines()[0] in error and rec["error"]["type"] in error
            continue
        cells = seed.find_elements("css selector", "td[data-metric]")
        assert {c.get_attribute("data-metric") for c in cells} >= set(rec["metrics"]) | {METRIC}
        for c in cells:
            key = c.get_attribute("data-metric")
            value = rec["best"][key[5:]] if key.startswith("best:") else rec["metrics"][key]
            assert float(c.get_attribute("data-value")) == value  # every digit of the file's number
            if "acc" in key:
                assert text(c) == f"{value:.2f}"

    table = rows(opened)
    assert len(table) == 3
    for row in table:
        done = [r for r in row.get_attribute("data-run-ids").split()
                if (grid / r).exists() and record(grid, r)["status"] == "done"]
        mean = row.find_element("css selector", f'td[data-metric="{METRIC}"]') if done else None
        if not done:  # the failed variant: no mean, and the seeds behind it in a footnote
            assert text(row.find_elements("css selector", "td")[2]).startswith("–")
            assert "2 failed, 1 pending of 3 seeds" in text(opened.find_element("css selector", ".notes"))
            continue
        values = [record(grid, r)["metrics"][METRIC] for r in done]
        assert len(values) == 2
        assert float(mean.get_attribute("data-value")) == pytest.approx(statistics.fmean(values), abs=1e-9)
        assert leading(text(mean)) == round(statistics.fmean(values), 2)
        assert f"± {statistics.stdev(values):.2f}" in text(mean)
        assert text(row.find_element("css selector", 'td[data-metric="n"]')) == "2"


@needs_browser
def test_clicking_a_header_sorts_the_rows_both_ways(grid, opened):
    def order() -> list[str]:
        return [r.get_attribute("data-row") for r in rows(opened)]

    means = {r.get_attribute("data-row"): statistics.fmean(vals) if (vals := [
        rec["metrics"][METRIC] for i in r.get_attribute("data-run-ids").split()
        if (grid / i).exists() and (rec := record(grid, i))["status"] == "done"]) else None
        for r in rows(opened)}
    assert order() == ["0", "1", "2"] and means["2"] is None
    ranked = sorted((k for k in means if means[k] is not None), key=means.get)
    header = opened.find_element("css selector", f'#report-table th[data-metric="{METRIC}"]')
    header.click()
    assert header.get_attribute("aria-sort") == "ascending"
    assert order() == ranked + ["2"]  # a row without a mean last, either way
    header.click()
    assert header.get_attribute("aria-sort") == "descending"
    assert order() == ranked[::-1] + ["2"]
    position = opened.find_elements("css selector", "#report-table th")[1]  # text: "–" < "none"
    position.click()
    assert [text(r.find_elements("css selector", "td")[1]) for r in rows(opened)] == ["–", "–", "none"]
    position.click()
    assert text(rows(opened)[0].find_elements("css selector", "td")[1]) == "none"
    assert header.get_attribute("aria-sort") is None


@needs_browser
def test_the_page_renders_table_and_plots_not_a_blank_screen(opened):
    from PIL import Image, ImageStat

    errors = [e for e in opened.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors  # no script error, no refused fetch
    plots = opened.find_elements("css selector", "figure.plot svg")
    assert len(plots) == 2 and all(p.size["width"] > 300 and p.size["height"] > 150 for p in plots)
    opened.execute_script("document.getElementById('plots').scrollIntoView()")
    shot = Image.open(io.BytesIO(opened.get_screenshot_as_png())).convert("RGB")
    assert shot.size[0] >= 1000
    assert len(shot.getcolors(maxcolors=1 << 20)) > 100  # the figures' colours and anti-aliased text
    assert ImageStat.Stat(shot.convert("L")).stddev[0] > 10
