"""The README's results block is exactly what scripts/readme_results.py makes from res_csv/."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_results_match_res_csv():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "readme_results.py"), "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_readme_names_only_existing_notebooks():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in ("utils", "data_processing", "models", "training", "concepts", "interventions", "plots",
                 "visualization_SAE_mf", "visualization_SAE_ncf", "visualization_SAE_sasrec", "lastFM_notebook"):
        if f"{name}.ipynb" in text:
            assert (ROOT / "notebooks" / f"{name}.ipynb").is_file(), name


def test_paper_fidelity_defined_once():
    """The paper's reported fidelity lives in the experiments notebook; plots and the README script import it."""
    from ipynb.fs.defs.experiments import PAPER_FIDELITY
    from ipynb.fs.defs.plots import PAPER_FIDELITY as plots_paper

    assert plots_paper is PAPER_FIDELITY and PAPER_FIDELITY["mf"]["rbo_trunc_at_30"] == 0.543
    script = (ROOT / "scripts" / "readme_results.py").read_text(encoding="utf-8")
    assert "PAPER_FIDELITY =" not in script and "from ipynb.fs.defs.experiments import PAPER_FIDELITY" in script
    assert sum("PAPER_FIDELITY = " in p.read_text(encoding="utf-8") for p in (ROOT / "notebooks").glob("*.ipynb")) == 1


def test_seed_spread_is_mean_and_sample_sd_and_blank_where_a_seed_has_no_value():
    import pandas as pd

    sys.path.insert(0, str(ROOT / "scripts"))
    from readme_results import seed_spread

    table = pd.DataFrame({"model": ["mf"] * 3 + ["ncf"], "sae": ["default", "default_seed1", "default_seed2", "default"],
                          "fve_users": [0.90, 0.92, 0.94, 0.5], "pure_concepts": [7, 9, float("nan"), 1]})
    spread = seed_spread(table, "mf", ["default", "default_seed1", "default_seed2"], ["fve_users", "pure_concepts"])
    assert spread == {"fve_users": "0.920 ± 0.020", "pure_concepts": "—"}  # sd of 0.90, 0.92, 0.94 (ddof 1)
    assert seed_spread(table, "ncf", ["default", "default_seed1"], ["fve_users"]) is None  # a seed row is missing


def test_the_support_rule_is_declared_once():
    """The concept support rule lives in the experiments notebook; concepts and the README script import it."""
    script = (ROOT / "scripts" / "readme_results.py").read_text(encoding="utf-8")
    assert "from ipynb.fs.defs.experiments import CONCEPT_MIN_SUPPORT" in script
    assert "CONCEPT_MIN_SUPPORT = " not in script
    from ipynb.fs.defs.concepts import CONCEPT_MIN_SUPPORT as used
    from ipynb.fs.defs.experiments import CONCEPT_MIN_SUPPORT

    assert used is CONCEPT_MIN_SUPPORT and CONCEPT_MIN_SUPPORT["lastfm"] == 5
