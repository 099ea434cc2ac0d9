#!/usr/bin/env python
"""Example of the external-embeddings path: implicit ALS on ML-1M, analysed by the suite's own notebooks.

1. scripts/import_embeddings.py --fit-implicit als: implicit's AlternatingLeastSquares (64 factors,
   regularization 0.05, 15 iterations, alpha 1, seed 0, 1 thread) fitted on the training part of the suite's
   ML-1M split (random leave-one-out, seed 0), imported as the checkpoint `external` of the run folder and
   evaluated with the suite's evaluation (full ranking and 99 sampled negatives, HR@10 / NDCG@10).
2. papermill: sae_training (the default SAE), concepts (the SAE against its four controls), interventions
   (--n-users users, --n-items promoted items) and the model report, all with DATASET=ml-1m, MODELS=[external]
   and RUN_DIR=<run>; executed notebooks are kept in the run folder.
3. Prints the numbers the README quotes, from the run folder's tables.

Needs the optional library implicit (pip install -r requirements-external.txt) and ML-1M under
$MONOSEMREC_DATA_DIR. On the shared 2-core machine under heavy load the interventions step alone took ~25 minutes.

Usage: python scripts/example_external_als.py --run-dir runs/external_als
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def papermill(notebook: str, run_dir: Path, params: dict) -> None:
    """Execute notebooks/<notebook>.ipynb with papermill into the run folder; raise on failure."""
    cmd = [sys.executable, "-m", "papermill", str(ROOT / "notebooks" / f"{notebook}.ipynb"),
           str(run_dir / f"{notebook}.ipynb"), "--log-level", "ERROR"]
    for key, value in params.items():
        cmd += ["-y", json.dumps({key: value})]
    print("+", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--n-users", type=int, default=50, help="users of the interventions run")
    parser.add_argument("--n-items", type=int, default=1, help="promoted items of the interventions run")
    parser.add_argument("--skip-import", action="store_true", help="reuse the run folder's checkpoint")
    args = parser.parse_args(argv)
    run = args.run_dir.resolve()
    os.environ.setdefault("MONOSEMREC_ROOT", str(ROOT))
    if not args.skip_import:
        subprocess.run([sys.executable, str(ROOT / "scripts" / "import_embeddings.py"), "--dataset", "ml-1m",
                        "--fit-implicit", "als", "--run-dir", str(run)], check=True, cwd=ROOT)
    common = {"DATASET": "ml-1m", "RUN_DIR": str(run), "MODELS": ["external"]}
    papermill("sae_training", run, {**common, "PROGRESS": False})
    papermill("concepts", run, common)
    papermill("interventions", run, {**common, "N_USERS": args.n_users, "N_ITEMS": args.n_items, "PROGRESS": False})
    papermill("visualization_SAE_mf", run, {"DATASET": "ml-1m", "RUN_DIR": str(run), "MODEL": "external"})

    import pandas as pd

    res = run / "res_csv" / "ml-1m"
    meta = json.loads((run / "models" / "ml-1m" / "external.json").read_text())
    test = meta["metrics"]["test"]
    print(f"\nimplicit ALS ({meta['config']['source']['fit_cpu_seconds']} CPU-s to fit) under the suite's evaluation: "
          f"HR@10 full {test['full']['hr_at_10']:.4f} (NDCG@10 {test['full']['ndcg_at_10']:.4f}), "
          f"sampled {test['sampled']['hr_at_10']:.4f} (NDCG@10 {test['sampled']['ndcg_at_10']:.4f})")
    fid = pd.read_csv(res / "sae_fidelity.csv").iloc[0]
    print(f"default SAE: FVE users {fid['fve_users']:.3f} items {fid['fve_items']:.3f}, L0 {fid['l0']:.1f}, "
          f"RBO@20 {fid['rbo_ext_at_20']:.3f}, weighted tau {fid['weighted_tau']:.3f}, HR@10 spliced "
          f"{fid['hr_at_10_spliced']:.4f} vs original {fid['hr_at_10_original']:.4f}, dead {fid['dead_frac_all']:.3f}, "
          f"{fid['train_seconds']:.0f} s")
    summary = pd.read_csv(res / "concept_summary.csv")
    print(summary[["representation", "n_units", "pure_concepts", "n_concepts_purity10_ge_09",
                   "n_concepts_purity10_ge_08", "n_main_concepts"]].to_string(index=False))
    inter = pd.read_csv(res / "interventions.csv")
    cols = [c for c in ("kind", "method", "share_before", "share_after", "side_effect_rbo", "success_rate") if c in inter]
    print(inter.groupby(["kind", "method"])[cols[2:]].median().round(3).to_string())


if __name__ == "__main__":
    main()
