#!/usr/bin/env python
"""Retrain one dataset end to end into a run folder, then compare it with the shipped numbers.

    make retrain DATASET=ml-100k [RUN=runs/x]
    python scripts/retrain.py ml-100k [--run runs/x] [--models mf ncf] [--stages training,saes] [--threads 1]

Stages, each printed with its elapsed time: training (every recommender of the dataset, retrained) -> saes (every
SAE of those recommenders, the RecSAE variants included) -> concepts (purity tables, neuron dictionaries) ->
interventions -> reports (the dataset's report notebooks rendered from the run into <run>/reports/<dataset>/).
Everything goes to the run folder (default runs/<dataset>-<YYYYmmdd-HHMMSS>/); the shipped models/ and res_csv/
are only read, for the final table of new vs shipped test metrics. `run.json` in the run folder records the
stages done and is marked complete after the interventions; only then can scripts/promote_run.py promote it.
Torch runs on --threads threads (default 1) for the whole chain: the numbers depend on it.
"""
import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "notebooks"))
sys.path.insert(0, str(ROOT / "scripts"))
os.environ.setdefault("MONOSEMREC_ROOT", str(ROOT))

STAGES = ("training", "saes", "concepts", "interventions", "reports")
# the stages after which a run is complete (promotable); reports are rendered from it but never promoted
COMPLETE_AFTER = "interventions"
# report notebook -> the recommender it shows (None: the dataset overview of lastfm)
REPORTS = {"visualization_SAE_mf": "mf", "visualization_SAE_ncf": "ncf", "visualization_SAE_sasrec": "sasrec",
           "lastFM_notebook": None}
RECOMMENDER_KEYS = ["model", "split", "protocol"]  # itempop has a row per split
RECOMMENDER_METRICS = ["hr_at_10", "ndcg_at_10"]
# the stated reproduction tolerance (README "Retraining"): a one-thread retrain gives each shipped recommender's
# test HR@10 (full and sampled) within this absolute difference
HR_TOLERANCE = 0.005
SAE_KEYS = ["model", "sae"]
SAE_METRICS = ["fve_users", "fve_items", "rbo_ext_at_20", "weighted_tau", "hr_at_10_spliced"]


def compare(new_csv: Path, shipped_csv: Path, keys: list[str], metrics: list[str]):
    """new vs shipped metrics side by side with new - shipped, one row per key; None when a table is missing."""
    import pandas as pd

    if not new_csv.is_file() or not shipped_csv.is_file():
        return None
    new, old = pd.read_csv(new_csv), pd.read_csv(shipped_csv)
    both = new[keys + metrics].merge(old[keys + metrics], on=keys, how="left", suffixes=("_new", "_shipped"))
    out = both[keys].copy()
    for m in metrics:
        out[f"{m}_new"], out[f"{m}_shipped"] = both[f"{m}_new"], both[f"{m}_shipped"]
        out[f"{m}_diff"] = both[f"{m}_new"] - both[f"{m}_shipped"]
    return out.sort_values(keys).reset_index(drop=True)


def tolerance_text(frame) -> str:
    """One line: which recommender rows of a compare() frame reproduce test HR@10 within HR_TOLERANCE."""
    rows = frame[frame["model"] != "itempop"]
    outside = rows[~(rows["hr_at_10_diff"].abs() <= HR_TOLERANCE)]  # NaN (no shipped row) counts as outside
    text = f"HR@10 within {HR_TOLERANCE} of shipped: {len(rows) - len(outside)} of {len(rows)} recommender rows"
    if len(outside):
        text += "; outside: " + ", ".join(f"{r.model} {r.protocol} ({r.hr_at_10_diff:+.4f})"
                                          for r in outside.itertuples())
    return text


def comparison_text(paths, dataset: str) -> str:
    """The final tables: recommenders.csv and the default SAE rows of sae_fidelity.csv, new vs shipped."""
    from ipynb.fs.defs.utils import Paths

    shipped = Paths.default().results / dataset
    parts = []
    for table, keys, metrics in (("recommenders.csv", RECOMMENDER_KEYS, RECOMMENDER_METRICS),
                                 ("sae_fidelity.csv", SAE_KEYS, SAE_METRICS)):
        frame = compare(paths.results / dataset / table, shipped / table, keys, metrics)
        if frame is None:
            parts.append(f"{table}: no shipped or no new table to compare")
            continue
        parts.append(f"{table}: new (this run) vs shipped ({shipped / table}), diff = new - shipped\n"
                     + frame.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        if table == "recommenders.csv":
            parts.append(tolerance_text(frame))
    return "\n\n".join(parts)


def run_stage(name: str, paths, dataset: str, models, smoke: bool, ds) -> None:
    """Run one stage of the chain into `paths`."""
    from ipynb.fs.defs.artifacts import Artifacts
    from ipynb.fs.defs.concepts import analyze_dataset
    from ipynb.fs.defs.interventions import run_interventions
    from ipynb.fs.defs.training import train_all_saes, train_and_save_all

    if name == "training":
        train_and_save_all(dataset, models, epochs=2 if smoke else None, retrain=True, paths=paths, ds=ds)
    elif name == "saes":
        train_all_saes(dataset, models, retrain=True, smoke=smoke, paths=paths, ds=ds)
    elif name == "concepts":
        analyze_dataset(dataset, None, paths=paths, ds=ds, progress=False)
    elif name == "interventions":
        recs = Artifacts.of(dataset, paths).recommenders_with_sae()
        if smoke:
            run_interventions(dataset, recs, n_users=100, n_items=1, concepts=list(ds.item_concepts.columns[:2]),
                              percentiles=(50.0, 99.0), progress=False, ds=ds, pool="all", paths=paths)
        else:
            run_interventions(dataset, recs, paths=paths, ds=ds)
    elif name == "reports":
        import run_notebooks

        recs = set(Artifacts.of(dataset, paths).recommenders_with_sae())
        names = [nb for nb, model in REPORTS.items()
                 if ((model in recs) if model else dataset == run_notebooks.FIXED_DATASET.get(nb))]
        args = [*names, "--run-dir", str(paths.models.parent)]
        if dataset not in run_notebooks.FIXED_DATASET.values():
            args += ["-p", "DATASET", dataset]
        if names and run_notebooks.main(args) != 0:
            raise RuntimeError("some reports failed (see above)")
    else:
        raise ValueError(f"unknown stage {name!r}; stages: {STAGES}")


def main(argv=None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", help="ml-100k | ml-1m | lastfm (synthetic with --smoke)")
    ap.add_argument("--run", default=None, help="run folder (default runs/<dataset>-<YYYYmmdd-HHMMSS>/)")
    ap.add_argument("--models", nargs="+", default=None, help="recommenders (default: every shipped one)")
    ap.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the whole chain (default 1)")
    ap.add_argument("--smoke", action="store_true", help="tiny models and SAEs (tests; use with dataset synthetic)")
    args = ap.parse_args(argv)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        ap.error(f"unknown stage(s) {unknown}; stages: {', '.join(STAGES)}")
    stages = [s for s in STAGES if s in stages]

    from ipynb.fs.defs.data_processing import load_dataset
    from ipynb.fs.defs.utils import Paths, default_run_dir, pinned_threads, write_run_marker

    run = Path(args.run).expanduser().resolve() if args.run else default_run_dir(args.dataset)
    paths = Paths.under(run)
    if paths == Paths.default():
        ap.error("the run folder is the project itself: retrains never write into the shipped models/ and res_csv/")
    print(f"retrain {args.dataset} into {run} (stages: {', '.join(stages)}; {args.threads} thread(s))", flush=True)
    start = time.perf_counter()
    write_run_marker(paths, args.dataset, [], complete=False, threads=args.threads)
    with pinned_threads(args.threads):
        ds = load_dataset(args.dataset)
        for i, stage in enumerate(stages, start=1):
            t = time.perf_counter()
            print(f"[{i}/{len(stages)}] {stage} ...", flush=True)
            try:
                run_stage(stage, paths, args.dataset, args.models, args.smoke, ds)
            except Exception as e:
                print(f"[{i}/{len(stages)}] {stage} FAILED after {time.perf_counter() - t:.1f} s: "
                      f"{type(e).__name__}: {e}", flush=True)
                print(f"the run folder {run} is partial (run.json); promote_run.py will refuse it", flush=True)
                return 1
            done = stages[:i]
            write_run_marker(paths, args.dataset, [stage], complete=COMPLETE_AFTER in done, threads=args.threads)
            print(f"[{i}/{len(stages)}] {stage} done in {time.perf_counter() - t:.1f} s "
                  f"(total {time.perf_counter() - start:.1f} s)", flush=True)
    print()
    print(comparison_text(paths, args.dataset))
    print(f"\nrun folder: {run}  (promote with: python scripts/promote_run.py {run})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
