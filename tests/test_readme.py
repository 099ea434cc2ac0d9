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
