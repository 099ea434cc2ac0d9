"""Tests of the training notebook: training loops, evaluation protocols, checkpoints, results table,
and (on the real data) that every committed checkpoint re-evaluates to the metrics in its sidecar."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from ipynb.fs.defs.artifacts import ArtifactName, Artifacts, load_recommender
from ipynb.fs.defs.data_processing import leave_one_out, load_dataset, make_synthetic
from ipynb.fs.defs.evaluation import (
    EVAL_NEGATIVES,
    EvalSet,
    evaluate,
    itempop_metrics,
    make_eval_set,
    model_ranks,
)
from ipynb.fs.defs.experiments import PRETRAINED, recommender_config, split_of
from ipynb.fs.defs.models import MFConfig, TrainConfig, build_model, preset
from ipynb.fs.defs.training import (
    NegativeSampler,
    TrainingDiverged,
    check_targets,
    save_recommender,
    train_and_save_all,
    train_recommender,
)
from ipynb.fs.defs.utils import CheckpointError, Paths

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ("mf", "ncf", "sasrec")


@pytest.fixture(scope="module")
def syn():
    """Synthetic data with timestamps and enough items for 99 sampled negatives."""
    return make_synthetic(n_users=120, n_items=160, per_user=12, seed=5)


@pytest.fixture(scope="module")
def tsplit(syn):
    return leave_one_out(syn, "temporal", seed=0)


def tiny_config(arch: str, syn, **train):
    """A small, fast config of each architecture."""
    tc = {"epochs": 1, "batch_size": 256, "patience": 0, **train}
    if arch == "mf":
        return MFConfig(syn.n_users, syn.n_items, dim=16, train=TrainConfig(**tc))
    if arch == "ncf":
        return dataclasses.replace(preset("ncf", "default", syn.n_users, syn.n_items), dim=16, hidden=(16, 8),
                                   train=TrainConfig(**tc))
    base = preset("sasrec", "default", syn.n_users, syn.n_items)
    return dataclasses.replace(base, dim=16, max_len=12, train=dataclasses.replace(base.train, **tc))


@pytest.mark.parametrize("arch", ARCHS)
def test_one_epoch_smoke(arch, syn, tsplit):
    model, history = train_recommender(tiny_config(arch, syn), tsplit, progress=False)
    assert history.epochs_trained == 1 and history.best_epoch == 1 and not model.training
    assert np.isfinite(history.epochs[0]["loss"]) and history.seconds > 0
    metrics = evaluate(model, tsplit, "test")
    for protocol in ("sampled", "full"):
        m = metrics[protocol]
        assert 0 <= m["ndcg_at_10"] <= m["hr_at_10"] <= 1 and m["n_users"] == syn.n_users


@pytest.mark.parametrize("arch", ARCHS)
def test_loss_decreases(arch, syn, tsplit):
    config = tiny_config(arch, syn, epochs=6, lr=1e-2)
    _, history = train_recommender(config, tsplit, progress=False)
    losses = [row["loss"] for row in history.epochs]
    assert losses[-1] < 0.95 * losses[0], losses


@pytest.mark.parametrize("arch", ARCHS)
def test_same_seed_same_metrics(arch, syn, tsplit):
    runs = [train_recommender(tiny_config(arch, syn, epochs=2, seed=s), tsplit, progress=False) for s in (3, 3, 4)]
    (m1, h1), (m2, h2), (m3, h3) = runs
    assert h1.epochs == [dict(r, seconds=h1.epochs[i]["seconds"]) for i, r in enumerate(h2.epochs)]
    assert evaluate(m1, tsplit) == evaluate(m2, tsplit)
    assert all(torch.equal(v, m2.state_dict()[k]) for k, v in m1.state_dict().items())
    assert not all(torch.equal(v, m3.state_dict()[k]) for k, v in m1.state_dict().items())


def test_softmax_loss_for_mf(syn, tsplit):
    config = tiny_config("mf", syn, loss="softmax_ce", n_negatives=0, epochs=5, lr=1e-2, batch_size=32, l2=1e-3)
    model, history = train_recommender(config, tsplit, progress=False)
    assert history.epochs[-1]["loss"] < history.epochs[0]["loss"]
    assert evaluate(model, tsplit)["full"]["hr_at_10"] > itempop_metrics(tsplit)["full"]["hr_at_10"] * 0.5


def test_early_stopping_keeps_best_weights(syn, tsplit, monkeypatch):
    """Validation NDCG 0.3, 0.5, 0.4, 0.4, ...: stops after `patience` epochs without gain, restores epoch 2."""
    import ipynb.fs.defs.training as training

    scores = iter([0.3, 0.5, 0.4, 0.4, 0.4, 0.4])
    states = []
    real_evaluate = training.evaluate

    def fake_evaluate(model, split_or_eval_set, stage="test", protocols=("sampled", "full"), **kw):
        if isinstance(split_or_eval_set, EvalSet) and split_or_eval_set.stage == "valid":
            states.append({k: v.clone() for k, v in model.state_dict().items()})
            s = next(scores)
            return {p: {"hr_at_10": s, "ndcg_at_10": s, "n_users": 1} for p in protocols}
        return real_evaluate(model, split_or_eval_set, stage, protocols, **kw)

    monkeypatch.setattr(training, "evaluate", fake_evaluate)
    model, history = training.train_recommender(tiny_config("mf", syn, epochs=6, patience=2, lr=1e-2), tsplit,
                                                progress=False)
    assert history.epochs_trained == 4 and history.best_epoch == 2 and "early stop" in history.stop_reason
    assert all(torch.equal(v, states[1][k]) for k, v in model.state_dict().items())


def test_nan_loss_raises_and_writes_nothing(syn, tmp_path, monkeypatch):
    import ipynb.fs.defs.training as training

    def absurd(name, dataset, n_users, n_items, epochs=None):
        return MFConfig(n_users, n_items, dim=8, train=TrainConfig(optimizer="sgd", lr=1e30, epochs=3))

    monkeypatch.setattr(training, "recommender_config", absurd)
    with pytest.raises(TrainingDiverged, match=r"epoch 1, batch \d+.*smaller lr"):
        training.train_and_save_all("synthetic", ["mf"], retrain=True, progress=False, ds=syn,
                                    paths=Paths.under(tmp_path))
    assert not any(tmp_path.rglob("*.*")), list(tmp_path.rglob("*"))


def test_nan_from_the_data_side_is_caught(syn, tsplit, monkeypatch):
    import ipynb.fs.defs.training as training
    from ipynb.fs.defs.models import MF

    monkeypatch.setattr(MF, "train_loss",
                        lambda self, batch, tc, sampler=None, rng=None: (torch.tensor(float("nan"), requires_grad=True), 1))
    with pytest.raises(TrainingDiverged, match="nan"):
        training.train_recommender(tiny_config("mf", syn), tsplit, progress=False)


def test_checkpoint_round_trip_via_training(syn, tmp_path):
    split = split_of(syn, "ncf")
    model, history = train_recommender(tiny_config("ncf", syn), split, progress=False)
    metrics = evaluate(model, split, "test")
    save_recommender(model, Artifacts.of("synthetic", tmp_path).path("ncf"), split, syn, metrics, history,
                     name="ncf", preset_name="default")
    meta = json.loads((tmp_path / "models" / "synthetic" / "ncf.json").read_text())
    for key in ("dataset", "model", "config", "metrics", "data_fingerprint", "dataset_fingerprint", "data_source",
                "split", "evaluation", "training", "versions", "weights_sha256"):
        assert key in meta, key
    assert meta["data_fingerprint"] == split.fingerprint and meta["dataset_fingerprint"] == syn.fingerprint
    assert meta["split"]["kind"] == "random" and meta["split"]["seed"] == 0
    assert meta["evaluation"]["candidate_seed"] == 0 and meta["training"]["epochs_trained"] == 1
    assert set(meta["metrics"]) == {"test", "valid_best"}
    loaded, _ = load_recommender("synthetic", "ncf", split, paths=tmp_path)
    assert evaluate(loaded, split, "test") == metrics
    users = torch.arange(5)
    torch.testing.assert_close(loaded(users, users), model(users, users), rtol=0, atol=0)


def test_wrong_checkpoint_is_refused(syn, tmp_path):
    split = split_of(syn, "mf")
    model, history = train_recommender(tiny_config("mf", syn), split, progress=False)
    save_recommender(model, Artifacts.of("synthetic", tmp_path).path("mf"), split, syn, evaluate(model, split),
                     history, name="mf")
    models = tmp_path / "models"
    (models / "ml-1m").mkdir()
    for suffix in (".json", ".safetensors"):  # the synthetic checkpoint copied into the ml-1m folder
        (models / "ml-1m" / f"mf{suffix}").write_bytes((models / "synthetic" / f"mf{suffix}").read_bytes())
        (models / "synthetic" / f"ncf{suffix}").write_bytes((models / "synthetic" / f"mf{suffix}").read_bytes())
    with pytest.raises(CheckpointError, match="dataset 'synthetic', not 'ml-1m'"):
        load_recommender("ml-1m", "mf", paths=tmp_path)
    with pytest.raises(CheckpointError, match="model 'mf', not 'ncf'"):
        load_recommender("synthetic", "ncf", paths=tmp_path)
    with pytest.raises(CheckpointError, match="fingerprint"):
        load_recommender("synthetic", "mf", leave_one_out(syn, "random", seed=1), paths=tmp_path)
    with pytest.raises(CheckpointError, match="no checkpoint sidecar"):
        load_recommender("synthetic", "sasrec", paths=tmp_path)


def test_evaluation_matches_brute_force(syn):
    """Both protocols against a direct numpy computation on a random MF."""
    split = leave_one_out(syn, "random", seed=0)
    model = build_model(MFConfig(syn.n_users, syn.n_items, dim=8), seed=1).eval()
    with torch.no_grad():
        model.item_bias.normal_()
        grid = model.score_grid(model.user_repr(torch.arange(syn.n_users)), model.item_repr(),
                                torch.arange(syn.n_users), torch.arange(syn.n_items)).numpy()
    ev = make_eval_set(split, "test")
    history = split.history("test").toarray() > 0
    full, sampled = [], []
    for u, t, cand in zip(ev.users, ev.targets, ev.candidates, strict=True):
        others = np.delete(np.flatnonzero(~history[u]), np.flatnonzero(np.flatnonzero(~history[u]) == t))
        full.append(int((grid[u, others] >= grid[u, t]).sum()))
        sampled.append(int((grid[u, cand[1:]] >= grid[u, t]).sum()))
    assert model_ranks(model, ev, "full").tolist() == full
    assert model_ranks(model, ev, "sampled").tolist() == sampled
    assert ev.candidates.shape == (syn.n_users, 1 + EVAL_NEGATIVES)
    assert model_ranks(model, ev, "full", batch_size=7).tolist() == full  # batching does not matter


def test_itempop_uses_training_counts(syn):
    split = leave_one_out(syn, "random", seed=0)
    m = itempop_metrics(split)
    pop = np.asarray(split.matrix().sum(0)).ravel()
    ev = make_eval_set(split, "test")
    ranks = (pop[ev.candidates[:, 1:]] >= pop[ev.targets][:, None]).sum(1)
    assert m["sampled"]["hr_at_10"] == float(np.mean(ranks < 10))


def test_negative_sampler_excludes_history():
    history = sp.csr_matrix(np.array([[1, 1, 1, 0, 0], [0, 0, 0, 0, 1], [1, 1, 1, 1, 0]]))
    for dense_max in (0, 1):
        draws = NegativeSampler(history, dense_max=dense_max)(np.array([0, 1, 2] * 200), 3, np.random.default_rng(0))
        assert set(draws[0::3].ravel()) == {3, 4} and 4 not in draws[1::3] and set(draws[2::3].ravel()) == {4}
    with pytest.raises(ValueError, match="every item"):
        NegativeSampler(sp.csr_matrix(np.ones((2, 3))))


def test_results_table_and_reuse(syn, tmp_path):
    kw = dict(progress=False, paths=Paths.under(tmp_path), ds=syn)
    first = train_and_save_all("synthetic", ["mf", "sasrec"], epochs=1, retrain=True, **kw)
    csv = tmp_path / "res_csv" / "synthetic" / "recommenders.csv"
    assert {"model", "protocol", "split", "hr_at_10", "ndcg_at_10"} <= set(first.columns)
    assert sorted(first["model"].unique()) == ["itempop", "mf", "sasrec"]
    assert len(first) == 2 * 2 + 2 * 2  # two models + ItemPop on each of the two splits, two protocols
    assert list(first.sort_values(["split", "model", "protocol"], kind="mergesort").index) == list(first.index)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "models").rglob("*.safetensors")}
    second = train_and_save_all("synthetic", ["mf"], **kw)  # re-evaluates, keeps sasrec's rows
    pd.testing.assert_frame_equal(first, second)
    assert before == {p: p.stat().st_mtime_ns for p in (tmp_path / "models").rglob("*.safetensors")}
    assert csv.read_text() == second.to_csv(index=False, float_format="%.6g", lineterminator="\n")


def test_configs_and_targets():
    for dataset, names in PRETRAINED.items():
        for name in names:
            config = recommender_config(name, dataset, 50, 40, epochs=3)
            assert config.train.epochs == 3 and config.n_items == 40
            family = ArtifactName.parse(name).family
            assert type(config) is type(preset(family, "default", 50, 40)) if family != "sasrec" else True
    assert recommender_config("mf_paper", "ml-1m", 50, 40) == preset("mf", "paper", 50, 40)
    assert recommender_config("ncf_paper", "ml-1m", 50, 40).dim == 20
    with pytest.raises(ValueError, match="not a checkpoint name"):
        recommender_config("gru4rec", "ml-1m", 5, 5)
    frame = check_targets(pd.DataFrame({"dataset": "ml-1m", "model": ["mf"] * 2 + ["ncf"], "protocol":
                                        ["sampled", "full", "sampled"], "hr_at_10": [0.83, 0.21, 0.78],
                                        "ndcg_at_10": [0.57, 0.1, 0.5]}))
    assert frame["met"].tolist() == [True, True, True, False]


def committed_checkpoints() -> list[Path]:
    return sorted(p for p in (ROOT / "models").glob("*/*.json") if not p.stem.startswith("sae_"))


def test_every_pretrained_checkpoint_is_committed():
    present = {(p.parent.name, p.stem) for p in committed_checkpoints()}
    for dataset in ("ml-1m", "lastfm", "ml-100k"):
        for name in PRETRAINED[dataset]:
            assert (dataset, name) in present, f"models/{dataset}/{name} missing"
            assert (ROOT / "models" / dataset / f"{name}.safetensors").stat().st_size < 10 * 2**20
    for dataset in ("ml-1m", "lastfm", "ml-100k"):
        table = pd.read_csv(ROOT / "res_csv" / dataset / "recommenders.csv")
        assert set(PRETRAINED[dataset]) | {"itempop"} <= set(table["model"])


@pytest.mark.realdata
def test_committed_checkpoints_reproduce_their_metrics(data_root):
    datasets = {}
    for sidecar in committed_checkpoints():
        dataset, name = sidecar.parent.name, sidecar.stem
        if dataset not in datasets:
            datasets[dataset] = load_dataset(dataset, root=data_root)
        ds = datasets[dataset]
        meta = json.loads(sidecar.read_text())
        assert meta["dataset_fingerprint"] == ds.fingerprint and meta["data_source"] == ds.meta["source"]
        split = leave_one_out(ds, meta["split"]["kind"], seed=meta["split"]["seed"])
        model, _ = load_recommender(dataset, name, split, paths=ROOT)
        metrics = evaluate(model, split, "test", candidate_seed=meta["evaluation"]["candidate_seed"])
        for protocol in ("sampled", "full"):
            stored = meta["metrics"]["test"][protocol]
            assert abs(metrics[protocol]["hr_at_10"] - stored["hr_at_10"]) <= 1e-6, (dataset, name, protocol)
            assert abs(metrics[protocol]["ndcg_at_10"] - stored["ndcg_at_10"]) <= 1e-6, (dataset, name, protocol)
