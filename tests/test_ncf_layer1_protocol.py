"""Issue 11 items 4 and 6: NCF's first-layer SAE input (kind `layer1`), the linear-probe ceiling, and the anchor
paper's fidelity protocol next to ours (hand-checked on a tiny case)."""
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from ipynb.fs.defs.artifacts import SAE_INPUTS, ArtifactName, sae_input
from ipynb.fs.defs.concepts import count_pure_concepts, linear_probe_ceiling, linear_probe_codes
from ipynb.fs.defs.data_processing import leave_one_out, make_synthetic
from ipynb.fs.defs.evaluation import (
    FIDELITY_PROTOCOLS,
    RepresentationTables,
    evaluate_sae,
    protocol_tables,
    representation_tables,
    sae_ranking_fidelity,
)
from ipynb.fs.defs.experiments import sae_row_checkpoint, sae_row_input, sae_runs
from ipynb.fs.defs.models import MF, NCF, MFConfig, NCFConfig, NCFFirstLayer
from ipynb.fs.defs.sae import SAE, SAEConfig, sae_preset
from ipynb.fs.defs.sae_training import sae_row, train_sae

# --- NCF's first layer as an SAE input ---------------------------------------------------------------------------

def test_first_layer_view_gives_ncf_scores_from_first_layer_rows():
    ncf = NCF(NCFConfig(7, 11, dim=5, hidden=(9, 4), init_std=0.5)).eval()
    view = sae_input(ncf, "layer1")
    users, items = torch.arange(7), torch.arange(11)
    with torch.no_grad():
        u, i = view.user_repr(users), view.item_repr()
        d = ncf.config.dim
        assert isinstance(view, NCFFirstLayer) and u.shape == (7, 9) and i.shape == (11, 9)
        assert torch.allclose(u, ncf.user_emb.weight @ ncf.first.weight[:, :d].T + ncf.first.bias, atol=1e-6)
        assert torch.allclose(i, ncf.item_emb.weight @ ncf.first.weight[:, d:].T, atol=1e-6)
        grid = ncf.score_grid(ncf.user_repr(users), ncf.item_repr(), users, items)
        assert torch.allclose(view.score_grid(u, i, users, items, chunk_elements=20), grid, atol=1e-6)
        cols = torch.randint(0, 11, (7, 4))
        assert torch.allclose(view.score_lists(u, i, users, items, cols), grid.gather(1, cols), atol=1e-6)
        # a direction added to the user row or to the item row moves every score identically
        v = torch.randn(9)
        assert torch.allclose(view.score_grid(u + v, i), view.score_grid(u, i + v), atol=1e-6)


def test_layer1_kind_is_registered_for_ncf_only():
    assert SAE_INPUTS["layer1"][0] == "ncf"
    assert ArtifactName.parse("sae_ncf_layer1").analysis == "ncf_layer1"
    with pytest.raises(ValueError, match="reads ncf representations"):
        ArtifactName.parse("sae_mf_layer1")
    mf = MF(MFConfig(3, 4, dim=2))
    assert sae_input(mf, "") is mf and sae_input(mf, ArtifactName.parse("sae_mf_matryoshka")) is mf
    with pytest.raises(ValueError, match="first_layer_view"):
        sae_input(mf, "layer1")
    with pytest.raises(ValueError, match="unknown SAE kind"):
        sae_input(mf, "layer2")
    with pytest.raises(TypeError, match="wraps an NCF"):
        NCFFirstLayer(mf)


def test_first_layer_rows_of_the_fidelity_table():
    runs = dict(sae_runs("ml-1m", "ncf", 32, first_layer_width=64))
    names = list(runs)
    assert names.index("layer1") > names.index("recipe_k16_short_pursuit")  # appended: committed rows keep their order
    assert runs["layer1"] == sae_preset("recipe", 64, "ncf") and runs["layer1_recipe_k32"] == runs["layer1"]
    assert str(sae_row_checkpoint("ncf", names.index("layer1"), "layer1")) == "sae_ncf_layer1"
    assert sae_row_checkpoint("ncf", names.index("layer1_recipe_k8"), "layer1_recipe_k8") is None
    assert {sae_row_input(n) for n in names if n.startswith("layer1")} == {("layer1", "ours")}
    assert "layer1" not in dict(sae_runs("ml-1m", "mf", 64, first_layer_width=64))  # NCF only
    assert "layer1" not in dict(sae_runs("lastfm", "ncf", 32, first_layer_width=64))  # ML-1M only


def test_sae_on_first_layer_is_judged_through_ncf_scores():
    syn = make_synthetic(n_users=80, n_items=60, per_user=8, seed=4)
    split = leave_one_out(syn, "random", seed=0)
    ncf = NCF(NCFConfig(syn.n_users, syn.n_items, dim=6, hidden=(10, 4), init_std=0.5)).eval()
    tables = representation_tables(sae_input(ncf, "layer1"), split, syn)
    raw = representation_tables(ncf, split, syn)
    assert tables.users.shape[1] == 10 and torch.equal(tables.top_items, raw.top_items)  # the same rankings
    sae, _ = train_sae(SAEConfig(10, 20, k=4, epochs=2, batch_size=32), tables, progress=False)
    row, _ = sae_row("ncf", 0, "layer1", sae, tables, split, syn.item_concepts.iloc[:, :2], "planted", 0.0)
    assert row["protocol"] == "ours" and 0 < row["rbo_ext_at_20"] <= 1 and row["n_neurons"] == 20


# --- the linear-probe ceiling ------------------------------------------------------------------------------------

def test_probe_ceiling_on_separable_and_random_concepts():
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"a": np.r_[np.ones(30), np.zeros(120)].astype(int),
                          "b": rng.permutation(np.r_[np.ones(30), np.zeros(120)]).astype(int)})
    x = np.c_[np.where(table["a"] == 1, 2.0, -2.0) + 0.1 * rng.standard_normal(150), rng.standard_normal((150, 3))]
    codes = linear_probe_codes(x, table)
    assert codes.shape == (150, 2) and (codes >= 0).all() and codes.min(axis=0).tolist() == [0.0, 0.0]
    ceiling = linear_probe_ceiling(x, table)
    assert ceiling["own_purity_at_10"]["a"] == 1.0 and ceiling["pure_concepts"] == count_pure_concepts(codes, table) == 1
    assert ceiling["purity10_ge_09"] == 1  # b is independent of x: its probe's top 10 are not 90 % b
    # an invertible linear map of the item vectors leaves every probe ranking, hence the ceiling, unchanged
    mapped = x @ (np.eye(4) + 0.3 * rng.standard_normal((4, 4)))
    assert linear_probe_ceiling(mapped, table)["own_purity_at_10"]["a"] == 1.0
    assert np.array_equal(linear_probe_codes(x, table, seed=1), linear_probe_codes(x, table, seed=1))  # seeded
    with pytest.raises(ValueError, match="folds must be >= 2"):
        linear_probe_codes(x, table, folds=1)


@pytest.mark.realdata
def test_probe_ceiling_on_ml1m_ncf_items(data_root):
    from ipynb.fs.defs.artifacts import load_recommender
    from ipynb.fs.defs.data_processing import load_dataset
    from ipynb.fs.defs.evaluation import main_concepts
    from ipynb.fs.defs.experiments import split_of

    ds = load_dataset("ml-1m")
    model, _ = load_recommender("ml-1m", "ncf", split=split_of(ds, "ncf"))
    concepts, _ = main_concepts(ds)
    ceiling = linear_probe_ceiling(model.item_repr().detach().numpy(), concepts)
    # README: 12 and 10 on the shipped (one-thread retrained) NCF; the NCF shipped before it had 14 and 12
    assert ceiling["purity10_ge_09"] >= 12 and ceiling["pure_concepts"] >= 10, ceiling


# --- the anchor paper's protocol, hand-checked -------------------------------------------------------------------

class _ForgetHistorySAE(torch.nn.Module):
    """A stand-in SAE: items reconstructed exactly, users with the coordinates of items 0 and 1 set to 0."""

    def encode(self, x, side):
        return x.clamp_min(0)

    def forward(self, x, side):
        out = x.clone()
        if side == "user":
            out[:, :2] = 0.0
        return out, self.encode(x, side)


class _History:
    """A split whose only use here is its test-stage history: user 0 has rated items 0 and 1, user 1 nothing."""

    def history(self, stage):
        return sp.csr_matrix(([1.0, 1.0], ([0, 0], [0, 1])), shape=(2, 40))


def _two_user_tables() -> RepresentationTables:
    """MF with one-hot items (d = 40): user 0 scores item j at 40 - j, so its rated items 0 and 1 lead its list;
    user 1 scores items 0 and 1 at 0 and item j >= 2 at 40 - j (the stand-in SAE reconstructs it exactly)."""
    mf = MF(MFConfig(2, 40, dim=40)).eval()
    with torch.no_grad():
        for name, p in mf.named_parameters():
            if "emb" not in name:
                p.zero_()
        mf.item_emb.weight.copy_(torch.eye(40))
        scores = torch.arange(40, 0, -1, dtype=torch.float32)
        mf.user_emb.weight.copy_(torch.stack([scores, torch.cat([torch.zeros(2), scores[2:]])]))
    zero = torch.zeros(0, dtype=torch.long)
    return RepresentationTables(mf, mf.user_emb.weight.detach(), torch.arange(2), torch.eye(40), zero,
                                torch.arange(2), torch.arange(40), zero, None, torch.zeros(2, 1, dtype=torch.long))


def test_protocols_differ_only_where_the_history_is_kept():
    tables, sae = _two_user_tables(), _ForgetHistorySAE()
    ours = sae_ranking_fidelity(sae, tables, _History(), "ours", depth=3)
    m4r = sae_ranking_fidelity(sae, tables, _History(), "m4r", depth=3)
    # user 1: both lists [2, 3, 4] under both protocols: RBO@3 = 0.1 (1 + 0.9 + 0.81) = 0.271, tau-b = 1.
    # user 0, ours: rated items 0, 1 removed, both top-3 lists are [2, 3, 4]: 0.271 and 1 again
    assert ours["rbo_trunc_at_30"] == pytest.approx(0.271) and ours["tau_b_union_at_30"] == pytest.approx(1.0)
    # user 0, m4r: [0, 1, 2] against [2, 3, 4]: overlaps 0, 0, 1/3 -> RBO@3 = 0.1 * 0.81 / 3 = 0.027; over the union
    # {0..4} with a missing item at rank 3, ranks (0, 1, 2, 3, 3) vs (3, 3, 0, 1, 2): 2 concordant, 6 discordant
    # pairs, one tie on each side -> tau-b = (2 - 6) / sqrt(9 * 9) = -4/9. Means over the two users:
    assert m4r["rbo_trunc_at_30"] == pytest.approx((0.027 + 0.271) / 2)
    assert m4r["tau_b_union_at_30"] == pytest.approx((-4 / 9 + 1) / 2)
    assert (ours["protocol"], m4r["protocol"]) == ("ours", "m4r")
    assert ours["fve_items"] == m4r["fve_items"] == 1.0  # no held-out item: every item counts
    with pytest.raises(ValueError, match="protocol must be one of"):
        sae_ranking_fidelity(sae, tables, _History(), "M4R")


def test_identity_reaches_the_truncated_rbo_maximum_under_both_protocols():
    tables, split = _two_user_tables(), _History()

    class Identity(_ForgetHistorySAE):
        def forward(self, x, side):
            return x.clone(), self.encode(x, side)

    for protocol in FIDELITY_PROTOCOLS:
        got = sae_ranking_fidelity(Identity(), tables, split, protocol)
        assert got["rbo_trunc_at_30"] == pytest.approx(1 - 0.9 ** 30) and got["tau_b_union_at_30"] == pytest.approx(1.0)
        assert got["rbo_ext_at_20"] == pytest.approx(1.0)


def test_protocol_partitions_and_ours_matches_evaluate_sae():
    syn = make_synthetic(n_users=200, n_items=120, per_user=10, seed=5)
    split = leave_one_out(syn, "random", seed=0)
    mf = MF(MFConfig(syn.n_users, syn.n_items, dim=8)).eval()
    ours, m4r = (protocol_tables(mf, split, syn, p) for p in ("ours", "m4r"))
    default = representation_tables(mf, split, syn)
    assert torch.equal(ours.heldout_rows, default.heldout_rows) and torch.equal(ours.heldout_items, default.heldout_items)
    assert len(m4r.heldout_items) == 0 and len(m4r.train_items) == syn.n_items
    assert 0.12 < len(m4r.heldout_rows) / syn.n_users < 0.28 and len(m4r.heldout_rows) > len(ours.heldout_rows)
    sae = SAE(SAEConfig(8, 16, k=3))
    sae.fit_scaling(ours.users, ours.items)
    got, full = sae_ranking_fidelity(sae, ours, split, "ours"), evaluate_sae(sae, ours, split, tau_users=1)
    for key in ("rbo_trunc_at_30", "tau_b_union_at_30", "rbo_ext_at_20", "fve_users", "fve_items", "dead_frac_all"):
        assert got[key] == pytest.approx(full[key], abs=1e-9), key
    with pytest.raises(ValueError, match="held-out users"):
        sae_ranking_fidelity(sae, RepresentationTables(mf, ours.users, ours.user_index, ours.items, ours.train_rows,
                                                       ours.train_rows[:0], ours.train_items, ours.heldout_items,
                                                       None, ours.top_items), split, "ours")


def test_m4r_rows_of_the_fidelity_table():
    paper = dict(sae_runs("ml-1m", "ncf_paper", 20))
    assert paper["paper_m4r"] == paper["paper"] and paper["paper_e90_m4r"].epochs == 90
    assert sae_row_input("paper_e90_m4r") == ("", "m4r") and sae_row_input("paper_e90") == ("", "ours")
    assert dict(sae_runs("ml-1m", "mf", 64))["default_m4r"] == dict(sae_runs("ml-1m", "mf", 64))["default"]
    assert not any(n.endswith("_m4r") for n, _ in sae_runs("lastfm", "mf", 64))


@pytest.mark.realdata
def test_committed_layer1_sae_reproduces_its_fidelity_through_sae_input(data_root):
    """sae_ncf_layer1 loads with the committed NCF and, read through artifacts.sae_input, reproduces its sidecar."""
    import json

    from ipynb.fs.defs.artifacts import Artifacts, load_recommender, load_sae
    from ipynb.fs.defs.data_processing import load_dataset
    from ipynb.fs.defs.experiments import split_of

    ds = load_dataset("ml-1m", root=data_root)
    split = split_of(ds, "ncf")
    model, meta = load_recommender("ml-1m", "ncf", split=split)
    name = ArtifactName.parse("sae_ncf_layer1")
    sae = load_sae("ml-1m", name, meta, split=split)
    stored = json.loads(Artifacts.of("ml-1m").path(name).with_suffix(".json").read_text())["metrics"]
    got = evaluate_sae(sae, representation_tables(sae_input(model, name), split, ds), split, tau_users=8)
    for key in ("fve_users", "fve_items", "rbo_ext_at_20", "l0", "dead_frac_all"):
        assert got[key] == pytest.approx(stored[key], abs=1e-4), (key, got[key], stored[key])
