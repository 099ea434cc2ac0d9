#!/usr/bin/env python
"""Quality of the shared random-item pool (SAEConfig.pred_pool) against the legacy per-user draw: the default SAE
of ML-1M MF (the committed recommender, frozen) trained with each, seeds 0-2, evaluated like sae_fidelity.csv
(held-out FVE, RBO_ext@20, pure genre neurons, spliced HR@10) plus its CPU seconds (1 thread). Writes
res_csv/ml-1m/sae_pool_quality.csv (atomically, one row per pool and seed, merged as they finish).

Usage:
  python scripts/sae_pool_quality.py                    # pools 0 and 256, seeds 0 1 2 (~6 SAE trainings)
  python scripts/sae_pool_quality.py --pools 256 --seeds 0
"""

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "notebooks"))
os.environ.setdefault("MONOSEMREC_ROOT", str(ROOT))

import torch  # noqa: E402
from ipynb.fs.defs.artifacts import load_recommender, record_provenance  # noqa: E402
from ipynb.fs.defs.data_processing import load_dataset  # noqa: E402
from ipynb.fs.defs.evaluation import main_concepts, representation_tables  # noqa: E402
from ipynb.fs.defs.experiments import sae_runs, split_of  # noqa: E402
from ipynb.fs.defs.sae_training import sae_row, train_sae  # noqa: E402
from ipynb.fs.defs.utils import merge_rows, results_dir  # noqa: E402

COLUMNS = ["dataset", "model", "pred_pool", "seed", "cpu_seconds", "fve_users", "fve_items", "rbo_ext_at_20",
           "pure_concepts", "dead_frac_all", "hr_at_10_spliced"]


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--model", default="mf")
    parser.add_argument("--pools", nargs="+", type=int, default=[0, 256])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", default=None, help="CSV path (default res_csv/<dataset>/sae_pool_quality.csv)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    ds = load_dataset(args.dataset)
    split = split_of(ds, args.model)
    model, _ = load_recommender(args.dataset, args.model, split, device="cpu")
    tables = representation_tables(model.eval(), split, ds, device="cpu")
    _, cfg = sae_runs(args.dataset, args.model, tables.users.shape[1])[0]
    concepts, family = main_concepts(ds)
    out = Path(args.out) if args.out else results_dir() / args.dataset / "sae_pool_quality.csv"
    rows = []
    for seed in args.seeds:
        for pool in args.pools:
            start, start_wall = time.process_time(), time.perf_counter()
            sae, _ = train_sae(dataclasses.replace(cfg, seed=seed, pred_pool=pool), tables, progress=False)
            cpu = time.process_time() - start
            row, _ = sae_row(args.model, 0, "default", sae, tables, split, concepts, family,
                             time.perf_counter() - start_wall)
            rows.append({"dataset": args.dataset, "model": args.model, "pred_pool": pool, "seed": seed,
                         "cpu_seconds": round(cpu, 1), **{k: row[k] for k in COLUMNS[5:]}})
            print(rows[-1], flush=True)
            merge_rows(out, rows[-1:], ["dataset", "model", "pred_pool", "seed"], COLUMNS)
            if args.out is None:
                record_provenance(args.dataset, [out.name], [args.model])
    return rows


if __name__ == "__main__":
    main()
