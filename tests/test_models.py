"""Tests of the models notebook: the one recommender interface (SPEC §3), presets, checkpoints, SASRec masking."""

import dataclasses
import json

import pytest
import torch
from ipynb.fs.defs.models import (
    MF,
    MODEL_NAMES,
    NCF,
    MFConfig,
    NCFConfig,
    SASRec,
    SASRecConfig,
    TrainConfig,
    build_model,
    checkpoint_payload,
    config_from_dict,
    model_from_checkpoint,
    preset,
)
from ipynb.fs.defs.utils import CheckpointError, save_checkpoint

N_USERS, N_ITEMS, DIM, MAX_LEN = 7, 11, 8, 6


@pytest.fixture(autouse=True)
def _seed():
    """Each test starts from torch seed 0 (also done by conftest; kept so this file stands alone)."""
    torch.manual_seed(0)


def small_config(name: str):
    """A tiny config of each model."""
    if name == "mf":
        return MFConfig(N_USERS, N_ITEMS, dim=DIM)
    if name == "ncf":
        return NCFConfig(N_USERS, N_ITEMS, dim=DIM, hidden=(16, 8, 4), dropout=0.1)
    return SASRecConfig(N_ITEMS, dim=DIM, n_blocks=2, n_heads=2, max_len=MAX_LEN, dropout=0.2)


def batch(b: int = 5):
    """Random users (b,), items (b,) and left-padded item-id+1 sequences (b, MAX_LEN)."""
    users = torch.randint(0, N_USERS, (b,))
    items = torch.randint(0, N_ITEMS, (b,))
    seqs = torch.randint(1, N_ITEMS + 1, (b, MAX_LEN))
    lengths = torch.randint(1, MAX_LEN + 1, (b,))
    seqs[torch.arange(MAX_LEN)[None, :] < (MAX_LEN - lengths)[:, None]] = 0
    return users, items, seqs


@pytest.fixture(params=MODEL_NAMES)
def model(request):
    return build_model(small_config(request.param), seed=0).eval()


def test_shapes(model):
    users, items, seqs = batch()
    u, i_all, i_some = model.user_repr(users, seqs), model.item_repr(), model.item_repr(items)
    assert u.shape == (5, DIM) and i_all.shape == (N_ITEMS, DIM) and i_some.shape == (5, DIM)
    assert model.repr_dim == DIM and model.n_items == N_ITEMS
    assert torch.equal(i_all[items], i_some)
    assert model.score(u, i_some, users, items).shape == (5,)
    assert model.score_grid(u, i_all, users, torch.arange(N_ITEMS)).shape == (5, N_ITEMS)


def test_pair_score_equals_grid_entry_and_forward(model):
    users, items, seqs = batch()
    u = model.user_repr(users, seqs)
    pairs = model.score(u, model.item_repr(items), users, items)
    grid = model.score_grid(u, model.item_repr(), users, torch.arange(N_ITEMS))
    torch.testing.assert_close(pairs, grid[torch.arange(5), items])
    torch.testing.assert_close(model(users, items, seqs), pairs, rtol=0, atol=0)


def test_score_lists_equals_the_grid_entries(model):
    """score_lists (each user's own items, used by the SAE's prediction term) = the matching grid entries."""
    users, _, _ = batch()
    u = torch.randn(5, DIM, requires_grad=True)
    sub = torch.tensor([7, 2, 9, 0])  # item indices of the rows of the item table passed in
    i = torch.randn(len(sub), DIM)
    cols = torch.randint(0, len(sub), (5, 6))
    lists = model.score_lists(u, i, users, sub, cols)
    torch.testing.assert_close(lists, model.score_grid(u, i, users, sub).gather(1, cols))
    lists.sum().backward()
    assert u.grad.abs().sum() > 0


def test_score_is_a_function_of_arbitrary_representations(model):
    """The SAE feeds reconstructions: score and score_grid must differentiate w.r.t. any representation tensor."""
    users, items, _ = batch()
    u = torch.randn(5, DIM, requires_grad=True)
    i = torch.randn(N_ITEMS, DIM, requires_grad=True)
    grid = model.score_grid(u, i, users, torch.arange(N_ITEMS))
    pairs = model.score(u, i[items], users, items)
    torch.testing.assert_close(pairs, grid[torch.arange(5), items])
    (grid.sum() + pairs.sum()).backward()
    assert u.grad.abs().sum() > 0 and i.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="pairs"):
        model.score(u, i, users, items)  # 5 user rows vs 11 item rows


def test_gradient_flows_to_every_parameter(model):
    model.train()
    users, _, seqs = batch(16)
    items = torch.arange(16) % N_ITEMS
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(users, items, seqs), torch.ones(16))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0 or name == "global_bias", f"no gradient reaches {name}"


def test_ncf_grid_chunking_is_exact():
    model = build_model(small_config("ncf"), seed=0).eval()
    u, i = torch.randn(4, DIM), torch.randn(N_ITEMS, DIM)
    whole = model.score_grid(u, i)
    chunked = model.score_grid(u, i, chunk_elements=1)  # one item per chunk
    torch.testing.assert_close(whole, chunked)
    concat = model.tail(model.first(torch.cat([u[:, None].expand(-1, N_ITEMS, -1),
                                               i[None].expand(4, -1, -1)], dim=-1))).squeeze(-1)
    torch.testing.assert_close(whole, concat)  # the split first layer is the paper's concat layer


def test_mf_is_biased_dot_product():
    model = build_model(small_config("mf"), seed=0)
    with torch.no_grad():
        model.global_bias.fill_(0.5)
        model.user_bias.normal_()
        model.item_bias.normal_()
    users, items, _ = batch()
    p, q = model.user_emb.weight[users], model.item_emb.weight[items]
    expected = 0.5 + model.user_bias[users] + model.item_bias[items] + (p * q).sum(-1)
    torch.testing.assert_close(model(users, items), expected)
    no_user_bias = build_model(MFConfig(N_USERS, N_ITEMS, dim=DIM, user_bias=False))
    assert no_user_bias.user_bias is None
    assert no_user_bias.score_grid(p, q, users, items).shape == (5, 5)


def test_presets():
    mf = preset("mf", "paper", 100, 50)
    assert (mf.dim, mf.train.optimizer, mf.train.lr, mf.train.l2, mf.train.epochs, mf.train.batch_size) == (
        20, "sgd", 0.05, 0.01, 10, 256)
    ncf = preset("ncf", "paper", 100, 50)
    assert (ncf.dim, ncf.hidden, ncf.train.optimizer, ncf.train.epochs, ncf.train.batch_size) == (
        20, (64, 32, 16), "adam", 30, 256)
    assert preset("mf", "default", 100, 50).dim == 64
    sas = preset("sasrec", "default", 100, 50)
    assert sas.n_items == 50 and sas.train.loss == "softmax_ce"
    for name in MODEL_NAMES:
        assert isinstance(build_model(preset(name, "default", 100, 50)), (MF, NCF, SASRec))
    with pytest.raises(ValueError, match="no 'paper' preset"):
        preset("sasrec", "paper", 100, 50)
    with pytest.raises(ValueError, match="mf.*ncf.*sasrec"):
        preset("lightgcn", "default", 100, 50)
    with pytest.raises(ValueError, match="default.*paper"):
        preset("mf", "huge", 100, 50)


@pytest.mark.parametrize("make", [
    lambda: MFConfig(0, 5),
    lambda: MFConfig(5, 5, dim=0),
    lambda: MFConfig(5, 5, user_bias="yes"),
    lambda: MFConfig(5, 5, init_std=0.0),
    lambda: NCFConfig(5, 5, hidden=()),
    lambda: NCFConfig(5, 5, hidden=(8, -1)),
    lambda: NCFConfig(5, 5, dropout=1.0),
    lambda: SASRecConfig(5, dim=10, n_heads=3),
    lambda: SASRecConfig(5, max_len=0),
    lambda: TrainConfig(optimizer="rmsprop"),
    lambda: TrainConfig(loss="hinge"),
    lambda: TrainConfig(lr=0),
    lambda: TrainConfig(loss="bce", n_negatives=0),
    lambda: TrainConfig(batch_size=1.5),
    lambda: MFConfig(5, 5, train={"epochs": 0}),
])
def test_config_validation(make):
    with pytest.raises(ValueError):
        make()


def test_build_model_rejects_other_objects():
    with pytest.raises(ValueError, match="MFConfig"):
        build_model({"n_users": 3})


def test_config_json_round_trip():
    for name in MODEL_NAMES:
        config = small_config(name)
        assert config_from_dict(name, json.loads(json.dumps(dataclasses.asdict(config)))) == config
    with pytest.raises(ValueError, match="MFConfig"):
        config_from_dict("mf", {"n_users": 3, "n_items": 4, "colour": "red"})


def test_same_seed_same_initial_weights():
    for name in MODEL_NAMES:
        a, b = build_model(small_config(name), seed=3), build_model(small_config(name), seed=3)
        c = build_model(small_config(name), seed=4)
        sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
        assert not all(torch.equal(sa[k], sc[k]) for k in sa)
        torch.manual_seed(5)
        d = build_model(small_config(name))
        torch.manual_seed(5)
        e = build_model(small_config(name))
        assert all(torch.equal(v, e.state_dict()[k]) for k, v in d.state_dict().items())


def test_checkpoint_round_trip(model, tmp_path):
    users, items, seqs = batch()
    tensors, meta = checkpoint_payload(model)
    assert meta["model"] == model.MODEL_NAME and meta["config"] == dataclasses.asdict(model.config)
    assert all(t.is_contiguous() for t in tensors.values())
    save_checkpoint(tmp_path / "toy" / model.MODEL_NAME, tensors,
                    {**meta, "dataset": "toy", "data_fingerprint": "fp1", "metrics": {"ndcg@10": 0.1}})
    loaded = model_from_checkpoint(tmp_path / "toy" / model.MODEL_NAME, dataset="toy", fingerprint="fp1",
                                   model_name=model.MODEL_NAME)
    assert type(loaded) is type(model) and loaded.config == model.config and not loaded.training
    with torch.no_grad():
        u = loaded.user_repr(users, seqs)
        assert torch.equal(loaded.score_grid(u, loaded.item_repr(), users, torch.arange(N_ITEMS)),
                           model.score_grid(model.user_repr(users, seqs), model.item_repr(), users,
                                            torch.arange(N_ITEMS)))
        assert torch.equal(loaded(users, items, seqs), model(users, items, seqs))


def test_checkpoint_mismatches_are_refused(tmp_path):
    model = build_model(small_config("mf"), seed=0)
    tensors, meta = checkpoint_payload(model)
    path = tmp_path / "ml-1m" / "mf"
    save_checkpoint(path, tensors, {**meta, "dataset": "ml-1m", "data_fingerprint": "abc"})
    with pytest.raises(CheckpointError, match="dataset"):
        model_from_checkpoint(path, dataset="lastfm")
    with pytest.raises(CheckpointError, match="model"):
        model_from_checkpoint(path, model_name="ncf")
    with pytest.raises(CheckpointError, match="fingerprint"):
        model_from_checkpoint(path, fingerprint="xyz")
    # weights that do not fit the sidecar's config (e.g. another dataset's item count)
    other = checkpoint_payload(build_model(MFConfig(N_USERS, N_ITEMS + 1, dim=DIM)))[0]
    save_checkpoint(path, other, {**meta, "dataset": "ml-1m"})
    with pytest.raises(CheckpointError, match="do not fit"):
        model_from_checkpoint(path)


def test_sasrec_needs_sequences():
    model = build_model(small_config("sasrec"))
    with pytest.raises(ValueError, match="needs seqs"):
        model.user_repr(torch.arange(3))
    with pytest.raises(ValueError, match="max_len"):
        model.user_repr(None, torch.ones(2, MAX_LEN + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="item ids"):
        model.user_repr(None, torch.full((2, 3), N_ITEMS + 1))
    with pytest.raises(ValueError, match="item indices"):
        model.item_repr(torch.tensor([-1]))


def test_sasrec_item_repr_skips_padding_row():
    model = build_model(small_config("sasrec"))
    torch.testing.assert_close(model.item_repr(), model.item_emb.weight[1:])
    torch.testing.assert_close(model.item_repr(torch.tensor([0, N_ITEMS - 1])), model.item_emb.weight[[1, N_ITEMS]])
    logits = model.eval().sequence_logits(torch.tensor([[0, 2, 3], [1, 2, 3]]))
    assert logits.shape == (2, 3, N_ITEMS)
    torch.testing.assert_close(logits[:, -1], model.score_grid(model.user_repr(None, torch.tensor([[0, 2, 3], [1, 2, 3]])),
                                                                 model.item_repr()))


def test_sasrec_causality():
    model = build_model(small_config("sasrec"), seed=0).eval()
    seqs = torch.tensor([[0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 9, 10]])
    h = model.hidden_states(seqs)
    torch.testing.assert_close(h[0, :4], h[1, :4])
    assert not torch.allclose(h[0, 4:], h[1, 4:])


def test_sasrec_padding_invariance():
    model = build_model(small_config("sasrec"), seed=0).eval()
    short = torch.tensor([[4, 7, 2]])
    for padded in (torch.tensor([[0, 4, 7, 2]]), torch.tensor([[0, 0, 0, 4, 7, 2]])):
        torch.testing.assert_close(model.user_repr(None, padded), model.user_repr(None, short))
        assert torch.isfinite(model.hidden_states(padded)).all()
    # the padding content is irrelevant too: a batch mixing lengths gives each row's own answer
    mixed = torch.tensor([[0, 0, 0, 4, 7, 2], [3, 1, 4, 1, 5, 9]])
    torch.testing.assert_close(model.user_repr(None, mixed)[0], model.user_repr(None, short)[0])
    empty = model.user_repr(None, torch.zeros(1, MAX_LEN, dtype=torch.long))  # a user without history
    assert torch.isfinite(empty).all()
