"""Does the steering playground of a rendered MF report give the Python edit's top-10? Every shipped user, four edits.

    python scripts/playground_agreement.py reports/ml-1m/visualization_SAE_mf.html --dataset ml-1m --model mf \
        [--out res_csv/ml-1m/playground_agreement.csv] [--users 0]

Opens the report in headless system Chromium and, for every user of the playground's user list (personas and seeded
held-out users; --users N keeps the first N), compares the page's top-10 (`data-top`) with
`browser.python_edit_top` (SAE.edit_delta and the model's score_grid in float64, the history excluded by
interventions.top_items) for: no edit; the user's first listed neuron set to 0, to 0.4 and to 1.0 of its slider's
range; and the concept slider (group edit) at -1. Prints how many lists are equal in order and as sets, and writes one
row per (user, edit) to --out (temporary file, then rename) when given. Exit status 1 when any list differs.
"""
import argparse
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _top(pg) -> list[int]:
    """The page's current top-10 (item rows)."""
    return [int(i) for i in pg.get_attribute("data-top").split(",")]


def agreement(report: Path, an, chromium: str, n_users: int = 0):
    """One row per (user, edit) of the playground in `report` (an MF report of analysis `an`): the page's top-10, the
    Python edit's, equal in order, same items. `n_users` > 0 keeps the first users of the page's list."""
    import numpy as np
    import pandas as pd
    from ipynb.fs.defs.browser import python_edit_top
    from playwright.sync_api import sync_playwright

    ids = np.asarray(an.ds.user_ids)[an.tables.user_index.numpy()].astype(str)
    rows = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.goto(report.as_uri(), wait_until="load")
            page.wait_for_selector("#steering-playground[data-ready='1']", timeout=120_000)
            pg = page.locator("#steering-playground")
            users = pg.locator("select.pg-user option").evaluate_all("os => os.map(o => o.value)")
            users = list(dict.fromkeys(users))[: n_users or None]
            for n, uid in enumerate(users):
                pg.locator("select.pg-user").select_option(uid)
                row = int(np.flatnonzero(ids == uid)[0])
                checks = [("none", {}, _top(pg))]
                j = pg.locator("tr.pg-neuron").first.evaluate("r => Number(r.dataset.neuron)")
                for fraction in (0.0, 0.4, 1.0):
                    pg.locator(f"input.pg-slider[data-neuron='{j}']").evaluate(
                        "(e, f) => { e.value = String(f * Number(e.max)); e.dispatchEvent(new Event('input')); }",
                        fraction)
                    z = float(pg.locator(f"tr.pg-neuron[data-neuron='{j}']").get_attribute("data-z"))
                    checks.append((f"neuron {j} at {fraction:g} of range", {j: z}, _top(pg)))
                pg.locator("button.pg-reset").click()
                pg.locator("input.pg-concept-strength").evaluate(
                    "e => { e.value = '-1'; e.dispatchEvent(new Event('input')); }")
                z_new = dict(pg.locator("tr.pg-neuron").evaluate_all(
                    "rs => rs.map(r => [Number(r.dataset.neuron), Number(r.dataset.z)])"))
                checks.append(("concept at -1", z_new, _top(pg)))
                pg.locator("button.pg-reset").click()
                for edit, z_set, page_top in checks:
                    ref = python_edit_top(an, row, z_set)
                    rows.append({"user": uid, "edit": edit, "equal_in_order": page_top == ref,
                                 "same_items": set(page_top) == set(ref), "page_top": " ".join(map(str, page_top)),
                                 "python_top": " ".join(map(str, ref))})
                if (n + 1) % 25 == 0:
                    print(f"{n + 1}/{len(users)} users", file=sys.stderr, flush=True)
        finally:
            browser.close()
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    """Compare the page with the Python edit; returns the exit status."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("report", type=Path)
    ap.add_argument("--dataset", default="ml-1m")
    ap.add_argument("--model", default="mf")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--users", type=int, default=0, help="check only the first N users of the list (0: all)")
    ap.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    args = ap.parse_args(argv)
    if not args.report.is_file():
        print(f"no report at {args.report}: render it first (python scripts/run_notebooks.py "
              f"visualization_SAE_{args.model} -p DATASET {args.dataset})", file=sys.stderr)
        return 2
    if not args.chromium:
        print("no system chromium on PATH (apt-get install chromium)", file=sys.stderr)
        return 2
    report, out = args.report.resolve(), args.out.resolve() if args.out else None
    sys.path.insert(0, str(ROOT / "notebooks"))
    os.chdir(ROOT / "notebooks")
    from ipynb.fs.defs.browser import PLAYGROUND_F32_BYTES
    from ipynb.fs.defs.concepts import load_analysis

    an = load_analysis(args.dataset, args.model, device="cpu")
    dtype = "float32" if an.tables.items.numel() * 4 <= PLAYGROUND_F32_BYTES else "float16"
    df = agreement(report, an, args.chromium, args.users)
    users = df["user"].unique()
    equal, same = int(df["equal_in_order"].sum()), int(df["same_items"].sum())
    print(f"{args.report.name} ({args.dataset} {args.model}, item matrix shipped as {dtype}): {len(users)} users x "
          f"{len(df) // max(len(users), 1)} states: {equal} of {len(df)} page top-10s equal the Python edit in order, "
          f"{same} as sets")
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        df.to_csv(tmp, index=False)
        tmp.replace(out)
        print(f"wrote {out}")
        from ipynb.fs.defs.artifacts import analysis_checkpoints, record_provenance
        from ipynb.fs.defs.utils import Paths

        if out.parent == (Paths.of(None).results / args.dataset).resolve():
            record_provenance(args.dataset, [out.name], analysis_checkpoints([args.model]))
    return 0 if equal == len(df) else 1


if __name__ == "__main__":
    sys.exit(main())
