"""train_sae / evaluate_sae / the planted-concept check (issue 4), on small synthetic instances."""
import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from ipynb.fs.defs.data_processing import leave_one_out, make_synthetic
from ipynb.fs.defs.evaluation import evaluate_sae, heldout_mask, planted_recovery, representation_tables
from ipynb.fs.defs.experiments import sae_runs, wide_runs
from ipynb.fs.defs.sae import SAEConfig, sae_preset
from ipynb.fs.defs.sae_training import _sample_positives, train_sae
from ipynb.fs.defs.utils import Paths


def _config(tables, **kw):
    base = dict(n_neurons=16, activation="topk", k=2, lambda_pred=0.0, epochs=30, batch_size=64, lr=3e-3)
    return SAEConfig(input_dim=tables.users.shape[1], **{**base, **kw})


def test_heldout_partition_is_disjoint_and_deterministic(planted):
    _, _, tables = planted
    rows = set(tables.train_rows.tolist())
    assert rows.isdisjoint(tables.heldout_rows.tolist())
    assert len(rows) + len(tables.heldout_rows) == tables.users.shape[0]
    assert set(tables.train_items.tolist()).isdisjoint(tables.heldout_items.tolist())
    ids = np.arange(10_000)
    share = heldout_mask(ids, 0.1, seed=0).mean()
    assert 0.08 < share < 0.12 and np.array_equal(heldout_mask(ids, 0.1, 0), heldout_mask(ids[::-1], 0.1, 0)[::-1])


def test_loss_decreases(planted):
    _, _, tables = planted
    _, history = train_sae(_config(tables, lambda_pred=0.3, pred_loss="listwise", epochs=12), tables, progress=False)
    assert history[-1]["total"] < 0.7 * history[0]["total"]
    assert history[-1]["pred"] < history[0]["pred"]


def test_same_seed_same_result(planted):
    _, _, tables = planted
    cfg = _config(tables, epochs=5, lambda_pred=0.3)
    a, ha = train_sae(cfg, tables, progress=False)
    b, hb = train_sae(cfg, tables, progress=False)
    assert ha == hb
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(pa, pb), name
    c, _ = train_sae(dataclasses.replace(cfg, seed=1), tables, progress=False)
    assert not torch.equal(a.decoder(), c.decoder())


def test_nan_stops_training_with_a_clear_error(planted):
    _, _, tables = planted
    bad = dataclasses.replace(tables, users=tables.users.clone())
    bad.users[bad.train_rows[0]] = float("nan")
    with pytest.raises(FloatingPointError, match="Nothing was saved"):
        train_sae(_config(tables, epochs=2), bad, progress=False)


def test_matryoshka_and_relu_presets_train(planted):
    _, _, tables = planted
    d = tables.users.shape[1]
    for cfg in (_config(tables, epochs=3, n_neurons=32, prefixes=(4, 8, 32), k=4),
                sae_preset("paper", d, "mf", epochs=3), sae_preset("paper", d, "ncf", epochs=3)):
        sae, history = train_sae(cfg, tables, progress=False)
        assert np.isfinite(history[-1]["total"])
        assert torch.allclose(sae.decoder().norm(dim=1), torch.ones(cfg.n_neurons), atol=1e-5)


def test_evaluate_sae_fields_and_ranges(planted):
    _, split, tables = planted
    sae, _ = train_sae(_config(tables, epochs=20, n_neurons=32, k=8, prefixes=(8, 32)), tables, progress=False)
    m = evaluate_sae(sae, tables, split)
    for key in ("rbo_ext_at_20", "rbo_ext_at_20_user", "rbo_trunc_at_30", "dead_frac_heldout", "dead_frac_all", "dense_frac"):
        assert 0.0 <= m[key] <= 1.0, key
    assert m["rbo_trunc_at_30"] < 0.96  # the paper's truncated RBO cannot reach 1 even for identical lists
    assert 0 < m["l0"] <= 8 + 1e-9 and m["fve_users"] <= 1 and m["fve_items"] <= 1
    assert -1 <= m["weighted_tau"] <= 1 and m["hr_at_10_original"] > 0
    assert {"fve_users_prefix_8", "fve_items_prefix_32"} <= set(m)
    assert m["fve_users_prefix_8"] <= m["fve_users_prefix_32"] + 0.05


def test_an_identity_like_sae_is_faithful(planted):
    """With as many active neurons as dimensions (k = 2d, tied ±e_j atoms) the reconstruction is exact."""
    _, split, tables = planted
    d = tables.users.shape[1]
    sae, _ = train_sae(_config(tables, epochs=1, n_neurons=2 * d, k=2 * d), tables, progress=False)
    with torch.no_grad():
        atoms = torch.cat([torch.eye(d), -torch.eye(d)])  # (2d, d): z = relu([x; -x]) decodes back to x
        sae.W_enc.copy_(atoms.t())
        sae.W_dec.copy_(atoms)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    m = evaluate_sae(sae, tables, split)
    assert m["fve_users"] > 1 - 1e-5 and m["fve_items"] > 1 - 1e-5
    assert m["rbo_ext_at_20"] > 1 - 1e-6 and m["hr_at_10_spliced"] == m["hr_at_10_original"]


def test_planted_concepts_are_recovered(planted):
    ds, _, tables = planted
    sae, _ = train_sae(_config(tables, epochs=200), tables, progress=False)
    result = planted_recovery(sae, tables, ds.item_concepts)
    assert result["recovered_share"] >= 0.9, result["best_cosine"]


def test_sae_runs_first_row_and_sweeps():
    runs = sae_runs("ml-1m", "mf", 128)
    names = [name for name, _ in runs]
    assert names[0] == "default" and "matryoshka" in names
    assert {f"topk_k{k}" for k in (4, 8, 16, 32, 64)} <= set(names)
    long = dict(runs)["long"]
    assert (long.epochs, long.pred_every) == (300, 1) and dataclasses.replace(long, epochs=runs[0][1].epochs,
                                                                              pred_every=runs[0][1].pred_every) == runs[0][1]
    assert names[7] == "long"  # appended: the order numbers of the committed rows do not move
    wide = [name for name, _ in wide_runs("ml-1m", "mf", 128)]
    assert wide and names[-len(wide):] == wide  # the wide rows, appended last
    names = names[:-len(wide)]
    assert all(name.startswith("recipe_") for name in names[8:-3]) and "recipe_k4_pursuit" in names
    assert names[-6:] == ["recipe_matryoshka", "recipe_matryoshka_pursuit", "recipe_adaptive", "default_m4r",
                          "default_seed1", "default_seed2"]  # appended: the paper's protocol (issue 11), then the seeds
    matryoshka, plain = dict(runs)["recipe_matryoshka"], dict(runs)["recipe_k32"]
    assert matryoshka.prefixes == (64, 128, 256, 512) and dataclasses.replace(matryoshka, prefixes=()) == plain
    seed1 = dict(runs)["default_seed1"]
    assert seed1.seed == 1 and dataclasses.replace(seed1, seed=0) == runs[0][1]  # only the SAE seed differs
    paper = sae_runs("ml-1m", "ncf_paper", 20)
    assert paper[0][0] == "paper" and paper[0][1].n_neurons == 22 and paper[0][1].tied
    assert [cfg.lambda_pred for _, cfg in paper[1:6]] == [0.0, 1.0, 2.0, 5.0, 10.0]
    assert [name for name, _ in paper[6:]] == ["paper_m4r", "paper_e45_m4r", "paper_e90_m4r", "paper_e90"]
    lastfm = [name for name, _ in sae_runs("lastfm", "mf", 64)][:-len(wide_runs("lastfm", "mf", 64))]
    assert lastfm[0] == "default" and all(name.startswith("recipe_") for name in lastfm[1:-2])
    assert "recipe_matryoshka" not in lastfm and lastfm[-2:] == ["default_seed1", "default_seed2"]
    assert [name for name, _ in sae_runs("lastfm", "ncf", 32)] == ["default", "default_seed1", "default_seed2"]
    assert not any("seed" in name for name, _ in paper)  # the paper-preset rows keep the paper's seed only


@pytest.fixture
def smoke_models(tmp_path):
    """A synthetic dataset with a 2-epoch MF and its smoke SAE saved in a temporary models/ and res_csv/."""
    from ipynb.fs.defs.sae_training import train_and_save_saes
    from ipynb.fs.defs.training import train_and_save_all

    ds = make_synthetic(n_users=200, n_items=150, per_user=15, seed=0)
    roots = {"paths": Paths.under(tmp_path)}
    train_and_save_all("synthetic", ["mf"], epochs=2, retrain=True, progress=False, ds=ds, **roots)
    train_and_save_saes("synthetic", ["mf"], smoke=True, progress=False, ds=ds, **roots)
    return ds, roots, tmp_path


def test_sae_sidecar_records_the_recommender_weights(smoke_models):
    import json

    _, _, tmp = smoke_models
    rec = json.loads((tmp / "models" / "synthetic" / "mf.json").read_text())
    sae = json.loads((tmp / "models" / "synthetic" / "sae_mf.json").read_text())
    assert sae["recommender_weights_sha256"] == rec["weights_sha256"]


def test_cached_sae_is_reused_unless_retrain(smoke_models, capsys):
    from ipynb.fs.defs.sae_training import train_and_save_saes

    ds, roots, tmp = smoke_models
    from safetensors.torch import load_file

    weights = tmp / "models" / "synthetic" / "sae_mf.safetensors"
    before = load_file(weights)
    weights_mtime = weights.stat().st_mtime_ns
    table = train_and_save_saes("synthetic", ["mf"], smoke=True, progress=True, ds=ds, retrain=False, **roots)
    assert "cached SAE sae_mf" in capsys.readouterr().out
    assert weights.stat().st_mtime_ns == weights_mtime and (table["model"] == "mf").any()
    train_and_save_saes("synthetic", ["mf"], smoke=True, progress=False, ds=ds, retrain=True, **roots)
    assert weights.stat().st_mtime_ns != weights_mtime  # retrained and saved again ...
    after = load_file(weights)
    assert all(torch.equal(before[k], after[k]) for k in before)  # ... to the same SAE: same seed


def test_sae_of_a_retrained_recommender_is_refused_and_retrained(smoke_models, capsys):
    import json

    from ipynb.fs.defs.sae import sae_from_checkpoint
    from ipynb.fs.defs.sae_training import train_and_save_saes
    from ipynb.fs.defs.utils import CheckpointError, load_checkpoint, save_checkpoint

    ds, roots, tmp = smoke_models
    folder = tmp / "models" / "synthetic"
    old_sae = json.loads((folder / "sae_mf.json").read_text())
    tensors, meta = load_checkpoint(folder / "mf")  # a retrained recommender: other weights, same data
    save_checkpoint(folder / "mf", {k: v + 0.01 for k, v in tensors.items()}, meta)
    new_rec = json.loads((folder / "mf.json").read_text())
    assert new_rec["weights_sha256"] != old_sae["recommender_weights_sha256"]
    with pytest.raises(CheckpointError, match="another version of recommender 'mf'"):
        sae_from_checkpoint(folder / "sae_mf", recommender="mf", recommender_sha256=new_rec["weights_sha256"])
    train_and_save_saes("synthetic", ["mf"], smoke=True, progress=False, ds=ds, retrain=False, **roots)
    assert "cannot be reused" in capsys.readouterr().out
    retrained = json.loads((folder / "sae_mf.json").read_text())
    assert retrained["recommender_weights_sha256"] == new_rec["weights_sha256"]


@pytest.mark.realdata
def test_committed_saes_reproduce_their_fidelity(data_root):
    """Every committed sae_<recommender> loads with its committed recommender (same data, same weights version)
    and reproduces the fidelity its sidecar stores, on the same held-out users and items."""
    import json

    from ipynb.fs.defs.artifacts import Artifacts, load_recommender, load_sae
    from ipynb.fs.defs.data_processing import load_dataset
    from ipynb.fs.defs.experiments import PRETRAINED, split_of

    for dataset in ("ml-1m", "lastfm", "ml-100k"):
        ds = load_dataset(dataset, root=data_root)
        for name in PRETRAINED[dataset]:
            split = split_of(ds, name)
            model, rec_meta = load_recommender(dataset, name, split=split)
            path = Artifacts.of(dataset).path(f"sae_{name}")
            sae = load_sae(dataset, f"sae_{name}", rec_meta, split=split)
            stored = json.loads(path.with_suffix(".json").read_text())["metrics"]
            got = evaluate_sae(sae, representation_tables(model, split, ds), split)
            for key in ("fve_users", "fve_items", "rbo_ext_at_20", "hr_at_10_original", "hr_at_10_spliced", "l0"):
                assert got[key] == pytest.approx(stored[key], abs=1e-4), (dataset, name, key, got[key], stored[key])


def test_sample_positives_without_any_positive_says_what_to_do():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"no entries.*pred_pos=0"):
        _sample_positives(sp.csr_matrix((3, 5)), np.array([0, 1, 2]), 4, rng, np.arange(5))


def test_sample_positives_falls_back_for_users_without_positives():
    positives = sp.csr_matrix(([1.0, 1.0], ([0, 0], [2, 4])), shape=(3, 5))
    picked = _sample_positives(positives, np.array([0, 1, 2]), 6, np.random.default_rng(0), np.array([0, 1]))
    assert picked.shape == (3, 6) and set(picked[0]) <= {2, 4} and set(picked[1:].ravel()) <= {0, 1}


# --- the steps-based recipe (issue 11) ---
def _recipe(tables, **kw):
    base = dict(n_neurons=16, k=2, lambda_pred=1.0, pred_loss="listwise", pred_every=1, batch_size=64, lr=3e-3,
                steps=120, warmup_steps=10, decay_frac=0.4, grad_clip=1.0, dict_init="data", remove_parallel_grad=True,
                pred_finetune_steps=40, finetune_lr=1e-3, dead_rate=0.01, homeostasis=0.01)
    return SAEConfig(input_dim=tables.users.shape[1], **{**base, **kw})


def test_recipe_trains_by_steps_seeded_with_two_phases(planted):
    ds, split, tables = planted
    cfg = _recipe(tables)
    a, ha = train_sae(cfg, tables, progress=False)
    b, _ = train_sae(cfg, tables, progress=False)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert [h["steps"] for h in ha] == [80, 40] and ha[0]["pred"] == 0 and ha[1]["pred"] > 0
    assert torch.allclose(a.decoder().norm(dim=1), torch.ones(16), atol=1e-5)
    m = evaluate_sae(a, tables, split)
    assert m["fve_users"] > 0.3 and m["dead_frac_all"] < 0.5


def test_recipe_pursuit_row_shares_the_dictionary_and_reconstructs_better(planted):
    ds, split, tables = planted
    cfg = _recipe(tables, k=3)
    sae, _ = train_sae(cfg, tables, progress=False)
    pursuit = train_sae(dataclasses.replace(cfg, encoder="pursuit"), tables, progress=False)[0]
    assert all(torch.equal(x, y) for x, y in zip(sae.state_dict().values(), pursuit.state_dict().values(), strict=True))
    lin, pur = evaluate_sae(sae, tables, split), evaluate_sae(pursuit, tables, split)
    assert pur["l0"] <= 3 and pur["fve_users"] >= lin["fve_users"] - 1e-6 and pur["fve_items"] >= lin["fve_items"] - 1e-6


def test_gram_loss_is_exact_for_mf_and_refused_elsewhere(planted):
    from ipynb.fs.defs.sae import SAE
    from ipynb.fs.defs.sae_training import gram_matrices
    ds, split, tables = planted
    sae = SAE(_recipe(tables, pred_loss="gram"))
    sae.fit_scaling(tables.users[tables.train_rows], tables.items[tables.train_items])
    grams = gram_matrices(sae, tables)
    q = tables.items[tables.train_items]
    err = torch.randn(5, q.shape[1])  # an error in standardised units: score change = (err · s) q
    exact = ((err * sae.scale("user")) @ q.t()).pow(2).mean(1)
    ratio = ((err @ grams["user"]) * err).sum(1) / exact
    assert torch.allclose(ratio, ratio[0].expand(5), rtol=1e-4)  # the same normalising constant for every row
    trained, history = train_sae(_recipe(tables, pred_loss="gram"), tables, progress=False)
    assert history[1]["pred"] > 0

    class NotDot:
        MODEL_NAME = "ncf"
    with pytest.raises(ValueError, match="dot-product"):
        gram_matrices(sae, dataclasses.replace(tables, model=NotDot()) if dataclasses.is_dataclass(tables)
                      else type("T", (), {**tables.__dict__, "model": NotDot()})())


def test_epoch_schedule_ignores_the_recipe_machinery(planted):
    _, _, tables = planted
    cfg = _config(tables, epochs=3, lambda_pred=0.5, pred_loss="listwise")
    assert cfg.steps == 0 and cfg.encoder == "linear"
    a, ha = train_sae(cfg, tables, progress=False)
    assert [h["epoch"] for h in ha] == [0, 1, 2]


def test_train_sae_pins_and_restores_the_thread_count(planted):
    """SAE training runs on config.threads torch threads and gives the caller its own count back."""
    tiny_tables = planted[2]
    before = torch.get_num_threads()
    seen = []
    cfg = dataclasses.replace(sae_preset("default", tiny_tables.users.shape[1], n_neurons=16, k=2, epochs=1), threads=1)
    original = torch.set_num_threads
    try:
        torch.set_num_threads = lambda n: (seen.append(n), original(n))[1]
        train_sae(cfg, tiny_tables, progress=False)
    finally:
        torch.set_num_threads = original
    assert seen[0] == 1 and seen[-1] == before and torch.get_num_threads() == before


def test_sae_runs_record_the_provenance_of_their_rows(smoke_models):
    """train_and_save_saes records which checkpoint versions its rows came from, so reports can spot stale rows."""
    import json

    from ipynb.fs.defs.artifacts import stale_results

    _, roots, tmp = smoke_models
    record = json.loads((tmp / "res_csv" / "synthetic" / "provenance.json").read_text())
    sidecar = json.loads((tmp / "models" / "synthetic" / "sae_mf.json").read_text())
    assert record["sae_fidelity.csv"]["sae_mf"] == sidecar["weights_sha256"]
    assert stale_results("synthetic", roots["paths"]) == []


@pytest.mark.slow
def test_adaptive_preset_recovers_directly_planted_directions(load_script):
    """The 'adaptive' preset, not told the number of concepts (16 planted, 4·d = 128 atoms, k = 16 only a cap), on a
    shorter schedule (600 steps), recovers >= 90 % of the directions of directly planted embeddings (1-3 concepts
    per item, correlated pairs, noise), with about as many atoms per item as the item has concepts. (Smaller or
    differently shaped cases recover less on this schedule: see the README's planted ground-truth section.)"""
    from ipynb.fs.defs.data_processing import make_planted

    pc = load_script("planted_check")
    ds = make_planted(n_users=600, n_items=1000, n_concepts=16, correlated_pairs=2, per_user=10, seed=0)
    split = leave_one_out(ds, "random", seed=0)
    tables = representation_tables(pc.planted_embeddings(ds, 32, seed=0), split, ds)
    config = sae_preset("adaptive", 32, steps=600, pred_finetune_steps=100)
    assert config.pursuit_train and config.k == 16 and config.n_neurons == 128
    sae, _ = train_sae(config, tables, progress=False)
    result = planted_recovery(sae, tables, ds.item_concepts)
    assert result["recovered_share"] >= 0.9, result["best_cosine"]
    with torch.no_grad():
        l0 = float((sae.encode(tables.items, "item") != 0).sum(1).float().mean())
    per_item = float(ds.item_concepts.to_numpy().sum(1).mean())
    assert 0.5 * per_item <= l0 <= 2 * per_item, (l0, per_item)


def test_pursuit_options_are_validated():
    with pytest.raises(ValueError, match="encoder='pursuit'"):
        SAEConfig(input_dim=8, n_neurons=32, pursuit_tol=0.3)
    with pytest.raises(ValueError, match="steps schedule"):
        SAEConfig(input_dim=8, n_neurons=32, encoder="pursuit", pursuit_train=True)
    with pytest.raises(ValueError, match="pursuit_tol must lie in"):
        SAEConfig(input_dim=8, n_neurons=32, encoder="pursuit", pursuit_tol=1.0)
