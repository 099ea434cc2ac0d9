"""Fidelity and pure concepts of recipe rows *before training*: the control that could give their numbers by accident.

    MONOSEMREC_DATA_DIR=... MONOSEMREC_OFFLINE=1 python scripts/untrained_start.py ml-1m:mf --runs recipe_x8_k32_pursuit,recipe_x8_k32

A steps-schedule (recipe) SAE starts with its atoms at jittered training rows (`sae.init_steps_dictionary`). For each
row of experiments.sae_runs named in --runs, this builds exactly that start (`concepts.untrained_sae`: the row's
config and seed, scaling fitted on the training rows, never trained) and scores it like a trained row
(`sae_training.sae_row`: held-out FVE, RBO_ext@20, weighted tau, spliced HR@10, pure concepts over the supported
items). Writes res_csv/<dataset>/untrained_start.csv (one row per model and sae row; merged) and its provenance.
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

from ipynb.fs.defs.artifacts import load_recommender, record_provenance  # noqa: E402
from ipynb.fs.defs.concepts import concept_items, untrained_sae  # noqa: E402
from ipynb.fs.defs.data_processing import load_dataset  # noqa: E402
from ipynb.fs.defs.evaluation import main_concepts, representation_tables  # noqa: E402
from ipynb.fs.defs.experiments import sae_runs, split_of  # noqa: E402
from ipynb.fs.defs.sae import SAE  # noqa: E402
from ipynb.fs.defs.sae_training import sae_row  # noqa: E402
from ipynb.fs.defs.utils import Paths, merge_rows  # noqa: E402

COLUMNS = ("model", "sae", "encoder", "n_neurons", "k", "seed", "fve_users", "fve_items", "l0", "rbo_ext_at_20",
           "weighted_tau", "hr_ratio_spliced", "pure_concepts", "dead_frac_all")


def start_rows(dataset: str, recommender: str, runs: list[str]) -> list[dict]:
    """The untrained start of each named steps-schedule row of one recommender, scored like a trained row."""
    ds = load_dataset(dataset)
    split = split_of(ds, recommender)
    model, _ = load_recommender(dataset, recommender, split=split, device="cpu")
    tables = representation_tables(model.eval(), split, ds, device="cpu")
    configs = dict(sae_runs(dataset, recommender, tables.users.shape[1]))
    unknown = [r for r in runs if r not in configs]
    if unknown:
        raise ValueError(f"{dataset} {recommender}: no sae_fidelity rows {unknown}; valid: {list(configs)}")
    not_steps = [r for r in runs if not configs[r].steps]
    if not_steps:
        raise ValueError(f"{not_steps} use the epoch schedule (steps = 0): their start is a random dictionary, "
                         "already the 'untrained_sae' control of concept_summary.csv; pass recipe rows")
    concepts, family = main_concepts(ds)
    supported = concept_items(ds)
    out = []
    for name in runs:
        start = untrained_sae(SAE(configs[name]), tables)
        row, _ = sae_row(recommender, 0, name, start, tables, split, concepts, family, 0.0, items=supported)
        out.append({c: row[c] for c in COLUMNS})
        print(f"{dataset} {recommender} {name} (untrained start): FVE {row['fve_users']:.3f}/{row['fve_items']:.3f} "
              f"RBO@20 {row['rbo_ext_at_20']:.3f} tau {row['weighted_tau']:.3f} HR ratio {row['hr_ratio_spliced']:.2f} "
              f"pure {row['pure_concepts']}", flush=True)
    return out


def main() -> None:
    """Parse dataset:recommender and --runs, score the starts, merge into res_csv/<dataset>/untrained_start.csv."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="dataset:recommender, e.g. ml-1m:mf")
    parser.add_argument("--runs", required=True, help="comma-separated sae_fidelity row names (steps-schedule rows)")
    args = parser.parse_args()
    dataset, recommender = args.target.split(":")
    rows = start_rows(dataset, recommender, args.runs.split(","))
    merge_rows(Paths.of(None).results / dataset / "untrained_start.csv", rows, ["model", "sae"], COLUMNS,
               sort_by=["model", "sae"])
    record_provenance(dataset, ["untrained_start.csv"], [recommender])


if __name__ == "__main__":
    main()
