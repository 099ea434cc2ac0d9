#!/usr/bin/env python
"""Benchmark the recommenders on this machine: training time per model and dataset, and full-ranking
evaluation time next to its lower bounds. Prints a table and writes res_csv/benchmarks.csv (atomically).

Stages (one row each per dataset and checkpoint name):
  train             train_recommender with the checkpoint's own config (as the training notebook runs it,
                    per-epoch validation included); the model is NOT saved
  eval_full         ranking the held-out test item among all non-history items (training.model_ranks)
  eval_sampled      the same for the sampled protocol (held-out item + 99 negatives)
  score_grid_bound  the model's own user_repr + score_grid over all test users x all items, nothing else
                    (the bound for NCF, whose score is an MLP, and SASRec, whose user representation is a
                    Transformer pass over the user's sequence)
  matmul_bound      the bare (n_users x d) @ (d x n_items) matrix multiply (the bound for MF)
  train_sae         (with --sae) training the checkpointed SAE of the recommender (its first row in
                    experiments.sae_runs: the default SAE, or the paper preset for *_paper models), with the
                    committed recommender frozen; representation tables not included
Evaluation stages run on the committed checkpoint (or the freshly trained model with --no-checkpoints) and
report the best of --repeats runs; `note` gives eval_full's ratio to its bound.

Usage:
  python scripts/benchmark_recommenders.py                       # everything (trains all ten models, ~15 min)
  python scripts/benchmark_recommenders.py --no-train            # evaluation stages only (a minute)
  python scripts/benchmark_recommenders.py --datasets ml-1m --models mf ncf --threads 2
  python scripts/benchmark_recommenders.py --datasets ml-1m --models mf ncf --no-train --no-eval --sae
Run it when no other heavy job shares the CPU: timings on a shared 2-core machine are not meaningful.
"""

import argparse
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "notebooks"))
os.environ.setdefault("MONOSEMREC_ROOT", str(ROOT))

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from ipynb.fs.defs.artifacts import load_recommender  # noqa: E402
from ipynb.fs.defs.data_processing import load_dataset  # noqa: E402
from ipynb.fs.defs.evaluation import make_eval_set, model_ranks, representation_tables, sequence_length  # noqa: E402
from ipynb.fs.defs.experiments import PRETRAINED, recommender_config, sae_runs, split_of, valid_protocol  # noqa: E402
from ipynb.fs.defs.sae_training import train_sae  # noqa: E402
from ipynb.fs.defs.training import train_recommender  # noqa: E402
from ipynb.fs.defs.utils import get_device, merge_rows, results_dir  # noqa: E402

COLUMNS = ["stage", "dataset", "model", "seconds", "peak_mem_mb", "device", "threads", "note"]


def rss_mb() -> float:
    """Resident set size of this process in MB (Linux /proc; else the peak from getrusage)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PeakMemory:
    """Context manager sampling the process RSS every 5 ms; .peak_mb = the highest value seen (MB)."""

    def __enter__(self):
        self.peak_mb = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.wait(0.005):
            self.peak_mb = max(self.peak_mb, rss_mb())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, rss_mb())


def timed(fn, repeats: int = 1):
    """(best seconds over `repeats` calls, peak RSS MB, last result) of fn()."""
    best, result = float("inf"), None
    with PeakMemory() as mem:
        for _ in range(repeats):
            start = time.perf_counter()
            result = fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
    return best, mem.peak_mb, result


def score_grid_all(model, ev, device, batch_size: int = 2048):
    """The model's full score grid of the eval-set users (in batches), nothing else."""
    with torch.inference_mode():
        items = model.item_repr()
        all_items = torch.arange(model.n_items, device=device)
        for start in range(0, len(ev.users), batch_size):
            u = torch.as_tensor(ev.users[start:start + batch_size], device=device)
            seqs = None if ev.seqs is None else torch.as_tensor(ev.seqs[start:start + batch_size], device=device)
            model.score_grid(model.user_repr(u, seqs), items, u, all_items)


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["ml-1m", "lastfm", "ml-100k"])
    parser.add_argument("--models", nargs="+", default=None, help="checkpoint names (default: all of each dataset)")
    parser.add_argument("--no-train", action="store_true", help="skip the training stage")
    parser.add_argument("--no-checkpoints", action="store_true", help="evaluate freshly trained models")
    parser.add_argument("--no-eval", action="store_true", help="skip the evaluation stages")
    parser.add_argument("--sae", action="store_true", help="add the train_sae stage")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=3, help="evaluation repeats (best is reported)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", default=None, help="CSV path (default res_csv/benchmarks.csv)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device(args.device, verbose=True)
    threads = torch.get_num_threads()
    rows = []

    def add(stage, dataset, name, seconds, peak, note=""):
        rows.append({"stage": stage, "dataset": dataset, "model": name, "seconds": round(seconds, 4),
                     "peak_mem_mb": round(peak, 1), "device": str(device), "threads": threads, "note": note})
        print(f"{stage:17s} {dataset:8s} {name:12s} {seconds:9.3f} s  {peak:8.1f} MB  {note}", flush=True)

    for dataset in args.datasets:
        ds = load_dataset(dataset)
        names = [n for n in (args.models or PRETRAINED[dataset]) if n in PRETRAINED[dataset]]
        for name in names:
            split = split_of(ds, name)
            model = None
            if not args.no_train:
                config = recommender_config(name, dataset, ds.n_users, ds.n_items)
                seconds, peak, (model, history) = timed(lambda config=config, split=split, name=name: train_recommender(
                    config, split, device=device, progress=False, valid_protocol=valid_protocol(name)))
                add("train", dataset, name, seconds, peak,
                    f"{history.epochs_trained} epochs (best {history.best_epoch}); {history.stop_reason}")
            if model is None or not args.no_checkpoints:
                model, _ = load_recommender(dataset, name, split, device=device)
            model.eval()
            if args.sae:
                tables = representation_tables(model, split, ds, device=device)
                _, cfg = sae_runs(dataset, name, tables.users.shape[1])[0]
                seconds, peak, _ = timed(lambda c=cfg, t=tables: train_sae(c, t, progress=False))
                add("train_sae", dataset, name, seconds, peak,
                    f"{cfg.activation} n={cfg.n_neurons} k={cfg.k} {cfg.epochs} epochs pred_every={cfg.pred_every}")
            if args.no_eval:
                continue
            ev = make_eval_set(split, "test", max_len=sequence_length(model))
            full_s, full_mem, _ = timed(lambda m=model, e=ev: model_ranks(m, e, "full", device), args.repeats)
            samp_s, samp_mem, _ = timed(lambda m=model, e=ev: model_ranks(m, e, "sampled", device), args.repeats)
            grid_s, grid_mem, _ = timed(lambda m=model, e=ev: score_grid_all(m, e, device), args.repeats)
            d = model.repr_dim
            u_mat = torch.randn(len(ev.users), d, device=device)
            i_mat = torch.randn(model.n_items, d, device=device)
            mm_s, mm_mem, _ = timed(lambda a=u_mat, b=i_mat: a @ b.T, args.repeats)
            bound, bound_name = (mm_s, "matmul_bound") if model.MODEL_NAME == "mf" else (grid_s, "score_grid_bound")
            add("eval_full", dataset, name, full_s, full_mem,
                f"{full_s / bound:.2f}x {bound_name}; {full_s / grid_s:.2f}x score_grid_bound; {len(ev.users)} users")
            add("eval_sampled", dataset, name, samp_s, samp_mem, f"{len(ev.users)} users x 100 candidates")
            add("score_grid_bound", dataset, name, grid_s, grid_mem, f"{len(ev.users)} x {model.n_items} scores")
            add("matmul_bound", dataset, name, mm_s, mm_mem, f"({len(ev.users)} x {d}) @ ({d} x {model.n_items})")
    table = pd.DataFrame(rows, columns=COLUMNS)
    print()
    print(table.to_string(index=False))
    if not args.no_write:
        out = Path(args.out) if args.out else results_dir() / "benchmarks.csv"
        # keep rows of datasets / models / stages not measured in this run
        table = merge_rows(out, table.to_dict("records"), ["stage", "dataset", "model"], COLUMNS,
                           sort_by=["dataset", "model", "stage"])
        print(f"wrote {out}")
    return table


if __name__ == "__main__":
    main()
