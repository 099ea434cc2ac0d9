"""Fidelity and pure concepts of recipe rows *before training*: the control that could give their numbers by accident.

    MONOSEMREC_DATA_DIR=... MONOSEMREC_OFFLINE=1 python scripts/untrained_start.py ml-1m:mf --runs recipe_x8_k32_pursuit,recipe_x8_k32

A steps-schedule (recipe) SAE starts with its atoms at jittered training rows (`sae.init_steps_dictionary`). For each
row of experiments.sae_runs named in --runs, this builds exactly that start (`concepts.untrained_sae`: the row's
config and seed, scaling fitted on the training rows, never trained) and scores it like a trained row
(`sae_training.sae_row`: held-out FVE, RBO_ext@20, weighted tau, spliced HR@10, pure concepts over the supported
items). Writes res_csv/<dataset>/untrained_start.csv (one row per model and sae row; merged) and its provenance.
"""
import os
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
os.chdir(NOTEBOOKS)
sys.path.insert(0, str(NOTEBOOKS))

from ipynb.fs.defs.concepts import concept_items, untrained_sae  # noqa: E402
from ipynb.fs.defs.evaluation import main_concepts  # noqa: E402
from ipynb.fs.defs.sae import SAE  # noqa: E402
from ipynb.fs.defs.sae_training import measurement_cli, measurement_context, sae_row  # noqa: E402

COLUMNS = ("model", "sae", "encoder", "n_neurons", "k", "seed", "fve_users", "fve_items", "l0", "rbo_ext_at_20",
           "weighted_tau", "hr_ratio_spliced", "pure_concepts", "dead_frac_all")


def start_rows(dataset: str, recommender: str, runs: list[str]) -> list[dict]:
    """The untrained start of each named steps-schedule row of one recommender, scored like a trained row."""
    ds, split, tables, configs = measurement_context(dataset, recommender, runs)
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
    """Measure the named rows and merge them into res_csv/<dataset>/untrained_start.csv (with provenance)."""
    measurement_cli(__doc__.splitlines()[0], "untrained_start.csv", start_rows, ["model", "sae"], COLUMNS)


if __name__ == "__main__":
    main()
