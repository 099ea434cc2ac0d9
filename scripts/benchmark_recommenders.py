#!/usr/bin/env python
"""Benchmark the recommenders on this machine next to the tools one would pick instead, measured in the same run:
training and evaluation time per model and dataset, each with its peer and the ratio to it. Prints a table and
writes res_csv/benchmarks.csv (atomically).

Stages (one row each per dataset and checkpoint name):
  train             train_recommender with the checkpoint's own config (as the training notebook runs it,
                    per-epoch validation included); the model is NOT saved. MF models: peer implicit_als
  train_als         (MF models) our MF trained by implicit-feedback ALS (models.preset('mf', 'als'), at the
                    checkpoint's width) through the same train_recommender loop (validation every second sweep
                    included); peer implicit_als, run just before it
  implicit_als      (MF models) implicit's AlternatingLeastSquares on the same training matrix, same factors, its
                    defaults otherwise (regularization 0.01, alpha 1, 15 iterations, conjugate gradient), 1 thread;
                    evaluated by the same code as ours (its factors in an MF without biases). Skipped with the
                    reason printed when `implicit` is not installed (requirements-extra.txt)
  eval_full         ranking the held-out test item among all non-history items (evaluation.model_ranks);
                    peer batched_matmul (MF) or score_grid_bound (the others)
  eval_sampled      the same for the sampled protocol (held-out item + 99 negatives)
  score_grid_bound  the model's own user_repr + score_grid over all test users x all items, nothing else
                    (the bound for NCF, whose score is an MLP, and SASRec, whose user representation is a
                    Transformer pass over the user's sequence)
  batched_matmul    the bare matrix multiply of the same user blocks as eval_full (evaluation.block_rows users
                    each) with the item table: (block x d) @ (d x n_items), nothing kept (the bound for MF)
  train_sae         (with --sae) training the checkpointed SAE of the recommender (its first row in
                    experiments.sae_runs: the default SAE, or the paper preset for *_paper models), with the
                    committed recommender frozen; representation tables not included. Peer torch_topk_floor
  train_sae_pool    (with --sae, TopK SAEs) the same SAE with SAEConfig.pred_pool=256 (shared random-item pool)
  train_sae_recon   (with --sae, TopK SAEs) the same SAE without the prediction-aware term (lambda_pred=0): the
                    suite's SAE loop on the floor's own task (its AuxK term stays)
  torch_topk_floor  (with --sae) a plain-torch TopK SAE (same width, k, batch of user + item rows, Adam, lr, steps;
                    reconstruction only, unit-norm decoder rows): the floor an SAE training loop can reach here
Timing: `seconds` is wall time, `cpu_seconds` this process's CPU time (the best of --repeats runs for evaluation
stages); `ratio_to_peer` = our cpu_seconds / the peer's cpu_seconds of the same run (CPU time: robust to other
jobs on a shared machine at 1 thread). `hr_at_10` / `peer_hr_at_10`: full-ranking test HR@10 where quality
applies (train: the freshly trained model vs the peer). Evaluation stages run on the committed checkpoint (or the
freshly trained model with --no-checkpoints).

Usage:
  python scripts/benchmark_recommenders.py --datasets ml-1m --models mf --sae     # the peers table of the README
  python scripts/benchmark_recommenders.py                       # everything (trains all ten models, ~15 min)
  python scripts/benchmark_recommenders.py --no-train            # evaluation stages only (a minute)
  python scripts/benchmark_recommenders.py --datasets ml-1m --models mf ncf --threads 2
  python scripts/benchmark_recommenders.py --merge run1.csv run2.csv   # runs written with --out, later ones win
Run it when no other heavy job shares the CPU: wall times on a shared 2-core machine are not meaningful.
"""

import argparse
import dataclasses
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
import torch._dynamo  # noqa: E402, F401  (the first torch.optim.Adam imports it: paid here, not inside a timed stage)
from ipynb.fs.defs.artifacts import load_recommender  # noqa: E402
from ipynb.fs.defs.data_processing import load_dataset  # noqa: E402
from ipynb.fs.defs.evaluation import (  # noqa: E402
    block_rows,
    evaluate,
    make_eval_set,
    model_ranks,
    representation_tables,
    sequence_length,
)
from ipynb.fs.defs.experiments import PRETRAINED, recommender_config, sae_runs, split_of, valid_protocol  # noqa: E402
from ipynb.fs.defs.models import MFConfig, build_model, preset  # noqa: E402
from ipynb.fs.defs.sae_training import sae_steps, train_sae  # noqa: E402
from ipynb.fs.defs.training import train_recommender  # noqa: E402
from ipynb.fs.defs.utils import get_device, merge_rows, results_dir, write_csv  # noqa: E402

COLUMNS = ["stage", "dataset", "model", "seconds", "cpu_seconds", "peak_mem_mb", "device", "threads", "peer",
           "ratio_to_peer", "hr_at_10", "peer_hr_at_10", "note"]
RETIRED_STAGES = ("matmul_bound",)  # the unbatched (n_users x d) @ (d x n_items) bound, replaced by batched_matmul
SAE_POOL = 256  # pred_pool of the train_sae_pool stage


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
    """(best wall seconds, best CPU seconds of this process, peak RSS MB, last result) over `repeats` calls of fn()."""
    best, best_cpu, result = float("inf"), float("inf"), None
    with PeakMemory() as mem:
        for _ in range(repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            result = fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
            best_cpu = min(best_cpu, time.process_time() - start_cpu)
    return best, best_cpu, mem.peak_mb, result


def score_grid_all(model, ev, device, batch_size: int = 2048):
    """The model's full score grid of the eval-set users (in batches), nothing else."""
    with torch.inference_mode():
        items = model.item_repr()
        all_items = torch.arange(model.n_items, device=device)
        for start in range(0, len(ev.users), batch_size):
            u = torch.as_tensor(ev.users[start:start + batch_size], device=device)
            seqs = None if ev.seqs is None else torch.as_tensor(ev.seqs[start:start + batch_size], device=device)
            model.score_grid(model.user_repr(u, seqs), items, u, all_items)


def batched_matmul(users: torch.Tensor, items: torch.Tensor, block: int) -> None:
    """The bare (block x d) @ (d x n_items) products of the same user blocks as the evaluator, nothing kept."""
    with torch.inference_mode():
        items_t = items.T
        for start in range(0, len(users), block):
            users[start:start + block] @ items_t


def implicit_als(split, factors: int, seed: int = 0):
    """(fitted implicit ALS on the training matrix at 1 thread, its factors as a bias-free MF); None + the reason
    printed when implicit is not installed."""
    try:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits
    except ImportError as e:
        print(f"implicit_als skipped: {e} (pip install -r requirements-extra.txt)")
        return None
    train = split.matrix(("train",)).tocsr().astype("float32")
    with threadpool_limits(1):  # its constructor checks the BLAS thread pool
        als = AlternatingLeastSquares(factors=factors, num_threads=1, random_state=seed)

    def fit():
        """Fit ALS with every BLAS pool at one thread."""
        with threadpool_limits(1):
            als.fit(train, show_progress=False)
    fit.als = als
    fit.model = lambda: _factors_model(split, als.user_factors, als.item_factors)
    return fit


def _factors_model(split, user_factors, item_factors):
    """An MF without biases whose embeddings are the given factors (to evaluate a peer with our code)."""
    model = build_model(MFConfig(split.n_users, split.n_items, dim=user_factors.shape[1], user_bias=False), seed=0)
    with torch.no_grad():
        model.user_emb.weight.copy_(torch.as_tensor(user_factors))
        model.item_emb.weight.copy_(torch.as_tensor(item_factors))
    return model.eval()


def torch_topk_floor(users: torch.Tensor, items: torch.Tensor, n_neurons: int, k: int, steps: int,
                     batch_size: int, lr: float, seed: int = 0) -> float:
    """A plain-torch TopK SAE (reconstruction only) for `steps` Adam steps of batch_size user + item rows;
    returns its FVE on all rows (a sanity number, not a fidelity result)."""
    g = torch.Generator().manual_seed(seed)
    x_u = (users - users.mean(0)) / users.std(0).norm()
    x_i = (items - items.mean(0)) / items.std(0).norm()
    d = users.shape[1]
    w_enc = torch.nn.Parameter(torch.randn(d, n_neurons, generator=g) / d ** 0.5)
    w_dec = torch.nn.Parameter(w_enc.detach().T.clone())
    b_enc, b_dec = torch.nn.Parameter(torch.zeros(n_neurons)), torch.nn.Parameter(torch.zeros(d))
    opt = torch.optim.Adam([w_enc, w_dec, b_enc, b_dec], lr=lr)

    def encode(x):
        """Row-wise top-k of relu((x - b_dec) W_enc + b_enc)."""
        pre = torch.relu((x - b_dec) @ w_enc + b_enc)
        top = pre.topk(k, dim=1, sorted=False)
        return torch.zeros_like(pre).scatter(1, top.indices, top.values)

    for _ in range(steps):
        x = torch.cat([x_u[torch.randint(len(x_u), (batch_size,), generator=g)],
                       x_i[torch.randint(len(x_i), (batch_size,), generator=g)]])
        loss = ((encode(x) @ w_dec + b_dec - x) ** 2).sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            w_dec /= w_dec.norm(dim=1, keepdim=True).clamp_min(1e-8)
    with torch.no_grad():
        x = torch.cat([x_u, x_i])
        return float(1 - ((encode(x) @ w_dec + b_dec - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["ml-1m", "lastfm", "ml-100k"])
    parser.add_argument("--models", nargs="+", default=None, help="checkpoint names (default: all of each dataset)")
    parser.add_argument("--no-train", action="store_true", help="skip the training stages (ours and implicit_als)")
    parser.add_argument("--no-checkpoints", action="store_true", help="evaluate freshly trained models")
    parser.add_argument("--no-eval", action="store_true", help="skip the evaluation stages")
    parser.add_argument("--sae", action="store_true", help="add the train_sae, train_sae_pool, torch_topk_floor stages")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of the evaluation stages (default 1: training pins its own, 1 by default)")
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

    def add(stage, dataset, name, timing, note="", peer=None, peer_cpu=None, hr=None, peer_hr=None):
        """Record (and print) one row; timing = (wall s, CPU s, peak MB)."""
        seconds, cpu, peak = timing
        ratio = round(cpu / peer_cpu, 3) if peer_cpu else None
        rows.append({"stage": stage, "dataset": dataset, "model": name, "seconds": round(seconds, 4),
                     "cpu_seconds": round(cpu, 4), "peak_mem_mb": round(peak, 1), "device": str(device),
                     "threads": threads, "peer": peer, "ratio_to_peer": ratio,
                     "hr_at_10": None if hr is None else round(hr, 4),
                     "peer_hr_at_10": None if peer_hr is None else round(peer_hr, 4), "note": note})
        vs = f"  {ratio:.2f}x {peer}" if ratio else ""
        print(f"{stage:17s} {dataset:8s} {name:12s} {seconds:9.3f} s {cpu:9.3f} cpu-s {peak:8.1f} MB{vs}  {note}",
              flush=True)

    def full_hr(model, split) -> float:
        """Full-ranking test HR@10 (the evaluation code of every model here)."""
        return evaluate(model, split, "test", protocols=("full",), device=device)["full"]["hr_at_10"]

    for dataset in args.datasets:
        ds = load_dataset(dataset)
        names = [n for n in (args.models or PRETRAINED[dataset]) if n in PRETRAINED[dataset]]
        for name in names:
            split = split_of(ds, name)
            model = None
            if not args.no_train:
                config = recommender_config(name, dataset, ds.n_users, ds.n_items)
                peer = None
                if config.__class__ is MFConfig:  # ALS first, so both run back to back
                    fit = implicit_als(split, config.dim)
                    if fit is not None:
                        wall, cpu, peak, _ = timed(fit)
                        peer = (cpu, full_hr(fit.model(), split))
                        add("implicit_als", dataset, name, (wall, cpu, peak), f"{config.dim} factors, implicit "
                            f"{__import__('implicit').__version__} defaults", hr=peer[1])
                    als = dataclasses.replace(preset("mf", "als", ds.n_users, ds.n_items), dim=config.dim)
                    wall, cpu, peak, (als_model, history) = timed(lambda c=als, s=split: train_recommender(
                        c, s, device=device, progress=False, valid_protocol="full"))
                    sampled = evaluate(als_model, split, "test", protocols=("sampled",), device=device)["sampled"]
                    add("train_als", dataset, name, (wall, cpu, peak),
                        f"{history.epochs_trained} sweeps (best {history.best_epoch}); {history.stop_reason}; "
                        f"sampled HR@10 {sampled['hr_at_10']:.4f}", peer="implicit_als" if peer else None,
                        peer_cpu=peer[0] if peer else None, hr=full_hr(als_model, split),
                        peer_hr=peer[1] if peer else None)
                wall, cpu, peak, (model, history) = timed(lambda config=config, split=split, name=name: train_recommender(
                    config, split, device=device, progress=False, valid_protocol=valid_protocol(name)))
                add("train", dataset, name, (wall, cpu, peak),
                    f"{history.epochs_trained} epochs (best {history.best_epoch}); {history.stop_reason}",
                    peer="implicit_als" if peer else None, peer_cpu=peer[0] if peer else None,
                    hr=full_hr(model, split), peer_hr=peer[1] if peer else None)
            if model is None or not args.no_checkpoints:
                model, _ = load_recommender(dataset, name, split, device=device)
            model.eval()
            if args.sae:
                tables = representation_tables(model, split, ds, device=device)
                _, cfg = sae_runs(dataset, name, tables.users.shape[1])[0]
                steps = sae_steps(cfg, len(tables.train_rows))
                floor = None
                if cfg.activation == "topk":
                    wall, cpu, peak, fve = timed(lambda c=cfg, t=tables, n=steps: torch_topk_floor(
                        t.users[t.train_rows], t.items[t.train_items], c.n_neurons, c.k, n, c.batch_size, c.lr))
                    floor = cpu
                    add("torch_topk_floor", dataset, name, (wall, cpu, peak),
                        f"n={cfg.n_neurons} k={cfg.k} {steps} steps of {cfg.batch_size} users + items; FVE {fve:.3f}")
                peer = "torch_topk_floor" if floor else None
                wall, cpu, peak, _ = timed(lambda c=cfg, t=tables: train_sae(c, t, progress=False))
                add("train_sae", dataset, name, (wall, cpu, peak), f"{cfg.activation} n={cfg.n_neurons} k={cfg.k} "
                    f"{cfg.epochs} epochs ({steps} steps) pred_every={cfg.pred_every}", peer=peer, peer_cpu=floor)
                if cfg.activation == "topk":
                    recon = dataclasses.replace(cfg, lambda_pred=0.0)
                    wall, cpu, peak, _ = timed(lambda c=recon, t=tables: train_sae(c, t, progress=False))
                    add("train_sae_recon", dataset, name, (wall, cpu, peak), "train_sae with lambda_pred=0 (what the "
                        "floor computes: reconstruction, plus AuxK)", peer=peer, peer_cpu=floor)
                    pooled = dataclasses.replace(cfg, pred_pool=SAE_POOL)
                    wall, cpu, peak, _ = timed(lambda c=pooled, t=tables: train_sae(c, t, progress=False))
                    add("train_sae_pool", dataset, name, (wall, cpu, peak), f"train_sae with pred_pool={SAE_POOL}",
                        peer=peer, peer_cpu=floor)
            if args.no_eval:
                continue
            ev = make_eval_set(split, "test", max_len=sequence_length(model))
            full = timed(lambda m=model, e=ev: model_ranks(m, e, "full", device), args.repeats)
            samp = timed(lambda m=model, e=ev: model_ranks(m, e, "sampled", device), args.repeats)
            grid = timed(lambda m=model, e=ev: score_grid_all(m, e, device), args.repeats)
            d, block = model.repr_dim, block_rows(model.n_items)
            if model.MODEL_NAME == "mf":
                with torch.inference_mode():
                    u_mat = model.user_repr(torch.as_tensor(ev.users, device=device)).contiguous()
                    i_mat = model.item_repr()
            else:  # the same shapes (NCF / SASRec representations are not scored by a dot product)
                u_mat = torch.randn(len(ev.users), d, device=device)
                i_mat = torch.randn(model.n_items, d, device=device)
            mm = timed(lambda a=u_mat, b=i_mat, n=block: batched_matmul(a, b, n), args.repeats)
            bound, bound_name = (mm, "batched_matmul") if model.MODEL_NAME == "mf" else (grid, "score_grid_bound")
            add("eval_full", dataset, name, full[:3], f"{len(ev.users)} users in blocks of {block}",
                peer=bound_name, peer_cpu=bound[1])
            add("eval_sampled", dataset, name, samp[:3], f"{len(ev.users)} users x 100 candidates")
            add("score_grid_bound", dataset, name, grid[:3], f"{len(ev.users)} x {model.n_items} scores")
            add("batched_matmul", dataset, name, mm[:3],
                f"{-(-len(ev.users) // block)} x ({block} x {d}) @ ({d} x {model.n_items})")
    table = pd.DataFrame(rows, columns=COLUMNS)
    print()
    print(table.drop(columns=["device", "note"]).to_string(index=False))
    if not args.no_write:
        table = write_benchmarks(table, Path(args.out) if args.out else results_dir() / "benchmarks.csv")
    return table


def write_benchmarks(table: pd.DataFrame, out: Path) -> pd.DataFrame:
    """Merge `table`'s rows into the CSV `out` (atomically; rows of other stages / models / datasets are kept,
    rows of retired stages dropped); returns the merged table."""
    if out.is_file():
        old = pd.read_csv(out)
        if old["stage"].isin(RETIRED_STAGES).any():
            write_csv(old[~old["stage"].isin(RETIRED_STAGES)], out)
    merged = merge_rows(out, table.to_dict("records"), ["stage", "dataset", "model"], COLUMNS,
                        sort_by=["dataset", "model", "stage"])
    print(f"wrote {out}")
    return merged


def merge_runs(argv=None) -> pd.DataFrame:
    """`--merge A.csv B.csv ...`: merge runs written with --out into res_csv/benchmarks.csv, in order (later wins)."""
    paths = [Path(p) for p in argv]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(f"--merge: no such file(s) {missing}; run the benchmark with --out first")
    out = results_dir() / "benchmarks.csv"
    for path in paths:
        table = write_benchmarks(pd.read_csv(path).reindex(columns=COLUMNS), out)
    return table


if __name__ == "__main__":
    if sys.argv[1:2] == ["--merge"]:
        merge_runs(sys.argv[2:])
    else:
        main()
