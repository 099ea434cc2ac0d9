#!/usr/bin/env python
"""Benchmark dataset loading (checksums + parsing + concept tables) and the split; prints a table and writes
res_csv/data_load_times.csv (stage, dataset, seconds, seconds_first, rows, device, threads).

    MONOSEMREC_DATA_DIR=../shared/datasets python scripts/benchmark_data.py [--repeats 3]

`seconds` is the median of `--repeats` runs in this process after one untimed warm-up load; `seconds_first`
is the first timed run (the operating system's file cache is warm by then, the Python process is not).
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "notebooks"))
os.environ.setdefault("MONOSEMREC_ROOT", str(ROOT))


def main() -> None:
    """Time load_dataset and leave_one_out per dataset."""
    import pandas as pd
    import torch
    from ipynb.fs.defs.data_processing import DATASETS, DataError, leave_one_out, load_dataset
    from ipynb.fs.defs.utils import results_dir, write_csv

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rows = []
    for key in DATASETS:
        try:
            load_dataset(key, download=False)
        except DataError as e:
            print(f"{key}: skipped ({str(e).splitlines()[0][:90]})")
            continue
        for stage, fn in (("load", lambda k=key: load_dataset(k, download=False)),
                          ("split_random", lambda k=key: leave_one_out(load_dataset(k, download=False), "random", 0))):
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                out = fn()
                times.append(time.perf_counter() - start)
            n = len(out.interactions) if stage == "load" else len(out.train)
            if stage == "split_random":  # report the split alone
                load = next(r["seconds"] for r in rows if r["dataset"] == key and r["stage"] == "load")
                times = [max(t - load, 0.0) for t in times]
            rows.append({"stage": stage, "dataset": key, "seconds": round(statistics.median(times), 3),
                         "seconds_first": round(times[0], 3), "rows": n,
                         "device": "cpu", "threads": torch.get_num_threads()})
            print(f"{stage:13s} {key:8s} {rows[-1]['seconds']:7.3f} s median, {times[0]:7.3f} s first  ({n:,} rows)")
    if rows:
        path = write_csv(pd.DataFrame(rows), results_dir() / "data_load_times.csv", sort_by=["dataset", "stage"])
        print("wrote", path)


if __name__ == "__main__":
    main()
