"""The steering playground (issue 16): its data builder in pure Python, and the page itself in headless Chromium
(a smoke-rendered MF report, like tests/test_browser.py): for several users and slider values the page's top-10
is the Python edit's (SAE.edit_delta, then the model's score_grid with the history excluded by
interventions.top_items), in the same order.

The browser test is skipped, with the reason, when Playwright or a system Chromium is missing.
"""
import copy
import re
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "reports" / "screenshots"
MAX_REPORT_BYTES = 10_000_000


def _python_top(analysis, row: int, z_new: dict[int, float], depth: int = 10) -> list[int]:
    """Top-`depth` of user row `row` after setting codes {j: z'} (browser.python_edit_top: SAE.edit_delta, float64)."""
    from ipynb.fs.defs.browser import python_edit_top

    return python_edit_top(analysis, row, z_new, depth)


@pytest.fixture(scope="module")
def planted_analysis(planted_mf_sae):
    """A concepts.Analysis of the planted MF + SAE of conftest."""
    from ipynb.fs.defs.concepts import Analysis
    from ipynb.fs.defs.evaluation import sae_codes

    mf, sae, tables, split, syn = planted_mf_sae
    return Analysis("synthetic", "mf", syn, split, mf.eval(), {}, sae.eval(), tables, sae_codes(sae, tables, "item"),
                    sae_codes(sae, tables, "user"))


def test_playground_data_matches_the_python_edit(planted_analysis):
    from ipynb.fs.defs.browser import _unb64, playground_data, playground_top
    from ipynb.fs.defs.evaluation import main_concepts
    from ipynb.fs.defs.interventions import top_items

    an = planted_analysis
    pg = playground_data(an, n_users=20, seed=0)
    heldout = set(an.tables.heldout_rows.numpy().tolist())
    rows = {u["row"] for u in pg["users"].values()}
    assert rows <= heldout and pg["n_random"] == min(20, len(heldout)) and len(rows) >= pg["n_random"]
    concepts, _ = main_concepts(an.ds)
    assert pg["concepts"] == [c.split(":", 1)[1] for c in concepts.columns]
    assert [sorted(c) for c in pg["item_concepts"]] == [np.flatnonzero(r).tolist() for r in concepts.to_numpy()]
    history = an.split.history("test")
    n_items = an.tables.items.shape[0]
    assert _unb64(pg["items"], (n_items, pg["dim"])).shape == (n_items, pg["dim"])
    # personas: the held-out user whose top-20 holds most of the concept
    all_top = {}
    for r in sorted(heldout):
        user = an.tables.user_index[[r]]
        with torch.no_grad():
            s = an.model.score_grid(an.tables.users[[r]], an.tables.items, user, torch.arange(n_items))
        all_top[r] = top_items(s, 20, torch.as_tensor(history[user.numpy()].toarray() > 0))[0]
    for label, uid in pg["personas"]:
        c = pg["concepts"].index(label.split(" (")[0].removeprefix("most "))
        share = {r: concepts.to_numpy()[lst, c].mean() for r, lst in all_top.items()}
        assert share[pg["users"][uid]["row"]] == max(share.values()), label
    for uid, u in list(pg["users"].items())[:6]:
        user = int(an.tables.user_index[u["row"]])
        assert u["seen"] == history[user].indices.tolist()  # the history the Python ranking excludes
        assert playground_top(pg, uid) == _python_top(an, u["row"], {})
        j = u["z"][0][0] if u["z"] else 0
        for value in (0.0, 2.5 * pg["user_max"][j]):
            assert playground_top(pg, uid, {j: value}) == _python_top(an, u["row"], {j: value}), (uid, j, value)


def test_playground_only_for_linear_models(planted_analysis):
    from ipynb.fs.defs.browser import playground_data

    fake = copy.copy(planted_analysis)
    fake.model = torch.nn.Linear(2, 2)  # not an MF: the page cannot score it, no playground
    assert playground_data(fake) is None


def test_playground_tour_is_chosen_by_the_steering_points(planted_analysis):
    import pandas as pd
    from ipynb.fs.defs.browser import playground_data, playground_tour

    pg = playground_data(planted_analysis, n_users=30)
    c0, c1 = "planted:" + pg["concepts"][0], "planted:" + pg["concepts"][1]
    rows = [("filter", c0, "sae_group", 0.5, 0.4, 0.1, 0.9), ("filter", c1, "sae_group", 0.5, 0.4, 0.3, 0.85),
            ("filter", c1, "direction", 0.2, 0.4, 0.05, 0.9), ("filter", c0, "direction", 0.2, 0.4, 0.2, 0.9),
            ("filter", c0, "sae_group", 2.0, 0.4, 0.0, 0.5),  # below RBO 0.8: never chosen
            ("promote_concept", c1, "sae_group", 1.0, 0.0, 0.6, 0.82)]
    points = pd.DataFrame([{"model": "mf", "population": "heldout", "task": t, "concept": c, "method": m, "strength": s,
                            "share_before": b, "share_after": a, "side_effect_rbo": r, "n_users": 10}
                           for t, c, m, s, b, a, r in rows])
    tour = playground_tour(pg, points, "mf")
    assert [t["title"].split()[0] for t in tour][:1] == ["Filter"] and tour[0]["strength"] == -0.5
    assert tour[0]["concept"] == 0 and tour[0]["user"] in pg["users"]
    by_title = {t["title"]: t for t in tour}
    assert f"Where the SAE fails: {pg['concepts'][1]}" in by_title  # sae 0.3 vs direction 0.05: the largest gap
    promote = [t for t in tour if t["title"].startswith("Promote")]
    assert all(t["strength"] == 1.0 and t["concept"] == 1 for t in promote)
    assert playground_tour(pg, None, "mf") == [] and playground_tour(pg, points, "ncf") == []


@pytest.mark.realdata
def test_kernel_playground_on_ncf_and_sasrec(data_root):
    """SteeringPlayground (ipywidgets, scored in the kernel) on ML-100k NCF and SASRec: the list is the Python edit's."""
    from ipynb.fs.defs.browser import SteeringPlayground
    from ipynb.fs.defs.concepts import load_analysis

    for model in ("ncf", "sasrec"):
        an = load_analysis("ml-100k", model, device="cpu")
        sp = SteeringPlayground(an, n_users=20)
        assert sp.base == _python_top(an, sp.row, {})
        j = int(np.argmax(sp.codes[sp.row]))
        for value in (0.0, 2.0 * sp.user_max[j]):
            assert sp.set_neuron(j, value) == _python_top(an, sp.row, {j: value}), (model, j, value)
        assert "RBO" in sp.out.value and len(sp.sliders) >= 1


# --- in a real browser ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smoke_mf(tmp_path_factory, chromium, render_reports):
    """(report path, analysis): visualization_SAE_mf rendered on the smoke pipeline, and that run's analysis."""
    from ipynb.fs.defs.concepts import load_analysis
    from ipynb.fs.defs.utils import Paths

    folder = tmp_path_factory.mktemp("reports")
    assert render_reports(folder, ["visualization_SAE_mf", "--smoke"]) == 0
    report = folder / "synthetic" / "visualization_SAE_mf.html"
    run = re.search(r"smoke run \(synthetic data\) in (\S+?)(?:\\n|<|\s)", report.read_text(encoding="utf-8")).group(1)
    return report, load_analysis("synthetic", "mf", paths=Paths.under(run), device="cpu")


def test_playground_in_headless_chromium(smoke_mf, chromium):
    from ipynb.fs.defs.browser import python_side_effect_rbo
    from ipynb.fs.defs.evaluation import main_concepts
    from ipynb.fs.defs.utils import rbo_extrapolated
    from playwright.sync_api import sync_playwright

    report, an = smoke_mf
    assert report.stat().st_size <= MAX_REPORT_BYTES
    print(f"report {report.stat().st_size / 1e6:.2f} MB")
    checked = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(report.as_uri(), wait_until="load")
            page.wait_for_selector("#steering-playground[data-ready='1']", timeout=60_000)
            pg = page.locator("#steering-playground")
            users = pg.locator("select.pg-user option").evaluate_all("os => os.map(o => o.value)")
            personas = pg.locator("select.pg-user optgroup").first.locator("option").count()
            assert personas >= 1 and len(set(users)) > personas
            picks = list(dict.fromkeys(users[:2] + users[personas:][:3]))
            for uid in picks:
                pg.locator("select.pg-user").select_option(uid)
                assert pg.get_attribute("data-user") == uid
                row = int(np.flatnonzero(np.asarray(an.ds.user_ids)[an.tables.user_index.numpy()].astype(str) == uid)[0])
                base = [int(i) for i in pg.get_attribute("data-top").split(",")]
                assert base == _python_top(an, row, {})
                neurons = pg.locator("tr.pg-neuron").evaluate_all("rs => rs.map(r => Number(r.dataset.neuron))")
                assert neurons, uid
                j = neurons[0]
                for fraction in (0.0, 0.4, 1.0):  # of the slider's range: 0 removes the neuron, 1 = 3x its user max
                    pg.locator(f"input.pg-slider[data-neuron='{j}']").evaluate(
                        "(e, f) => { e.value = String(f * Number(e.max)); e.dispatchEvent(new Event('input')); }", fraction)
                    value = float(pg.locator(f"tr.pg-neuron[data-neuron='{j}']").get_attribute("data-z"))
                    top = [int(i) for i in pg.get_attribute("data-top").split(",")]
                    assert top == _python_top(an, row, {j: value}), (uid, j, value)
                    rbo = float(pg.locator(".pg-summary").get_attribute("data-rbo"))
                    assert abs(rbo - rbo_extrapolated(base, top, p=0.9)) < 1e-9
                    entered = pg.locator("table.pg-top tr.pg-in").evaluate_all("rs => rs.map(r => Number(r.dataset.item))")
                    assert entered == [i for i in top if i not in base]
                    checked.append((uid, j, value, 10 - len(entered)))
                # the concept slider (group edit) sets several neurons at once: the page's list is still the edit's
                pg.locator("input.pg-concept-strength").evaluate("e => { e.value = '-1'; e.dispatchEvent(new Event('input')); }")
                z_new = dict(pg.locator("tr.pg-neuron").evaluate_all(
                    "rs => rs.map(r => [Number(r.dataset.neuron), Number(r.dataset.z)])"))
                top = [int(i) for i in pg.get_attribute("data-top").split(",")]
                assert top == _python_top(an, row, z_new), (uid, "concept")
                # the side-effect RBO the page shows for a concept edit is steering.csv's (rest of the top-20)
                k = int(pg.locator("select.pg-concept").input_value())
                concept_items = main_concepts(an.ds)[0].to_numpy()[:, k].astype(bool)
                side = float(pg.get_attribute("data-side-rbo"))
                assert abs(side - python_side_effect_rbo(an, row, z_new, concept_items)) < 1e-9, (uid, side)
                pg.locator("button.pg-reset").click()
                assert [int(i) for i in pg.get_attribute("data-top").split(",")] == base
            # the page's float16 decoder (large catalogs ship the item matrix as float16) against numpy's
            from ipynb.fs.defs.browser import _b64
            halves = np.array([0.0, -0.0, 1.0, -2.5, 65504.0, 6.1e-5, 3e-7, -1e-6, 0.3333, 1234.5], dtype=np.float32)
            decoded = page.locator("#neuron-browser").evaluate("(e, t) => Array.from(e.nbDecode.f16(t))", _b64(halves, "<f2"))
            assert np.array_equal(np.asarray(decoded, dtype=np.float32), halves.astype(np.float16).astype(np.float32))
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            pg.locator(f"input.pg-slider[data-neuron='{j}']").evaluate(
                "e => { e.value = '0'; e.dispatchEvent(new Event('input')); }")
            pg.screenshot(path=str(SCREENSHOTS / "steering_playground_synthetic_mf.png"))
        finally:
            browser.close()
    assert not errors, errors
    print("checked (user, neuron, z', items kept):", checked)
    assert len(checked) >= 9


@pytest.mark.realdata
def test_ml1m_report_playground_matches_python(data_root, chromium, tmp_path, load_script, render_reports):
    """The rendered ML-1M MF report (the shipped models): under 10 MB, and for the first 12 users of its playground
    (personas) and five states each (no edit, a neuron at 0 / 0.4 / 1.0 of its range, a concept at -1) the page's
    top-10 is the Python edit's, in order (the item matrix is shipped as float32; float16 swapped near-tied items)."""
    from ipynb.fs.defs.concepts import load_analysis

    assert render_reports(tmp_path, ["visualization_SAE_mf", "-p", "DATASET", "ml-1m"]) == 0
    report = tmp_path / "ml-1m" / "visualization_SAE_mf.html"
    assert report.stat().st_size <= MAX_REPORT_BYTES, report.stat().st_size
    df = load_script("playground_agreement").agreement(report, load_analysis("ml-1m", "mf", device="cpu"), chromium, n_users=12)
    assert len(df) == 60
    bad = df.loc[~df["equal_in_order"]]
    assert bad.empty, bad.to_string()


@pytest.mark.realdata
def test_static_playground_for_ncf_in_headless_chromium(data_root, chromium, tmp_path):
    """NCF (not a dot product): the page shows saved edits; each list it shows is the Python edit's, in order."""
    from ipynb.fs.defs.browser import browser_data, browser_html, python_edit_top
    from ipynb.fs.defs.concepts import load_analysis
    from playwright.sync_api import sync_playwright

    an = load_analysis("ml-100k", "ncf", device="cpu")
    data = browser_data(an, max_users=20, playground_users=4)
    assert data["playground"] is None and len(data["playground_static"]["users"]) >= 2
    page_file = tmp_path / "ncf.html"
    page_file.write_text(f"<!doctype html><html><body>{browser_html(data)}</body></html>", encoding="utf-8")
    ids = np.asarray(an.ds.user_ids)[an.tables.user_index.numpy()].astype(str)
    checked = 0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_file.as_uri(), wait_until="load")
            page.wait_for_selector("#steering-playground[data-ready='1']", timeout=60_000)
            pg = page.locator("#steering-playground")
            for uid in pg.locator("select.pg-user option").evaluate_all("os => os.map(o => o.value)")[:3]:
                pg.locator("select.pg-user").select_option(uid)
                row = int(np.flatnonzero(ids == uid)[0])
                assert [int(i) for i in pg.get_attribute("data-top").split(",")] == python_edit_top(an, row)
                j = int(pg.locator("select.pg-static-neuron option").first.inner_text().split()[0].lstrip("#"))
                buttons = pg.locator(".pg-strengths button.pg-strength")
                for k in range(1, buttons.count()):
                    buttons.nth(k).click()
                    z = float(pg.get_attribute("data-z"))
                    top = [int(i) for i in pg.get_attribute("data-top").split(",")]
                    assert top == python_edit_top(an, row, {j: z}), (uid, j, z)
                    checked += 1
        finally:
            browser.close()
    assert not errors, errors
    assert checked >= 10
