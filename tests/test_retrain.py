"""Issue 14, retraining a user can trust: run folders, promotion, provenance / staleness, pinned threads, text
progress, notebooks runnable from anywhere with readable tracebacks. Tiny synthetic data, except the last test."""
import hashlib
import json
import shutil
import sys
import traceback
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _digest(folder: Path) -> dict:
    """{relative path: sha256} of every file under `folder`."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def smoke_retrain(tmp_path_factory, load_script):
    """A complete retrain of synthetic MF (no reports) through scripts/retrain.py, with the 'shipped' folders moved
    to a sentinel folder that must stay untouched. Returns (run folder, shipped folder, printed text)."""
    import io
    from contextlib import redirect_stdout

    base = tmp_path_factory.mktemp("retrain")
    shipped = base / "shipped"
    (shipped / "models").mkdir(parents=True)
    (shipped / "res_csv").mkdir()
    (shipped / "res_csv" / "sentinel.csv").write_text("a\n1\n")
    mp = pytest.MonkeyPatch()
    mp.setenv("MONOSEMREC_MODELS_DIR", str(shipped / "models"))
    mp.setenv("MONOSEMREC_RESULTS_DIR", str(shipped / "res_csv"))
    out = io.StringIO()
    with redirect_stdout(out):
        code = load_script("retrain").main(["synthetic", "--smoke", "--models", "mf", "--run", str(base / "run"),
                                         "--stages", "training,saes,concepts,interventions"])
    mp.undo()
    assert code == 0, out.getvalue()
    return base / "run", shipped, out.getvalue()


def test_retrain_writes_only_to_its_run_folder(smoke_retrain):
    run, shipped, text = smoke_retrain
    assert _digest(shipped) == {"res_csv/sentinel.csv": hashlib.sha256(b"a\n1\n").hexdigest()}
    assert (run / "models" / "synthetic" / "mf.safetensors").is_file()
    assert {"sae_mf_attention.json", "sae_mf_contrastive.json"} <= {p.name for p in (run / "models" / "synthetic").iterdir()}
    marker = json.loads((run / "run.json").read_text())
    assert marker["complete"] and marker["stages"] == ["training", "saes", "concepts", "interventions"]
    for i, stage in enumerate(["training", "saes", "concepts", "interventions"], start=1):
        assert f"[{i}/4] {stage} done in" in text
    prov = json.loads((run / "res_csv" / "synthetic" / "provenance.json").read_text())
    assert {"recommenders.csv", "sae_fidelity.csv", "sae_variants.csv", "concept_purity.csv",
            "neuron_dictionary_mf.csv", "interventions.csv"} <= set(prov)


def test_default_run_folder_is_stamped_and_ignored():
    from ipynb.fs.defs.utils import Paths, project_root, run_paths

    paths = run_paths("ml-100k", None, retrain=True)
    assert paths.models.parent.parent == project_root() / "runs" and paths.models.parent.name.startswith("ml-100k-")
    assert run_paths("ml-100k", None, retrain=False) == Paths.default()
    assert "runs/" in (ROOT / ".gitignore").read_text().splitlines()


def test_comparison_table_shows_new_shipped_and_diff(tmp_path, load_script):
    import pandas as pd

    retrain = load_script("retrain")
    pd.DataFrame({"model": ["mf"], "protocol": ["full"], "hr_at_10": [0.30], "ndcg_at_10": [0.2]}).to_csv(tmp_path / "n.csv")
    pd.DataFrame({"model": ["mf"], "protocol": ["full"], "hr_at_10": [0.25], "ndcg_at_10": [0.2]}).to_csv(tmp_path / "o.csv")
    frame = retrain.compare(tmp_path / "n.csv", tmp_path / "o.csv", ["model", "protocol"], ["hr_at_10", "ndcg_at_10"])
    assert frame.loc[0, "hr_at_10_new"] == 0.30 and frame.loc[0, "hr_at_10_shipped"] == 0.25
    assert frame.loc[0, "hr_at_10_diff"] == pytest.approx(0.05) and frame.loc[0, "ndcg_at_10_diff"] == 0
    # ItemPop has one row per split: the recommender keys pair them by split, never across splits
    rows = {"model": ["itempop"] * 2, "split": ["random", "temporal"], "protocol": ["full"] * 2,
            "hr_at_10": [0.14, 0.08], "ndcg_at_10": [0.07, 0.04]}
    pd.DataFrame(rows).to_csv(tmp_path / "n.csv")
    pd.DataFrame(rows).to_csv(tmp_path / "o.csv")
    frame = retrain.compare(tmp_path / "n.csv", tmp_path / "o.csv", retrain.RECOMMENDER_KEYS, ["hr_at_10", "ndcg_at_10"])
    assert len(frame) == 2 and (frame["hr_at_10_diff"] == 0).all()


def test_promote_copies_a_complete_run_and_refuses_a_partial_one(smoke_retrain, tmp_path, capsys, load_script):
    run, _, _ = smoke_retrain
    promote = load_script("promote_run")
    target = tmp_path / "target"
    (target / "res_csv" / "synthetic").mkdir(parents=True)
    (target / "res_csv" / "synthetic" / "recommenders.csv").write_text("old\n")
    assert promote.main([str(run), "--to", str(target)]) == 0
    out = capsys.readouterr().out
    assert f"replaced {target.resolve() / 'res_csv' / 'synthetic' / 'recommenders.csv'}" in out
    assert f"added    {target.resolve() / 'models' / 'synthetic' / 'mf.safetensors'}" in out and "STALE" not in out
    assert _digest(target / "models") == _digest(run / "models")
    assert not list(target.rglob("*.tmp"))
    assert promote.main([str(run), "--to", str(target)]) == 0 and "unchanged" in capsys.readouterr().out

    partial = tmp_path / "partial"
    shutil.copytree(run, partial)
    marker = json.loads((partial / "run.json").read_text())
    (partial / "run.json").write_text(json.dumps({**marker, "complete": False, "stages": ["training"]}))
    before = _digest(target)
    assert promote.main([str(partial), "--to", str(target)]) == 2
    assert "partial run" in capsys.readouterr().err and _digest(target) == before
    (partial / "run.json").write_text(json.dumps(marker))
    (partial / "models" / "synthetic" / "sae_mf.safetensors").unlink()  # a checkpoint without its weights
    assert promote.main([str(partial), "--to", str(target)]) == 2
    assert "sae_mf.json has no weights file" in capsys.readouterr().err and _digest(target) == before


def test_stale_tables_are_refused_naming_what_to_rerun(smoke_retrain, tmp_path):
    from ipynb.fs.defs.artifacts import StaleResultsError, check_fresh, stale_results
    from ipynb.fs.defs.pipelines import model_report_sections
    from ipynb.fs.defs.utils import Paths

    run, _, _ = smoke_retrain
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    paths = Paths.under(copy)
    assert stale_results("synthetic", paths) == []
    other = copy / "models" / "synthetic"
    # the recommender replaced by another version (here: the SAE's sidecar claims another recommender)
    sidecar = json.loads((other / "mf.json").read_text())
    weights = bytearray((other / "mf.safetensors").read_bytes())
    weights[-1] ^= 1
    (other / "mf.safetensors").write_bytes(bytes(weights))
    sidecar["weights_sha256"] = hashlib.sha256(bytes(weights)).hexdigest()
    (other / "mf.json").write_text(json.dumps(sidecar))
    messages = stale_results("synthetic", paths)
    assert any("retrain its SAEs" in m for m in messages)
    assert any("concept_purity.csv" in m and "rerun concepts with RECOMPUTE=True" in m for m in messages)
    assert any("interventions.csv" in m and "rerun interventions" in m for m in messages)
    with pytest.raises(StaleResultsError, match="rerun"):
        check_fresh("synthetic", paths)
    with pytest.raises(StaleResultsError, match="report of mf on synthetic"):
        model_report_sections("synthetic", "mf", paths=paths)


def test_reports_check_only_the_tables_they_read(smoke_retrain, tmp_path):
    from ipynb.fs.defs.artifacts import PROVENANCE_FILE, StaleResultsError, check_fresh, stale_results
    from ipynb.fs.defs.pipelines import REPORT_FRESH_TABLES
    from ipynb.fs.defs.utils import Paths

    run, _, _ = smoke_retrain
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    paths = Paths.under(copy)
    file = copy / "res_csv" / "synthetic" / PROVENANCE_FILE
    record = json.loads(file.read_text())
    record["probe_ceiling.csv"] = {"mf": "0" * 64}  # a script's table no report shows, from another MF
    file.write_text(json.dumps(record))
    assert any("probe_ceiling.csv" in m and "scripts/probe_ceiling.py" in m for m in stale_results("synthetic", paths))
    check_fresh("synthetic", paths, tables=REPORT_FRESH_TABLES)  # the report still renders
    record["steering.csv"] = {"mf": "0" * 64}  # a table the report shows
    file.write_text(json.dumps(record))
    with pytest.raises(StaleResultsError, match="steering.csv"):
        check_fresh("synthetic", paths, tables=REPORT_FRESH_TABLES)


def test_shipped_saes_record_their_recommender_and_tables_are_fresh():
    from ipynb.fs.defs.artifacts import Artifacts, stale_results
    from ipynb.fs.defs.utils import Paths, load_checkpoint, read_checkpoint_meta

    shipped = Paths.under(ROOT)
    for folder in sorted((ROOT / "models").iterdir()):
        arts = Artifacts.of(folder.name, shipped)
        for sae in arts.saes():
            meta = read_checkpoint_meta(arts.path(sae))
            rec = read_checkpoint_meta(arts.path(sae.recommender_name()))
            assert meta["recommender_weights_sha256"] == rec["weights_sha256"], sae
            load_checkpoint(arts.path(sae), dataset=folder.name)  # the SAE's own weights_sha256 still holds
        assert (ROOT / "res_csv" / folder.name / "provenance.json").is_file()
        assert stale_results(folder.name, shipped) == []


def test_every_shipped_table_records_its_checkpoints():
    from ipynb.fs.defs.artifacts import PROVENANCE_FILE, rerun_hint

    for folder in sorted(ROOT / "res_csv" / p.name for p in (ROOT / "models").iterdir() if p.is_dir()):
        record = json.loads((folder / PROVENANCE_FILE).read_text())
        tables = sorted(p.name for p in folder.glob("*.csv"))
        assert [t for t in tables if not record.get(t)] == [], folder  # a table without provenance cannot go stale
        assert [t for t in tables if rerun_hint(t) == "the notebook that wrote it"] == [], folder  # each names its producer


def test_training_pins_threads_and_records_them():
    from ipynb.fs.defs.data_processing import leave_one_out, make_synthetic
    from ipynb.fs.defs.models import MFConfig, TrainConfig, config_from_dict
    from ipynb.fs.defs.training import train_recommender

    syn = make_synthetic(n_users=60, n_items=40, per_user=8, seed=0)
    split = leave_one_out(syn, "random", seed=0)
    before = torch.get_num_threads()
    seen = []
    cfg = MFConfig(syn.n_users, syn.n_items, dim=8, train=TrainConfig(epochs=1, threads=1))
    import ipynb.fs.defs.training as training

    original = training._train_recommender

    def spy(*args):
        seen.append(torch.get_num_threads())
        return original(*args)

    training._train_recommender = spy
    try:
        _, history = train_recommender(cfg, split, progress=False)
    finally:
        training._train_recommender = original
    assert seen == [1] and history.threads == 1 and torch.get_num_threads() == before
    old = {"n_users": 3, "n_items": 4, "dim": 2, "train": {"epochs": 1}}  # a sidecar from before `threads`
    assert config_from_dict("mf", old).train.threads == 1


def test_progress_is_text_never_a_widget(capsys):
    import notebook_setup
    import tqdm.auto
    from ipynb.fs.defs.utils import progress_bar

    notebook_setup.install()
    bar = tqdm.auto.tqdm(range(3), desc="auto")
    list(bar)
    assert type(bar).__module__ == "tqdm.std"
    for _ in progress_bar(range(3), desc="epochs", unit="epoch"):
        pass
    err = capsys.readouterr().err
    assert "epochs: 100%" in err and "3/3" in err


def test_traceback_names_the_notebook_function_and_code_line(tmp_path, monkeypatch):
    import notebook_setup

    notebook_setup.install()
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {"language": "python", "name": "python3"}},
          "cells": [{"cell_type": "code", "metadata": {}, "source": ["def boom(x):\n", "    raise ValueError(f'bad {x}')\n"],
                     "outputs": [], "execution_count": None}]}
    (tmp_path / "nb_with_error.ipynb").write_text(json.dumps(nb))
    monkeypatch.syspath_prepend(str(tmp_path))
    from ipynb.fs.defs.nb_with_error import boom

    try:
        boom(3)
    except ValueError:
        text = traceback.format_exc()
    assert 'nb_with_error.ipynb", line' in text and "in boom" in text
    assert "raise ValueError(f'bad {x}')" in text and '"source"' not in text
    sys.modules.pop("ipynb.fs.defs.nb_with_error", None)


def test_report_names_carry_the_dataset(load_script):
    run_notebooks = load_script("run_notebooks")
    assert run_notebooks.report_dataset("visualization_SAE_mf", {}) == "ml-1m"
    assert run_notebooks.report_dataset("visualization_SAE_sasrec", {"DATASET": "ml-100k"}) == "ml-100k"
    assert run_notebooks.report_dataset("lastFM_notebook", {}) == "lastfm"
    assert run_notebooks.report_dataset("visualization_SAE_mf", {"SMOKE": True}) == "synthetic"


def test_papermill_from_the_repository_root(tmp_path, monkeypatch):
    """No --cwd: the notebook's first cell finds notebooks/ from the cwd (the repository root)."""
    import papermill as pm

    monkeypatch.delenv("MONOSEMREC_ROOT", raising=False)
    monkeypatch.chdir(ROOT)
    pm.execute_notebook("notebooks/visualization_SAE_mf.ipynb", str(tmp_path / "out.ipynb"),
                        parameters={"SMOKE": True}, kernel_name="python3", progress_bar=False, execution_timeout=600)


@pytest.mark.slow
@pytest.mark.realdata
def test_retrained_ml100k_mf_matches_the_shipped_checkpoint(data_root, tmp_path, capsys, load_script):
    """make retrain's path (scripts/retrain.py, training stage) on ML-100k MF, one thread, into a tmp run folder."""
    import pandas as pd

    retrain = load_script("retrain")
    code = retrain.main(["ml-100k", "--models", "mf", "--run", str(tmp_path / "run"), "--stages", "training"])
    assert code == 0
    new = pd.read_csv(tmp_path / "run" / "res_csv" / "ml-100k" / "recommenders.csv").set_index(["model", "protocol"])
    shipped = json.loads((ROOT / "models" / "ml-100k" / "mf.json").read_text())["metrics"]["test"]
    for protocol in ("full", "sampled"):
        assert abs(new.loc[("mf", protocol), "hr_at_10"] - shipped[protocol]["hr_at_10"]) <= retrain.HR_TOLERANCE
    assert json.loads((tmp_path / "run" / "models" / "ml-100k" / "mf.json").read_text())["training"]["threads"] == 1
    out = capsys.readouterr().out
    assert "hr_at_10_diff" in out and f"HR@10 within {retrain.HR_TOLERANCE} of shipped: 2 of 2" in out


def test_retrain_comparison_names_the_rows_outside_the_tolerance(load_script):
    import pandas as pd

    retrain = load_script("retrain")
    tol = retrain.HR_TOLERANCE
    frame = pd.DataFrame({"model": ["mf", "mf", "ncf", "itempop", "sasrec"],
                          "protocol": ["full", "sampled", "sampled", "full", "full"],
                          "hr_at_10_diff": [0.0, -tol, 2 * tol, 0.5, float("nan")]})
    text = retrain.tolerance_text(frame)
    assert text.startswith(f"HR@10 within {tol} of shipped: 2 of 4 recommender rows")  # itempop is not retrained
    assert f"ncf sampled (+{2 * tol:.4f})" in text and "sasrec full (+nan)" in text and "mf" not in text.split("outside")[1]
