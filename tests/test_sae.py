"""The Matryoshka SAE and its loss terms (SPEC §4)."""
import dataclasses

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
    pursuit_encode,
    sae_from_checkpoint,
    sae_payload,
    sae_preset,
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


def test_activation_registry_flags():
    from ipynb.fs.defs.sae import ACTIVATIONS, SAE_ACTIVATIONS

    assert SAE_ACTIVATIONS == tuple(ACTIVATIONS) and "jumprelu" in ACTIVATIONS
    assert ACTIVATIONS["topk"].uses_k and ACTIVATIONS["batchtopk"].needs_aux
    assert not ACTIVATIONS["relu"].uses_k and not ACTIVATIONS["jumprelu"].needs_aux
    SAEConfig(8, 4, activation="jumprelu", k=64)  # k is not read by JumpReLU, so it is not checked


def test_jumprelu_codes_are_zero_below_threshold_and_pre_above():
    sae, users, _ = _sae(activation="jumprelu")
    assert "log_threshold" in sae.state_dict() and "log_threshold" not in _sae()[0].state_dict()
    with torch.no_grad():
        sae.log_threshold.copy_(torch.linspace(-3.0, 0.5, 32))  # θ from 0.05 to 1.6
    pre = sae.pre_activation(users, "user")
    z = sae.activate(pre)
    theta = sae.log_threshold.exp()
    above = pre > theta
    assert above.any() and (~above).any()
    assert torch.equal(z[above], pre[above]) and z[~above].eq(0).all()


def test_jumprelu_threshold_gets_a_straight_through_gradient():
    from ipynb.fs.defs.sae import JUMPRELU_BANDWIDTH

    sae, users, _ = _sae(activation="jumprelu")
    pre = sae.pre_activation(users, "user").detach()
    with torch.no_grad():  # put each neuron's threshold just below one of its pre-activations (inside the window)
        sae.log_threshold.copy_((pre.abs().max(0).values - JUMPRELU_BANDWIDTH / 4).clamp_min(1e-3).log())
    z = sae.activate(pre.abs())
    z.sum().backward()
    grad = sae.log_threshold.grad
    assert grad is not None and grad.ne(0).any() and (grad <= 0).all()  # raising θ removes active mass


def test_jumprelu_sae_trains_and_its_loss_decreases():
    from ipynb.fs.defs.data_processing import leave_one_out, make_synthetic
    from ipynb.fs.defs.evaluation import representation_tables
    from ipynb.fs.defs.models import MFConfig, build_model
    from ipynb.fs.defs.sae_training import train_sae

    ds = make_synthetic(n_users=80, n_items=60, per_user=8, seed=0)
    split = leave_one_out(ds, "random", seed=0)
    tables = representation_tables(build_model(MFConfig(ds.n_users, ds.n_items, dim=8), seed=0), split, ds,
                                   top_n=10)
    cfg = SAEConfig(input_dim=8, n_neurons=32, activation="jumprelu", lambda_pred=0.0, epochs=8, batch_size=32,
                    lr=3e-3)
    sae, history = train_sae(cfg, tables, progress=False)
    assert history[-1]["total"] < history[0]["total"]
    assert not torch.allclose(sae.log_threshold.exp(), torch.full((32,), 1e-3))  # θ was learned


def test_committed_sae_checkpoints_still_load():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "models"
    sidecars = sorted(root.glob("*/sae_*.json"))
    if not sidecars:
        pytest.skip("no committed SAE checkpoints")
    for sidecar in sidecars:
        if not sidecar.with_suffix(".safetensors").is_file():
            continue
        sae = sae_from_checkpoint(sidecar.with_suffix(""))
        assert sae.config.activation in ("relu", "topk", "batchtopk") and not hasattr(sae, "log_threshold")


# --- the pursuit encoder (issue 11) ---
def _planted_dictionary(n=96, d=48, atoms=3, rows=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    dictionary = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)
    codes = torch.zeros(rows, n)
    for r in range(rows):
        codes[r, torch.randperm(n, generator=g)[:atoms]] = 0.5 + torch.rand(atoms, generator=g)
    return dictionary, codes


def test_pursuit_reconstructs_a_planted_sparse_combination_exactly():
    dictionary, codes = _planted_dictionary()
    z = pursuit_encode(codes @ dictionary, dictionary, k=8)
    assert torch.allclose(z @ dictionary, codes @ dictionary, atol=1e-4)
    assert torch.equal(z != 0, codes != 0) and torch.allclose(z, codes, atol=1e-3)


def test_pursuit_sae_codes_are_k_sparse_non_negative_and_only_at_inference():
    sae, users, _ = _sae(encoder="pursuit", k=4)
    with torch.no_grad():
        sae.W_dec.copy_(torch.nn.functional.normalize(sae.W_dec, dim=1))
    sae.eval()
    z = sae.encode(users, "user")
    assert ((z != 0).sum(1) <= 4).all() and (z >= 0).all() and (z != 0).any()
    linear = SAE(dataclasses.replace(sae.config, encoder="linear"))
    linear.load_state_dict(sae.state_dict())
    linear.eval()
    fve = lambda s: 1 - ((s.decode(s.encode(users, "user"), "user") - users) ** 2).sum() / (users - users.mean(0)).pow(2).sum()  # noqa: E731
    assert fve(sae) >= fve(linear) - 1e-6  # pursuit reconstructs at least as well as the amortised encoder here
    sae.train()
    assert torch.equal(sae.encode(users, "user"), linear.activate(linear.pre_activation(users, "user")))


def test_linear_encoder_is_the_default_and_unchanged():
    sae, users, _ = _sae()
    assert sae.config.encoder == "linear" and not sae.uses_pursuit
    sae.eval()
    assert torch.equal(sae.encode(users, "user"), sae.activate(sae.pre_activation(users, "user")))


def test_pursuit_needs_a_k_sparse_linear_decoder_and_recipe_fields_need_steps():
    for bad in ({"encoder": "pursuit", "activation": "relu"}, {"encoder": "pursuit", "attn_heads": 2},
                {"encoder": "nmf"}, {"grad_clip": 1.0}, {"dict_init": "data"}, {"steps": 10, "pred_finetune_steps": 20},
                {"pred_loss": "gram"}, {"steps": 10, "dead_rate": 0.01, "activation": "relu"}):
        with pytest.raises(ValueError):
            SAEConfig(**{"input_dim": 8, "n_neurons": 32, "k": 4, **bad})


def test_old_sidecars_load_with_the_new_fields_at_their_defaults():
    new = ("steps", "warmup_steps", "decay_frac", "grad_clip", "dict_init", "remove_parallel_grad",
           "pred_finetune_steps", "finetune_lr", "dead_rate", "homeostasis", "encoder", "threads",
           "pred_pool",  # issue 15
           "pursuit_tol", "pursuit_train")  # issue 11, adaptive sparsity
    names = [f.name for f in dataclasses.fields(SAEConfig)]
    assert tuple(names[-len(new):]) == new  # appended at the end: the stored field order is kept
    for preset in ("default", "paper"):
        old = {k: v for k, v in dataclasses.asdict(sae_preset(preset, 64)).items() if k not in new}
        assert SAEConfig.from_dict(old) == sae_preset(preset, 64)
    recipe = sae_preset("recipe", 64)
    assert recipe.steps > recipe.pred_finetune_steps > 0 and recipe.dict_init == "data" and recipe.encoder == "linear"
