"""Concept counts of sae_fidelity rows that have no checkpoint (recipe rows), against the same controls.

    cd notebooks && MONOSEMREC_DATA_DIR=... MONOSEMREC_OFFLINE=1 python ../scripts/sae_concepts.py lastfm:mf --runs recipe_k32,recipe_k32_pursuit

For each row: the row's config from experiments.sae_runs, trained by train_sae (one thread; the pursuit row of a
dictionary reuses the dictionary trained for its linear row), then the concepts notebook's `representation_rows`
for the SAE and every control (raw, PCA, rotation, untrained SAE of the row's config), on the supported items
(`concepts.concept_items`). Writes res_csv/<dataset>/sae_concepts.csv (one row per model, sae, representation):
`pure_concepts` (the one definition), `n_concepts_purity10_ge_09` and `n_concepts_purity10_ge_08` (the columns of
concept_summary.csv). The SAE's `pure_concepts` equals the row's in sae_fidelity.csv (same seed, same codes).
"""
import dataclasses
import os
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
os.chdir(NOTEBOOKS)
sys.path.insert(0, str(NOTEBOOKS))

from ipynb.fs.defs.concepts import concept_items, representation_codes, representation_rows  # noqa: E402
from ipynb.fs.defs.evaluation import main_concepts  # noqa: E402
from ipynb.fs.defs.sae import SAE  # noqa: E402
from ipynb.fs.defs.sae_training import measurement_cli, measurement_context, train_sae  # noqa: E402

COLUMNS = ("model", "sae", "representation", "encoder", "seed", "n_units", "n_main_concepts", "pure_concepts",
           "n_concepts_purity10_ge_09", "n_concepts_purity10_ge_08")


def concept_rows(dataset: str, recommender: str, runs: list[str]) -> list[dict]:
    """Train the rows `runs` of one recommender and count their concepts (SAE and controls)."""
    ds, _, tables, configs = measurement_context(dataset, recommender, runs)
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
    """Measure the named rows and merge them into res_csv/<dataset>/sae_concepts.csv (with provenance)."""
    measurement_cli(__doc__.splitlines()[0], "sae_concepts.csv", concept_rows, ["model", "sae", "representation"], COLUMNS)


if __name__ == "__main__":
    main()
