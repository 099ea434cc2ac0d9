#!/usr/bin/env python
"""Generate the README's results section from res_csv/ (never typed by hand).

    python scripts/readme_results.py           # rewrite the block between the markers in README.md
    python scripts/readme_results.py --check   # exit 1 when README.md is not what res_csv/ gives

The block lives between `<!-- results:start -->` and `<!-- results:end -->`. tests/test_readme.py runs
--check, so a results CSV that changes without the README failing the tests is impossible.
"""
import argparse
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "res_csv"
README = ROOT / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"
DATASETS = ["ml-1m", "lastfm", "ml-100k"]
MAIN_FAMILY = {"ml-1m": "genre", "ml-100k": "genre", "lastfm": "style"}


def fmt(value, digits: int = 3) -> str:
    """A table cell: numbers rounded, NaN as an em dash."""
    if isinstance(value, float):
        return "—" if pd.isna(value) else f"{value:.{digits}f}"
    return str(value)


def markdown(frame: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub markdown table of `frame` (no index)."""
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(fmt(v, digits) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def read(dataset: str, name: str) -> pd.DataFrame | None:
    """res_csv/<dataset>/<name>.csv, or None when it does not exist yet."""
    path = RESULTS / dataset / f"{name}.csv"
    return pd.read_csv(path) if path.is_file() else None


def recommenders_section() -> list[str]:
    """Recommender quality per dataset, split and protocol (test stage)."""
    out = []
    for dataset in DATASETS:
        table = read(dataset, "recommenders")
        if table is None:
            continue
        wide = table.pivot_table(index=["model", "split"], columns="protocol", values=["hr_at_10", "ndcg_at_10"])
        wide.columns = [f"{metric.replace('_at_10', '@10')} {protocol}" for metric, protocol in wide.columns]
        wide = wide.reset_index()[["model", "split", "hr@10 sampled", "ndcg@10 sampled", "hr@10 full", "ndcg@10 full"]]
        out += [f"**{dataset}** (test users: {int(table['n_users'].max())}; `res_csv/{dataset}/recommenders.csv`)",
                "", markdown(wide), ""]
    return out


def fidelity_section() -> list[str]:
    """The checkpointed SAE of every recommender, and the paper's figures next to ours."""
    sys.path.insert(0, str(ROOT / "notebooks"))
    from ipynb.fs.defs.artifacts import ArtifactName  # checkpoint names are formatted by the registry only

    out = []
    cols = ["model", "sae", "n_neurons", "l0", "fve_users", "fve_items", "rbo_ext_at_20", "weighted_tau",
            "hr_at_10_original", "hr_at_10_spliced", "dead_frac_heldout", "dead_frac_all", "dense_frac", "rbo_trunc_at_30", "tau_b_union_at_30"]
    for dataset in DATASETS:
        table = read(dataset, "sae_fidelity")
        if table is None:
            continue
        first = table[table["order"] == 0][cols]
        out += [f"**{dataset}** — the checkpointed SAE per recommender (`res_csv/{dataset}/sae_fidelity.csv`)", "",
                markdown(first), ""]
        if dataset == "ml-1m":
            sys.path.insert(0, str(ROOT / "notebooks"))
            from ipynb.fs.defs.experiments import PAPER_FIDELITY  # the paper's reported fidelity: one copy

            rows = []
            protocol = table["protocol"].fillna("ours") if "protocol" in table.columns else None
            for model in sorted(PAPER_FIDELITY):
                rows.append({"model": model, "source": "paper (dim 20, 22 neurons, λ_pred = 10)",
                             "rbo_trunc_at_30": PAPER_FIDELITY[model]["rbo_trunc_at_30"],
                             "tau_b_union_at_30": PAPER_FIDELITY[model]["tau_b_union_at_30"]})
                for rec in (ArtifactName(model, "paper").recommender, model):
                    hit = first[first["model"] == rec]
                    if len(hit):
                        rows.append({"model": rec, "source": f"ours ({hit['sae'].iloc[0]} SAE)",
                                     "rbo_trunc_at_30": hit["rbo_trunc_at_30"].iloc[0],
                                     "tau_b_union_at_30": hit["tau_b_union_at_30"].iloc[0]})
                    if protocol is not None:  # the same recommender under the paper's protocol (issue 11)
                        m4r = table[(table["model"] == rec) & (protocol == "m4r")]
                        for _, r in m4r.iterrows():
                            rows.append({"model": rec, "source": f"ours, m4r protocol ({r['sae']}, {int(r['steps'])} steps)",
                                         "rbo_trunc_at_30": r["rbo_trunc_at_30"], "tau_b_union_at_30": r["tau_b_union_at_30"]})
            out += ["The paper's own fidelity metrics (truncated RBO@30, maximum ≈ 0.958; union tau-b@30); `m4r protocol` "
                    "rows are measured the paper's way (`evaluation.FIDELITY_PROTOCOLS`: rated items kept in the top-30 "
                    "lists, 20 % held-out users, every item trained on and reconstructed):", "",
                    markdown(pd.DataFrame(rows)), ""]
            if protocol is not None:
                paper_rec = table["model"].map(lambda m: ArtifactName.parse(m).preset == "paper")
                curve = table[paper_rec & table["sae"].str.match(r"paper(_e\d+)?(_m4r)?$")]
                if len(curve):
                    curve = curve.assign(protocol=protocol[curve.index])
                    curve = curve[["model", "sae", "protocol", "epochs", "steps", "fve_users", "fve_items", "l0",
                                   "rbo_ext_at_20", "rbo_trunc_at_30", "tau_b_union_at_30", "pure_concepts",
                                   "train_seconds"]].sort_values(["model", "protocol", "steps"], kind="mergesort")
                    out += ["The paper preset trained longer: truncated RBO@30 against optimiser steps, under both "
                            "protocols (train_seconds on the shared 2-core CPU under load):", "", markdown(curve), ""]
            bounds = read(dataset, "protocol_bounds")
            if bounds is not None:
                out += ["What a rank-r PCA projection of each side (no sparsity) and the identity keep under each protocol "
                        "(`res_csv/ml-1m/protocol_bounds.csv`, `scripts/protocol_bounds.py`):", "",
                        markdown(bounds[["model", "protocol", "reconstruction", "rank", "dim", "fve_users", "fve_items",
                                         "rbo_trunc_at_30", "tau_b_union_at_30"]]), ""]
            sweep = table[table["sae"].str.startswith("topk_k") | table["sae"].str.startswith("paper_lambda")
                          | (table["sae"] == "long")]
            if len(sweep):
                sweep = sweep[["model", "sae", "l0", "fve_users", "fve_items", "rbo_ext_at_20", "weighted_tau",
                               "hr_at_10_spliced_user", "hr_at_10_spliced", "rbo_trunc_at_30",
                               "dead_frac_all", "pure_concepts", "epochs", "train_seconds"]]
                out += ["Sparsity curve (TopK, k = 4 … 64), `long` (the default SAE trained for 300 epochs with the "
                        "prediction term at every step) and the paper's λ_pred ablation (paper-preset models); "
                        "train_seconds on the shared 2-core CPU:", "", markdown(sweep), ""]
    return out


def variants_section() -> list[str]:
    """The RecSAE variants next to the plain TopK and the Matryoshka SAE (res_csv/<ds>/sae_variants.csv)."""
    out = []
    cols = ["model", "sae", "fve_users", "fve_items", "rbo_ext_at_20", "weighted_tau", "hr_at_10_original",
            "hr_at_10_spliced", "pure_concepts", "dead_frac_all", "train_seconds"]
    for dataset in DATASETS:
        table = read(dataset, "sae_variants")
        if table is None:
            continue
        out += [f"**{dataset}** (`res_csv/{dataset}/sae_variants.csv`)", "",
                markdown(table[[c for c in cols if c in table.columns]]), ""]
    return out


RECIPE_MODELS = {"ml-1m": ["mf", "ncf"], "ml-100k": ["sasrec"], "lastfm": ["mf"]}


def seed_spread(table: pd.DataFrame, model: str, names: list, metrics: list) -> dict | None:
    """Mean ± sample sd of `metrics` over the rows `names` of `model` (one per seed; '—' where a seed has no value),
    or None when a row is missing."""
    got = table[(table["model"] == model) & table["sae"].isin(names)]
    if len(got) != len(names):
        return None
    return {m: f"{got[m].mean():.3f} ± {got[m].std(ddof=1):.3f}" if got[m].notna().all() else "—" for m in metrics}


def recipe_section() -> list[str]:
    """The issue-11 recipe rows (frontier, linear vs pursuit encoder, Matryoshka) and the seed spreads of recipe_k32
    and of the default SAE."""
    out, seeds, default_seeds = [], [], []
    cols = ["model", "sae", "k", "encoder", "fve_users", "fve_items", "rbo_ext_at_20", "weighted_tau",
            "hr_ratio_spliced", "dead_frac_all", "pure_concepts", "train_seconds", "steps"]
    metrics = ["fve_users", "fve_items", "rbo_ext_at_20", "weighted_tau", "hr_ratio_spliced", "pure_concepts"]
    for dataset, models in RECIPE_MODELS.items():
        table = read(dataset, "sae_fidelity")
        if table is None or "encoder" not in table.columns:
            continue
        table = table[table["model"].isin(models)]
        sae = table["sae"].astype(str)
        rows = table[((table["order"] == 0) | sae.str.startswith("recipe_")) & ~sae.str.contains("_seed")]
        if rows.empty:
            continue
        out += [f"**{dataset}** — the default SAE and the recipe rows (`res_csv/{dataset}/sae_fidelity.csv`; "
                "`_short`: 300 embedding-only steps)", "", markdown(rows[cols]), ""]
        for model in models:
            names = table[table["model"] == model]["sae"].astype(str)
            bases = sorted({n[:-len("_seed1")] for n in names if n.endswith("_seed1")}, key=len)  # recipe_k32, recipe_x8_k32
            for base in bases:
                for encoder in ("linear", "pursuit"):
                    tail = "_pursuit" if encoder == "pursuit" else ""
                    spread = seed_spread(table, model, [f"{base}{tail}", f"{base}_seed1{tail}", f"{base}_seed2{tail}"],
                                         metrics)
                    if spread is not None:
                        seeds.append({"dataset": dataset, "model": model, "row": base, "encoder": encoder,
                                      "seeds": "0, 1, 2", **spread})
    if seeds:
        out += ["The recipe rows with seed rows (`recipe_k32`, the wide `recipe_x8_k<k>`) over SAE seeds 0, 1, 2 "
                "(mean ± sample sd; same data split and recommender):", "", markdown(pd.DataFrame(seeds)), ""]
    for dataset in DATASETS:  # the headline rows: the default SAE (first row, seed 0) and its default_seed<s> rows
        table = read(dataset, "sae_fidelity")
        if table is None:
            continue
        for model in table[(table["order"] == 0) & (table["sae"] == "default")]["model"]:
            spread = seed_spread(table, model, ["default", "default_seed1", "default_seed2"],
                                 metrics[:-1] + ["dead_frac_all", "pure_concepts"])
            if spread is not None:
                default_seeds.append({"dataset": dataset, "model": model, "seeds": "0, 1, 2", **spread})
    for dataset in DATASETS:  # concept counts of measurement rows, SAE against its controls (scripts/sae_concepts.py)
        table = read(dataset, "sae_concepts")
        if table is None:
            continue
        cells = table.assign(cell=table["pure_concepts"].astype(int).astype(str) + " / "
                             + table["n_concepts_purity10_ge_08"].astype(int).astype(str))
        wide = cells.rename(columns={"sae": "row"}).pivot_table(index=["model", "row"], columns="representation",
                                                                values="cell", aggfunc="first", sort=False)
        wide = wide[[c for c in ("sae", "raw", "pca", "rotation", "untrained_sae") if c in wide]].reset_index()
        wide.columns.name = None
        out += [f"**{dataset}** — concepts of measurement rows against the same controls (`pure_concepts` / best unit's "
                f"purity@10 ≥ 0.8; `res_csv/{dataset}/sae_concepts.csv`, `scripts/sae_concepts.py`; the support rule "
                "applies):", "", markdown(wide), ""]
    for dataset in DATASETS:  # recipe rows before training: their data-row start (scripts/untrained_start.py)
        start, table = read(dataset, "untrained_start"), read(dataset, "sae_fidelity")
        if start is None or table is None:
            continue
        metrics = ["fve_users", "fve_items", "rbo_ext_at_20", "hr_ratio_spliced", "pure_concepts"]
        both = start.merge(table[["model", "sae", *metrics]], on=["model", "sae"], how="left",
                           suffixes=("_start", "_trained"))
        cols = ["model", "sae", "n_neurons", "k"] + [f"{m}_{w}" for m in metrics for w in ("start", "trained")]
        out += [f"**{dataset}** — recipe rows before training (their untrained data-row start, "
                f"`res_csv/{dataset}/untrained_start.csv`, `scripts/untrained_start.py`) next to the trained row:", "",
                markdown(both[cols]), ""]
    if default_seeds:
        out += ["The default SAE (the first row per model; linear encoder) over SAE seeds 0, 1, 2 (rows `default`, "
                "`default_seed1`, `default_seed2`; mean ± sample sd; same data split and recommender):", "",
                markdown(pd.DataFrame(default_seeds)), ""]
    return out + first_layer_lines()


def first_layer_lines() -> list[str]:
    """ML-1M NCF: SAEs of NCF's first-layer contributions (kind `layer1`) next to the raw-embedding SAE, the controls
    in the same representation and the linear-probe ceiling."""
    table = read("ml-1m", "sae_fidelity")
    if table is None:
        return []
    sae = table["sae"].astype(str)
    rows = table[(table["model"] == "ncf") & ((table["order"] == 0) | sae.str.startswith("layer1")
                                              | sae.isin(["recipe_k16", "recipe_k16_pursuit", "recipe_k8", "recipe_k8_pursuit"]))]
    if not sae[rows.index].str.startswith("layer1").any():
        return []
    cols = ["model", "sae", "n_neurons", "k", "encoder", "fve_users", "fve_items", "rbo_ext_at_20", "weighted_tau",
            "hr_ratio_spliced", "dead_frac_all", "pure_concepts", "train_seconds", "steps"]
    out = ["**ml-1m NCF, first layer** — SAEs of `W_u p_u + b` / `W_i q_i` (`layer1*`, 64-wide) next to the "
           "raw-embedding SAEs (`res_csv/ml-1m/sae_fidelity.csv`; train_seconds on the shared 2-core machine under load: "
           "the `layer1*` rows ran next to several other jobs, so their times are not comparable with the others):", "", markdown(rows[cols]), ""]
    summary, probe = read("ml-1m", "concept_summary"), read("ml-1m", "probe_ceiling")
    if summary is not None and summary["model"].isin(["ncf", "ncf_layer1"]).any():
        counts = summary[summary["model"].isin(["ncf", "ncf_layer1"])].pivot_table(
            index="model", columns="representation", values="pure_concepts", sort=False)
        counts = counts[[c for c in ("sae", "raw", "pca", "rotation", "untrained_sae") if c in counts]].reset_index()
        counts.columns.name = None
        if probe is not None:
            ceiling = probe[probe["model"] == "ncf"].set_index("input")
            counts["probe_ceiling"] = [ceiling["probe_pure_concepts"].get("layer1" if m.endswith("layer1") else "embedding")
                                       for m in counts["model"]]
        out += ["Pure genres (of 18) of the checkpointed SAE of each input against the controls computed in the same "
                "representation (`concept_summary.csv`) and the cross-fitted linear-probe ceiling "
                "(`probe_ceiling.csv`, `scripts/probe_ceiling.py`):", "", markdown(counts, 0), ""]
    if probe is not None:
        out += ["Linear-probe ceiling (`res_csv/ml-1m/probe_ceiling.csv`): per genre a 5-fold cross-fitted logistic "
                "probe on the item rows; `probe_pure_concepts` counts with `count_pure_concepts`, "
                "`probe_purity10_ge_09` the genres whose own probe's top-10 items are ≥ 90 % that genre:", "",
                markdown(probe, 0), ""]
    return out


def purity_section() -> list[str]:
    """Pure concepts (the concepts notebook's one definition, column `pure_concepts`): SAE against the controls."""
    sys.path.insert(0, str(ROOT / "notebooks"))
    from ipynb.fs.defs.experiments import CONCEPT_MIN_SUPPORT  # the support rule: one copy

    out = []
    for dataset in DATASETS:
        table = read(dataset, "concept_summary")
        if table is None:
            continue
        family, n_concepts = MAIN_FAMILY[dataset], int(table["n_main_concepts"].max())
        counts = table.pivot_table(index="model", columns="representation", values="pure_concepts", sort=False)
        counts = counts[[c for c in ("sae", "raw", "pca", "rotation", "untrained_sae") if c in counts]].reset_index()
        counts.columns.name = None
        support = CONCEPT_MIN_SUPPORT.get(dataset, 0)
        on = f"; items with ≥ {support} interacting users only" if support else ""
        out += [f"**{dataset}** — pure {family}s (of {n_concepts}): the unit with the best purity@10 has purity@10 ≥ 0.9, "
                f"lift@10 ≥ 3 and BH q < 0.01 (`pure_concepts` in `res_csv/{dataset}/concept_summary.csv`{on})", "",
                markdown(counts, 0), ""]
        if support:
            loose = table.pivot_table(index="model", columns="representation", values="n_concepts_purity10_ge_08",
                                      sort=False)
            loose = loose[[c for c in ("sae", "raw", "pca", "rotation", "untrained_sae") if c in loose]].reset_index()
            loose.columns.name = None
            out += [f"**{dataset}** — {family}s (of {n_concepts}) whose best unit has purity@10 ≥ 0.8 (purity alone: "
                    f"`n_concepts_purity10_ge_08`, the issue-11 target's count), items with ≥ {support} interacting "
                    "users only", "", markdown(loose, 0), ""]
    return out


def interventions_section() -> list[str]:
    """Intervention results: medians per kind and method (the interventions notebook's `summarize`), and the
    issue's target criteria counted over targets."""
    out = []
    tables = {d: read(d, "interventions") for d in DATASETS}
    if all(t is None for t in tables.values()):
        return out
    sys.path.insert(0, str(ROOT / "notebooks"))
    from ipynb.fs.defs.interventions import summarize  # the notebook's own summary, not a copy

    for dataset, table in tables.items():
        if table is None:
            continue
        out += [f"**{dataset}** — medians over targets and strengths; the direction baseline is matched to the SAE "
                f"edit's side effect (`res_csv/{dataset}/interventions.csv`)", "", markdown(summarize(table)), ""]
        sae = table[table["method"] == "sae"]
        rows = []
        for model, group in sae.groupby("model"):
            filt = group[group["kind"] == "filter"]
            ok_filter = filt[(filt["share_after"] <= 0.05) & (filt["side_effect_rbo"] >= 0.8)]["target"].nunique()
            promo = group[group["kind"] == "promote_concept"]
            ok_promo = promo[(promo["share_after"] >= 0.5) & (promo["strength"] <= 99)]["target"].nunique()
            items = group[group["kind"] == "promote_item"]
            rows.append({"model": model,
                         "filter: share ≤ 0.05 at RBO ≥ 0.8": f"{ok_filter} of {filt['target'].nunique()}",
                         "promote: share ≥ 0.5 at ≤ p99": f"{ok_promo} of {promo['target'].nunique()}",
                         "item promotion: best success": float(items["success_rate"].max()) if len(items) else float("nan")})
        out += ["SAE edits against the issue's criteria (targets counted when any tested strength meets them):", "",
                markdown(pd.DataFrame(rows)), ""]
    return out


def steering_section() -> list[str]:
    """Steering (issue 12): per model, the targets met per task and method, and the SAE against the baselines on
    frontier AUC (the steering notebook's `steering_scoreboard` and `sae_vs_baselines`)."""
    out = []
    tables = {d: read(d, "steering_summary") for d in DATASETS}
    if all(t is None for t in tables.values()):
        return out
    sys.path.insert(0, str(ROOT / "notebooks"))
    from ipynb.fs.defs.steering import (  # the notebook's own summaries
        disentanglement_table,
        sae_vs_baselines,
        steering_scoreboard,
    )

    for dataset, table in tables.items():
        if table is None:
            continue
        board = steering_scoreboard(table)
        board["met"] = [f"{m} of {c}" for m, c in zip(board["met"], board["curves"], strict=True)]
        out += [f"**{dataset}** — targets met per (model, population, task, method); medians of value_at_rbo_08 and "
                f"value_in_range, mean frontier_auc over concepts (`res_csv/{dataset}/steering_summary.csv`)", "",
                markdown(board.drop(columns="curves")), ""]
        vs = sae_vs_baselines(table)
        keep = ["model", "population", "task", "sae_method"] + [c for c in vs.columns if c.startswith("auc_")]
        keep += [c for c in ("sae_beats_direction", "sae_beats_random_neurons", "every_sae_beats_random") if c in vs.columns]
        out += ["Mean frontier AUC per method; `sae_beats_*` = share of concepts on which the better SAE method's "
                "AUC is higher:", "", markdown(vs[keep]), ""]
        dis = disentanglement_table(table)
        out += ["Disentanglement at the value_at_rbo_08 point (medians over concepts): the effect reached, the mean "
                "|change| of the other concepts' shares, the decade mix (total variation) and the list's mean log "
                "popularity:", "", markdown(dis), ""]
    return out


def benchmarks_section() -> list[str]:
    """Training and evaluation times (res_csv/benchmarks.csv, scripts/benchmark_recommenders.py), and the peers."""
    path = RESULTS / "benchmarks.csv"
    if not path.is_file():
        return []
    full = pd.read_csv(path)
    table = full[full["stage"].isin(["train", "train_sae", "eval_full", "batched_matmul", "score_grid_bound"])]
    wide = table.pivot_table(index=["dataset", "model"], columns="stage", values="seconds").reset_index()
    wide.columns.name = None
    threads = ", ".join(sorted({f"{d} / {t} threads" for d, t in zip(table["device"], table["threads"], strict=True)}))
    out = [f"Wall seconds on the development machine ({threads}; `res_csv/benchmarks.csv`, written by "
           "`scripts/benchmark_recommenders.py`, run on the 2-core development CPU; timings on a machine shared "
           "with other jobs are upper bounds):", "", markdown(wide, 2), ""]
    if "peer" in full.columns and full["peer"].notna().any():
        peers = full[full["peer"].notna()].copy()
        own = full.set_index(["dataset", "model", "stage"])["cpu_seconds"]
        peers["peer_cpu_seconds"] = [own.get((d, m, p), float("nan"))
                                     for d, m, p in zip(peers["dataset"], peers["model"], peers["peer"], strict=True)]
        keep = ["dataset", "model", "stage", "cpu_seconds", "peer", "peer_cpu_seconds", "ratio_to_peer", "hr_at_10",
                "peer_hr_at_10"]
        out += ["Next to the peers measured in the same run (CPU seconds of the process at 1 thread, best of the "
                "evaluation repeats; `ratio_to_peer` = ours / the peer's; `hr_at_10` = full-ranking test HR@10 "
                "of the freshly trained model and of the peer, one evaluation code for both):", "",
                markdown(peers[keep].sort_values(["dataset", "model", "stage"]), 3), ""]
    return out + pool_quality_lines() + data_load_lines()


def pool_quality_lines() -> list[str]:
    """The shared random-item pool against the legacy draw (res_csv/ml-1m/sae_pool_quality.csv)."""
    path = RESULTS / "ml-1m" / "sae_pool_quality.csv"
    if not path.is_file():
        return []
    table = pd.read_csv(path)
    metrics = ["cpu_seconds", "fve_users", "fve_items", "rbo_ext_at_20", "pure_concepts", "hr_at_10_spliced"]
    grouped = table.groupby("pred_pool")
    mean, sd = grouped[metrics].mean(), grouped[metrics].std(ddof=0)
    summary = pd.DataFrame({m: [f"{a:.3f} ± {b:.3f}" for a, b in zip(mean[m], sd[m], strict=True)] for m in metrics},
                           index=mean.index)
    summary.insert(0, "seeds", grouped["seed"].apply(lambda s: " ".join(map(str, sorted(s)))))
    return ["The default SAE of ML-1M MF with the legacy per-user random items (`pred_pool` 0) and a shared pool of "
            "256 per step (mean ± sd over seeds, held-out rows; CPU seconds at 1 thread; "
            "`res_csv/ml-1m/sae_pool_quality.csv`, written by `scripts/sae_pool_quality.py`):", "",
            markdown(summary.reset_index()), ""]


def data_load_lines() -> list[str]:
    """Dataset load and split times (res_csv/data_load_times.csv, scripts/benchmark_data.py)."""
    path = RESULTS / "data_load_times.csv"
    if not path.is_file():
        return []
    table = pd.read_csv(path)
    wide = table.pivot_table(index="dataset", columns="stage", values="seconds").reset_index()
    wide.columns.name = None
    rows = table[table["stage"] == "load"].set_index("dataset")["rows"]
    wide.insert(1, "ratings", wide["dataset"].map(rows).astype(int))
    return ["Loading a dataset from files in place (sha256 checks, parsing with line-level validation, concept "
            "tables) and its random leave-one-out split, seconds, median of 3 in one process "
            "(`res_csv/data_load_times.csv`, written by `scripts/benchmark_data.py`):", "", markdown(wide, 2), ""]


def block() -> str:
    """The whole generated results block, markers included."""
    lines = [START, "<!-- generated by scripts/readme_results.py from res_csv/; do not edit by hand -->", ""]
    for title, section in (("Recommenders", recommenders_section), ("SAE fidelity", fidelity_section),
                           ("SAE recipe and the fidelity frontier (issue 11)", recipe_section),
                           ("SAE variants (RecSAE)", variants_section),
                           ("Concept purity against controls", purity_section),
                           ("Interventions", interventions_section), ("Steering (issue 12)", steering_section),
                           ("Benchmarks", benchmarks_section)):
        body = section()
        lines += [f"### {title}", ""] + (body or ["Not computed yet.", ""])
    return "\n".join(lines + [END])


GRAPH_START, GRAPH_END = "<!-- import-graph:start -->", "<!-- import-graph:end -->"
NOTEBOOK_ORDER = ["utils", "data_processing", "models", "sae", "artifacts", "experiments", "evaluation", "concepts",
                  "sae_training", "training", "interventions", "steering", "plots", "browser", "pipelines"]


def import_graph() -> dict[str, list[str]]:
    """Each notebook's ipynb.fs imports (from its code cells), in a dependency-first order."""
    import ast
    import json

    graph = {}
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        tree = ast.parse("\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code"))
        graph[path.stem] = sorted({n.module.rsplit(".", 1)[1] for n in tree.body
                                   if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("ipynb.fs.")})
    rank = {name: i for i, name in enumerate(NOTEBOOK_ORDER)}
    key = lambda name: (rank.get(name, len(rank)), name)  # noqa: E731 - reports after the definition notebooks
    return {name: sorted(graph[name], key=key) for name in sorted(graph, key=key)}


def graph_block() -> str:
    """The README's import-graph table, markers included."""
    rows = [f"| `{name}` | {', '.join(f'`{d}`' for d in deps) or '—'} |" for name, deps in import_graph().items()]
    return "\n".join([GRAPH_START, "| notebook | imports |", "|---|---|", *rows, GRAPH_END])


def main(argv=None) -> int:
    """Rewrite (or --check) the README's results block and import-graph table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when out of date")
    args = parser.parse_args(argv)
    text = README.read_text(encoding="utf-8")
    if START not in text or END not in text:
        print(f"README.md has no {START} ... {END} block", file=sys.stderr)
        return 1
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    new = head + block() + tail
    if GRAPH_START in new and GRAPH_END in new:
        head, rest = new.split(GRAPH_START, 1)
        new = head + graph_block() + rest.split(GRAPH_END, 1)[1]
    if args.check:
        if new != text:
            print("README.md results are out of date: run python scripts/readme_results.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(new, encoding="utf-8")
    print("README.md results block rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
