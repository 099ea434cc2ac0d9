"""Issue 15 item 5: the scaling benchmark's data, growth exponent and a tiny smoke run (no timings asserted)."""
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def test_synthetic_data_is_seeded_zipf_without_duplicates(load_script):
    bench = load_script("benchmark_scaling")
    raw, items = bench.synthetic_raw(0.05)
    again, _ = bench.synthetic_raw(0.05)
    pd.testing.assert_frame_equal(raw, again)  # same seed, same data
    assert not raw.duplicated().any() and raw.groupby("user_id").size().min() >= 2
    popularity = np.sort(raw["item_id"].value_counts().to_numpy())[::-1]
    assert popularity[0] > 5 * np.median(popularity)  # a Zipf head
    assert items.filter(like="genre:").sum(axis=1).min() >= 1


def test_growth_exponent_is_the_log_log_slope(load_script):
    bench = load_script("benchmark_scaling")
    n = np.array([1e4, 4e4, 1.6e5])
    table = pd.DataFrame({"scale": [1, 4, 16] * 2, "n_interactions": np.r_[n, n], "stage": ["a"] * 3 + ["b"] * 3,
                          "seconds": np.r_[2 * n / 1e4, 3 * (n / 1e4) ** 2]})
    slopes = bench.growth_exponents(table)
    assert abs(slopes["a"] - 1) < 1e-9 and abs(slopes["b"] - 2) < 1e-9


def test_smoke_run_has_every_stage(tmp_path, load_script):
    bench = load_script("benchmark_scaling")
    rows = bench.run_scale(0.01, epochs=1, sae_steps=20, threads=1)  # in this process: the subprocess entry's work
    table = pd.DataFrame(rows, columns=bench.COLUMNS)
    assert list(table["stage"]) == bench.STAGES and table[bench.COLUMNS].notna().all().all()
    assert (table["seconds"] >= 0).all() and (table["peak_rss_mb"] > 0).all() and table["n_users"].iloc[0] == 100
    two = pd.concat([table, table.assign(scale=0.02, n_interactions=2 * table["n_interactions"])])
    bench.plot(two, tmp_path / "plot.png")
    markdown = bench.markdown_table(two)
    assert markdown.count("\n") == len(bench.STAGES) + 4 and "| peak RSS |" in markdown
    assert "| all stages, softmax MF |" in markdown and "| all stages, ALS MF |" in markdown
    assert (tmp_path / "plot.png").stat().st_size > 1000
