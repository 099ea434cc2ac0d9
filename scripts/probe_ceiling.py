"""The linear-probe ceiling of pure concepts per recommender (issue 11): res_csv/<dataset>/probe_ceiling.csv.

    MONOSEMREC_DATA_DIR=... MONOSEMREC_OFFLINE=1 python scripts/probe_ceiling.py [dataset] [recommender ...]

For each recommender (default: ml-1m mf ncf) and each SAE input of it (the recommender's item rows; for NCF also its
first-layer item rows `W_i q_i`, SAE kind `layer1`), `concepts.linear_probe_ceiling` on the items: per concept a
5-fold cross-fitted logistic-regression probe, its scores read as units by `count_pure_concepts` (the one definition
of a pure concept), and the number of concepts whose own probe's top-10 items are >= 90 % that concept.
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

from ipynb.fs.defs.artifacts import SAE_INPUTS, ArtifactName, load_recommender, record_provenance, sae_input  # noqa: E402
from ipynb.fs.defs.concepts import PROBE_FOLDS, linear_probe_ceiling  # noqa: E402
from ipynb.fs.defs.data_processing import load_dataset  # noqa: E402
from ipynb.fs.defs.evaluation import main_concepts  # noqa: E402
from ipynb.fs.defs.experiments import split_of  # noqa: E402
from ipynb.fs.defs.utils import Paths, merge_rows  # noqa: E402

COLUMNS = ("model", "input", "concept_family", "n_concepts", "probe_pure_concepts", "probe_purity10_ge_09", "folds",
           "seed")


def main() -> None:
    """Compute and merge the ceiling rows; print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", nargs="?", default="ml-1m")
    parser.add_argument("recommenders", nargs="*", default=["mf", "ncf"])
    args = parser.parse_args()
    ds = load_dataset(args.dataset)
    concepts, family = main_concepts(ds)
    rows = []
    for rec in args.recommenders:
        model, _ = load_recommender(args.dataset, rec, split=split_of(ds, rec))
        kinds = [""] + [k for k, (fam, _) in SAE_INPUTS.items() if ArtifactName.parse(rec).family == fam]
        for kind in kinds:
            with torch.no_grad():
                items = sae_input(model, kind).item_repr().double().numpy()
            ceiling = linear_probe_ceiling(items, concepts)
            rows.append({"model": rec, "input": kind or "embedding", "concept_family": family,
                         "n_concepts": concepts.shape[1], "probe_pure_concepts": ceiling["pure_concepts"],
                         "probe_purity10_ge_09": ceiling["purity10_ge_09"], "folds": PROBE_FOLDS, "seed": 0})
            print(rows[-1], flush=True)
    merge_rows(Paths.of(None).results / args.dataset / "probe_ceiling.csv", rows, ["model", "input"], COLUMNS)
    record_provenance(args.dataset, ["probe_ceiling.csv"], args.recommenders)


if __name__ == "__main__":
    main()
