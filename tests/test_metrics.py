"""Metrics of SPEC §5 against hand-computed values."""
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from ipynb.fs.defs.utils import (
    dead_fraction,
    dense_fraction,
    full_ranks,
    fve,
    hr_at_k,
    l0,
    ndcg_at_k,
    purity_at_k,
    rbo_extrapolated,
    rbo_truncated,
    sampled_ranks,
    tau_b_union,
    weighted_tau,
)

S = [1, 2, 3, 4, 5, 6, 7, 8, 0, 9]
T = [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]


def test_hr_ndcg_hand_values():
    ranks = np.array([0, 3, 9, 10, 99])
    assert hr_at_k(ranks, 10) == pytest.approx(3 / 5)
    assert ndcg_at_k(ranks, 10) == pytest.approx((1 + 1 / np.log2(5) + 1 / np.log2(11)) / 5)
    assert hr_at_k(ranks, 1) == pytest.approx(1 / 5) and ndcg_at_k(ranks, 1) == pytest.approx(1 / 5)
    with pytest.raises(ValueError):
        hr_at_k(np.array([]), 10)


def test_sampled_ranks_count_ties_against_the_target():
    scores = np.array([[0.5, 0.9, 0.5, 0.1], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    assert sampled_ranks(scores).tolist() == [2, 0, 3]  # a constant scorer never gets a free hit
    with pytest.raises(ValueError):
        sampled_ranks(np.zeros(5))


def test_full_ranks_excludes_history():
    grid = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0, 5.0]])
    history = sp.csr_matrix(np.array([[1, 1, 0, 0, 0], [0, 0, 0, 0, 1]]))
    ranks = full_ranks(lambda u: grid[u].clone(), np.array([0, 1]), np.array([2, 0]), history, batch_size=1)
    assert ranks.tolist() == [0, 3]  # user 0: items 0,1 excluded; user 1: item 4 excluded, 3 items above
    with pytest.raises(ValueError, match="leaks"):
        full_ranks(lambda u: grid[u].clone(), np.array([0]), np.array([0]), history)


def test_rbo_reference_values():
    assert rbo_extrapolated(S, S) == pytest.approx(1.0)
    assert rbo_extrapolated([1, 2, 3, 4], [5, 6, 7, 8]) == pytest.approx(0.0)
    assert rbo_extrapolated(S, T, p=0.9) == pytest.approx(0.9952, abs=1e-4)
    assert rbo_truncated(S, T, p=0.9) == pytest.approx(0.6465, abs=1e-4)
    assert rbo_truncated(list(range(30)), list(range(30))) == pytest.approx(1 - 0.9**30)  # ≈ 0.958, the paper's ceiling


def test_rbo_hand_computed_small_case():
    # S = [a, b], T = [b, c]: A_1 = 0, A_2 = 1/2 -> truncated = (1-p)(p * 1/2); extrapolated adds A_2 p^2
    p = 0.5
    assert rbo_truncated(["a", "b"], ["b", "c"], p) == pytest.approx(0.5 * 0.5 * 0.5)
    assert rbo_extrapolated(["a", "b"], ["b", "c"], p) == pytest.approx(0.125 + 0.5 * 0.25)


def test_rbo_batched_equals_single_and_validates():
    rng = np.random.default_rng(0)
    a = np.stack([rng.permutation(50)[:20] for _ in range(6)])
    b = np.stack([rng.permutation(50)[:20] for _ in range(6)])
    batched = rbo_extrapolated(a, b)
    assert np.allclose(batched, [rbo_extrapolated(x, y) for x, y in zip(a, b, strict=True)])
    assert np.all((batched >= 0) & (batched <= 1))
    with pytest.raises(ValueError, match="equal depth"):
        rbo_extrapolated([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="repeats"):
        rbo_extrapolated([1, 1, 2], [1, 2, 3])


def test_weighted_tau_and_union_tau():
    x = np.arange(20.0)
    assert weighted_tau(x, x) == pytest.approx(1.0)
    assert weighted_tau(x, -x) == pytest.approx(-1.0)
    assert tau_b_union([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)
    # union {1,2,3,4}: ranks (0,1,2,3) vs (0,1,3,2) -> 5 concordant, 1 discordant of 6 pairs, no ties
    assert tau_b_union([1, 2, 3], [1, 2, 4]) == pytest.approx(4 / 6)
    # disjoint lists: union ranks (0,1,2,2) vs (2,2,0,1): tau-b by hand = (C - D)/sqrt((n0-n1)(n0-n2)) = -4/5
    assert tau_b_union([1, 2], [3, 4]) == pytest.approx(-4 / 5)


def test_fve_l0_dead_dense():
    x = torch.tensor([[1.0, 0.0], [3.0, 2.0]])  # column means (2, 1): total SS = 1 + 1 + 1 + 1 = 4
    x_hat = torch.tensor([[1.0, 1.0], [3.0, 2.0]])  # residual SS = 1
    assert fve(x, x_hat) == pytest.approx(0.75)
    z = torch.tensor([[0.0, 1.0, 0.0], [0.0, 2.0, 3.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    assert l0(z) == pytest.approx(5 / 4)
    assert dead_fraction(z) == pytest.approx(1 / 3)
    assert dense_fraction(z) == pytest.approx(1 / 3)  # neuron 1 fires on 4/4 > 0.5; neuron 2 on 1/4


def test_purity_hand_values():
    act = np.array([[3.0, 0.0], [2.0, 0.0], [1.0, 5.0], [0.0, 4.0], [0.0, 3.0]])
    concepts = np.array([[1, 0], [1, 1], [0, 1], [0, 1], [1, 0]])
    assert purity_at_k(act, concepts, 2).tolist() == [[1.0, 0.5], [0.0, 1.0]]
    assert purity_at_k(act, concepts, 3).tolist() == [[2 / 3, 2 / 3], [1 / 3, 2 / 3]]
    with pytest.raises(ValueError):
        purity_at_k(act, concepts[:3], 2)
