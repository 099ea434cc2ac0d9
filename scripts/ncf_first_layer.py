"""How much NCF's users and items share at its first layer (issue 11): res_csv/<dataset>/ncf_first_layer.csv.

    MONOSEMREC_DATA_DIR=... MONOSEMREC_OFFLINE=1 python scripts/ncf_first_layer.py [dataset]

Prints and writes (1) the cosines of the principal angles between range(W_u) and range(W_i), the subspaces of the
first layer's h0-wide space that user rows W_u p_u + b (up to the shared bias) and item rows W_i q_i can reach
(cosine 1: a direction both sides use; 0: a direction only one side can reach); (2) for the checkpointed SAE
`sae_<ncf>_layer1`, how many neurons fire on users only, items only, both, or never (over all users and items).
"""
import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

torch.set_num_threads(1)
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
os.chdir(NOTEBOOKS)
sys.path.insert(0, str(NOTEBOOKS))

from ipynb.fs.defs.artifacts import ArtifactName, load_recommender, load_sae, record_provenance, sae_input  # noqa: E402
from ipynb.fs.defs.data_processing import load_dataset  # noqa: E402
from ipynb.fs.defs.experiments import split_of  # noqa: E402
from ipynb.fs.defs.utils import Paths, write_csv  # noqa: E402


def main() -> None:
    """Compute, print and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", nargs="?", default="ml-1m")
    parser.add_argument("recommender", nargs="?", default="ncf")
    args = parser.parse_args()
    ds = load_dataset(args.dataset)
    split = split_of(ds, args.recommender)
    model, meta = load_recommender(args.dataset, args.recommender, split=split)
    d = model.config.dim
    w = model.first.weight.detach().double().numpy()
    cosines = np.linalg.svd(np.linalg.qr(w[:, :d])[0].T @ np.linalg.qr(w[:, d:])[0], compute_uv=False)
    sae = load_sae(args.dataset, ArtifactName.parse(args.recommender).sae("layer1"), meta, split=split)
    view = sae_input(model, "layer1")
    with torch.no_grad():
        users = sae.encode(view.user_repr(torch.arange(split.n_users)), "user") != 0
        items = sae.encode(view.item_repr(), "item") != 0
    on_u, on_i = users.any(0).numpy(), items.any(0).numpy()
    row = {"model": args.recommender, "dim": d, "h0": w.shape[0],
           "principal_cosines": " ".join(f"{c:.3f}" for c in cosines),
           "n_cosines_ge_09": int((cosines >= 0.9).sum()), "n_cosines_le_02": int((cosines <= 0.2).sum()),
           "sae": str(ArtifactName.parse(args.recommender).sae("layer1")),
           "neurons_users_only": int((on_u & ~on_i).sum()), "neurons_items_only": int((~on_u & on_i).sum()),
           "neurons_both": int((on_u & on_i).sum()), "neurons_never": int((~on_u & ~on_i).sum())}
    print(row)
    write_csv(pd.DataFrame([row]), Paths.of(None).results / args.dataset / "ncf_first_layer.csv", sort_by=["model"])
    record_provenance(args.dataset, ["ncf_first_layer.csv"], [args.recommender, row["sae"]])


if __name__ == "__main__":
    main()
