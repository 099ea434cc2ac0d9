#!/usr/bin/env python
"""Import embeddings the suite did not train as the recommender checkpoint `external` of a run folder.

Sources (one of):
  --users U --items I        user and item matrices, .npy or .csv. Rows are the dataset's user / item indices
                             (original ids in ascending order, as data_processing.build_dataset numbers them),
                             or give the original id of every row with --user-ids / --item-ids (.npy or .csv,
                             one id per row); a .csv matrix whose first column is named user_id / item_id uses it.
  --implicit MODEL.pkl       a fitted `implicit` ALS or BPR model (pickle.dump of the model object; `pip install
                             implicit`), fitted on the user x item matrix in the dataset's index order. BPR's item
                             bias column comes with its factors, so the dot product is implicit's own score.
Scoring rule: --score dot (default) or cosine; --item-bias B adds a fixed per-item bias to the dot product.

Dataset: --dataset KEY names a shipped dataset (ml-1m, lastfm, ml-100k, synthetic) or, with --interactions
and --item-table, a new one written as an external dataset folder <data dir>/KEY/ (interactions.csv with
user_id,item_id[,timestamp]; items.csv with item_id and metadata; the --concept-columns become concepts
`<column>:<value>`, --main-column is written as `genre`, the family the fidelity table counts). The notebooks
find it with $MONOSEMREC_DATA_DIR pointing at --data-dir.

Evaluation numbers mean what they say only if the embeddings were fitted on the training part of the suite's
split (experiments.split_of(ds, 'external'): random leave-one-out, seed 0); `--fit-implicit als|bpr` fits an
implicit model on exactly that and imports it (the ML-1M example in the README).

Writes <run>/models/KEY/external.safetensors + .json (sidecar: config with the scoring rule and `source`,
metrics under the suite's evaluation, data fingerprints) and <run>/res_csv/KEY/recommenders.csv, then prints
the papermill commands of the SAE, concepts, interventions and report notebooks.

Usage:
  python scripts/import_embeddings.py --dataset ml-1m --fit-implicit als --run-dir runs/external_als
  python scripts/import_embeddings.py --dataset shop --users U.npy --items I.npy --interactions inter.csv \\
      --item-table items.csv --concept-columns category brand --main-column category --data-dir runs/shop/data \\
      --run-dir runs/shop
"""

import argparse
import json
import os
import pickle
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "notebooks"))
os.environ.setdefault("MONOSEMREC_ROOT", str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from ipynb.fs.defs.artifacts import Artifacts  # noqa: E402
from ipynb.fs.defs.data_processing import (  # noqa: E402
    DATASETS,
    EXTERNAL_DATASET_FILE,
    EXTERNAL_DATASET_FORMAT,
    load_dataset,
)
from ipynb.fs.defs.evaluation import evaluate  # noqa: E402
from ipynb.fs.defs.experiments import split_of  # noqa: E402
from ipynb.fs.defs.models import SCORE_RULES, External  # noqa: E402
from ipynb.fs.defs.training import TrainHistory, save_recommender, train_and_save_all  # noqa: E402
from ipynb.fs.defs.utils import Paths, data_dir, file_sha256  # noqa: E402

NAME = "external"
IMPLICIT_DEFAULTS = {"als": {"factors": 64, "regularization": 0.05, "iterations": 15, "alpha": 1.0},
                     "bpr": {"factors": 64, "learning_rate": 0.01, "regularization": 0.01, "iterations": 100}}


class EmbeddingImportError(ValueError):
    """Bad input to the importer; the message says what is wrong and what to do."""


def read_matrix(path: Path, id_column: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(float matrix, ids of its rows or None) from a .npy or .csv file."""
    path = Path(path)
    if not path.is_file():
        raise EmbeddingImportError(f"{path}: no such file")
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False), None
    if path.suffix == ".csv":
        frame = pd.read_csv(path)
        ids = None
        if frame.columns[0] == id_column:
            ids, frame = frame[id_column].to_numpy(), frame.drop(columns=id_column)
        try:
            return frame.to_numpy(dtype=np.float32), ids
        except ValueError as e:
            raise EmbeddingImportError(f"{path}: every column but {id_column} must be numeric ({e})") from e
    raise EmbeddingImportError(f"{path}: expected a .npy or .csv matrix")


def read_ids(path: Path | None) -> np.ndarray | None:
    """One original id per row from .npy / .csv (first column), or None."""
    if path is None:
        return None
    path = Path(path)
    return np.load(path, allow_pickle=False).reshape(-1) if path.suffix == ".npy" else pd.read_csv(path).iloc[:, 0].to_numpy()


def align(matrix: np.ndarray, ids: np.ndarray | None, dataset_ids: np.ndarray, side: str) -> np.ndarray:
    """Rows of `matrix` in the dataset's index order: by `ids` (original ids of the rows) when given."""
    if matrix.ndim != 2:
        raise EmbeddingImportError(f"the {side} matrix must be 2-d, got shape {matrix.shape}")
    if ids is None:
        if len(matrix) != len(dataset_ids):
            raise EmbeddingImportError(f"the {side} matrix has {len(matrix)} rows, the dataset {len(dataset_ids)} {side}s: "
                               f"give one row per {side} in index order, or the row ids with --{side}-ids")
        return matrix
    ids = np.asarray(ids)
    if len(ids) != len(matrix) or len(np.unique(ids)) != len(ids):
        raise EmbeddingImportError(f"{len(ids)} {side} ids for {len(matrix)} rows, or repeated ids: need one distinct id per row")
    pos = pd.Series(np.arange(len(ids)), index=ids).reindex(dataset_ids)
    if pos.isna().any():
        missing = dataset_ids[pos.isna().to_numpy()]
        raise EmbeddingImportError(f"{len(missing)} {side}s of the dataset have no row (e.g. id {missing[0]})")
    return matrix[pos.to_numpy(dtype=np.int64)]


def implicit_factors(model) -> tuple[np.ndarray, np.ndarray, dict]:
    """(user factors, item factors, description) of a fitted implicit ALS / BPR model (CPU or GPU)."""
    users, items = getattr(model, "user_factors", None), getattr(model, "item_factors", None)
    if users is None or items is None:
        raise EmbeddingImportError(f"{type(model).__name__} is not a fitted implicit matrix factorisation model "
                           f"(no user_factors / item_factors)")
    to_np = lambda a: np.asarray(a.to_numpy() if hasattr(a, "to_numpy") else a, dtype=np.float32)  # noqa: E731
    params = {k: getattr(model, k) for k in ("factors", "regularization", "iterations", "alpha", "learning_rate")
              if isinstance(getattr(model, k, None), (int, float))}
    return to_np(users), to_np(items), {"class": f"{type(model).__module__}.{type(model).__name__}", **params}


def fit_implicit(kind: str, split, seed: int = 0, threads: int = 1):
    """An implicit ALS / BPR model (IMPLICIT_DEFAULTS) fitted on the split's training matrix; (model, seconds)."""
    try:
        import implicit
    except ImportError as e:
        raise EmbeddingImportError("--fit-implicit needs the optional library implicit: pip install -r "
                           "requirements-external.txt") from e
    cls = implicit.cpu.als.AlternatingLeastSquares if kind == "als" else implicit.cpu.bpr.BayesianPersonalizedRanking
    model = cls(**IMPLICIT_DEFAULTS[kind], random_state=seed, num_threads=threads)
    start = time.process_time()
    model.fit(split.matrix(("train",)).tocsr(), show_progress=False)
    return model, time.process_time() - start


def write_external_dataset(key: str, interactions: Path, item_table: Path, concept_columns: list[str],
                           main_column: str | None, folder: Path, description: str = "") -> Path:
    """Write the external dataset folder folder/key (atomically: a temporary folder renamed into place)."""
    raw = pd.read_csv(interactions)
    items = pd.read_csv(item_table)
    for frame, path, need in ((raw, interactions, ["user_id", "item_id"]), (items, item_table, ["item_id"])):
        if not set(need) <= set(frame.columns):
            raise EmbeddingImportError(f"{path}: needs columns {need}, has {list(frame.columns)}")
    missing = [c for c in concept_columns if c not in items.columns]
    if missing:
        raise EmbeddingImportError(f"{item_table}: concept columns {missing} are not among {list(items.columns)}")
    columns = list(concept_columns)
    if main_column is not None:
        if main_column not in columns:
            raise EmbeddingImportError(f"--main-column {main_column!r} must be one of --concept-columns {columns}")
        if main_column != "genre" and "genre" in items.columns:
            raise EmbeddingImportError(f"{item_table} already has a column 'genre'; rename it or choose it as --main-column")
        items = items.rename(columns={main_column: "genre"})
        columns = ["genre" if c == main_column else c for c in columns]
    target = folder / key
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=folder))
    raw.to_csv(tmp / "interactions.csv", index=False)
    items.to_csv(tmp / "items.csv", index=False)
    (tmp / EXTERNAL_DATASET_FILE).write_text(json.dumps({
        "format": EXTERNAL_DATASET_FORMAT, "key": key, "description": description, "concept_columns": columns,
        "multi_value_separator": "|", "main_column_renamed_from": main_column,
        "files": {"interactions": str(interactions), "items": str(item_table)}}, indent=1))
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target


def import_embeddings(dataset: str, run_dir: Path, users=None, items=None, user_ids=None, item_ids=None,
                      item_bias=None, score: str = "dot", implicit_model=None, fit: str | None = None,
                      data_root: Path | None = None, note: str = "", threads: int = 1) -> dict:
    """Write the checkpoint `external` (and recommenders.csv) of `dataset` into run_dir; returns its sidecar."""
    ds = load_dataset(dataset, root=data_root)
    split = split_of(ds, NAME)
    source: dict = {"note": note}
    if fit is not None:
        model, seconds = fit_implicit(fit, split, threads=threads)
        u, i, desc = implicit_factors(model)
        source.update(kind=f"implicit_{fit}", fitted_on=f"{split.kind} leave-one-out seed {split.seed} training part",
                      fit_cpu_seconds=round(seconds, 2), **desc)
        fit_pickle = run_dir / f"implicit_{fit}.pkl"
        fit_pickle.parent.mkdir(parents=True, exist_ok=True)
        fit_pickle.write_bytes(pickle.dumps(model))
        source["pickle"] = str(fit_pickle)
    elif implicit_model is not None:
        with open(implicit_model, "rb") as f:
            u, i, desc = implicit_factors(pickle.load(f))
        source.update(kind="implicit", file=str(implicit_model), sha256=file_sha256(Path(implicit_model)), **desc)
    else:
        if users is None or items is None:
            raise EmbeddingImportError("give --users and --items, or --implicit, or --fit-implicit")
        u, u_ids = read_matrix(users, "user_id")
        i, i_ids = read_matrix(items, "item_id")
        u = align(u, read_ids(user_ids) if user_ids is not None else u_ids, ds.user_ids, "user")
        i = align(i, read_ids(item_ids) if item_ids is not None else i_ids, ds.item_ids, "item")
        source.update(kind="arrays", users=str(users), items=str(items),
                      sha256={"users": file_sha256(Path(users)), "items": file_sha256(Path(items))})
    if len(u) != ds.n_users or len(i) != ds.n_items:
        raise EmbeddingImportError(f"the model has {len(u)} users x {len(i)} items, {dataset} has {ds.n_users} x {ds.n_items}: "
                           f"fit it on the dataset's user x item matrix in index order")
    bias = None
    if item_bias is not None:
        bias, b_ids = read_matrix(item_bias, "item_id") if Path(item_bias).suffix == ".csv" else (
            np.load(item_bias, allow_pickle=False).reshape(-1, 1), None)
        bias = align(bias.reshape(len(bias), -1), b_ids, ds.item_ids, "item")[:, 0]
    try:
        model = External.from_arrays(u, i, score_rule=score, item_bias=bias, source=source)
    except ValueError as e:
        raise EmbeddingImportError(str(e)) from e
    metrics = evaluate(model, split, "test")
    valid = evaluate(model, split, "valid", protocols=("full",))["full"]
    history = TrainHistory(model=NAME, device="cpu", threads=threads, seed=0, valid_protocol="full",
                           best_valid={"protocol": "full", **valid},
                           stop_reason=f"imported ({source['kind']}): not trained by the suite")
    paths = Paths.under(run_dir)
    save_recommender(model, Artifacts.of(dataset, paths).path(NAME), split, ds, metrics, history, name=NAME,
                     preset_name="external")
    train_and_save_all(dataset, [NAME], retrain=False, progress=False, paths=paths, ds=ds)  # recommenders.csv
    return json.loads(Path(f"{Artifacts.of(dataset, paths).path(NAME)}.json").read_text())


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--users", type=Path)
    parser.add_argument("--items", type=Path)
    parser.add_argument("--user-ids", type=Path)
    parser.add_argument("--item-ids", type=Path)
    parser.add_argument("--item-bias", type=Path)
    parser.add_argument("--score", default="dot", choices=SCORE_RULES)
    parser.add_argument("--implicit", type=Path, help="pickle of a fitted implicit ALS / BPR model")
    parser.add_argument("--fit-implicit", choices=sorted(IMPLICIT_DEFAULTS), help="fit implicit on the split and import")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--interactions", type=Path, help="new dataset: user_id,item_id[,timestamp] CSV")
    parser.add_argument("--item-table", type=Path, help="new dataset: item_id + metadata CSV")
    parser.add_argument("--concept-columns", nargs="*", default=[])
    parser.add_argument("--main-column", default=None, help="the concept column written as `genre`")
    parser.add_argument("--data-dir", type=Path, default=None, help="where the new dataset folder goes "
                        "(default $MONOSEMREC_DATA_DIR / dataset/)")
    parser.add_argument("--description", default="")
    args = parser.parse_args(argv)
    try:
        data_root = args.data_dir
        if args.interactions is not None or args.item_table is not None:
            if args.dataset in DATASETS or args.dataset == "synthetic":
                raise EmbeddingImportError(f"{args.dataset!r} is a shipped dataset: give the new dataset another key")
            if args.interactions is None or args.item_table is None:
                raise EmbeddingImportError("a new dataset needs both --interactions and --item-table")
            folder = write_external_dataset(args.dataset, args.interactions, args.item_table, args.concept_columns,
                                            args.main_column, data_root or data_dir(), args.description)
            print(f"wrote the dataset folder {folder}")
        meta = import_embeddings(args.dataset, args.run_dir, args.users, args.items, args.user_ids, args.item_ids,
                                 args.item_bias, args.score, args.implicit, args.fit_implicit, data_root,
                                 threads=args.threads)
    except EmbeddingImportError as e:
        raise SystemExit(f"import_embeddings: {e}") from None
    test = meta["metrics"]["test"]
    print(f"wrote {args.run_dir}/models/{args.dataset}/{NAME} ({meta['config']['source'].get('kind')}, "
          f"{meta['config']['score_rule']}): test HR@10 full {test['full']['hr_at_10']:.4f} / sampled "
          f"{test['sampled']['hr_at_10']:.4f}")
    env = f"MONOSEMREC_DATA_DIR={args.data_dir} " if args.data_dir else ""
    common = f"-p DATASET {args.dataset} -p RUN_DIR {args.run_dir}"
    print("next (from the project root):")
    for nb, extra in (("sae_training", " -y 'MODELS: [external]'"), ("concepts", " -y 'MODELS: [external]'"),
                      ("interventions", " -y 'MODELS: [external]'"), ("visualization_SAE_mf", " -p MODEL external")):
        print(f"  {env}papermill notebooks/{nb}.ipynb {args.run_dir}/{nb}.ipynb {common}{extra}")
    return meta


if __name__ == "__main__":
    main()
