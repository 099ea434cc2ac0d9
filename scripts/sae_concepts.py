"""Concept counts of sae_fidelity rows that have no checkpoint (recipe rows), against the same controls.

    cd notebooks && MONOSEMREC_DATA_DIR=... MONOSEMREC_OFFLINE=1 python ../scripts/sae_concepts.py lastfm:mf --runs recipe_k32,recipe_k32_pursuit

For each row: the row's config from experiments.sae_runs, trained by train_sae (one thread; the pursuit row of a
dictionary reuses the dictionary trained for its linear row), then the concepts notebook's `representation_rows`
for the SAE and every control (raw, PCA, rotation, untrained SAE of the row's config), on the supported items
(`concepts.concept_items`). Writes res_csv/<dataset>/sae_concepts.csv (one row per model, sae, representation):
`pure_concepts` (the one definition), `n_concepts_purity10_ge_09` and `n_concepts_purity10_ge_08` (the columns of
concept_summary.csv). The SAE's `pure_concepts` equals the row's in sae_fidelity.csv (same seed, same codes).
"""
import argparse
import dataclasses
import os
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
os.chdir(NOTEBOOKS)
sys.path.insert(0, str(NOTEBOOKS))

from ipynb.fs.defs.artifacts import load_recommender, record_provenance  # noqa: E402
from ipynb.fs.defs.concepts import concept_items, representation_codes, representation_rows  # noqa: E402
from ipynb.fs.defs.data_processing import load_dataset  # noqa: E402
from ipynb.fs.defs.evaluation import main_concepts, representation_tables  # noqa: E402
from ipynb.fs.defs.experiments import sae_runs, split_of  # noqa: E402
from ipynb.fs.defs.sae import SAE  # noqa: E402
from ipynb.fs.defs.sae_training import train_sae  # noqa: E402
from ipynb.fs.defs.utils import Paths, merge_rows  # noqa: E402

COLUMNS = ("model", "sae", "representation", "encoder", "seed", "n_units", "n_main_concepts", "pure_concepts",
           "n_concepts_purity10_ge_09", "n_concepts_purity10_ge_08")


def concept_rows(dataset: str, recommender: str, runs: list[str]) -> list[dict]:
    """Train the rows `runs` of one recommender and count their concepts (SAE and controls)."""
    ds = load_dataset(dataset)
    split = split_of(ds, recommender)
    model, _ = load_recommender(dataset, recommender, split=split, device="cpu")
    tables = representation_tables(model, split, ds, device="cpu")
    configs = dict(sae_runs(dataset, recommender, tables.users.shape[1]))
    unknown = [r for r in runs if r not in configs]
    if unknown:
        raise ValueError(f"{dataset} {recommender}: no sae_fidelity rows {unknown}; valid: {list(configs)}")
    _, family = main_concepts(ds)
    supported = concept_items(ds)
    vectors = tables.items.detach().double().cpu().numpy()
    log_pop = ds.items["log_popularity"].to_numpy()
    trained: dict = {}
    out = []
    for name in runs:
        cfg = configs[name]
        key = repr(dataclasses.replace(cfg, encoder="linear"))  # the encoder is an inference option
        if key not in trained:
            trained[key] = train_sae(dataclasses.replace(cfg, encoder="linear"), tables, progress=False)[0]
        sae = SAE(cfg)
        sae.load_state_dict(trained[key].state_dict())
        sae.eval()
        for rep, codes in representation_codes(sae, tables, seed=0).items():
            _, summary, _ = representation_rows(recommender, rep, codes, ds.item_concepts, family, log_pop, vectors,
                                                cfg.prefixes, items=supported)
            out.append({"sae": name, "encoder": cfg.encoder, "seed": cfg.seed, **summary})
        print(f"{dataset} {recommender} {name}: " + ", ".join(
            f"{r['representation']} {r['pure_concepts']}/{r['n_concepts_purity10_ge_08']}" for r in out[-5:])
            + "  (pure_concepts / purity@10 >= 0.8)", flush=True)
    return out


def main() -> None:
    """Parse dataset:recommender and --runs, count, merge into res_csv/<dataset>/sae_concepts.csv."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", help="dataset:recommender, e.g. lastfm:mf")
    parser.add_argument("--runs", required=True, help="comma-separated sae_fidelity row names")
    args = parser.parse_args()
    dataset, recommender = args.target.split(":")
    rows = concept_rows(dataset, recommender, args.runs.split(","))
    merge_rows(Paths.of(None).results / dataset / "sae_concepts.csv", rows, ["model", "sae", "representation"],
               COLUMNS, sort_by=["model", "sae"])
    record_provenance(dataset, ["sae_concepts.csv"], [recommender])


if __name__ == "__main__":
    main()
