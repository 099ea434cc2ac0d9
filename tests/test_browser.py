"""The neuron browser in a real browser: a smoke-rendered model report opened from file:// in headless Chromium
(the Debian package, driven by Playwright's Python API with `executable_path`; never a downloaded browser build).

Skipped, with the reason, when Playwright or a system Chromium is missing (`.ci/run` installs chromium with
apt-get when it can). A screenshot of a neuron card goes to reports/screenshots/ (git-ignored).
"""
import re
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "reports" / "screenshots"
MAX_REPORT_BYTES = 10_000_000


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory, chromium, render_reports) -> Path:
    """visualization_SAE_mf rendered by the main job on the smoke pipeline (synthetic data)."""
    folder = tmp_path_factory.mktemp("reports")
    assert render_reports(folder, ["visualization_SAE_mf", "--smoke"]) == 0
    return folder / "synthetic" / "visualization_SAE_mf.html"


def test_offline_html_drops_remote_tags(load_script):
    """The exporter's CDN scripts (require.js, MathJax) and remote stylesheets are removed; local ones stay."""
    script = load_script("run_notebooks")
    html = ('<script src="https://cdnjs.cloudflare.com/ajax/libs/require.js/2.1.10/require.min.js"></script>'
            '<link rel="stylesheet" href="http://x/y.css"><script>var a = "https://not-a-tag";</script>'
            '<script type="text/javascript" src="local.js"></script>')
    assert script.offline_html(html) == '<script>var a = "https://not-a-tag";</script><script type="text/javascript" src="local.js"></script>'


def test_browser_in_headless_chromium(smoke_report, chromium):
    from playwright.sync_api import sync_playwright

    html = smoke_report.read_text(encoding="utf-8")
    assert smoke_report.stat().st_size <= MAX_REPORT_BYTES
    assert html.count('id="neuron-browser"') == 1
    code_cells = re.findall(r'<div class="jp-Cell jp-CodeCell[^"]*"', html)
    assert code_cells and all("jp-mod-noInput" in c for c in code_cells)  # code cells hidden
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            errors, requests = [], []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            start = time.perf_counter()
            page.goto(smoke_report.as_uri(), wait_until="load")
            page.wait_for_selector("#neuron-browser[data-ready='1']", timeout=60_000)
            print(f"{smoke_report.stat().st_size / 1e6:.2f} MB loaded in {time.perf_counter() - start:.2f} s")
            nb = page.locator("#neuron-browser")
            search = nb.locator("input.nb-search")

            # an item title: its page lists the neurons active on it
            search.fill("item 12")
            nb.locator("button.nb-result[data-kind=item]").first.click()
            assert nb.locator(".nb-item[data-item]").count() == 1
            assert nb.locator(".nb-item-neurons tr").count() >= 2  # header + at least one neuron
            assert nb.locator("datalist option").count() >= 1  # autocomplete offers titles

            # a neuron: its card with >= 10 top items
            neuron = nb.locator(".nb-item-neurons a.nb-link").first
            neuron.click()
            card = nb.locator(".nb-neuron[data-neuron]")
            assert card.count() == 1 and card.locator(".nb-top-items tr").count() - 1 >= 10
            assert card.locator(".nb-promote tr").count() > 1 and card.locator(".nb-near tr").count() > 1
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            card.screenshot(path=str(SCREENSHOTS / "neuron_card_synthetic_mf.png"))

            # every neuron is offered; searching by number opens its card
            assert nb.locator("select.nb-neuron-select option").count() == 32
            search.fill("#5")
            nb.locator("button.nb-result[data-kind=neuron]").first.click()
            assert nb.locator(".nb-neuron").get_attribute("data-neuron") == "5"

            # a user: contributions sum to the user's scores within 1e-4
            search.fill("user 3")
            nb.locator("button.nb-result[data-kind=user]").first.click()
            tables = nb.locator(".nb-user table.nb-contrib")
            assert tables.count() == 10
            sums = tables.evaluate_all("""ts => ts.map(t => [Number(t.dataset.score),
                Array.from(t.querySelectorAll('td.nb-v')).reduce((s, td) => s + Number(td.dataset.v), 0)])""")
            assert all(abs(score - total) < 1e-4 for score, total in sums), sums
            page.screenshot(path=str(SCREENSHOTS / "user_page_synthetic_mf.png"))
        finally:
            browser.close()
    assert not errors, errors
    outside = [u for u in requests if not u.startswith("file://")]
    assert not outside, outside
