#!/usr/bin/env python
"""Planted-concept check (issue 4): train a recommender and an SAE on synthetic data with planted concepts and
report, per concept, the best cosine between its direction and a decoder row (recovered when >= 0.9).

    python scripts/planted_check.py                 # -> res_csv/synthetic/planted_recovery.csv
    python scripts/planted_check.py --concepts 12 --seeds 0 1 2
    python scripts/planted_check.py --presets default recipe   # -> res_csv/synthetic/planted_recovery_presets.csv

--presets runs the shipped SAE presets, unchanged, on the harder planted data of data_processing.make_planted
(Zipf-frequent concepts, correlated pairs, 1-3 concepts per item, users liking 2-4 concepts; MF dim 48, 40
concepts) and on variations of it (dimension 32 / 64, 20 / 60 concepts, 1-2 / 2-4 concepts per item): the
issue-11 check that the default preset recovers >= 90 % of planted directions without being told their number.

The concept direction is the least-squares coefficient of the item representations on the concept indicators
(training.planted_recovery). The recommender is an MF (softmax CE), the SAE a TopK SAE with lambda_pred = 0
(the check is about the dictionary, not the rankings); sizes are the arguments below.
"""
import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "notebooks"))
os.environ.setdefault("MONOSEMREC_ROOT", str(ROOT))

import pandas as pd  # noqa: E402
from ipynb.fs.defs.data_processing import leave_one_out, make_planted, make_synthetic  # noqa: E402
from ipynb.fs.defs.evaluation import planted_recovery, representation_tables  # noqa: E402
from ipynb.fs.defs.models import MFConfig, TrainConfig  # noqa: E402
from ipynb.fs.defs.sae import SAEConfig, sae_preset  # noqa: E402
from ipynb.fs.defs.sae_training import train_sae  # noqa: E402
from ipynb.fs.defs.training import train_recommender  # noqa: E402
from ipynb.fs.defs.utils import results_dir, write_csv  # noqa: E402

DATA_SIZED = "data_sized"  # a control preset name: an SAE sized to the planted truth
# (name, make_planted arguments, MF dimension): the base scenario and one change at a time
SCENARIOS = [("base", {}, 48), ("dim32", {}, 32), ("dim64", {}, 64), ("concepts20", {"n_concepts": 20}, 48),
             ("concepts60", {"n_concepts": 60}, 48), ("per_item_1_2", {"concepts_per_item": (1, 2)}, 48),
             ("per_item_2_4", {"concepts_per_item": (2, 4)}, 48)]


def mf_on(ds, dim: int, seed: int):
    """An MF (softmax CE) trained on the random split of `ds`: (model, split, history)."""
    split = leave_one_out(ds, "random", seed=seed)
    config = MFConfig(n_users=ds.n_users, n_items=ds.n_items, dim=dim,
                      train=TrainConfig(loss="softmax_ce", n_negatives=0, lr=1e-2, l2=1e-2, epochs=30, patience=5,
                                        batch_size=64, seed=seed))
    model, history = train_recommender(config, split, progress=False)
    return model, split, history


def preset_rows(presets, seeds, scenarios=SCENARIOS) -> list[dict]:
    """Planted recovery of each shipped SAE preset (unchanged) on every scenario and seed."""
    rows = []
    for name, kwargs, dim in scenarios:
        for seed in seeds:
            ds = make_planted(seed=seed, **kwargs)
            model, split, history = mf_on(ds, dim, seed)
            tables = representation_tables(model, split, ds, seed=seed)
            for preset in presets:
                if preset == DATA_SIZED:  # the control that is told the answer: one neuron per concept, k = 3
                    config = SAEConfig(input_dim=dim, n_neurons=ds.item_concepts.shape[1], activation="topk", k=3,
                                       lambda_pred=0.0, epochs=100, batch_size=64, lr=3e-3, seed=seed)
                else:
                    config = sae_preset(preset, dim, "mf", seed=seed)
                sae, _ = train_sae(config, tables, progress=False)
                result = planted_recovery(sae, tables, ds.item_concepts)
                rows.append({"scenario": name, "preset": preset, "seed": seed, "mf_dim": dim,
                             "n_concepts": ds.item_concepts.shape[1], "sae_neurons": config.n_neurons, "sae_k": config.k,
                             "recovered_share": round(result["recovered_share"], 4),
                             "median_best_cosine": round(float(pd.Series(result["best_cosine"]).median()), 4),
                             "mf_valid_ndcg_at_10": round(history.best_valid["ndcg_at_10"], 4)})
                print(f"{name:13s} seed {seed} {preset:8s}: {result['recovered_share']:.0%} of "
                      f"{ds.item_concepts.shape[1]} recovered (median cosine {rows[-1]['median_best_cosine']:.3f})",
                      flush=True)
    return rows


def main(argv=None) -> pd.DataFrame:
    """Run the check for every seed; print and write one row per (seed, concept)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--concepts", type=int, default=10)
    ap.add_argument("--per-user", type=int, default=30)
    ap.add_argument("--beta", type=float, default=5.0, help="preference strength of the planted concepts")
    ap.add_argument("--dim", type=int, default=32, help="MF dimension")
    ap.add_argument("--neurons", type=int, default=32)
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--sae-epochs", type=int, default=100)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--presets", nargs="+", default=None,
                    help=f"SAE presets on the make_planted scenarios instead ('{DATA_SIZED}': the control told the answer)")
    args = ap.parse_args(argv)
    if args.presets:
        table = pd.DataFrame(preset_rows(args.presets, args.seeds))
        print(table.groupby(["preset", "scenario"], sort=False)["recovered_share"].mean().to_string())
        if not args.no_write:
            out = results_dir() / "synthetic" / "planted_recovery_presets.csv"
            write_csv(table, out, sort_by=["preset", "scenario", "seed"])
            print(f"wrote {out}")
        return table
    rows = []
    for seed in args.seeds:
        ds = make_synthetic(n_users=args.users, n_items=args.items, n_concepts=args.concepts, per_user=args.per_user,
                            beta=args.beta, seed=seed)
        split = leave_one_out(ds, "random", seed=seed)
        config = MFConfig(n_users=ds.n_users, n_items=ds.n_items, dim=args.dim,
                          train=TrainConfig(loss="softmax_ce", n_negatives=0, lr=1e-2, l2=1e-2, epochs=30, patience=5,
                                            batch_size=64, seed=seed))
        model, history = train_recommender(config, split, progress=False)
        tables = representation_tables(model, split, ds, seed=seed)
        sae_config = SAEConfig(input_dim=args.dim, n_neurons=args.neurons, activation="topk", k=args.k,
                               lambda_pred=0.0, epochs=args.sae_epochs, batch_size=64, lr=3e-3, seed=seed)
        sae, _ = train_sae(sae_config, tables, progress=False)
        result = planted_recovery(sae, tables, ds.item_concepts)
        for concept, cosine in zip(ds.item_concepts.columns, result["best_cosine"], strict=True):
            rows.append({"seed": seed, "concept": concept, "best_cosine": round(float(cosine), 4),
                         "recovered": bool(cosine >= 0.9), "mf_valid_ndcg_at_10": history.best_valid["ndcg_at_10"],
                         "users": args.users, "items": args.items, "beta": args.beta, "mf_dim": args.dim,
                         "sae_neurons": args.neurons, "sae_k": args.k, "sae_epochs": args.sae_epochs})
        print(f"seed {seed}: {result['recovered_share']:.0%} of {args.concepts} planted concepts recovered "
              f"(best cosines {', '.join(f'{c:.3f}' for c in result['best_cosine'])})", flush=True)
    table = pd.DataFrame(rows)
    print(f"overall: {table['recovered'].mean():.1%} recovered over {len(args.seeds)} seed(s)")
    if not args.no_write:
        out = results_dir() / "synthetic" / "planted_recovery.csv"
        write_csv(table, out, sort_by=["seed", "concept"])
        print(f"wrote {out}")
    return table


if __name__ == "__main__":
    main()
