"""Shared fixtures: an autouse seed, the real-data folder (skipped with a reason when absent), synthetic data."""
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("MONOSEMREC_ROOT", str(ROOT))


def real_data_dir() -> Path | None:
    """$MONOSEMREC_DATA_DIR if it holds any dataset, else ../shared/datasets beside the checkout, else None."""
    for candidate in (os.environ.get("MONOSEMREC_DATA_DIR"), ROOT.parent / "shared" / "datasets", ROOT / "dataset"):
        if candidate and any((Path(candidate) / name).is_dir() for name in ("ml-1m", "ml-100k", "lastfm", "hetrec2011-lastfm-2k")):
            return Path(candidate)
    return None


_REAL = real_data_dir()
if _REAL is not None:  # notebooks' default data folder during tests: the real data when present
    os.environ.setdefault("MONOSEMREC_DATA_DIR", str(_REAL))
os.environ.setdefault("MONOSEMREC_OFFLINE", "1")  # tests never download; the download tests use a loopback server


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same random state."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def data_root() -> Path:
    """Folder with the real datasets; the test is skipped (with the reason) when there is none."""
    folder = real_data_dir()
    if folder is None:
        pytest.skip("real datasets not found: set MONOSEMREC_DATA_DIR or place ../shared/datasets beside the checkout")
    return folder


@pytest.fixture(scope="session")
def synthetic():
    """A small synthetic dataset with planted concepts."""
    from ipynb.fs.defs.data_processing import make_synthetic

    return make_synthetic(n_users=150, n_items=90, per_user=12, seed=3)


@pytest.fixture(scope="session")
def planted_mf_sae():
    """(mf, sae, tables, split, dataset): a small MF on planted-concept synthetic data with a trained SAE, shared by
    the intervention and steering tests."""
    from ipynb.fs.defs.data_processing import leave_one_out, make_synthetic
    from ipynb.fs.defs.evaluation import representation_tables
    from ipynb.fs.defs.models import MFConfig, TrainConfig
    from ipynb.fs.defs.sae import sae_preset
    from ipynb.fs.defs.sae_training import train_sae
    from ipynb.fs.defs.training import train_recommender

    torch.manual_seed(0)
    syn = make_synthetic(n_users=300, n_items=120, per_user=15, beta=5.0, seed=2)
    split = leave_one_out(syn, "random", seed=0)
    tc = TrainConfig(loss="softmax_ce", n_negatives=0, lr=1e-2, epochs=20, batch_size=64, l2=1e-3, patience=20)
    mf, _ = train_recommender(MFConfig(n_users=syn.n_users, n_items=syn.n_items, dim=16, train=tc), split,
                              progress=False, seed=0)
    tables = representation_tables(mf, split, syn)
    sae, _ = train_sae(sae_preset("default", 16, "mf", n_neurons=32, k=4, epochs=20), tables, progress=False)
    return mf, sae, tables, split, syn


@pytest.fixture(scope="module")
def planted():
    """(dataset, split, tables): a synthetic dataset with strongly planted concepts, its split and the tables of an MF
    trained on it (seeded by its TrainConfig); the SAE-training and fast-path tests share it."""
    from ipynb.fs.defs.data_processing import leave_one_out, make_synthetic
    from ipynb.fs.defs.evaluation import representation_tables
    from ipynb.fs.defs.models import MFConfig, TrainConfig
    from ipynb.fs.defs.training import train_recommender

    ds = make_synthetic(n_users=400, n_items=300, n_concepts=6, per_user=20, beta=5.0, seed=0)
    split = leave_one_out(ds, "random", seed=0)
    config = MFConfig(n_users=ds.n_users, n_items=ds.n_items, dim=16,
                      train=TrainConfig(loss="softmax_ce", n_negatives=0, lr=1e-2, l2=1e-2, epochs=30, patience=30,
                                        batch_size=64))
    model, _ = train_recommender(config, split, progress=False)
    return ds, split, representation_tables(model, split, ds)


def _load_script(name: str):
    """scripts/<name>.py as a fresh module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_script():
    """load_script(name): scripts/<name>.py as a module, so tests call the scripts' functions directly."""
    return _load_script


@pytest.fixture(scope="session")
def render_reports():
    """render_reports(folder, args): scripts/run_notebooks.py main(args) with the reports written under `folder`
    ($MONOSEMREC_REPORTS_DIR set for the call and restored after); returns the exit status."""
    def render(folder: Path, args: list[str]) -> int:
        old = os.environ.get("MONOSEMREC_REPORTS_DIR")
        os.environ["MONOSEMREC_REPORTS_DIR"] = str(folder)
        try:
            return _load_script("run_notebooks").main(args)
        finally:
            if old is None:
                os.environ.pop("MONOSEMREC_REPORTS_DIR", None)
            else:
                os.environ["MONOSEMREC_REPORTS_DIR"] = old

    return render


CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def system_chromium() -> str | None:
    """Path of the system Chromium ($MONOSEMREC_CHROMIUM, else the first of CHROMIUM_NAMES on PATH), or None."""
    import shutil

    given = os.environ.get("MONOSEMREC_CHROMIUM")
    if given:
        return given if Path(given).is_file() else None
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


@pytest.fixture(scope="session")
def chromium() -> str:
    """The system Chromium with Playwright importable (browser tests); skips with the reason otherwise."""
    import importlib.util

    if importlib.util.find_spec("playwright") is None:
        pytest.skip("playwright is not installed (pip install -r requirements-dev.txt)")
    path = system_chromium()
    if path is None:
        pytest.skip("no system chromium on PATH (Debian: apt-get install chromium; .ci/run tries it)")
    return path
