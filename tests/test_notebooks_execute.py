"""Every notebook runs end to end headless (papermill), report and training notebooks with SMOKE=True.

Outputs go to a temporary folder; committed notebooks, models and results are never touched.
"""
import json
import os
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def _parameters(path: Path) -> dict:
    """SMOKE=True for notebooks whose papermill `parameters` cell defines SMOKE."""
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []) and "SMOKE" in "".join(cell["source"]):
            return {"SMOKE": True}
    return {}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, monkeypatch):
    import papermill as pm

    monkeypatch.setenv("MONOSEMREC_REPORTS_DIR", str(tmp_path / "reports"))
    out = tmp_path / path.name
    pm.execute_notebook(str(path), str(out), parameters=_parameters(path), cwd=str(path.parent),
                        kernel_name="python3", progress_bar=False, execution_timeout=600)
    assert out.is_file()
    assert os.environ.get("MONOSEMREC_REPORTS_DIR") == str(tmp_path / "reports")
