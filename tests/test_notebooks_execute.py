"""Every notebook runs end to end headless (papermill): notebooks with a SMOKE parameter with SMOKE=True,
notebooks with a RUN_DIR parameter on a smoke run folder (pipelines.smoke_pipeline) with DATASET=synthetic and
otherwise their default parameters — the path a user takes, reading the run folder's cached tables.

Outputs go to a temporary folder; committed notebooks, models and results are never touched.
"""
import json
import os
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


# Parameters that keep a run on the smoke folder small (beyond DATASET and RUN_DIR).
SMOKE_RUN_PARAMETERS = {"interventions": {"N_USERS": 50, "N_ITEMS": 1}, "steering": {"N_USERS": 50, "N_ITEMS": 1},
                        "sae_training": {"MODELS": ["mf"]}}


def _parameters(path: Path, smoke_run: Path) -> dict:
    """SMOKE=True, or RUN_DIR=the smoke folder with DATASET=synthetic, from the notebook's `parameters` cell."""
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            source = "".join(cell["source"])
            if "SMOKE" in source:
                return {"SMOKE": True}
            if "RUN_DIR" in source:
                return {"RUN_DIR": str(smoke_run), "DATASET": "synthetic", **SMOKE_RUN_PARAMETERS.get(path.stem, {})}
    return {}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    """A run folder with the smoke pipeline's models and tables (MF on synthetic data)."""
    from ipynb.fs.defs.pipelines import smoke_pipeline

    folder = tmp_path_factory.mktemp("smoke-run")
    smoke_pipeline(["mf"], folder)
    return folder


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, monkeypatch, smoke_run):
    import papermill as pm

    monkeypatch.setenv("MONOSEMREC_REPORTS_DIR", str(tmp_path / "reports"))
    out = tmp_path / path.name
    pm.execute_notebook(str(path), str(out), parameters=_parameters(path, smoke_run), cwd=str(path.parent),
                        kernel_name="python3", progress_bar=False, execution_timeout=600)
    assert out.is_file()
    assert os.environ.get("MONOSEMREC_REPORTS_DIR") == str(tmp_path / "reports")


def test_main_job_names_the_notebook_error(load_script):
    """A report that fails inside the notebook is reported with the notebook's own exception, not papermill's."""
    script = load_script("run_notebooks")

    class NotebookError(Exception):
        ename, evalue = "DataError", "dataset 'ml-100k' is not available offline: expected ...\nmore"

    assert script.failure_message(NotebookError("\n-----\nException encountered at In [3]")) == (
        "DataError: dataset 'ml-100k' is not available offline: expected ...")
    assert script.failure_message(FileNotFoundError("no notebook x.ipynb")) == "FileNotFoundError: no notebook x.ipynb"


def test_main_job_reports_a_failure_and_keeps_going(tmp_path, monkeypatch, capsys, load_script):
    """Offline without data, the main job says which dataset is missing, where, and what to do; exit code 1."""
    script = load_script("run_notebooks")
    monkeypatch.setenv("MONOSEMREC_DATA_DIR", str(tmp_path / "no-data"))
    monkeypatch.setenv("MONOSEMREC_OFFLINE", "1")
    monkeypatch.setenv("MONOSEMREC_REPORTS_DIR", str(tmp_path / "reports"))
    assert script.main(["visualization_SAE_sasrec", "no_such_notebook"]) == 1
    out = capsys.readouterr().out
    assert "FAILED  visualization_SAE_sasrec     DataError: dataset 'ml-100k' is not available offline" in out
    assert "https://files.grouplens.org/datasets/movielens/ml-100k.zip" in out
    assert "FileNotFoundError: no notebook" in out and "0 rendered, 2 failed" in out


def test_concepts_default_run_uses_the_cache(smoke_run, tmp_path):
    """The concepts notebook with only DATASET (and the folder) reads the cached tables and recomputes nothing."""
    import papermill as pm

    folder = smoke_run / "res_csv" / "synthetic"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    out = tmp_path / "concepts.ipynb"
    pm.execute_notebook(str(NOTEBOOKS[0].parent / "concepts.ipynb"), str(out), cwd=str(NOTEBOOKS[0].parent),
                        parameters={"DATASET": "synthetic", "RUN_DIR": str(smoke_run)}, kernel_name="python3",
                        progress_bar=False, execution_timeout=600)
    assert "cached tables of" in out.read_text()
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_main_job_fails_on_a_section_skipped_for_a_damaged_file(load_script):
    """A report that skipped a section because a file is damaged or mismatched is named; 'not computed yet' is not."""
    import nbformat
    from ipynb.fs.defs.plots import DAMAGED_MARKER

    script = load_script("run_notebooks")
    node = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("show_report(sections)")
    cell.outputs = [nbformat.v4.new_output("display_data", {"text/markdown": "### Purity heatmap"}),
                    nbformat.v4.new_output("display_data", {"text/markdown": "> not computed yet: run concepts"}),
                    nbformat.v4.new_output("display_data", {"text/markdown": "### Neuron explorer (interactive)"}),
                    nbformat.v4.new_output("display_data", {"text/markdown": f"> {DAMAGED_MARKER}: checkpoint weights "
                                                                             "w do not match their sidecar"})]
    node.cells = [cell]
    found = script.damaged_sections(node)
    assert [title for title, _ in found] == ["Neuron explorer (interactive)"]
    error = script.DamagedSectionsError(found)
    assert script.failure_message(error).startswith(
        "DamagedSectionsError: section 'Neuron explorer (interactive)' skipped: " + DAMAGED_MARKER)
