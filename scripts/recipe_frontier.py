"""Train and evaluate the recipe rows of sae_fidelity.csv (issue 11): one process, one thread.

    cd notebooks && MONOSEMREC_DATA_DIR=... MONOSEMREC_OFFLINE=1 python ../scripts/recipe_frontier.py [dataset:rec ...] [--runs a,b]

Default: every recommender of experiments.RECIPE_FRONTIER, all its recipe and wide rows (plus the default row, re-evaluated
from its checkpoint: reuse=True never retrains a checkpointed row). Measurement rows are not checkpointed.
"""
import argparse
import os
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
os.chdir(NOTEBOOKS)
sys.path.insert(0, str(NOTEBOOKS))

from ipynb.fs.defs.experiments import RECIPE_FRONTIER, recipe_runs, wide_runs  # noqa: E402
from ipynb.fs.defs.sae_training import train_and_save_saes  # noqa: E402


def main() -> None:
    """Parse the targets and run train_and_save_saes(reuse=True) on each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help="dataset:recommender (default: all of RECIPE_FRONTIER)")
    parser.add_argument("--runs", default="", help="comma-separated row names (default: default + every recipe row)")
    args = parser.parse_args()
    targets = [t.split(":") for t in args.targets] or [(d, r) for d, recs in RECIPE_FRONTIER.items() for r in recs]
    for dataset, rec in targets:
        runs = args.runs.split(",") if args.runs else ["default"]
        if not args.runs:  # names depend on the width only through k (recipe_k<k> with k <= n_neurons; wide rows)
            runs += [n for d in (64, 32) for f in (recipe_runs, wide_runs) for n, _ in f(dataset, rec, d)]
        train_and_save_saes(dataset, [rec], runs=sorted(set(runs)), reuse=True, progress=True)


if __name__ == "__main__":
    main()
