"""scripts/untrained_start.py: the untrained start of a recipe row, scored like a trained row (issue 11 control)."""
import json
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.realdata
def test_untrained_start_reproduces_the_shipped_row_and_refuses_epoch_rows(data_root, load_script, monkeypatch,
                                                                            tmp_path):
    monkeypatch.chdir(ROOT)  # the script changes into notebooks/ when loaded; the original folder comes back after
    monkeypatch.setenv("MONOSEMREC_RESULTS_DIR", str(tmp_path))  # never the shipped res_csv/
    script = load_script("untrained_start")
    out = script.measurement_cli("test", "untrained_start.csv", script.start_rows, ["model", "sae"], script.COLUMNS,
                                 argv=["ml-100k:sasrec", "--runs", "recipe_k32_pursuit"])
    assert out == tmp_path / "ml-100k" / "untrained_start.csv"
    got = pd.read_csv(out).set_index(["model", "sae"]).loc[("sasrec", "recipe_k32_pursuit")]
    shipped = pd.read_csv(ROOT / "res_csv" / "ml-100k" / "untrained_start.csv").set_index(["model", "sae"])
    row = shipped.loc[("sasrec", "recipe_k32_pursuit")]
    for col in ("fve_users", "fve_items", "rbo_ext_at_20", "weighted_tau", "pure_concepts"):
        assert got[col] == pytest.approx(row[col], abs=1e-6), col  # same seed, same start, same numbers
    assert got["n_neurons"] == 256 and got["encoder"] == "pursuit"
    assert "sasrec" in json.loads((tmp_path / "ml-100k" / "provenance.json").read_text())["untrained_start.csv"]
    with pytest.raises(ValueError, match="epoch schedule"):
        script.start_rows("ml-100k", "sasrec", ["default"])
    with pytest.raises(ValueError, match="no sae_fidelity rows"):
        script.start_rows("ml-100k", "sasrec", ["recipe_k33"])
    with pytest.raises(ValueError, match="<dataset>:<recommender>"):
        script.measurement_cli("test", "untrained_start.csv", script.start_rows, ["model", "sae"], script.COLUMNS,
                               argv=["ml-100k", "--runs", "recipe_k32_pursuit"])
