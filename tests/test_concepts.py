"""The concepts notebook (SPEC §5): purity, lift, p- and q-values, controls, per-neuron facts, the run."""
import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch
from ipynb.fs.defs.concepts import (
    PURITY_COLUMNS,
    REPRESENTATIONS,
    SUMMARY_COLUMNS,
    analyze_dataset,
    benjamini_hochberg,
    best_concept_per_unit,
    best_neuron_per_concept,
    cached_analysis,
    concept_items,
    concept_statistics,
    count_pure_concepts,
    monosemanticity_score,
    neuron_dictionary,
    neuron_label,
    popularity_spearman,
    prefix_level,
    random_rotation,
    ranked_active_items,
    representation_codes,
    untrained_sae,
)
from ipynb.fs.defs.data_processing import leave_one_out, make_synthetic
from ipynb.fs.defs.evaluation import RepresentationTables, representation_tables
from ipynb.fs.defs.models import MFConfig, TrainConfig
from ipynb.fs.defs.sae import SAE, SAEConfig
from ipynb.fs.defs.sae_training import train_and_save_saes, train_sae
from ipynb.fs.defs.training import train_and_save_all, train_recommender
from ipynb.fs.defs.utils import Paths

# 8 items, 3 units, 2 concepts. Unit 0 ranks items 0, 1, 2, 3 (then 4, 5 inactive); unit 1 ranks 7, 6, 5, 4
# (others negative); unit 2 is active on one item only.
CODES = np.array([
    [4.0, -1.0, 0.0],
    [3.0, -1.0, 0.0],
    [2.0, -1.0, 0.0],
    [1.0, -1.0, 0.0],
    [0.0, 1.0, 0.0],
    [0.0, 2.0, 0.0],
    [0.0, 3.0, 0.0],
    [0.0, 4.0, 9.0],
])
TABLE = pd.DataFrame({"a": [1, 1, 1, 0, 0, 0, 0, 0], "b": [0, 0, 1, 1, 1, 1, 1, 1]})


def _stats(**kw):
    return concept_statistics(CODES, TABLE, **{"ks": (2, 4), "test_k": 2, **kw}).set_index(["neuron", "concept"])


def test_purity_base_rate_and_lift_by_hand():
    st = _stats()
    assert st.loc[(0, "a"), "purity_at_2"] == 1.0 and st.loc[(0, "a"), "purity_at_4"] == 0.75
    assert st.loc[(0, "a"), "base_rate"] == 3 / 8 and st.loc[(0, "b"), "base_rate"] == 6 / 8
    assert st.loc[(0, "a"), "lift_at_2"] == pytest.approx(8 / 3) and st.loc[(0, "a"), "lift_at_4"] == pytest.approx(2.0)
    assert st.loc[(1, "b"), "purity_at_4"] == 1.0 and st.loc[(1, "a"), "purity_at_4"] == 0.0
    assert st.loc[(0, "a"), "hits_at_2"] == 2 and st.loc[(0, "a"), "n_active"] == 4
    assert list(st.reset_index()["neuron"]) == [0, 0, 1, 1, 2, 2]  # units outer, concepts in table order


def test_units_with_too_few_active_items_get_no_purity():
    st = _stats()
    assert st.loc[(2, "a"), "n_active"] == 1
    for col in ("purity_at_2", "purity_at_4", "lift_at_2", "p_value", "q_value", "hits_at_2"):
        assert math.isnan(st.loc[(2, "a"), col]), col
    # a unit with 2 active items: purity@2 defined, purity@4 NaN (never computed over inactive items)
    codes = np.array([[1.0], [2.0], [0.0], [0.0], [0.0]])
    st2 = concept_statistics(codes, pd.DataFrame({"x": [1, 1, 1, 1, 1]}), ks=(2, 4), test_k=2)
    assert st2.loc[0, "purity_at_2"] == 1.0 and math.isnan(st2.loc[0, "purity_at_4"])


def test_hypergeometric_p_value_by_hand():
    # 10 items, concept on 4, top 3 of the unit hold 2 concept items: P(X >= 2) = (C(4,2) C(6,1) + C(4,3)) / C(10,3)
    codes = np.arange(10, 0, -1, dtype=float)[:, None]
    table = pd.DataFrame({"c": [1, 0, 1, 0, 0, 0, 0, 0, 1, 1]})
    st = concept_statistics(codes, table, ks=(3,), test_k=3)
    assert st.loc[0, "hits_at_3"] == 2
    assert st.loc[0, "p_value"] == pytest.approx((6 * 6 + 4) / 120)
    zero = concept_statistics(codes, pd.DataFrame({"c": [0] * 10}), ks=(3,), test_k=3)
    assert zero.loc[0, "p_value"] == 1.0 and math.isnan(zero.loc[0, "lift_at_3"])


def test_q_values_match_scipy_bh():
    rng = np.random.default_rng(0)
    p = rng.random(200) ** 3
    assert np.allclose(benjamini_hochberg(p), scipy.stats.false_discovery_control(p, method="bh"))
    codes = np.maximum(rng.standard_normal((300, 20)), 0)
    table = pd.DataFrame((rng.random((300, 5)) < 0.2).astype(int))
    st = concept_statistics(codes, table)
    expected = scipy.stats.false_discovery_control(st["p_value"].fillna(1.0).to_numpy(), method="bh")
    ok = st["p_value"].notna().to_numpy()
    assert ok.any() and np.allclose(st["q_value"].to_numpy()[ok], expected[ok])
    assert np.isnan(benjamini_hochberg(np.array([0.1, np.nan]))[1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        benjamini_hochberg(np.array([0.5, 1.5]))


def test_ranking_equals_a_stable_full_sort_with_ties():
    rng = np.random.default_rng(1)
    a = np.round(rng.standard_normal((400, 30)), 1)
    a[:, 0] = 0.5  # every item tied
    idx, active = ranked_active_items(a, 25)
    full = np.argsort(np.where(a > 0, -a, np.inf), axis=0, kind="stable")[:25].T
    assert np.array_equal(idx, full)
    assert np.array_equal(active, np.take_along_axis(a.T, full, axis=1) > 0)
    assert idx[0].tolist() == list(range(25))  # ties: the lower item index first


def test_best_neuron_per_concept():
    best = best_neuron_per_concept(concept_statistics(CODES, TABLE, ks=(2, 4), test_k=2), k=2).set_index("concept")
    assert best.loc["a", "neuron"] == 0 and best.loc["b", "neuron"] == 1
    assert list(best.index) == ["a", "b"] and {"purity_at_2", "lift_at_2", "q_value"} <= set(best.columns)
    ties = pd.DataFrame({"neuron": [3, 1, 2, 0], "concept": ["c", "c", "c", "d"], "purity_at_10": [1.0, 1.0, 1.0, np.nan],
                         "purity_at_20": [0.7, 0.8, 0.8, np.nan]})
    out = best_neuron_per_concept(ties).set_index("concept")
    assert out.loc["c", "neuron"] == 1  # purity@20 breaks the tie, then the lower index
    assert out.loc["d", "neuron"] == -1 and math.isnan(out.loc["d", "purity_at_10"])
    with pytest.raises(ValueError, match="purity_at_50"):
        best_neuron_per_concept(ties, k=50)


@pytest.mark.parametrize("codes, table, kw, match", [
    (CODES[:7], TABLE, {}, "same items"),
    (CODES, TABLE.iloc[:, 0], {}, "2-d"),
    (CODES, TABLE.replace(1, 2), {}, "0/1"),
    (CODES, TABLE, {"ks": (2, 9)}, "exceeds the number of items"),
    (CODES, TABLE, {"ks": (4,), "test_k": 2}, "test_k"),
    (CODES[:, 0], TABLE, {}, "2-d"),
    (np.where(CODES > 3, np.nan, CODES), TABLE, {}, "NaN"),
])
def test_bad_input_is_refused(codes, table, kw, match):
    with pytest.raises(ValueError, match=match):
        concept_statistics(codes, table, **{"ks": (2, 4), "test_k": 2, **kw})


def _fake_tables(n_users=50, n_items=40, d=6):
    g = torch.Generator().manual_seed(0)
    users, items = torch.randn(n_users, d, generator=g), 3 + torch.randn(n_items, d, generator=g)
    return RepresentationTables(None, users, torch.arange(n_users), items, torch.arange(n_users - 5),
                                torch.arange(n_users - 5, n_users), torch.arange(n_items - 4),
                                torch.arange(n_items - 4, n_items), None, torch.zeros(n_users, 1, dtype=torch.long))


def test_controls_have_the_right_shapes_and_meaning():
    tables = _fake_tables()
    sae = SAE(SAEConfig(6, 20, k=3, seed=4))
    sae.fit_scaling(tables.users, tables.items)
    codes = representation_codes(sae, tables, seed=0)
    assert tuple(codes) == REPRESENTATIONS
    assert {k: v.shape for k, v in codes.items()} == {"sae": (40, 20), "raw": (40, 12), "pca": (40, 12),
                                                      "rotation": (40, 12), "untrained_sae": (40, 20)}
    x = tables.items.double().numpy()
    xc = x - x.mean(0)
    assert np.allclose(codes["raw"][:, :6] - codes["raw"][:, 6:], xc)  # both signs of the centred dimensions
    assert np.allclose(codes["rotation"][:, :6] - codes["rotation"][:, 6:], xc @ random_rotation(6, 0))
    pca = codes["pca"][:, :6] - codes["pca"][:, 6:]
    assert np.allclose(pca.T @ pca, np.diag(np.diag(pca.T @ pca)), atol=1e-8)
    assert np.allclose(np.abs(pca @ np.linalg.pinv(pca) @ xc), np.abs(xc))  # same span as the embeddings
    q = random_rotation(6, 3)
    assert np.allclose(q.T @ q, np.eye(6)) and not np.allclose(q, random_rotation(6, 4))
    # the untrained SAE: the seeded initialisation, fitted scaling, no training
    fresh = untrained_sae(sae, tables)
    torch.manual_seed(4)
    ref = SAE(sae.config)
    assert torch.equal(fresh.W_enc, ref.W_enc)
    assert torch.allclose(fresh.item_mean, tables.items[tables.train_items].mean(0))
    assert not torch.equal(fresh.item_mean, torch.zeros(6))


def test_popularity_spearman_matches_scipy():
    rng = np.random.default_rng(2)
    codes = np.maximum(rng.standard_normal((60, 4)), 0)
    pop = rng.standard_normal(60)
    rho = popularity_spearman(np.column_stack([codes, np.zeros(60)]), pop)
    expected = [scipy.stats.spearmanr(codes[:, j], pop).statistic for j in range(4)]
    assert np.allclose(rho[:4], expected) and np.isnan(rho[4])
    with pytest.raises(ValueError, match="must agree"):
        popularity_spearman(codes, pop[:10])


def test_monosemanticity_score_by_hand():
    vectors = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [5.0, 5.0]])
    codes = np.array([[1.0, 1.0, 0.0], [2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
    ms = monosemanticity_score(codes, vectors, top=3)
    assert ms[0] == pytest.approx(1 / math.sqrt(2))  # one pair: cos(45°)
    assert ms[1] == pytest.approx(0.0)  # orthogonal pair
    assert math.isnan(ms[2])  # one active item: no pair
    # weights: unit with 3 items a=(1,2,1): pairs (0,1) w=2 cos=s, (0,2) w=1 cos=0, (1,2) w=2 cos=s -> 4s/5
    ms3 = monosemanticity_score(np.array([[1.0], [2.0], [1.0], [0.0]]), vectors, top=3)
    assert ms3[0] == pytest.approx(4 / 5 / math.sqrt(2))


def test_prefix_level_and_labels():
    assert prefix_level([0, 15, 16, 31, 127], (16, 32, 128)).tolist() == [16, 16, 32, 32, 128]
    assert math.isnan(prefix_level([-1], (16,))[0])
    assert neuron_label(-0.9, "genre:Horror", 1e-9, 10.0, 1.0) == ("genre:Horror + popularity (-)", 0.9, "high")
    assert neuron_label(-0.9, "genre:Horror", 0.5, 10.0, 1.0) == ("popularity (-)", 0.9, "high")
    assert neuron_label(0.81, "genre:Horror", 1e-9, 10.0, 0.6) == ("genre:Horror + popularity (+)", 0.6, "low")
    assert neuron_label(0.2, "genre:Horror", 1e-9, 10.0, 0.8) == ("genre:Horror", 0.8, "medium")
    assert neuron_label(0.2, "genre:Horror", 0.02, 10.0, 1.0)[0] == "unlabelled"
    assert neuron_label(np.nan, "genre:Horror", np.nan, np.nan, np.nan) == ("unlabelled", 0.0, "none")
    assert neuron_label(0.9, "popularity:top 1%", 1e-9, 90.0, 1.0) == ("popularity (+): top 1%", 0.9, "high")


def test_best_concept_of_a_unit_prefers_concepts_with_lift():
    st = pd.DataFrame({"neuron": [0, 0, 0, 1, 1], "concept": ["drama", "horror", "rare", "drama", "rare"],
                       "p_value": [1e-4, 1e-3, 0.5, 1e-4, np.nan], "lift_at_10": [2.5, 4.0, 9.0, 2.5, np.nan]})
    best = best_concept_per_unit(st)
    assert best.loc[0, "concept"] == "horror" and best.loc[1, "concept"] == "drama"


@pytest.fixture(scope="module")
def planted_codes():
    """An MF on strongly planted synthetic data and a small TopK SAE trained on it (no prediction term)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is faster than contended ones
    try:
        ds = make_synthetic(n_users=400, n_items=300, n_concepts=6, per_user=20, beta=5.0, seed=0)
        split = leave_one_out(ds, "random", seed=0)
        config = MFConfig(n_users=ds.n_users, n_items=ds.n_items, dim=16,
                          train=TrainConfig(loss="softmax_ce", n_negatives=0, lr=1e-2, l2=1e-2, epochs=30,
                                            patience=30, batch_size=64))
        model, _ = train_recommender(config, split, progress=False)
        tables = representation_tables(model, split, ds)
        sae, _ = train_sae(SAEConfig(16, 16, activation="topk", k=2, lambda_pred=0.0, epochs=200, batch_size=64,
                                     lr=3e-3), tables, progress=False)
    finally:
        torch.set_num_threads(threads)
    return ds, representation_codes(sae, tables, seed=0)


def test_planted_concepts_have_pure_neurons(planted_codes):
    ds, codes = planted_codes
    best = best_neuron_per_concept(concept_statistics(codes["sae"], ds.item_concepts))
    assert len(best) == 6 and (best["purity_at_10"] >= 0.9).all(), best[["concept", "neuron", "purity_at_10"]]
    assert (best["q_value"] < 0.01).all() and best["neuron"].nunique() == 6


def test_the_run_writes_the_three_tables(tmp_path):
    ds = make_synthetic(n_users=200, n_items=150, per_user=15, seed=0)
    roots = {"paths": Paths.under(tmp_path)}
    train_and_save_all("synthetic", ["mf"], epochs=2, retrain=True, progress=False, ds=ds, **roots)
    train_and_save_saes("synthetic", ["mf"], smoke=True, progress=False, ds=ds, **roots)
    out = analyze_dataset("synthetic", None, ds=ds, device="cpu", progress=False, **roots)
    folder = tmp_path / "res_csv" / "synthetic"
    purity = pd.read_csv(folder / "concept_purity.csv")
    assert list(purity.columns) == list(PURITY_COLUMNS)
    assert len(purity) == len(REPRESENTATIONS) * ds.item_concepts.shape[1]
    assert not purity.duplicated(["model", "representation", "concept"]).any()
    summary = pd.read_csv(folder / "concept_summary.csv")
    assert list(summary.columns) == list(SUMMARY_COLUMNS) and summary["representation"].tolist() == list(REPRESENTATIONS)
    dictionary = pd.read_csv(folder / "neuron_dictionary_mf.csv")
    n = out["dictionaries"]["mf"].shape[0]
    assert dictionary["neuron"].tolist() == list(range(n)) and dictionary["label"].notna().all()
    first = (folder / "concept_purity.csv").read_bytes()
    analyze_dataset("synthetic", ["mf"], ds=ds, device="cpu", progress=False, **roots)
    assert (folder / "concept_purity.csv").read_bytes() == first  # deterministic
    cached = cached_analysis("synthetic", paths=roots["paths"])
    pd.testing.assert_frame_equal(cached["summary"], summary)
    assert cached_analysis("synthetic", ["ncf"], paths=roots["paths"]) is None
    # rows of models not analysed in a call are kept
    summary.assign(model="other").to_csv(folder / "concept_summary.csv", mode="a", header=False, index=False)
    analyze_dataset("synthetic", ["mf"], ds=ds, device="cpu", progress=False, **roots)
    assert pd.read_csv(folder / "concept_summary.csv")["model"].tolist() == ["mf"] * 5 + ["other"] * 5
    with pytest.raises(FileNotFoundError, match="no SAE checkpoint"):
        analyze_dataset("synthetic", None, ds=ds, paths=Paths.under(tmp_path / "empty"))


def test_the_support_mask_drops_items_before_ranking_counting_and_testing():
    # without items 0 and 1: unit 0 ranks 2, 3 (active), unit 1 ranks 7, 6, 5, 4; 6 supported items
    keep = np.array([False, False, True, True, True, True, True, True])
    st = concept_statistics(CODES, TABLE, ks=(2,), test_k=2, items=keep).set_index(["neuron", "concept"])
    assert st.loc[(0, "a"), "n_active"] == 2 and st.loc[(0, "a"), "purity_at_2"] == 0.5  # item 2 has a, 3 has not
    assert math.isclose(st.loc[(0, "a"), "base_rate"], 1 / 6)  # a on item 2 of the 6 supported items
    assert math.isclose(st.loc[(0, "a"), "p_value"], scipy.stats.hypergeom.sf(0, 6, 1, 2))
    assert st.loc[(1, "b"), "purity_at_2"] == 1.0 and st.loc[(1, "b"), "base_rate"] == 1.0
    # the same as computing on the subset by hand
    direct = concept_statistics(CODES[keep], TABLE[keep].reset_index(drop=True), ks=(2,), test_k=2)
    pd.testing.assert_frame_equal(st.reset_index()[direct.columns], direct)
    assert count_pure_concepts(np.tile(CODES, (7, 1)), pd.concat([TABLE] * 7, ignore_index=True), np.ones(56, bool)) == \
        count_pure_concepts(np.tile(CODES, (7, 1)), pd.concat([TABLE] * 7, ignore_index=True))


@pytest.mark.parametrize("bad", [np.array([2, 3, 4]), np.ones(7, bool), np.ones(8)])
def test_a_support_mask_that_is_not_one_bool_per_item_is_rejected(bad):
    with pytest.raises(ValueError, match="boolean mask of the 8 items"):
        concept_statistics(CODES, TABLE, ks=(2,), test_k=2, items=bad)


def test_concept_items_applies_the_declared_minimum_support():
    ds = make_synthetic(n_users=40, n_items=30, per_user=5, seed=0)
    assert concept_items(ds).all()  # no rule declared for the synthetic data
    ds.key = "lastfm"  # the Last.FM rule (>= 5 interacting users) on the same items
    assert concept_items(ds).tolist() == (ds.items["popularity"] >= 5).tolist()
    assert 0 < concept_items(ds).sum() < 30


def test_the_neuron_dictionary_lists_supported_top_items():
    items = pd.DataFrame({"title": [f"t{i}" for i in range(8)], "log_popularity": np.arange(8.0)})
    keep = np.array([True, False, True, True, True, True, True, False])
    stats = concept_statistics(CODES, TABLE, ks=(2,), test_k=2, items=keep)
    d = neuron_dictionary(CODES, np.zeros((1, 3)), stats, items, np.eye(8), test_k=2, supported=keep)
    assert d["top_items"].tolist() == ["t0 | t2 | t3", "t6 | t5 | t4", ""]
    assert d["n_active_items"].tolist() == [4, 4, 1]  # frequencies stay over all items
