#!/usr/bin/env python
"""Scaling benchmark: the suite's stage list on synthetic data at multiples of ML-1M's size.

For each scale s (default 1, 4, 16) the data have round(6040 s) users and round(3706 s) items (at least 100 each);
each user draws a number of items from a log-normal with ML-1M's mean (165.6) and a floor of 20 (at most half the
items), each draw with Zipf popularity (p(rank r) ∝ r^-1, seed 0), and repeated (user, item) pairs are dropped, so
a scale holds about 0.6 s million distinct pairs (599,421 at 1x: fewer than ML-1M's 1,000,209, because popular
items are drawn repeatedly); every item gets 1-3 of 18 random `genre:` concepts (labels carry no signal: this is a
timing run). Stages, each
timed in wall seconds and in CPU seconds of the process (time.process_time: on a shared machine the CPU time is
what the work costs, the wall time what the load made of it), with the peak RSS of the process during it (every
scale runs in its own subprocess, so RSS is per scale):

  load        build_dataset on the raw pairs (indexing, metadata, popularity, interaction_fingerprint) + concepts
  split       leave_one_out(random, seed 0)
  mf_train    train_recommender on ML-1M's tuned MF config (dim 64, full softmax, batch 128) for --epochs epochs
              (no early stop), per-epoch full-ranking validation included, exactly as the training notebook runs it
  mf_epoch    the median training pass of one epoch of mf_train, without its validation (timed inside mf_train)
  mf_valid    the median per-epoch validation of mf_train (timed inside mf_train)
  als_train   train_recommender on preset('mf', 'als') (dim 64, implicit-feedback ALS) for --als-sweeps sweeps
              (no early stop; validation every second sweep and after the last, as the preset does)
  als_epoch   the median ALS sweep of als_train, without validation
  als_valid   the median validation of als_train
  eval_full   model_ranks on the test stage, full ranking over all non-history items (of the ALS model when
              als_train ran, else of the softmax MF; the cost does not depend on the weights)
  batched_matmul  the peer of eval_full: the bare (block x 64) @ (64 x n_items) products of the same user blocks
  sae         representation_tables + train_sae (the default SAE preset with a fixed number of --sae-steps)
  concepts    concepts.analyze_model: the SAE and its four controls against every item concept

Writes res_csv/benchmarks_scaling.csv (scale, n_users, n_items, n_interactions, stage, seconds, cpu_seconds, peak_rss_mb;
rows of scales not run now are kept) and, with --plot, docs/benchmarks_scaling.png and the per-stage growth
exponent (least-squares slope of log seconds on log n_interactions over the scales in the CSV).

Usage:
  python scripts/benchmark_scaling.py                          # scales 1 4 16, 2 MF epochs, 300 SAE steps
  python scripts/benchmark_scaling.py --scales 0.01 --no-write # the smoke run of the tests (seconds)
  python scripts/benchmark_scaling.py --plot-only              # redraw the plot and print the exponents
Absolute times are for whatever machine runs it; the committed CSV says where it came from in the README.
"""

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ML1M = {"n_users": 6040, "n_items": 3706, "n_interactions": 1_000_209}
ML1M_MIN_PER_USER = 20
COLUMNS = ["scale", "n_users", "n_items", "n_interactions", "stage", "seconds", "cpu_seconds", "peak_rss_mb"]
STAGES = ["load", "split", "mf_train", "mf_epoch", "mf_valid", "als_train", "als_epoch", "als_valid", "eval_full",
          "batched_matmul", "sae", "concepts"]
TRAINERS = ("softmax", "als")  # the MF trainers timed (stages mf_* and als_*)
PARTS = ("mf_epoch", "mf_valid", "als_epoch", "als_valid", "batched_matmul")  # parts of other stages, or peers
N_GENRES = 18


def _use_notebooks() -> None:
    """Make the notebooks importable (ipynb.fs.defs.*) in this process; done lazily, so that the parent process,
    which only starts one subprocess per scale, never imports torch."""
    if str(ROOT / "notebooks") not in sys.path:
        sys.path.insert(0, str(ROOT / "notebooks"))
    os.environ.setdefault("MONOSEMREC_ROOT", str(ROOT))


def _peak_memory():
    """benchmark_recommenders' PeakMemory (the RSS sampler: one copy)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from benchmark_recommenders import PeakMemory

    return PeakMemory()


def synthetic_raw(scale: float, seed: int = 0):
    """(raw pairs DataFrame, items metadata DataFrame) of the synthetic data at `scale` x ML-1M (see the docstring)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    n_users = max(100, round(ML1M["n_users"] * scale))
    n_items = max(100, round(ML1M["n_items"] * scale))
    mean = ML1M["n_interactions"] / ML1M["n_users"]
    sigma = 1.0
    mu = np.log(mean - ML1M_MIN_PER_USER) - sigma ** 2 / 2  # E[floor + lognormal] = ML-1M's mean
    per_user = np.minimum(ML1M_MIN_PER_USER + rng.lognormal(mu, sigma, n_users).astype(np.int64), n_items // 2)
    weights = 1.0 / np.arange(1, n_items + 1)
    cdf = np.cumsum(weights) / weights.sum()
    item_of_rank = rng.permutation(n_items)
    users = np.repeat(np.arange(n_users, dtype=np.int64), per_user)
    items = item_of_rank[np.minimum(np.searchsorted(cdf, rng.random(len(users))), n_items - 1)].astype(np.int64)
    keys = np.sort(users * n_items + items)
    keys = keys[np.r_[True, keys[1:] != keys[:-1]]]  # drop duplicate pairs
    raw = pd.DataFrame({"user_id": keys // n_items, "item_id": keys % n_items})
    genres = np.zeros((n_items, N_GENRES), dtype=np.int8)
    for extra in range(3):
        chosen = rng.integers(0, N_GENRES, n_items)
        keep = np.ones(n_items, bool) if extra == 0 else rng.random(n_items) < 0.4
        genres[np.flatnonzero(keep), chosen[keep]] = 1
    items_meta = pd.DataFrame(genres, columns=[f"genre:g{g:02d}" for g in range(N_GENRES)], index=np.arange(n_items))
    items_meta.insert(0, "title", [f"item {i}" for i in range(n_items)])
    return raw, items_meta


def run_scale(scale: float, epochs: int, sae_steps: int, threads: int, als_sweeps: int = 15,
              trainers=TRAINERS) -> list[dict]:
    """Every stage at one scale in this process (MF trained by each of `trainers`); returns the CSV rows."""
    _use_notebooks()
    import numpy as np
    import torch
    from ipynb.fs.defs import training as training_nb
    from ipynb.fs.defs.concepts import Analysis, analyze_model
    from ipynb.fs.defs.data_processing import build_dataset, leave_one_out, popularity_concepts
    from ipynb.fs.defs.evaluation import (
        block_rows,
        make_eval_set,
        model_ranks,
        representation_tables,
        sae_codes,
    )
    from ipynb.fs.defs.experiments import recommender_config
    from ipynb.fs.defs.models import preset
    from ipynb.fs.defs.sae import sae_preset
    from ipynb.fs.defs.sae_training import train_sae

    torch.set_num_threads(threads)
    raw, items_meta = synthetic_raw(scale)
    rows, sizes = [], {}

    def stage(name, fn):
        with _peak_memory() as mem:
            start, cpu = time.perf_counter(), time.process_time()
            out = fn()
            seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
        rows.append({"stage": name, "seconds": round(seconds, 4), "cpu_seconds": round(cpu_seconds, 4),
                     "peak_rss_mb": round(mem.peak_mb, 1)})
        print(f"scale {scale:g} {name:10s} {seconds:9.2f} s ({cpu_seconds:9.2f} CPU-s)  peak RSS {mem.peak_mb:8.1f} MB",
              flush=True)
        return out

    def load(raw):
        ds = build_dataset("synthetic-scaling", raw, items_meta[["title"]], None, {"source": f"scale {scale}"})
        genre_cols = [c for c in items_meta.columns if c.startswith("genre:")]
        concepts = items_meta.loc[ds.item_ids, genre_cols].reset_index(drop=True)
        ds.item_concepts = concepts.join(popularity_concepts(ds.items["popularity"].to_numpy()))
        return ds

    ds = stage("load", lambda: load(raw))
    raw = None  # free the raw pairs before the later stages
    sizes = {"n_users": ds.n_users, "n_items": ds.n_items, "n_interactions": len(ds.interactions)}
    split = stage("split", lambda: leave_one_out(ds, "random", seed=0))
    def train(prefix, config):
        """Stages <prefix>_train, <prefix>_epoch, <prefix>_valid: train_recommender with each epoch timed."""
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, threads=threads))
        timings = {"epoch": [], "valid": []}  # (wall, CPU) seconds of each epoch's training pass and validation

        def timed(kind, fn):
            def wrapper(*args, **kwargs):
                start, cpu = time.perf_counter(), time.process_time()
                out = fn(*args, **kwargs)
                timings[kind].append((time.perf_counter() - start, time.process_time() - cpu))
                return out
            return wrapper

        originals = training_nb._train_epoch, training_nb.evaluate
        training_nb._train_epoch, training_nb.evaluate = timed("epoch", originals[0]), timed("valid", originals[1])
        try:
            model, _ = stage(f"{prefix}_train", lambda: training_nb.train_recommender(
                config, split, device="cpu", progress=False, patience=0, valid_protocol="full"))
        finally:
            training_nb._train_epoch, training_nb.evaluate = originals
        peak = rows[-1]["peak_rss_mb"]
        for kind in ("epoch", "valid"):
            wall, cpu = np.median(np.array(timings[kind]), axis=0)
            rows.append({"stage": f"{prefix}_{kind}", "seconds": round(float(wall), 4),
                         "cpu_seconds": round(float(cpu), 4), "peak_rss_mb": peak})
        print(f"scale {scale:g} {prefix}: (wall, CPU) seconds of each epoch's training pass: "
              f"{np.round(timings['epoch'], 2).tolist()}; of its validations: {np.round(timings['valid'], 2).tolist()}",
              flush=True)
        return model

    unknown = set(trainers) - set(TRAINERS)
    if unknown or not trainers:
        raise ValueError(f"trainers must be a non-empty subset of {TRAINERS}, got {list(trainers)}")
    model = None
    if "softmax" in trainers:
        model = train("mf", recommender_config("mf", "ml-1m", ds.n_users, ds.n_items, epochs=epochs))
    if "als" in trainers:
        als = preset("mf", "als", ds.n_users, ds.n_items)
        model = train("als", dataclasses.replace(als, train=dataclasses.replace(als.train, epochs=als_sweeps)))
    ev = make_eval_set(split, "test", ("full",))
    stage("eval_full", lambda: model_ranks(model, ev, "full", "cpu"))

    def batched_matmul():
        """The bare products of eval_full's user blocks with the item table, nothing kept."""
        with torch.inference_mode():
            users, items_t = model.user_repr(torch.as_tensor(ev.users)), model.item_repr().T
            block = block_rows(model.n_items)
            for start in range(0, len(users), block):
                torch.matmul(users[start:start + block], items_t)

    stage("batched_matmul", batched_matmul)

    def sae_stage():
        tables = representation_tables(model, split, ds, device="cpu")
        sae, _ = train_sae(sae_preset("default", model.repr_dim, steps=sae_steps), tables, progress=False)
        return tables, sae

    tables, sae = stage("sae", sae_stage)

    def concepts_stage():
        analysis = Analysis("synthetic-scaling", "mf", ds, split, model, {}, sae, tables,
                            sae_codes(sae, tables, "item"), sae_codes(sae, tables, "user"))
        return analyze_model(analysis, seed=0)

    stage("concepts", concepts_stage)
    return [{"scale": scale, **sizes, **r} for r in rows]


def fingerprint_check(scale: float) -> None:
    """Print the time of interaction_fingerprint and of its original row-wise np.unique definition on the same
    synthetic pairs at `scale`, and whether they agree (they must)."""
    import hashlib

    import numpy as np

    _use_notebooks()
    from ipynb.fs.defs.data_processing import interaction_fingerprint

    raw, _ = synthetic_raw(scale)
    users, items = raw["user_id"].to_numpy(), raw["item_id"].to_numpy()
    start = time.perf_counter()
    new = interaction_fingerprint(users, items)
    new_s = time.perf_counter() - start
    start = time.perf_counter()
    rows = np.unique(np.stack([users.astype(np.int64), items.astype(np.int64)], axis=1), axis=0)
    old = hashlib.sha256(np.ascontiguousarray(rows).tobytes()).hexdigest()[:16]
    old_s = time.perf_counter() - start
    print(f"scale {scale:g}, {len(raw):,} pairs: interaction_fingerprint {new_s:.2f} s, row-wise np.unique definition "
          f"{old_s:.2f} s ({old_s / new_s:.1f}x), same value: {new == old}")


def growth_exponents(table, column: str = "seconds"):
    """{stage: least-squares slope of log(column) on log(n_interactions)} over the scales in `table` (>= 2)."""
    import numpy as np

    out = {}
    for stage_name, group in table.groupby("stage", sort=False):
        group = group[group[column] > 0]
        if group["scale"].nunique() >= 2:
            out[stage_name] = float(np.polyfit(np.log(group["n_interactions"]), np.log(group[column]), 1)[0])
    return out


def markdown_table(table) -> str:
    """The README table: wall (CPU) seconds per stage and scale, both growth exponents, and each scale's peak RSS."""
    scales = sorted(table["scale"].unique())
    if "cpu_seconds" not in table or table["cpu_seconds"].isna().any():  # rows written before cpu_seconds existed
        table = table.assign(cpu_seconds=float("nan"))
    wall, cpu = growth_exponents(table), growth_exponents(table, "cpu_seconds")
    size = table.drop_duplicates("scale").set_index("scale")
    head = [f"{s:g}x ({size.loc[s, 'n_users']:,} users, {size.loc[s, 'n_items']:,} items, "
            f"{size.loc[s, 'n_interactions']:,} pairs)" for s in scales]
    lines = ["| stage: wall s (CPU s) | " + " | ".join(head) + " | growth exponent wall (CPU) |",
             "|---" * (len(scales) + 2) + "|"]
    for stage_name in [s for s in STAGES if s in set(table["stage"])]:
        rows = table[table["stage"] == stage_name].set_index("scale")
        cells = [f"{rows.loc[s, 'seconds']:.2f} ({rows.loc[s, 'cpu_seconds']:.2f})" if s in rows.index else "—"
                 for s in scales]
        slope = f"{wall[stage_name]:.2f} ({cpu.get(stage_name, float('nan')):.2f})" if stage_name in wall else "—"
        lines.append(f"| {stage_name} | " + " | ".join(cells) + f" | {slope} |")
    peak = table.groupby("scale")["peak_rss_mb"].max()
    for trainer, other in (("mf", "als"), ("als", "mf")):  # the stage list with one MF trainer each
        if f"{trainer}_train" not in set(table["stage"]):
            continue
        keep = ~table["stage"].isin(PARTS) & ~table["stage"].str.startswith(f"{other}_")
        total = table[keep].groupby("scale")[["seconds", "cpu_seconds"]].sum()
        name = "softmax MF" if trainer == "mf" else "ALS MF"
        lines.append(f"| all stages, {name} | " + " | ".join(
            f"{total.loc[s, 'seconds']:.0f} ({total.loc[s, 'cpu_seconds']:.0f})" for s in scales) + " | |")
    lines.append("| peak RSS | " + " | ".join(f"{peak[s] / 1024:.2f} GB" for s in scales) + " | |")
    return "\n".join(lines)


def plot(table, path: Path) -> None:
    """Log-log plot of CPU seconds against interactions per stage, with the fitted exponents in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    column = "cpu_seconds" if "cpu_seconds" in table and table["cpu_seconds"].notna().all() else "seconds"
    slopes = growth_exponents(table, column)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for stage_name in [s for s in STAGES if s in set(table["stage"])]:
        group = table[table["stage"] == stage_name].sort_values("n_interactions")
        label = f"{stage_name} (slope {slopes[stage_name]:.2f})" if stage_name in slopes else stage_name
        ax.loglog(group["n_interactions"], group[column], marker="o", label=label)
    ax.set_xlabel("distinct (user, item) pairs (synthetic, 1x / 4x / 16x ML-1M users and items)")
    ax.set_ylabel("CPU seconds (1 thread)" if column == "cpu_seconds" else "wall seconds (1 thread)")
    ax.set_title("Stage cost vs data size (log-log)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", nargs="+", type=float, default=[1, 4, 16])
    parser.add_argument("--epochs", type=int, default=2, help="softmax MF epochs (fixed, no early stop)")
    parser.add_argument("--als-sweeps", type=int, default=15, help="ALS sweeps (fixed, no early stop; implicit's 15)")
    parser.add_argument("--trainers", nargs="+", default=list(TRAINERS), choices=TRAINERS,
                        help="MF trainers to time (default both)")
    parser.add_argument("--sae-steps", type=int, default=300, help="SAE optimiser steps (fixed)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per scale")
    parser.add_argument("--out", default=str(ROOT / "res_csv" / "benchmarks_scaling.csv"))
    parser.add_argument("--plot", default=str(ROOT / "docs" / "benchmarks_scaling.png"))
    parser.add_argument("--no-write", action="store_true", help="print only (no CSV, no plot)")
    parser.add_argument("--plot-only", action="store_true", help="redraw the plot from the CSV")
    parser.add_argument("--fingerprint-check", type=float, default=None, metavar="SCALE",
                        help="only time interaction_fingerprint against its row-wise definition at SCALE")
    parser.add_argument("--one-scale", type=float, default=None, help=argparse.SUPPRESS)  # the subprocess entry
    args = parser.parse_args(argv)
    if args.fingerprint_check is not None:
        fingerprint_check(args.fingerprint_check)
        return None
    if args.one_scale is not None:
        print("ROWS " + json.dumps(run_scale(args.one_scale, args.epochs, args.sae_steps, args.threads,
                                             args.als_sweeps, tuple(args.trainers))), flush=True)
        return None
    import pandas as pd

    out = Path(args.out)
    if not args.plot_only:
        rows = []
        for scale in args.scales:
            cmd = [sys.executable, __file__, "--one-scale", str(scale), "--epochs", str(args.epochs),
                   "--sae-steps", str(args.sae_steps), "--threads", str(args.threads),
                   "--als-sweeps", str(args.als_sweeps), "--trainers", *args.trainers]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            sys.stdout.write("".join(line + "\n" for line in proc.stdout.splitlines() if not line.startswith("ROWS ")))
            if proc.returncode != 0:
                sys.stderr.write(proc.stderr[-4000:])
                raise SystemExit(f"scale {scale:g} failed (exit {proc.returncode}); rows of earlier scales: "
                                 f"{'kept in ' + str(out) if rows and not args.no_write else 'not written'}")
            rows += json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("ROWS "))[5:])
            if not args.no_write:  # after every scale, so a failure at a larger scale keeps the smaller ones
                new = pd.DataFrame(rows, columns=COLUMNS)
                old = pd.read_csv(out) if out.is_file() else new.iloc[:0]
                table = pd.concat([old[~old["scale"].isin(new["scale"])], new], ignore_index=True)
                table = table.sort_values(["scale", "stage"], key=lambda s: s.map(STAGES.index) if s.name == "stage"
                                          else s, kind="mergesort")
                out.parent.mkdir(parents=True, exist_ok=True)
                tmp = out.with_suffix(".tmp")
                table.to_csv(tmp, index=False)
                os.replace(tmp, out)
        table = pd.DataFrame(rows, columns=COLUMNS)
        if not args.no_write:
            table = pd.read_csv(out)
    else:
        table = pd.read_csv(out)
    print(table.to_string(index=False))
    slopes = growth_exponents(table)
    if slopes:
        print("growth exponent (log-log slope of wall seconds on interactions):",
              ", ".join(f"{k} {v:.2f}" for k, v in slopes.items()))
        if "cpu_seconds" in table:
            print("growth exponent of CPU seconds:",
                  ", ".join(f"{k} {v:.2f}" for k, v in growth_exponents(table, "cpu_seconds").items()))
    print()
    print(markdown_table(table))
    if not args.no_write:
        plot(table, Path(args.plot))
        print(f"wrote {out} and {args.plot}")
    return table


if __name__ == "__main__":
    main()
