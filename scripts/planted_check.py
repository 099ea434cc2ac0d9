#!/usr/bin/env python
"""Planted-concept check (issue 4): train a recommender and an SAE on synthetic data with planted concepts and
report, per concept, the best cosine between its direction and a decoder row (recovered when >= 0.9).

    python scripts/planted_check.py                 # -> res_csv/synthetic/planted_recovery.csv
    python scripts/planted_check.py --concepts 12 --seeds 0 1 2
    python scripts/planted_check.py --presets default recipe   # -> res_csv/synthetic/planted_recovery_presets.csv
    python scripts/planted_check.py --presets adaptive --embeddings planted --seeds 0 1 2

--presets runs the shipped SAE presets, unchanged, on the harder planted data of data_processing.make_planted
(Zipf-frequent concepts, correlated pairs, 1-3 concepts per item, users liking 2-4 concepts; MF dim 48, 40
concepts) and on variations of it (dimension 32 / 64, 20 / 60 concepts, 1-2 / 2-4 concepts per item): the
issue-11 check that the default preset recovers >= 90 % of planted directions without being told their number.
Each scenario comes with two kinds of representations (--embeddings): 'mf', those of an MF trained on the data,
and 'planted', set directly (no training) to sparse non-negative combinations of known random unit concept
directions plus noise (`planted_embeddings`): items by their concepts, users by the concepts they like. On 'mf'
the concept directions are whatever the MF learned (only half of its item variance is linear in the concepts);
on 'planted' they are known to be sparse directions of the data, so a miss there is the SAE's. Rows are merged
into the CSV (same scenario, embeddings, preset, seed: replaced), so runs of different presets add up.

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

import itertools  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from ipynb.fs.defs.data_processing import leave_one_out, make_planted, make_synthetic  # noqa: E402
from ipynb.fs.defs.evaluation import planted_recovery, representation_tables  # noqa: E402
from ipynb.fs.defs.models import MF, MFConfig, TrainConfig  # noqa: E402
from ipynb.fs.defs.sae import SAEConfig, sae_preset  # noqa: E402
from ipynb.fs.defs.sae_training import train_sae  # noqa: E402
from ipynb.fs.defs.training import train_recommender  # noqa: E402
from ipynb.fs.defs.utils import merge_rows, results_dir, write_csv  # noqa: E402

DATA_SIZED = "data_sized"  # a control preset name: an SAE sized to the planted truth
EMBEDDINGS = ("mf", "planted")
PRESET_COLUMNS = ("scenario", "embeddings", "preset", "seed", "mf_dim", "n_concepts", "concepts_per_item", "sae_neurons",
                  "sae_k", "recovered_share", "median_best_cosine", "l0_items", "concept_r2", "mf_valid_ndcg_at_10",
                  "train_seconds")
PLANTED_NOISE = 0.5  # 'planted' embeddings: rms norm of the isotropic noise added to each row (a concept has norm 1)
# (name, make_planted arguments, MF dimension): the base scenario and one change at a time
SCENARIOS = [("base", {}, 48), ("dim32", {}, 32), ("dim64", {}, 64), ("concepts20", {"n_concepts": 20}, 48),
             ("concepts60", {"n_concepts": 60}, 48), ("per_item_1_2", {"concepts_per_item": (1, 2)}, 48),
             ("per_item_2_4", {"concepts_per_item": (2, 4)}, 48)]


def concept_r2(tables, concept_table) -> float:
    """R² of the least-squares fit of the item representations on the concept indicators (+ intercept): the share
    of item variance the planted directions explain (planted_recovery's directions are this fit's coefficients)."""
    c = torch.as_tensor(np.asarray(concept_table, dtype=np.float32))
    design = torch.cat([c, torch.ones(len(c), 1)], dim=1)
    x = tables.items.detach().cpu()
    fit = design @ torch.linalg.lstsq(design, x).solution
    return float(1 - (x - fit).pow(2).sum() / (x - x.mean(0)).pow(2).sum())


def mf_on(ds, dim: int, seed: int):
    """An MF (softmax CE) trained on the random split of `ds`: (model, split, history)."""
    split = leave_one_out(ds, "random", seed=seed)
    config = MFConfig(n_users=ds.n_users, n_items=ds.n_items, dim=dim,
                      train=TrainConfig(loss="softmax_ce", n_negatives=0, lr=1e-2, l2=1e-2, epochs=30, patience=5,
                                        batch_size=64, seed=seed))
    model, history = train_recommender(config, split, progress=False)
    return model, split, history


def planted_embeddings(ds, dim: int, seed: int, noise: float = PLANTED_NOISE):
    """An MF (no training) whose representations are planted: row = sum over its concepts of a uniform(0.5, 1.5)
    weight times that concept's random unit direction in R^dim, plus isotropic noise of rms norm `noise`."""
    gen = torch.Generator().manual_seed(10_000 + seed)
    directions = torch.nn.functional.normalize(torch.randn(ds.item_concepts.shape[1], dim, generator=gen), dim=1)
    model = MF(MFConfig(n_users=ds.n_users, n_items=ds.n_items, dim=dim))
    with torch.no_grad():
        for table, concepts in ((model.item_emb.weight, ds.item_concepts), (model.user_emb.weight, ds.user_concepts)):
            c = torch.as_tensor(concepts.to_numpy().astype(np.float32))
            weights = c * (0.5 + torch.rand(c.shape, generator=gen))
            table.copy_(weights @ directions + noise * torch.randn(len(c), dim, generator=gen) / dim ** 0.5)
    return model


def merge_preset_rows(rows: list[dict], out: Path) -> None:
    """Merge rows into the presets CSV `out` (same scenario, embeddings, preset, seed: replaced)."""
    if out.is_file():  # rows written before the 'embeddings' column are MF rows
        old = pd.read_csv(out)
        if "embeddings" not in old.columns:
            write_csv(old.assign(embeddings="mf"), out, sort_by=["preset", "scenario", "seed"])
    merge_rows(out, rows, ["scenario", "embeddings", "preset", "seed"], PRESET_COLUMNS,
               sort_by=["preset", "embeddings", "scenario", "seed"])


def preset_rows(presets, seeds, scenarios=SCENARIOS, embeddings=("mf",), out: Path | None = None) -> list[dict]:
    """Planted recovery of each shipped SAE preset (unchanged) on every scenario, kind of embeddings and seed;
    with `out`, each row is merged into that CSV as soon as it is measured."""
    rows = []
    for (name, kwargs, dim), kind, seed in itertools.product(scenarios, embeddings, seeds):
        ds = make_planted(seed=seed, **kwargs)
        if kind == "mf":
            model, split, history = mf_on(ds, dim, seed)
            ndcg = round(history.best_valid["ndcg_at_10"], 4)
        else:
            model, split, ndcg = planted_embeddings(ds, dim, seed), leave_one_out(ds, "random", seed=seed), np.nan
        tables = representation_tables(model, split, ds, seed=seed)
        for preset in presets:
            if preset == DATA_SIZED:  # the control that is told the answer: one neuron per concept, k = 3
                config = SAEConfig(input_dim=dim, n_neurons=ds.item_concepts.shape[1], activation="topk", k=3,
                                   lambda_pred=0.0, epochs=100, batch_size=64, lr=3e-3, seed=seed)
            else:
                config = sae_preset(preset, dim, "mf", seed=seed)
            start = time.perf_counter()
            sae, _ = train_sae(config, tables, progress=False)
            seconds = time.perf_counter() - start
            result = planted_recovery(sae, tables, ds.item_concepts)
            with torch.no_grad():
                codes = sae.encode(tables.items[tables.heldout_items], "item")
            rows.append({"scenario": name, "embeddings": kind, "preset": preset, "seed": seed, "mf_dim": dim,
                         "n_concepts": ds.item_concepts.shape[1], "sae_neurons": config.n_neurons, "sae_k": config.k,
                         "recovered_share": round(result["recovered_share"], 4),
                         "median_best_cosine": round(float(pd.Series(result["best_cosine"]).median()), 4),
                         "mf_valid_ndcg_at_10": ndcg, "concept_r2": round(concept_r2(tables, ds.item_concepts), 4),
                         "l0_items": round(float((codes != 0).sum(1).float().mean()), 3),
                         "concepts_per_item": round(float(ds.item_concepts.to_numpy().sum(1).mean()), 3),
                         "train_seconds": round(seconds, 1)})
            print(f"{name:13s} {kind:7s} seed {seed} {preset:8s}: {result['recovered_share']:.0%} of "
                  f"{ds.item_concepts.shape[1]} recovered (median cosine {rows[-1]['median_best_cosine']:.3f}, "
                  f"item L0 {rows[-1]['l0_items']:.1f}, concept R2 {rows[-1]['concept_r2']:.2f}) [{seconds:.0f} s]",
                  flush=True)
            if out is not None:
                merge_preset_rows(rows[-1:], out)
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
    ap.add_argument("--embeddings", nargs="+", default=["mf"], choices=EMBEDDINGS,
                    help="--presets: representations of a trained MF ('mf') and/or planted directly ('planted')")
    ap.add_argument("--out", default=None, help="--presets: merge the rows into this CSV instead")
    ap.add_argument("--scenarios", nargs="+", default=None, choices=[s[0] for s in SCENARIOS],
                    help="--presets: run only these scenarios (default all)")
    ap.add_argument("--presets", nargs="+", default=None,
                    help=f"SAE presets on the make_planted scenarios instead ('{DATA_SIZED}': the control told the answer)")
    args = ap.parse_args(argv)
    if args.presets:
        scenarios = [s for s in SCENARIOS if args.scenarios is None or s[0] in args.scenarios]
        out = None if args.no_write else (Path(args.out) if args.out else
                                          results_dir() / "synthetic" / "planted_recovery_presets.csv")
        table = pd.DataFrame(preset_rows(args.presets, args.seeds, scenarios, args.embeddings, out))
        print(table.groupby(["preset", "embeddings", "scenario"], sort=False)["recovered_share"].mean().to_string())
        if out is not None:
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
