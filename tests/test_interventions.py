"""Interventions (SPEC §6): the core edit keeps the SAE error term, an empty edit changes nothing, filtering
lowers a planted concept's share, strengths are the stated percentiles, bad input fails clearly."""
import numpy as np
import pytest
import torch
from ipynb.fs.defs.interventions import (
    activation_percentile,
    aligned_neurons,
    concept_direction,
    effect_per_side_effect,
    filter_concept,
    match_side_effect,
    merge_interventions,
    promotable_items,
    promote_concept,
    promote_item,
    ranked_lists,
    set_neurons,
    sort_interventions,
    steering_context,
)


@pytest.fixture(scope="module")
def ctx(planted_mf_sae):
    """A small MF on planted-concept synthetic data, its SAE, and a steering context over every user."""
    mf, sae, tables, split, syn = planted_mf_sae
    return steering_context(mf, sae, tables, split, syn.item_concepts, n_users=None, pool="all")


def _best_concept(ctx) -> str:
    aligned = {c: aligned_neurons(ctx.stats, c) for c in ctx.concepts.columns}
    assert any(aligned.values()), "the SAE found no planted concept"
    return max(aligned, key=lambda c: (len(aligned[c]), c))


def test_no_edit_gives_the_identical_ranking(ctx):
    x = ctx.users_repr
    z = ctx.sae.encode(x, "user")
    assert torch.equal(ctx.sae.edit(x, "user", z.clone()), x)
    assert torch.equal(ctx.sae.edit(x, "user", set_neurons(z, [0, 1], 0.0, "raise")), x)
    before = ranked_lists(ctx.model, x, ctx.items, ctx.users, ctx.history, 20)
    after = ranked_lists(ctx.model, ctx.sae.edit(x, "user", z.clone()), ctx.items, ctx.users,
                         ctx.history, 20)
    assert np.array_equal(before, after)
    row = filter_concept(ctx, _best_concept(ctx), method="direction", strength=0.0)
    assert row["share_after"] == row["share_before"] and row["side_effect_rbo"] == pytest.approx(1.0)


def test_ranked_lists_exclude_history(ctx):
    lists = ranked_lists(ctx.model, ctx.users_repr, ctx.items, ctx.users, ctx.history, 20)
    assert lists.shape == (len(ctx.users), 20)
    seen = np.asarray(ctx.history[ctx.users[np.repeat(np.arange(len(ctx.users)), 20)], lists.ravel()]).ravel()
    assert not seen.any()
    assert all(len(set(row)) == 20 for row in lists)


def test_error_term_is_kept(ctx):
    x = ctx.users_repr[:50]
    z = ctx.sae.encode(x, "user")
    z2 = set_neurons(z, [0, 5, 7], [0.0, 2.0, 1.0])
    x2 = ctx.sae.edit(x, "user", z2)
    expected = ctx.sae.decode(z2, "user") - ctx.sae.decode(z, "user")
    assert torch.allclose(x2 - x, expected, atol=1e-5)
    # the error term x − D(z) is the same before and after the edit
    assert torch.allclose(x2 - ctx.sae.decode(z2, "user"), x - ctx.sae.decode(z, "user"), atol=1e-5)
    assert torch.allclose(ctx.sae.edit_delta(z, z2, "user"), expected, atol=1e-5)


def test_filter_lowers_a_planted_concept_without_negative_values(ctx):
    c = _best_concept(ctx)
    aligned = aligned_neurons(ctx.stats, c)
    row = filter_concept(ctx, c, neurons=len(aligned))
    assert row["neurons"] == aligned and row["strength"] == len(aligned)
    assert row["n_users"] > 0 and row["share_before"] > 0
    assert row["share_after"] < row["share_before"]
    assert 0.0 <= row["side_effect_rbo"] <= 1.0
    z = ctx.sae.encode(ctx.users_repr, "user")
    edited = set_neurons(z, aligned, 0.0)
    assert (edited >= 0).all() and (edited[:, aligned] == 0).all()
    # more neurons zeroed -> no higher share
    one = filter_concept(ctx, c, neurons=1)
    assert row["share_after"] <= one["share_after"] + 1e-12


def test_promotion_uses_the_stated_percentiles(ctx):
    c = _best_concept(ctx)
    j = aligned_neurons(ctx.stats, c)[0]
    codes = ctx.all_codes()
    positive = codes[:, j][codes[:, j] > 0]
    for q in (50.0, 90.0, 99.0, 100.0):
        row = promote_concept(ctx, c, percentile=q)
        assert row["neurons"] == [j] and row["strength"] == q
        assert row["values"][0] == pytest.approx(float(np.percentile(positive, q)))
    assert activation_percentile(codes, j, 100) == pytest.approx(float(positive.max()))
    low, high = promote_concept(ctx, c, percentile=50.0), promote_concept(ctx, c, percentile=100.0)
    assert high["share_after"] >= low["share_after"] >= low["share_before"] - 1e-12


def test_percentile_hand_values():
    codes = np.array([[0.0, 1.0], [2.0, 0.0], [4.0, 3.0], [6.0, 0.0], [8.0, 0.0]])
    assert activation_percentile(codes, 0, 50) == 5.0  # of the positive values 2, 4, 6, 8
    assert activation_percentile(codes, 0, 0) == 2.0 and activation_percentile(codes, 1, 100) == 3.0


@pytest.mark.parametrize("q", [-1, 100.5, 150, float("nan")])
def test_percentile_outside_0_100_is_refused(ctx, q):
    with pytest.raises(ValueError, match="percentile"):
        promote_concept(ctx, _best_concept(ctx), percentile=q)
    with pytest.raises(ValueError, match="percentile"):
        activation_percentile(ctx.all_codes(), 0, q)


def test_unknown_concept_is_refused(ctx):
    with pytest.raises(ValueError, match="unknown concept"):
        aligned_neurons(ctx.stats, "genre:Nope")
    with pytest.raises(ValueError, match="unknown concept"):
        filter_concept(ctx, "genre:Nope")
    with pytest.raises(ValueError, match="unknown concept"):
        promote_concept(ctx, "genre:Nope", method="direction", strength=1.0)


def test_neuron_out_of_range_is_refused(ctx):
    n = ctx.sae.config.n_neurons
    c = _best_concept(ctx)
    for bad in ([n], [-1], [0, n + 5]):
        with pytest.raises(ValueError, match="out of range"):
            filter_concept(ctx, c, neurons=bad)
        with pytest.raises(ValueError, match="out of range"):
            set_neurons(ctx.sae.encode(ctx.users_repr[:3], "user"), bad, 1.0)
    with pytest.raises(ValueError, match="out of range"):
        activation_percentile(ctx.all_codes(), n, 50)
    with pytest.raises(ValueError, match="out of range"):
        promote_item(ctx, ctx.items.shape[0])


def test_negative_edit_values_are_refused(ctx):
    z = ctx.sae.encode(ctx.users_repr[:3], "user")
    with pytest.raises(ValueError, match=">= 0"):
        set_neurons(z, [0], -0.5)
    with pytest.raises(ValueError, match="strength"):
        filter_concept(ctx, _best_concept(ctx), method="direction", strength=-1.0)


def test_direction_baseline_matched_side_effect(ctx):
    c = _best_concept(ctx)
    sae_row = filter_concept(ctx, c, neurons=len(aligned_neurons(ctx.stats, c)))
    base = match_side_effect(lambda a: filter_concept(ctx, c, method="direction", strength=a),
                             sae_row["side_effect_rbo"])
    assert base["method"] == "direction" and base["n_users"] == sae_row["n_users"]
    assert abs(base["side_effect_rbo"] - sae_row["side_effect_rbo"]) < 0.02
    assert base["share_after"] < base["share_before"]
    v = concept_direction(ctx.items, ctx.mask(c))
    m = torch.as_tensor(ctx.mask(c))
    assert torch.allclose(v, ctx.items[m].mean(0) - ctx.items[~m].mean(0))
    assert np.isfinite(effect_per_side_effect(sae_row))


def test_item_promotion(ctx):
    item = promotable_items(np.asarray(ctx.history.sum(axis=0)).ravel(), 1, seed=0)[0]
    low = promote_item(ctx, item, percentile=50.0)
    high = promote_item(ctx, item, percentile=100.0, neurons=3)
    for row in (low, high):
        assert row["kind"] == "promote_item" and row["target"] == f"item:{item}" and row["n_users"] > 0
        assert 0.0 <= row["success_rate"] <= 1.0 and 0.0 <= row["side_effect_rbo"] <= 1.0
    assert len(high["neurons"]) == 3
    base = promote_item(ctx, item, method="direction", strength=0.0)
    assert base["success_rate"] == 0.0 and base["side_effect_rbo"] == pytest.approx(1.0)


def _paired_rows(model="mf"):
    import pandas as pd

    return pd.DataFrame({"model": model, "kind": ["promote_concept"] * 4 + ["filter"] * 2,
                         "method": ["sae", "direction"] * 3, "target": "a", "pair": [0, 0, 1, 1, 0, 0],
                         "strength": [99.0, 0.9, 50.0, 0.3, 1.0, 0.2], "n_neurons": [1, None, 1, None, 1, None]})


def test_rows_sort_deterministically_and_keep_each_baseline_after_its_sae_row():
    rows = _paired_rows()
    out = sort_interventions(rows.sample(frac=1.0, random_state=0))
    assert out["kind"].tolist() == ["filter"] * 2 + ["promote_concept"] * 4
    assert out["method"].tolist() == ["sae", "direction"] * 3
    assert out["strength"].tolist() == [1.0, 0.2, 99.0, 0.9, 50.0, 0.3]  # pair 0 then pair 1, not by strength
    with pytest.raises(ValueError, match="pair"):
        sort_interventions(rows.drop(columns="pair"))


def test_running_one_model_keeps_the_other_models_rows(tmp_path):
    import pandas as pd

    path = tmp_path / "interventions.csv"
    merge_interventions(path, _paired_rows("mf"))
    merge_interventions(path, _paired_rows("ncf"))
    again = _paired_rows("mf").assign(share_after=0.5)
    merge_interventions(path, again)
    table = pd.read_csv(path)
    assert table["model"].tolist() == ["mf"] * 6 + ["ncf"] * 6
    assert (table[table["model"] == "mf"]["share_after"] == 0.5).all() and "share_after" in table
    assert table[table["model"] == "ncf"]["share_after"].isna().all()
    assert table[table["model"] == "mf"]["pair"].tolist() == [0, 0, 0, 0, 1, 1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["interventions.csv"]


def test_an_unpaired_file_is_not_merged_silently(tmp_path):
    path = tmp_path / "interventions.csv"
    _paired_rows("ncf").drop(columns="pair").to_csv(path, index=False)
    before = path.read_bytes()
    with pytest.raises(ValueError, match="no 'pair' column"):
        merge_interventions(path, _paired_rows("mf"))
    assert path.read_bytes() == before
    assert len(merge_interventions(path, _paired_rows("ncf"))) == 6  # recomputing every model in it replaces it


def test_edit_delta_of_an_attention_refined_sae_is_the_difference_of_its_decodes():
    """The attention-refined decoder is not linear in z: the edit uses the full decode, and no edit is still 0."""
    from ipynb.fs.defs.sae import SAE, SAEConfig

    torch.manual_seed(0)
    sae = SAE(SAEConfig(input_dim=8, n_neurons=32, k=4, attn_heads=2)).eval()
    x = torch.randn(5, 8)
    z = sae.encode(x, "user")
    z2 = z.clone()
    z2[:, 3] += 1.0
    with torch.no_grad():
        torch.testing.assert_close(sae.edit_delta(z, z2, "user"), sae.decode(z2, "user") - sae.decode(z, "user"))
        assert torch.equal(sae.edit_delta(z, z.clone(), "user"), torch.zeros(5, 8))


@pytest.mark.parametrize("dataset", ["ml-1m", "ml-100k", "lastfm"])
def test_committed_baseline_rows_are_matched_to_their_sae_row(dataset):
    """In res_csv/<dataset>/interventions.csv every direction row has the side effect of the SAE row it is paired with."""
    import pandas as pd
    from ipynb.fs.defs.utils import results_dir

    path = results_dir() / dataset / "interventions.csv"
    if not path.is_file():
        pytest.skip(f"{path} not computed")
    table = pd.read_csv(path)
    keys = ["model", "kind", "target", "pair"]
    sae = table[table["method"] == "sae"].set_index(keys)["side_effect_rbo"]
    direction = table[table["method"] == "direction"].set_index(keys)["side_effect_rbo"]
    assert sae.index.is_unique and direction.index.is_unique
    assert sorted(sae.index) == sorted(direction.index)  # one baseline row per SAE row
    assert (sae - direction.reindex(sae.index)).abs().max() < 0.02
    assert table.equals(sort_interventions(table).astype(table.dtypes.to_dict()))  # the file is in paired order


def test_steering_statistics_follow_the_support_rule(planted_mf_sae, ctx):
    """The concept statistics that choose aligned neurons count the supported items only (concepts.concept_items),
    as the concept tables do; without a mask every item counts."""
    from ipynb.fs.defs.concepts import concept_statistics

    mf, sae, tables, split, syn = planted_mf_sae
    supported = np.arange(len(syn.item_concepts)) % 3 != 0
    masked = steering_context(mf, sae, tables, split, syn.item_concepts, n_users=None, pool="all", items=supported)
    expected = concept_statistics(masked.codes_items, syn.item_concepts, items=supported)
    assert masked.stats.equals(expected)
    assert ctx.stats.equals(concept_statistics(ctx.codes_items, syn.item_concepts))
    assert not masked.stats.equals(ctx.stats)
