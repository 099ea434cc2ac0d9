"""utils notebook: paths, seeding, device, atomic CSV + cache switch, checkpoint save/load failure modes.

The metrics of utils are in tests/test_metrics.py.
"""
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from ipynb.fs.defs.utils import (
    CheckpointError,
    atomic_write_bytes,
    cached_csv,
    data_dir,
    get_device,
    load_checkpoint,
    models_dir,
    project_root,
    read_checkpoint_meta,
    recompute_requested,
    reports_dir,
    results_dir,
    save_checkpoint,
    seed_everything,
    write_csv,
)

ROOT = Path(__file__).resolve().parents[1]


# --- paths -------------------------------------------------------------------------------------------

def test_default_folders_sit_in_the_project(monkeypatch):
    for env in ("MONOSEMREC_DATA_DIR", "MONOSEMREC_MODELS_DIR", "MONOSEMREC_RESULTS_DIR", "MONOSEMREC_REPORTS_DIR"):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("MONOSEMREC_ROOT", str(ROOT))
    assert project_root() == ROOT
    assert (data_dir(), models_dir(), results_dir(), reports_dir()) == (
        ROOT / "dataset", ROOT / "models", ROOT / "res_csv", ROOT / "reports")


def test_every_folder_follows_its_environment_variable(monkeypatch, tmp_path):
    for env, fn in (("MONOSEMREC_DATA_DIR", data_dir), ("MONOSEMREC_MODELS_DIR", models_dir),
                    ("MONOSEMREC_RESULTS_DIR", results_dir), ("MONOSEMREC_REPORTS_DIR", reports_dir)):
        monkeypatch.setenv(env, str(tmp_path / env))
        assert fn() == (tmp_path / env).resolve()


def test_project_root_is_found_upwards_from_the_cwd(monkeypatch):
    monkeypatch.delenv("MONOSEMREC_ROOT", raising=False)
    monkeypatch.chdir(ROOT / "notebooks")
    assert project_root() == ROOT


def test_project_root_outside_the_project_says_what_to_set(monkeypatch, tmp_path):
    monkeypatch.delenv("MONOSEMREC_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="MONOSEMREC_ROOT"):
        project_root()


# --- seeding and device ------------------------------------------------------------------------------

def test_seed_everything_reproduces_python_numpy_and_torch():
    import random

    def draw(seed):
        rng = seed_everything(seed)
        return random.random(), np.random.rand(), torch.rand(2).tolist(), int(rng.integers(1 << 30))

    assert draw(11) == draw(11)
    assert all(a != b for a, b in zip(draw(11), draw(12), strict=True))


@pytest.mark.parametrize("bad", [-1, 1.5, "0", None])
def test_seed_everything_rejects_bad_seeds(bad):
    with pytest.raises(ValueError, match="non-negative integer"):
        seed_everything(bad)


def test_device_choice(monkeypatch, capsys):
    monkeypatch.delenv("MONOSEMREC_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert get_device().type == expected
    assert "device:" in capsys.readouterr().out  # the choice is printed
    monkeypatch.setenv("MONOSEMREC_DEVICE", "cpu")
    assert get_device(verbose=False).type == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_asking_for_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        get_device("cuda", verbose=False)


# --- atomic files and cached CSV ---------------------------------------------------------------------

def test_write_csv_row_order_does_not_depend_on_input_order(tmp_path):
    df = pd.DataFrame({"model": ["ncf", "mf", "mf"], "k": [1, 2, 1], "v": [0.5, 0.25, 0.125]})
    a = write_csv(df, tmp_path / "a.csv").read_bytes()
    b = write_csv(df.sample(frac=1.0, random_state=1), tmp_path / "b.csv").read_bytes()
    assert a == b == b"model,k,v\nmf,1,0.125\nmf,2,0.25\nncf,1,0.5\n"


def test_write_csv_bad_input(tmp_path):
    with pytest.raises(TypeError, match="DataFrame"):
        write_csv([1, 2], tmp_path / "x.csv")
    with pytest.raises(KeyError, match="nope"):
        write_csv(pd.DataFrame({"a": [1]}), tmp_path / "x.csv", sort_by=["nope"])
    assert not (tmp_path / "x.csv").exists()


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "r.csv"
    write_csv(pd.DataFrame({"a": [1, 2]}), target)
    before = target.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"half")
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv"]


def test_a_failing_computation_writes_nothing(tmp_path):
    def compute():
        raise RuntimeError("NaN in training")

    with pytest.raises(RuntimeError, match="NaN"):
        cached_csv(tmp_path / "r.csv", compute)
    assert list(tmp_path.iterdir()) == []


def test_cache_or_recompute_switch(tmp_path, monkeypatch):
    target = tmp_path / "r.csv"
    calls = []

    def compute():
        calls.append(1)
        return pd.DataFrame({"a": [len(calls)]})

    monkeypatch.delenv("MONOSEMREC_RECOMPUTE", raising=False)
    assert not recompute_requested()
    assert cached_csv(target, compute)["a"].tolist() == [1]          # computed
    assert cached_csv(target, compute)["a"].tolist() == [1]          # cached
    assert cached_csv(target, compute, recompute=True)["a"].tolist() == [2]
    monkeypatch.setenv("MONOSEMREC_RECOMPUTE", "1")
    assert recompute_requested()
    assert cached_csv(target, compute)["a"].tolist() == [3]          # the environment asks for a rebuild
    assert cached_csv(target, compute, recompute=False)["a"].tolist() == [3]  # an explicit argument wins
    assert len(calls) == 3


# --- checkpoints -------------------------------------------------------------------------------------

META = {"dataset": "ml-test", "model": "mf", "data_fingerprint": "abc", "config": {"dim": 3}}


@pytest.fixture
def checkpoint(tmp_path):
    stem = tmp_path / "ml-test" / "mf"
    save_checkpoint(stem, {"w": torch.arange(6.0).reshape(2, 3)}, META)
    return stem


def test_checkpoint_files_describe_themselves(checkpoint):
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["mf.json", "mf.safetensors"]
    meta = json.loads(checkpoint.with_suffix(".json").read_text())
    assert meta["config"] == {"dim": 3} and meta["data_fingerprint"] == "abc"
    assert meta["versions"]["torch"] == torch.__version__ and len(meta["weights_sha256"]) == 64
    assert not checkpoint.with_suffix(".safetensors").read_bytes().startswith(b"\x80")  # not a pickle


def test_checkpoint_round_trip(checkpoint):
    tensors, meta = load_checkpoint(checkpoint, dataset="ml-test", model="mf", fingerprint="abc")
    assert torch.equal(tensors["w"], torch.arange(6.0).reshape(2, 3))
    assert meta["model"] == "mf"


@pytest.mark.parametrize("wrong, words", [
    ({"dataset": "lastfm"}, "made for dataset 'ml-test', not 'lastfm'"),
    ({"model": "ncf"}, "made for model 'mf', not 'ncf'"),
    ({"fingerprint": "zzz"}, "fingerprint"),
])
def test_checkpoint_for_another_dataset_model_or_data_is_refused(checkpoint, wrong, words):
    with pytest.raises(CheckpointError, match=words):
        load_checkpoint(checkpoint, **wrong)


def test_corrupt_or_missing_checkpoint_files(checkpoint):
    weights, sidecar = checkpoint.with_suffix(".safetensors"), checkpoint.with_suffix(".json")
    blob = weights.read_bytes()
    weights.write_bytes(blob[:-4] + b"\x00\x00\x00\x00")
    with pytest.raises(CheckpointError, match="do not match their sidecar"):
        load_checkpoint(checkpoint)
    weights.unlink()
    with pytest.raises(CheckpointError, match="weights .* are missing"):
        load_checkpoint(checkpoint)
    sidecar.write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_checkpoint_meta(checkpoint)
    sidecar.unlink()
    with pytest.raises(CheckpointError, match="train the model first"):
        load_checkpoint(checkpoint)


def test_save_checkpoint_bad_input_writes_nothing(tmp_path):
    stem = tmp_path / "x" / "mf"
    with pytest.raises(ValueError, match="'dataset'"):
        save_checkpoint(stem, {"w": torch.zeros(1)}, {"model": "mf"})
    with pytest.raises(TypeError, match="torch.Tensor"):
        save_checkpoint(stem, {"w": np.zeros(1)}, {"dataset": "d", "model": "mf"})
    assert not stem.parent.exists() or list(stem.parent.iterdir()) == []
