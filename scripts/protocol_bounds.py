"""How much top-30 fidelity a rank-r linear reconstruction keeps, under our protocol and the anchor paper's (issue 11).

    MONOSEMREC_DATA_DIR=... MONOSEMREC_OFFLINE=1 python scripts/protocol_bounds.py [dataset] [recommender ...]

For each recommender (default: ml-1m mf_paper ncf_paper mf ncf) and protocol (`evaluation.FIDELITY_PROTOCOLS`), the
user and item rows are replaced by their projection on the top-r principal components of that side's training rows
(no sparsity: every row keeps r coordinates), r in RANKS and r = d (the identity: the protocol's maximum), and scored
by `evaluation.sae_ranking_fidelity` exactly like an SAE. An SAE whose rows use r atoms is not bounded by this (each
row may use different atoms), but it shows how much of the paper's number a protocol gives to any r-dimensional
reconstruction. Writes res_csv/<dataset>/protocol_bounds.csv.
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
from ipynb.fs.defs.data_processing import load_dataset  # noqa: E402
from ipynb.fs.defs.evaluation import FIDELITY_PROTOCOLS, protocol_tables, sae_ranking_fidelity  # noqa: E402
from ipynb.fs.defs.experiments import split_of  # noqa: E402
from ipynb.fs.defs.utils import Paths, merge_rows  # noqa: E402

RANKS = (4, 8, 11, 16)  # 11: about the L0 of the paper preset's SAE (22 neurons)
COLUMNS = ("model", "protocol", "reconstruction", "rank", "dim", "fve_users", "fve_items", "rbo_ext_at_20",
           "rbo_trunc_at_30", "tau_b_union_at_30", "heldout_users", "heldout_items")


class PCAProjection(torch.nn.Module):
    """A stand-in SAE: each side's rows projected on the top-r principal components of its training rows."""

    def __init__(self, tables, rank: int):
        super().__init__()
        self.basis, self.mean = {}, {}
        for side, x in (("user", tables.users[tables.train_rows]), ("item", tables.items[tables.train_items])):
            self.mean[side] = x.mean(0)
            self.basis[side] = torch.linalg.svd(x - self.mean[side], full_matrices=False).Vh[:rank].T

    def encode(self, x: torch.Tensor, side: str) -> torch.Tensor:
        """Coefficients on the basis, both signs (so that dead_frac_all reads them as units)."""
        c = (x - self.mean[side]) @ self.basis[side]
        return torch.cat([c.clamp_min(0), (-c).clamp_min(0)], dim=1)

    def forward(self, x: torch.Tensor, side: str):
        """(projection, codes)."""
        c = (x - self.mean[side]) @ self.basis[side]
        return self.mean[side] + c @ self.basis[side].T, self.encode(x, side)


def main() -> None:
    """Compute and merge the rows; print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", nargs="?", default="ml-1m")
    parser.add_argument("recommenders", nargs="*", default=["ncf_paper", "mf_paper", "ncf", "mf"])
    args = parser.parse_args()
    ds = load_dataset(args.dataset)
    out = Paths.of(None).results / args.dataset / "protocol_bounds.csv"
    for rec in args.recommenders:
        split = split_of(ds, rec)
        model, _ = load_recommender(args.dataset, rec, split=split)
        for protocol in FIDELITY_PROTOCOLS:
            tables = protocol_tables(model, split, ds, protocol)
            d = tables.users.shape[1]
            rows = []
            for rank in [r for r in RANKS if r < d] + [d]:
                with torch.no_grad():
                    got = sae_ranking_fidelity(PCAProjection(tables, rank), tables, split, protocol)
                rows.append({"model": rec, "protocol": protocol, "reconstruction": "identity" if rank == d else "pca",
                             "rank": rank, "dim": d, **{k: got[k] for k in COLUMNS if k in got}})
                print(rows[-1], flush=True)
            merge_rows(out, rows, ["model", "protocol", "rank"], COLUMNS)
        record_provenance(args.dataset, [out.name], [rec])


if __name__ == "__main__":
    main()
