"""Issue 15 item 4, any recommender in: embeddings the suite did not train (plain arrays with an item table, or a
fitted implicit model) go through import -> SAE -> concepts -> interventions. Small synthetic data, seconds."""
import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Files of a small planted dataset as someone else would have them: interactions.csv, items.csv (a multi-valued
    `category` column = the planted concepts, a `shelf` column), and SVD factors of the training matrix of the
    suite's split in shuffled row order with the original ids beside them."""
    from ipynb.fs.defs.data_processing import leave_one_out, make_planted

    folder = tmp_path_factory.mktemp("toy")
    ds = make_planted(n_users=300, n_items=160, n_concepts=6, correlated_pairs=1, per_user=15, seed=0)
    pd.DataFrame({"user_id": ds.user_ids[ds.interactions["user"]] + 1000,
                  "item_id": ds.item_ids[ds.interactions["item"]] + 50}).to_csv(folder / "interactions.csv", index=False)
    table = ds.item_concepts.to_numpy()
    cats = ["|".join(str(c).split(":")[1] for c, on in zip(ds.item_concepts.columns, row, strict=True) if on) for row in table]
    pd.DataFrame({"item_id": ds.item_ids + 50, "category": cats,
                  "shelf": np.where(ds.item_ids % 2 == 0, "even", "odd")}).to_csv(folder / "items.csv", index=False)
    u, s, vt = np.linalg.svd(leave_one_out(ds, "random", seed=0).matrix(("train",)).toarray(), full_matrices=False)
    users, items = u[:, :12] * np.sqrt(s[:12]), vt[:12].T * np.sqrt(s[:12])
    rng = np.random.default_rng(0)
    perm_u, perm_i = rng.permutation(len(users)), rng.permutation(len(items))
    np.save(folder / "users.npy", users[perm_u].astype(np.float32))
    np.save(folder / "user_ids.npy", ds.user_ids[perm_u] + 1000)
    pd.DataFrame(items[perm_i], columns=[f"f{j}" for j in range(12)]).assign(item_id=ds.item_ids[perm_i] + 50)[
        ["item_id"] + [f"f{j}" for j in range(12)]].to_csv(folder / "items_factors.csv", index=False)
    return {"folder": folder, "users": users, "items": items}


@pytest.fixture(scope="module")
def imported(toy, tmp_path_factory, load_script):
    """The importer run on the toy files: (run folder, data folder, sidecar)."""
    run, data = tmp_path_factory.mktemp("run"), tmp_path_factory.mktemp("data")
    f = toy["folder"]
    meta = load_script("import_embeddings").main([
        "--dataset", "toyshop", "--users", str(f / "users.npy"), "--user-ids", str(f / "user_ids.npy"),
        "--items", str(f / "items_factors.csv"), "--interactions", str(f / "interactions.csv"),
        "--item-table", str(f / "items.csv"), "--concept-columns", "category", "shelf", "--main-column", "category",
        "--data-dir", str(data), "--run-dir", str(run)])
    return run, data, meta


def test_external_scores_by_hand(synthetic):
    from ipynb.fs.defs.data_processing import leave_one_out
    from ipynb.fs.defs.models import External
    from ipynb.fs.defs.training import train_recommender

    model = External.from_arrays([[1.0, 2.0]], [[3.0, 0.0], [1.0, 1.0]], item_bias=[0.0, -1.0])
    u = model.user_repr(torch.tensor([0]))
    assert model.score_grid(u, model.item_repr(), None, torch.arange(2)).tolist() == [[3.0, 2.0]]
    cosine = External.from_arrays([[1.0, 2.0]], [[3.0, 0.0], [1.0, 1.0]], score_rule="cosine")
    expected = [1 / np.sqrt(5), 3 / np.sqrt(10)]
    assert np.allclose(cosine.score_grid(u, cosine.item_repr()).numpy(), [expected])
    fixed = External.from_arrays(np.zeros((synthetic.n_users, 2)), np.zeros((synthetic.n_items, 2)))
    with pytest.raises(ValueError, match="not trained by the suite"):
        train_recommender(fixed, leave_one_out(synthetic), progress=False)


def test_import_reorders_rows_and_records_the_source(toy, imported):
    from ipynb.fs.defs.artifacts import load_recommender
    from ipynb.fs.defs.data_processing import load_dataset
    from ipynb.fs.defs.experiments import split_of
    from ipynb.fs.defs.utils import Paths

    run, data, meta = imported
    ds = load_dataset("toyshop", root=data)
    model, stored = load_recommender("toyshop", "external", split=split_of(ds, "external"), paths=Paths.under(run))
    assert np.allclose(model.user_table.numpy(), toy["users"], atol=1e-6)  # shuffled rows put back by their ids
    assert np.allclose(model.item_table.numpy(), toy["items"], atol=1e-6)
    assert stored["config"]["source"]["kind"] == "arrays" and stored["config"]["score_rule"] == "dot"
    assert "shelf:even" in ds.item_concepts and "genre:c0" in ds.item_concepts  # category was written as genre
    table = pd.read_csv(run / "res_csv" / "toyshop" / "recommenders.csv")
    full = table[(table["model"] == "external") & (table["protocol"] == "full")]["hr_at_10"].iloc[0]
    itempop = table[(table["model"] == "itempop") & (table["protocol"] == "full")]["hr_at_10"].iloc[0]
    assert full == pytest.approx(meta["metrics"]["test"]["full"]["hr_at_10"], abs=1e-6) and full > itempop  # SVD > ItemPop here


def test_sae_concepts_interventions_run_on_imported_embeddings(imported):
    from ipynb.fs.defs.artifacts import check_fresh
    from ipynb.fs.defs.concepts import analyze_dataset
    from ipynb.fs.defs.data_processing import load_dataset
    from ipynb.fs.defs.interventions import run_interventions
    from ipynb.fs.defs.sae_training import train_and_save_saes
    from ipynb.fs.defs.utils import Paths

    run, data, _ = imported
    ds, paths = load_dataset("toyshop", root=data), Paths.under(run)
    fidelity = train_and_save_saes("toyshop", ["external"], smoke=True, progress=False, paths=paths, ds=ds)
    assert (run / "models" / "toyshop" / "sae_external.json").is_file() and fidelity["fve_users"].iloc[0] > 0
    result = analyze_dataset("toyshop", ["external"], paths=paths, ds=ds, progress=False)
    assert set(result["summary"]["representation"]) == {"sae", "raw", "pca", "rotation", "untrained_sae"}
    assert {"genre:c0", "shelf:odd"} <= set(result["purity"]["concept"])
    table = run_interventions("toyshop", ["external"], n_users=40, n_items=1, concepts=["genre:c0"],
                              percentiles=(99.0,), progress=False, ds=ds, pool="all", paths=paths)
    assert len(table) and set(table["model"]) == {"external"}
    check_fresh("toyshop", paths)  # every table matches the imported checkpoint and its SAE


def test_bad_input_is_refused_with_a_reason(toy, tmp_path, load_script):
    importer = load_script("import_embeddings")
    f = toy["folder"]
    base = ["--dataset", "toyshop2", "--interactions", str(f / "interactions.csv"), "--item-table", str(f / "items.csv"),
            "--concept-columns", "category", "--main-column", "category", "--data-dir", str(tmp_path / "data"),
            "--run-dir", str(tmp_path / "run")]
    with pytest.raises(SystemExit, match="299 rows, the dataset 300 users"):
        bad = tmp_path / "short.npy"
        np.save(bad, toy["users"][:-1])
        importer.main(base + ["--users", str(bad), "--items", str(f / "items_factors.csv")])
    with pytest.raises(SystemExit, match="must be one of --concept-columns"):
        importer.main(base[:-6] + ["--main-column", "shelf", "--data-dir", str(tmp_path / "d"), "--run-dir",
                                   str(tmp_path / "r"), "--users", str(f / "users.npy")])
    assert not (tmp_path / "run" / "models").exists()  # nothing written for a refused import


def test_implicit_model_imports_with_its_own_scores(tmp_path, load_script):
    implicit = pytest.importorskip("implicit", reason="implicit is an optional extra (requirements-external.txt)")
    from ipynb.fs.defs.artifacts import load_recommender
    from ipynb.fs.defs.data_processing import load_dataset
    from ipynb.fs.defs.experiments import split_of
    from ipynb.fs.defs.utils import Paths

    importer = load_script("import_embeddings")
    ds = load_dataset("synthetic")
    split = split_of(ds, "external")
    for cls in (implicit.cpu.als.AlternatingLeastSquares, implicit.cpu.bpr.BayesianPersonalizedRanking):
        model = cls(factors=8, iterations=3, random_state=0, num_threads=1)
        model.fit(split.matrix(("train",)).tocsr(), show_progress=False)
        pickle_path = tmp_path / f"{cls.__name__}.pkl"
        pickle_path.write_bytes(pickle.dumps(model))
        run = tmp_path / cls.__name__
        importer.main(["--dataset", "synthetic", "--implicit", str(pickle_path), "--run-dir", str(run)])
        ours, meta = load_recommender("synthetic", "external", split=split, paths=Paths.under(run))
        theirs = model.user_factors @ model.item_factors.T  # implicit's score (BPR: bias column included)
        grid = ours.score_grid(ours.user_repr(torch.arange(ds.n_users)), ours.item_repr()).numpy()
        assert np.allclose(grid, theirs, atol=1e-4) and meta["config"]["source"]["class"].endswith(cls.__name__)
    meta_text = json.dumps(meta)
    assert "implicit" in meta_text
