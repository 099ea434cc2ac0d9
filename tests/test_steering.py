"""Steering (issue 12): strength 0 is the identity for every method, a planted concept is removed by the group
edit at a known cost, the oracle reaches share 0, and the frontier summaries equal hand-computed values."""
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from ipynb.fs.defs.concepts import concept_statistics
from ipynb.fs.defs.interventions import SteeringContext, steering_context, top_items
from ipynb.fs.defs.steering import (
    SteeringExtras,
    best_value,
    concept_curves,
    frontier_auc,
    item_curves,
    popularity_curves,
    sae_scale_edit,
    steering_extras,
    summarize_steering,
    user_scores,
)


class _DotModel:
    """score = <user, item> (an MF without biases)."""

    def score_grid(self, u, it, users=None, items=None):
        return u @ it.T

    def score(self, u, it, users=None, items=None):
        return (u * it).sum(-1)


class _AxisSAE:
    """An SAE whose neurons are the coordinate axes: z = relu(x), D = identity (duck-typed for steering)."""

    def __init__(self, d):
        self.config = SimpleNamespace(n_neurons=d)

    def encode(self, x, side):
        return torch.relu(x)

    def edit_delta(self, z, z_edited, side):
        return z_edited - z

    def decoder(self):
        return torch.eye(self.config.n_neurons)

    def scale(self, side):
        return 1.0


@pytest.fixture(scope="module")
def planted():
    """200 items in 4 dimensions: 40 concept items on axis 0 only, the others positive on axes 1-3 only; 50 users
    with a strong axis-0 taste. Zeroing neuron 0 must remove the concept and leave the rest of every list alone."""
    rng = np.random.default_rng(0)
    n_items, n_users, d = 200, 50, 4
    items = np.zeros((n_items, d), np.float32)
    concept = np.zeros(n_items, bool)
    concept[:40] = True
    items[concept, 0] = 1.0 + rng.random(40).astype(np.float32)
    items[~concept, 1:] = rng.random((160, 3)).astype(np.float32) * 0.5
    users = np.concatenate([5 + rng.random((n_users, 1)), rng.random((n_users, 3))], axis=1).astype(np.float32)
    items_t, users_t = torch.as_tensor(items), torch.as_tensor(users)
    table = pd.DataFrame({"planted:c": concept.astype(int), "planted:other": (~concept).astype(int)})
    sae = _AxisSAE(d)
    codes_items = sae.encode(items_t, "item").numpy()
    scores = users_t @ items_t.T
    ctx = SteeringContext(_DotModel(), sae, users_t, np.arange(n_users), items_t, sp.csr_matrix((n_users, n_items)),
                          table, sae.encode(users_t, "user").numpy(), codes_items,
                          concept_statistics(codes_items, table), scores, torch.zeros(n_users, n_items, dtype=torch.bool))
    test = np.array([40 + (u % 160) for u in range(n_users)])  # every test item outside the concept
    ex = SteeringExtras(table.to_numpy().astype(bool), list(table.columns), np.zeros((n_items, 0), bool),
                        np.log1p(np.arange(n_items, dtype=np.float64)), test, codes_items.max(0) * 0.99,
                        ctx.codes_users.max(0), float(users_t.norm(dim=1).mean()), float(items_t.norm(dim=1).mean()))
    return ctx, ex


@pytest.fixture(scope="module")
def trained(planted_mf_sae):
    """A small MF on planted-concept synthetic data with a trained SAE (conftest.planted_mf_sae)."""
    mf, sae, tables, split, syn = planted_mf_sae
    ctx = steering_context(mf, sae, tables, split, syn.item_concepts, n_users=None, pool="all")
    return ctx, steering_extras(ctx, split, syn.item_concepts)


def test_strength_zero_is_the_identity_bit_for_bit(trained):
    ctx, ex = trained
    rows = np.arange(len(ctx.users))
    before = top_items(ctx.scores, 20, ctx.seen)
    for add in (None, ex.user_max):
        x = ctx.users_repr
        edited = sae_scale_edit(ctx.sae, list(range(ctx.sae.config.n_neurons)), 0.0, add)(x, rows)
        assert torch.equal(edited, x)
        assert np.array_equal(top_items(user_scores(ctx, rows, edited), 20, ctx.seen), before)
    c = ctx.concepts.columns[0]
    for task in ("filter", "promote_concept"):
        zero = pd.DataFrame(concept_curves(ctx, ex, c, task)).query("strength == 0")
        assert set(zero["method"]) >= {"sae_group", "direction", "gradient", "oracle"}
        assert (zero["share_after"] == zero["share_before"]).all()
        assert np.allclose(zero["side_effect_rbo"], 1.0)
        assert (zero["utility_ndcg"] == zero["utility_ndcg_before"]).all()
    items = pd.DataFrame(item_curves(ctx, ex, 5)).query("strength == 0")
    assert (items["share_after"] == items["share_before"]).all() and (items["success_rate"] == 0).all()
    pop = pd.DataFrame(popularity_curves(ctx, ex)).query("strength == 0")
    assert pop["coverage_at_10"].nunique() == 1 and np.allclose(pop["side_effect_rbo"], 1.0)


def test_group_edit_removes_a_planted_concept_at_known_cost(planted):
    ctx, ex = planted
    pts = pd.DataFrame(concept_curves(ctx, ex, "planted:c", "filter"))
    assert pts["share_before"].iloc[0] == 1.0  # every user's top-20 is the concept
    for method in ("sae_scaled", "sae_group"):
        one = pts[(pts["method"] == method) & (pts["strength"] == 1.0)].iloc[0]
        assert one["share_after"] == 0.0  # zeroing neuron 0 removes the concept entirely ...
        assert one["side_effect_rbo"] == pytest.approx(1.0)  # ... and leaves the rest of every list unchanged
        # the known cost: none — the test item (outside the concept) now sits at its rank among the other items
        rest = ctx.scores.masked_fill(torch.as_tensor(ctx.concepts["planted:c"].to_numpy() > 0)[None, :], -torch.inf)
        rank = (rest >= rest.gather(1, torch.as_tensor(ex.test_item)[:, None])).sum(1).numpy()
        assert one["utility_ndcg"] == pytest.approx(np.mean(np.where(rank <= 20, 1 / np.log2(rank + 1), 0.0)))
        assert one["utility_ndcg"] >= one["utility_ndcg_before"]
        assert not one["negative"] and one["in_range"]
    assert pts[(pts["method"] == "sae_group")]["n_neurons"].iloc[0] >= 1
    summary = summarize_steering(pts.assign(model="toy", population="all")).set_index("method")
    assert summary.loc["sae_group", "met"] and summary.loc["sae_group", "value_at_rbo_08"] == 0.0
    assert summary.loc["sae_group", "frontier_auc"] == pytest.approx(1.0)


def test_oracle_reaches_share_zero(planted, trained):
    for ctx, ex, c in (*planted, "planted:c"), (*trained, trained[0].concepts.columns[0]):
        pts = pd.DataFrame(concept_curves(ctx, ex, c, "filter", methods=("oracle",)))
        assert pts["share_after"].min() == 0.0
        assert np.allclose(pts["side_effect_rbo"], 1.0)  # the rest of the list is never touched


def test_frontier_auc_of_a_hand_made_curve():
    # F(r) = 0 on (0.9, 1], 0.5 on (0.5, 0.9] (the point at 0.6 is dominated), 0.9 on (0, 0.5]
    assert frontier_auc([1.0, 0.9, 0.6, 0.5], [0.0, 0.5, 0.4, 0.9]) == pytest.approx(0.1 * 0 + 0.4 * 0.5 + 0.5 * 0.9)
    assert frontier_auc([0.5, 1.0], [1.0, 0.0]) == pytest.approx(0.5)  # order of the points does not matter
    assert frontier_auc([1.0, 1.2, -0.1], [0.2, 0.3, 1.0]) == pytest.approx(0.3)  # RBO clipped into [0, 1]


def test_value_at_rbo_08_picks_the_right_point():
    pts = pd.DataFrame({"model": "m", "population": "p", "concept": "g:a", "method": "sae_scaled",
                        "strength": [0.0, 1.0, 2.0, 3.0], "side_effect_rbo": [1.0, 0.85, 0.80, 0.79],
                        "share_before": 0.4, "utility_ndcg": 0.2, "in_range": True, "negative": False, "n_users": 5})
    f = summarize_steering(pts.assign(task="filter", share_after=[0.4, 0.2, 0.1, 0.0])).iloc[0]
    assert f["value_at_rbo_08"] == 0.1 and f["strength_needed"] == 3.0 and not f["met"]
    p = summarize_steering(pts.assign(task="promote_concept", share_after=[0.05, 0.3, 0.6, 0.9])).iloc[0]
    assert p["value_at_rbo_08"] == 0.6 and p["met"] and p["strength_needed"] == 2.0
    assert np.isnan(best_value([0.3, 0.1], [False, False], higher=True))  # no point qualifies
