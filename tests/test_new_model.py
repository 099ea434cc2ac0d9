"""A new recommender family plugs in through models.MODEL_CLASSES alone: LightGCN trains with the shared
training loop and is evaluated by the shared evaluation code, with no change to either."""

import numpy as np
import pytest
import torch
from ipynb.fs.defs.data_processing import leave_one_out, make_synthetic
from ipynb.fs.defs.evaluation import evaluate, representation_tables
from ipynb.fs.defs.models import MODEL_CLASSES, LightGCN, LightGCNConfig, TrainConfig, build_model
from ipynb.fs.defs.training import train_recommender


@pytest.fixture(scope="module")
def data():
    ds = make_synthetic(n_users=60, n_items=50, per_user=8, seed=0)
    return ds, leave_one_out(ds, "random", seed=0)


def test_lightgcn_is_registered_once():
    assert MODEL_CLASSES["lightgcn"] == (LightGCNConfig, LightGCN)
    assert isinstance(build_model(LightGCNConfig(5, 6)), LightGCN)


def test_lightgcn_trains_and_evaluates(data):
    ds, split = data
    config = LightGCNConfig(split.n_users, split.n_items, dim=8, n_layers=2,
                            train=TrainConfig(epochs=1, batch_size=64, patience=0, lr=1e-2))
    model, history = train_recommender(config, split, progress=False)
    assert isinstance(model, LightGCN) and history.epochs_trained == 1 and np.isfinite(history.epochs[0]["loss"])
    assert model.graph is not None and "graph" not in model.state_dict()  # prepare(split) built the graph
    metrics = evaluate(model, split, "test", protocols=("full",))  # 50 items: too few for 99 sampled negatives
    assert 0.0 <= metrics["full"]["hr_at_10"] <= 1.0 and metrics["full"]["n_users"] == split.n_users
    again, _ = train_recommender(config, split, progress=False)  # same seed, same model
    for key, value in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[key], value, rtol=0, atol=0)
    tables = representation_tables(model, split, ds)
    assert tables.users.shape == (split.n_users, 8) and tables.items.shape == (split.n_items, 8)


def test_lightgcn_graph_is_normalised(data):
    _, split = data
    model = LightGCN(LightGCNConfig(split.n_users, split.n_items, dim=4, n_layers=1))
    with pytest.raises(ValueError, match="fit_graph"):
        model.item_repr()
    model.fit_graph(split)
    dense = model.graph.to_dense()
    assert torch.allclose(dense, dense.T)
    train = torch.as_tensor(split.matrix(("train",)).toarray(), dtype=torch.float32)
    deg_u, deg_i = train.sum(1), train.sum(0)
    u, i = map(int, torch.nonzero(train)[0])
    assert torch.isclose(dense[u, split.n_users + i], 1 / torch.sqrt(deg_u[u] * deg_i[i]))
    ego = torch.cat([model.user_emb.weight, model.item_emb.weight])
    expected = (ego + dense @ ego) / 2
    torch.testing.assert_close(model.item_repr(), expected[split.n_users:])
