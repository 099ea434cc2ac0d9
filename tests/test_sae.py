"""The Matryoshka SAE and its loss terms (SPEC §4)."""
import numpy as np
import pytest
import torch
from ipynb.fs.defs.sae import (
    SAE,
    SAEConfig,
    embedding_loss,
    firing_rate_estimate,
    kl_sparsity,
    prediction_loss,
    sae_from_checkpoint,
    sae_payload,
)


def _data(n=64, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), 2.0 * torch.randn(n, d, generator=g)


def _sae(**kw):
    users, items = _data(d=kw.get("input_dim", 8))
    torch.manual_seed(kw.pop("seed", 0))
    cfg = SAEConfig(**{"input_dim": 8, "n_neurons": 32, "k": 4, **kw})
    sae = SAE(cfg)
    sae.fit_scaling(users, items)
    return sae, users, items


@pytest.mark.parametrize("bad, match", [
    ({"prefixes": (16, 8, 32)}, "strictly increasing"),
    ({"prefixes": (8, 8, 32)}, "strictly increasing"),
    ({"prefixes": (4, 16)}, "must equal n_neurons"),
    ({"prefixes": (0, 32)}, "positive integers"),
    ({"prefixes": (4.5, 32)}, "positive integers"),
    ({"activation": "gelu"}, "activation"),
    ({"k": 64}, "exceeds n_neurons"),
    ({"rho": 0.0}, "rho"),
    ({"pred_loss": "hinge"}, "pred_loss"),
    ({"lambda_l1": -1.0}, "lambda_l1"),
])
def test_bad_configs_are_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        SAEConfig(8, 32, **bad)


def test_one_level_is_the_plain_sae():
    plain, users, _ = _sae()
    nested, _, _ = _sae(prefixes=(32,))
    assert plain.config.prefixes == nested.config.prefixes == (32,)
    x_hat_a, z_a = plain(users, "user")
    x_hat_b, z_b = nested(users, "user")
    assert torch.equal(z_a, z_b) and torch.equal(x_hat_a, x_hat_b)


def test_prefix_uses_only_its_first_neurons():
    sae, users, _ = _sae(prefixes=(8, 16, 32))
    z = sae.encode(users, "user")
    narrow = sae.decode(z, "user", width=8)
    with torch.no_grad():
        sae.W_dec[8:] = torch.randn_like(sae.W_dec[8:])  # later neurons' decoder rows do not matter
    z_later = z.clone()
    z_later[:, 8:] = torch.rand_like(z_later[:, 8:])  # nor do their activations
    assert torch.allclose(sae.decode(z_later, "user", width=8), narrow)


def test_full_width_prefix_equals_plain_decode():
    sae, users, _ = _sae(prefixes=(8, 16, 32))
    z = sae.encode(users, "item")
    recon = sae.prefix_reconstructions(z, "item")
    assert len(recon) == 3 and torch.allclose(recon[-1], sae.decode(z, "item"))
    with pytest.raises(ValueError):
        sae.decode(z, "item", width=33)


def test_topk_keeps_at_most_k_per_row():
    sae, users, items = _sae(activation="topk", k=3)
    for x, side in ((users, "user"), (items, "item")):
        z = sae.encode(x, side)
        assert ((z != 0).sum(dim=1) <= 3).all() and (z >= 0).all()


def test_batchtopk_keeps_k_per_row_on_average():
    sae, users, _ = _sae(activation="batchtopk", k=3)
    sae.train()
    z = sae.encode(users, "user")
    assert (z != 0).sum() <= 3 * len(users)
    assert sae.threshold > 0  # the inference threshold is being estimated
    sae.eval()
    assert torch.allclose(sae.encode(users[:1], "user"), sae.encode(users, "user")[:1], atol=1e-6)  # row-independent


def test_unknown_side_rejected():
    sae, users, _ = _sae()
    with pytest.raises(ValueError, match="side"):
        sae.encode(users, "artist")


def test_decoder_rows_unit_norm_after_steps():
    sae, users, items = _sae(prefixes=(8, 32))
    opt = torch.optim.Adam(sae.parameters(), lr=0.05)
    for _ in range(5):
        z = sae.encode(users, "user")
        loss = embedding_loss(sae, users, z, "user")
        opt.zero_grad()
        loss.backward()
        opt.step()
        sae.normalize_decoder()
        assert torch.allclose(sae.decoder().norm(dim=1), torch.ones(32), atol=1e-5)
    tied, _, _ = _sae(tied=True)
    assert tied.W_dec is None and torch.allclose(tied.decoder().norm(dim=1), torch.ones(32), atol=1e-5)


def test_kl_pushes_rates_towards_rho():
    pre = torch.tensor([[3.0, -3.0], [3.0, -3.0], [2.0, -2.0]], requires_grad=True)
    rate = firing_rate_estimate(pre, temperature=0.5)
    assert rate[0] > 0.9 and rate[1] < 0.1 and ((rate > 0) & (rate < 1)).all()
    kl_sparsity(rate, rho=0.3).backward()
    # gradient descent moves pre-activations against the gradient:
    assert (pre.grad[:, 0] > 0).all(), "the over-active neuron's rate must go down"
    assert (pre.grad[:, 1] < 0).all(), "the under-active neuron's rate must go up"
    assert kl_sparsity(torch.tensor([0.3, 0.3]), 0.3).abs() < 1e-7


def test_prediction_term_is_zero_for_a_perfect_reconstruction():
    scores = torch.randn(5, 7)
    for kind in ("mse", "listwise"):
        assert prediction_loss(scores, scores, kind).abs() < 1e-6
        assert prediction_loss(scores + torch.randn(5, 7), scores, kind) > 0
    with pytest.raises(ValueError):
        prediction_loss(scores, scores, "hinge")


def test_error_term_keeps_an_unedited_input():
    sae, users, _ = _sae()
    z = sae.encode(users, "user")
    assert torch.allclose(sae.edit(users, "user", z), users, atol=1e-6)


def test_checkpoint_round_trip(tmp_path):
    from ipynb.fs.defs.utils import CheckpointError, save_checkpoint

    sae, users, _ = _sae(activation="batchtopk", prefixes=(8, 32))
    tensors, meta = sae_payload(sae)
    save_checkpoint(tmp_path / "sae", tensors, {**meta, "dataset": "toy", "recommender": "mf"})
    loaded = sae_from_checkpoint(tmp_path / "sae", dataset="toy")
    assert loaded.config == sae.config
    assert torch.equal(loaded(users, "user")[0], sae.eval()(users, "user")[0])
    with pytest.raises(CheckpointError, match="dataset"):
        sae_from_checkpoint(tmp_path / "sae", dataset="ml-1m")
    save_checkpoint(tmp_path / "rec", tensors, {**meta, "dataset": "toy", "model": "mf"})
    with pytest.raises(CheckpointError):
        sae_from_checkpoint(tmp_path / "rec", dataset="toy")


def test_same_seed_same_init():
    a, users, _ = _sae(seed=3)
    b, _, _ = _sae(seed=3)
    assert np.allclose(a(users, "user")[0].detach().numpy(), b(users, "user")[0].detach().numpy())


def test_edit_delta_is_exactly_zero_without_an_edit_and_checks_shapes():
    sae, users, _ = _sae()
    z = sae.encode(users, "user")
    assert torch.equal(sae.edit_delta(z, z.clone(), "user"), torch.zeros_like(users))
    assert torch.equal(sae.edit(users, "user", z.clone()), users)
    with pytest.raises(ValueError, match="codes must both be"):
        sae.edit_delta(z, z[:, :8], "user")
