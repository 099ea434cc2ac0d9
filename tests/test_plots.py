"""plots notebook: every figure function returns the expected axes / traces on tiny frames and names a missing column."""
import base64

import numpy as np
import pandas as pd
import pytest
from ipynb.fs.defs.concepts import pca_scores, popularity_spearman
from ipynb.fs.defs.plots import (
    PAPER_FIDELITY,
    NotComputedYet,
    Section,
    _guard,
    best_per_concept,
    demographic_means,
    fidelity_table,
    frontier_series,
    load_results,
    matryoshka_level,
    model_report,
    neuron_explorer,
    neuron_labels,
    paired_strength,
    pca_2d,
    plot_demographics,
    plot_fidelity_summary,
    plot_intervention_curves,
    plot_matryoshka_hierarchy,
    plot_popularity_scatter,
    plot_prefix_fve,
    plot_purity_heatmap,
    plot_recipe_frontier,
    plot_sparsity_curve,
    plot_steering_frontier,
    sae_variants_section,
    top_items_summary,
    top_items_table,
)
from ipynb.fs.defs.steering import summarize_steering
from ipynb.fs.defs.utils import CheckpointError


@pytest.fixture
def fidelity():
    return pd.DataFrame({
        "model": ["mf", "mf", "mf", "ncf", "ncf_paper", "ncf_paper"],
        "sae": ["default", "topk_k4", "topk_k8", "default", "paper", "paper_lambda_pred_10"],
        "rbo_trunc_at_30": [0.8, 0.5, 0.6, 0.7, 0.6, 0.65], "tau_b_union_at_30": [0.7, 0.4, 0.5, 0.6, 0.5, 0.55],
        "rbo_ext_at_20": [0.85, 0.5, 0.6, 0.7, 0.6, 0.6], "weighted_tau": [0.9, 0.6, 0.7, 0.8, 0.7, 0.7],
        "l0": [16.0, 4.0, 8.0, 16.0, 5.0, 5.0], "fve_users": [0.9, 0.5, 0.7, 0.8, 0.7, 0.7],
        "fve_items": [0.9, 0.5, 0.7, 0.8, 0.7, 0.7], "hr_at_10_original": [0.1] * 6,
        "hr_at_10_spliced": [0.09, 0.05, 0.07, 0.08, 0.07, 0.07],
    })


@pytest.fixture
def purity():
    rng = np.random.default_rng(0)
    return pd.DataFrame([{"model": "mf", "representation": r, "concept": c, "neuron": n,
                          "purity_at_10": float(rng.random()), "base_rate": 0.2}
                         for r in ("sae", "raw", "rotation") for c in ("genre:Drama", "genre:Horror") for n in range(3)])


@pytest.fixture
def interventions():
    return pd.DataFrame([{"model": "mf", "kind": k, "method": m, "target": "genre:Horror", "strength": s,
                          "share_before": 0.4, "share_after": 0.4 + (s if k == "promote_concept" else -s) / 3,
                          "side_effect_rbo": 1 - s / 4, "success_rate": s / 2, "n_users": 10}
                         for k in ("filter", "promote_concept", "promote_item") for m in ("sae", "direction")
                         for s in (0.0, 1.0)])


def test_fidelity_table_keeps_main_rows_and_labels_paper(fidelity):
    table = fidelity_table(fidelity)
    ours = table[table["source"] == "ours"]
    assert list(ours["sae"]) == ["default", "default", "paper", "paper_lambda_pred_10"]  # no topk sweep rows
    paper = table[table["source"] != "ours"].set_index("model")
    assert paper.loc["mf (paper)", "rbo_trunc_at_30"] == PAPER_FIDELITY["mf"]["rbo_trunc_at_30"] == 0.543
    assert paper.loc["ncf (paper)", "tau_b_union_at_30"] == 0.609
    assert table["source"].str.contains("paper").sum() == 2


def test_fidelity_summary_axes_and_missing_column(fidelity):
    assert len(plot_fidelity_summary(fidelity).axes) == 3
    assert len(plot_fidelity_summary(fidelity.drop(columns=["rbo_ext_at_20", "weighted_tau"])).axes) == 2
    with pytest.raises(ValueError, match="tau_b_union_at_30"):
        plot_fidelity_summary(fidelity.drop(columns="tau_b_union_at_30"))


def test_figures_render_to_png(fidelity):
    assert plot_fidelity_summary(fidelity)._repr_png_().startswith(b"\x89PNG")


def test_sparsity_curve(fidelity):
    fig = plot_sparsity_curve(fidelity)
    assert len(fig.axes) == 3
    assert len(fig.axes[0].lines) == 2  # one model in the sweep: users + items
    assert list(fig.axes[0].lines[0].get_xdata()) == [4.0, 8.0]
    with pytest.raises(ValueError, match="no L0 sweep rows"):
        plot_sparsity_curve(fidelity[~fidelity["sae"].str.startswith("topk")])
    with pytest.raises(ValueError, match="l0"):
        plot_sparsity_curve(fidelity.drop(columns="l0"))


def test_best_per_concept_and_heatmap(purity):
    best = best_per_concept(purity)
    assert len(best) == 6
    expected = purity.groupby(["representation", "concept"])["purity_at_10"].max()
    assert np.allclose(best.set_index(["representation", "concept"])["purity"].sort_index(), expected.sort_index())
    assert np.allclose(best["lift"], best["purity"] / 0.2)
    fig = plot_purity_heatmap(purity)
    assert len(fig.axes) == 2  # heatmap + colorbar
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["base rate", "sae", "raw", "rotation"]
    with pytest.raises(ValueError, match="base_rate"):
        plot_purity_heatmap(purity.drop(columns="base_rate"))
    with pytest.raises(ValueError, match="several models"):
        plot_purity_heatmap(pd.concat([purity, purity.assign(model="ncf")]))


def test_neuron_explorer_one_trace_dropdown():
    codes = np.abs(np.random.default_rng(1).normal(size=(12, 4)))
    items = pd.DataFrame({"title": [f"m{i}" for i in range(12)], "tags": ["rock"] * 12, "popularity": range(12)})
    fig = neuron_explorer(pca_2d(codes), codes, items, [1, 3], labels={1: "style:rock"})
    assert len(fig.data) == 1
    buttons = fig.layout.updatemenus[0].buttons
    assert [b.label for b in buttons] == ["neuron 1: style:rock", "neuron 3"]
    spec = buttons[1].args[0]["marker.color"][0]  # uint8 typed array: activation / max x 255, silent = 0
    decoded = np.frombuffer(base64.b64decode(spec["bdata"]), dtype=np.uint8)
    assert spec["dtype"] == "u1" and np.abs(decoded - 255 * codes[:, 3] / codes[:, 3].max()).max() <= 0.5
    assert "<b>m0</b>" in fig.data[0].text[0] and "tags: rock" in fig.data[0].text[0]
    with pytest.raises(ValueError, match="title"):
        neuron_explorer(pca_2d(codes), codes, items.drop(columns="title"), [0])
    with pytest.raises(ValueError, match="indices"):
        neuron_explorer(pca_2d(codes), codes, items, [7])


def test_pca_2d_matches_numpy():
    x = np.random.default_rng(2).normal(size=(20, 5))
    xy = pca_2d(x)
    centred = x - x.mean(0)
    _, s, _ = np.linalg.svd(centred, full_matrices=False)
    assert np.allclose(np.sort(np.linalg.norm(xy, axis=0))[::-1], s[:2])


def test_pca_2d_is_pca_scores_with_deterministic_signs():
    x = np.random.default_rng(5).normal(size=(15, 4))
    xy = pca_2d(x)
    assert np.allclose(np.abs(xy), np.abs(pca_scores(x)[:, :2]))  # same scores, signs fixed
    _, _, vt = np.linalg.svd(x - x.mean(0), full_matrices=False)
    reference = (x - x.mean(0)) @ (vt[:2] * np.sign(vt[:2][[0, 1], np.abs(vt[:2]).argmax(1)])[:, None]).T
    assert np.allclose(xy, reference)  # each axis' largest-magnitude coordinate positive (the previous rule)
    assert np.allclose(pca_2d(-x), -xy)
    assert pca_2d(x[:, :1]).shape == (15, 2) and np.allclose(pca_2d(x[:, :1])[:, 1], 0)
    with pytest.raises(ValueError, match="2-d array"):
        pca_2d(x[:1])


def test_top_items_table():
    codes = np.array([[0.1, 2.0], [0.9, 0.0], [0.5, 1.0]])
    items = pd.DataFrame({"title": ["a", "b", "c"], "genres": ["x", "y", "z"]})
    table = top_items_table(codes, items, [0, 1], n=2)
    assert table["title"].tolist() == ["b", "c", "a", "c"]
    assert table["rank"].tolist() == [1, 2, 1, 2]
    with pytest.raises(ValueError, match="title"):
        top_items_table(codes, items.drop(columns="title"), [0])
    summary = top_items_summary(table, {1: "genre:x"})
    assert summary["top_items"].tolist() == ["b | c", "a | c"] and summary["label"].tolist() == ["", "genre:x"]
    with pytest.raises(ValueError, match="activation"):
        top_items_summary(table.drop(columns="activation"))


def test_popularity():
    pop = np.log1p(np.arange(10.0))
    codes = np.stack([pop, -pop, np.zeros(10)], axis=1)
    rho = popularity_spearman(codes, pop)  # the one implementation (concepts); NaN for a constant column
    assert np.isclose(rho[0], 1) and np.isclose(rho[1], -1) and np.isnan(rho[2])
    fig = plot_popularity_scatter(codes[:, 0], pop, 0)
    assert len(fig.axes) == 1 and "Spearman ρ = 1.000" in fig.axes[0].get_title()
    with pytest.raises(ValueError, match="align"):
        plot_popularity_scatter(codes[:5, 0], pop, 0)


def test_matryoshka_hierarchy():
    assert matryoshka_level([0, 1, 2, 7], [2, 8]).tolist() == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="increasing"):
        matryoshka_level([0], [8, 4])
    best = pd.DataFrame({"concept": ["genre:Drama", "genre:Horror"], "neuron": [0, 5]})
    pfve = pd.DataFrame({"prefix": [2, 8], "fve_users": [0.4, 0.9], "fve_items": [0.3, 0.8]})
    assert len(plot_matryoshka_hierarchy(best, [2, 8], pfve).axes) == 2
    assert len(plot_matryoshka_hierarchy(best, [2, 8]).axes) == 1
    with pytest.raises(ValueError, match="neuron"):
        plot_matryoshka_hierarchy(best.drop(columns="neuron"), [2, 8])
    with pytest.raises(ValueError, match="fve_items"):
        plot_matryoshka_hierarchy(best, [2, 8], pfve.drop(columns="fve_items"))
    both = pd.concat([pfve.assign(sae="matryoshka"), pfve.head(1).assign(sae="default")])
    assert len(plot_prefix_fve(both).axes) == 1 and len(plot_prefix_fve(both).axes[0].lines) == 2
    with pytest.raises(ValueError, match="more than one"):
        plot_prefix_fve(both[both["sae"] == "default"])
    with pytest.raises(ValueError, match="sae"):
        plot_prefix_fve(pfve)


def test_paired_strength_puts_baseline_rows_at_their_sae_row():
    rows = pd.DataFrame({"model": "mf", "kind": ["filter"] * 4 + ["promote_concept"] * 2, "target": "genre:War",
                         "method": ["sae", "direction", "sae", "direction", "sae", "direction"],
                         "strength": [1.0, 0.37, 2.0, 0.81, 99.0, 3.5]})
    assert paired_strength(rows).tolist() == [1.0, 1.0, 2.0, 2.0, 99.0, 99.0]
    paired = rows.assign(pair=[0, 0, 1, 1, 0, 0]).iloc[[3, 0, 5, 1, 2, 4]]  # any order: `pair` matches the rows
    assert paired_strength(paired).tolist() == [2.0, 1.0, 99.0, 1.0, 2.0, 99.0]
    fig = plot_intervention_curves(rows.assign(share_before=0.5, share_after=0.2, side_effect_rbo=0.9))
    direction = [ln for ln in fig.axes[0].lines if ln.get_label().startswith("direction")][0]
    assert list(direction.get_xdata()) == [1.0, 2.0]


def test_intervention_curves(interventions):
    fig = plot_intervention_curves(interventions)
    assert len(fig.axes) == 4  # filter, promote_concept, promote_item, side effects
    sae_line = [ln for ln in fig.axes[1].lines if ln.get_label() == "sae"][0]
    assert np.allclose(sae_line.get_ydata(), [0.4, 0.4 + 1 / 3])
    assert len(plot_intervention_curves(interventions[interventions["kind"] == "filter"]).axes) == 2
    with pytest.raises(ValueError, match="side_effect_rbo"):
        plot_intervention_curves(interventions.drop(columns="side_effect_rbo"))
    with pytest.raises(ValueError, match="share_after"):
        plot_intervention_curves(interventions.drop(columns="share_after"))


def test_demographics():
    user_concepts = pd.DataFrame({"gender:F": [1, 0, 1, 0], "gender:M": [0, 1, 0, 1],
                                  "age:18-24": [1, 1, 0, 0], "age:25-34": [0, 0, 1, 1]})
    codes = np.array([[2.0, 1.0], [0.0, 1.0], [2.0, 1.0], [0.0, 1.0]])
    table = demographic_means(codes, user_concepts, [0, 1]).set_index(["group", "neuron"])
    assert table.loc[("F", 0), "ratio"] == 2.0 and table.loc[("M", 0), "ratio"] == 0.0
    assert table.loc[("18-24", 1), "ratio"] == 1.0 and table.loc[("F", 0), "n_users"] == 2
    assert demographic_means(codes, user_concepts, [0], min_users=3).empty  # every group has 2 users
    fig = plot_demographics(codes, user_concepts, n_top=1)
    assert len(fig.axes) == 3  # gender, age (no occupation columns), the colour bar
    assert fig.axes[-1].get_ylabel() == "group mean / mean over all users"
    assert [t.get_text() for t in fig.axes[-2].get_xticklabels()] == ["#0"]  # the neuron that differs
    with pytest.raises(ValueError, match="families"):
        plot_demographics(codes, user_concepts.rename(columns=lambda c: "x" + c))


def test_load_results_names_the_producer(tmp_path, fidelity):
    fidelity.to_csv(tmp_path / "sae_fidelity.csv", index=False)
    res = load_results(tmp_path, ["sae_fidelity", "concept_purity", "interventions"])
    assert isinstance(res["sae_fidelity"], pd.DataFrame) and len(res["sae_fidelity"]) == 6
    assert "concept_purity.csv is missing" in res["concept_purity"] and "`concepts`" in res["concept_purity"]
    assert "`interventions`" in res["interventions"]


def _steering_points() -> pd.DataFrame:
    """Steering points of one model: two concepts, filter and promote_item, an SAE method and two baselines."""
    return pd.DataFrame([{"model": "mf", "population": "heldout", "task": t, "concept": c, "method": m, "strength": x,
                          "side_effect_rbo": 1 - 0.1 * x * (2 if m == "direction" else 1), "share_before": 0.3,
                          "share_after": 0.3 - 0.1 * x, "success_rate": 0.3 * x, "utility_ndcg": 0.2,
                          "coverage_at_10": 0.2, "ndcg_at_10": 0.1, "in_range": True, "negative": False, "n_users": 9}
                         for t in ("filter", "promote_item") for c in ("g:a", "g:b")
                         for m in ("sae_scaled", "direction", "oracle") for x in (0.0, 1.0, 2.0)])


def test_steering_frontier_plot():
    points = _steering_points()
    fig = plot_steering_frontier(points)
    assert len(fig.axes) == 2  # one axis per task
    ax = fig.axes[0]
    labels = [ln.get_label() for ln in ax.lines if not ln.get_label().startswith("_")]
    assert labels == ["direction", "oracle", "sae_scaled"]  # every method on the same axis
    sae = [ln for ln in ax.lines if ln.get_label() == "sae_scaled"][0]
    assert np.allclose(sae.get_xdata(), [1.0, 0.9, 0.8]) and np.allclose(sae.get_ydata(), [0.3, 0.2, 0.1])
    with pytest.raises(ValueError, match="several models"):
        plot_steering_frontier(pd.concat([points, points.assign(model="ncf")]))
    with pytest.raises(ValueError, match="side_effect_rbo"):
        plot_steering_frontier(points.drop(columns="side_effect_rbo"))


def test_model_report_sections(fidelity, purity, interventions):
    rng = np.random.default_rng(3)
    items = pd.DataFrame({"title": [f"m{i}" for i in range(8)], "log_popularity": np.log1p(np.arange(8.0))})
    codes = np.abs(rng.normal(size=(8, 3)))
    points = _steering_points()
    sections = model_report({"sae_fidelity": fidelity, "concept_purity": purity, "interventions": interventions,
                             "steering": points, "steering_summary": summarize_steering(points)},
                            "mf", items, codes, prefixes=[1, 3])
    assert all(isinstance(s, Section) for s in sections)
    assert [s.title for s in sections] == [
        "Fidelity summary", "Fidelity table", "Sparsity curve (L0 sweep)", "Purity heatmap (SAE vs controls)",
        "Neuron explorer (interactive)", "Top items per neuron", "Popularity neuron", "Matryoshka hierarchy",
        "Intervention curves", "Interventions: medians per kind and method", "Steering frontier",
        "Steering: targets met per task and method"]
    assert not any(isinstance(s.content, str) for s in sections)
    no_steering = model_report({"sae_fidelity": fidelity, "interventions": interventions}, "mf")
    assert no_steering[-1].title == "Steering frontier" and "`steering`" in no_steering[-1].content
    missing = model_report({"sae_fidelity": "x.csv is missing"}, "ncf")
    assert missing[0].content == "x.csv is missing" and "concept_purity.csv is missing" in missing[1].content


def test_labels_and_variants_section(tmp_path):
    dictionary = pd.DataFrame({"neuron": [0, 1, 2], "label": ["popularity (+)", "unlabelled", "genre:Horror"]})
    best = pd.DataFrame({"concept": ["genre:Drama", "genre:War"], "neuron": [1, 2]})
    assert neuron_labels(dictionary, best) == {0: "popularity (+)", 2: "genre:Horror", 1: "genre:Drama"}
    assert neuron_labels(None, None) == {}
    assert sae_variants_section(load_results(tmp_path, ["sae_variants"])).content.startswith("not computed yet")
    table = pd.DataFrame({"variant": ["topk"], "fve_users": [0.9]})
    assert sae_variants_section({"sae_variants": table}).content is table


def test_model_report_single_level_sae_shows_prefix_fve(fidelity):
    pfve = pd.DataFrame({"model": "mf", "sae": ["default", "matryoshka", "matryoshka"], "prefix": [8, 2, 8],
                         "fve_users": [0.9, 0.5, 0.9], "fve_items": [0.9, 0.4, 0.8]})
    sections = model_report({"sae_fidelity": fidelity, "sae_prefix_fve": pfve}, "mf", prefixes=(8,))
    section = [s for s in sections if s.title.startswith("Matryoshka")][0]
    assert section.title == "Matryoshka prefixes (FVE per prefix)" and "single level" in section.note


def test_guard_lets_real_errors_through():
    def broken():
        return {}["no_such_column"]

    with pytest.raises(KeyError, match="no_such_column"):
        _guard("broken section", broken)

    def bad_value():
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        _guard("broken section", bad_value)


@pytest.mark.parametrize(("error", "expected"), [
    (FileNotFoundError(2, "No such file", "res_csv/ml-1m/concept_purity.csv"), "`concepts`"),
    (FileNotFoundError(2, "No such file", "res_csv/ml-1m/sae_fidelity.csv"), "training"),
    (CheckpointError("models/ml-1m/sae_mf.pt is missing"), "training notebook"),
    (NotComputedYet("run the interventions notebook"), "interventions notebook"),
])
def test_guard_missing_result_names_its_producer(error, expected):
    def missing():
        raise error

    section = _guard("a section", missing, "note")
    assert isinstance(section.content, str) and expected in section.content and section.note == "note"


def test_plots_functions_are_short():
    """model_report is built from section builders: no function of the plots notebook is over 60 lines."""
    import ast
    import json
    from pathlib import Path

    nb = json.loads((Path(__file__).resolve().parents[1] / "notebooks" / "plots.ipynb").read_text())
    tree = ast.parse("\n\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"))
    long = {n.name: n.end_lineno - n.lineno + 1 for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef) and n.end_lineno - n.lineno + 1 > 60}
    assert not long, long


def _with_recipe(fidelity):
    recipe = pd.DataFrame({"model": ["mf"] * 5 + ["ncf"] * 2,
                           "sae": ["recipe_k4", "recipe_k8", "recipe_k4_pursuit", "recipe_k8_pursuit",
                                   "recipe_k32_seed1", "recipe_k4", "recipe_k4_pursuit"],
                           "l0": [4.0, 8.0, 4.0, 8.0, 32.0, 4.0, 4.0], "fve_users": [0.6, 0.7, 0.7, 0.8, 0.9, 0.5, 0.6],
                           "fve_items": [0.6, 0.7, 0.7, 0.8, 0.9, 0.5, 0.6],
                           "rbo_ext_at_20": [0.4, 0.5, 0.5, 0.6, 0.8, 0.3, 0.4]})
    return pd.concat([fidelity, recipe], ignore_index=True)


def test_recipe_frontier_one_column_per_model(fidelity):
    table = _with_recipe(fidelity)
    series = frontier_series(table)
    assert "recipe_k32_seed1" not in set(series["sae"]) and "paper" not in set(series["sae"])
    fig = plot_recipe_frontier(table)
    assert len(fig.axes) == 2 * 2  # FVE and RBO rows x models mf, ncf (ncf_paper has no frontier row: no panel)
    mf_fve = {line.get_label(): list(line.get_xdata()) for line in fig.axes[0].lines}
    assert mf_fve == {"default TopK (topk_k*)": [4.0, 8.0], "recipe, linear encoder": [4.0, 8.0],
                      "recipe, pursuit encoder": [4.0, 8.0], "default SAE": [16.0]}
    assert list(fig.axes[2].lines[1].get_ydata()) == [0.4, 0.5]  # mf RBO, linear encoder
    with pytest.raises(ValueError, match="no recipe rows"):
        plot_recipe_frontier(fidelity)
    with pytest.raises(ValueError, match="rbo_ext_at_20"):
        plot_recipe_frontier(table.drop(columns="rbo_ext_at_20"))


def test_model_report_shows_the_recipe_frontier(fidelity, purity):
    sections = model_report({"sae_fidelity": _with_recipe(fidelity), "concept_purity": purity}, "mf")
    titles = [s.title for s in sections]
    assert titles[:4] == ["Fidelity summary", "Fidelity table", "Sparsity curve (L0 sweep)",
                          "Recipe frontier (linear vs pursuit encoder)"]
    frontier = sections[3].content
    assert not isinstance(frontier, str) and len(frontier.axes) == 2
