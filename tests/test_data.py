"""data_processing: splits, samplers, bad input, downloads (against a local server), real-data counts."""
import dataclasses
import hashlib
import http.server
import io
import threading
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ipynb.fs.defs.data_processing import (
    DATASETS,
    DataError,
    build_dataset,
    interaction_fingerprint,
    leave_one_out,
    load_dataset,
    locate_dataset,
    make_synthetic,
    read_table,
    sample_negatives,
    sampled_candidates,
    sequence_matrix,
)


# ---------------------------------------------------------------- splits
def _shuffled_copy(ds, seed=0, extra_column=False):
    """The same interactions, rows shuffled (and optionally an extra column), rebuilt into a Dataset."""
    raw = pd.DataFrame({"user_id": ds.user_ids[ds.interactions["user"]], "item_id": ds.item_ids[ds.interactions["item"]],
                        "timestamp": ds.interactions["timestamp"].to_numpy()})
    raw = raw.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    if extra_column:
        raw["noise"] = np.arange(len(raw))
    items = ds.items.set_index("item_id")[["title"]]
    return build_dataset(ds.key, raw, items, None, {}, ("timestamp",))


def _pairs(ds, frame):
    return set(zip(ds.user_ids[frame["user"]], ds.item_ids[frame["item"]], strict=True))


@pytest.mark.parametrize("kind", ["random", "temporal"])
def test_split_ignores_row_order_and_extra_columns(synthetic, kind):
    base = leave_one_out(synthetic, kind, seed=5)
    for seed, extra in ((1, False), (2, True)):
        other_ds = _shuffled_copy(synthetic, seed, extra)
        other = leave_one_out(other_ds, kind, seed=5)
        assert _pairs(synthetic, base.test) == _pairs(other_ds, other.test)
        assert _pairs(synthetic, base.valid) == _pairs(other_ds, other.valid)
        assert other.fingerprint == base.fingerprint


def test_split_partitions_interactions_and_keeps_training_items(synthetic):
    split = leave_one_out(synthetic, "random", seed=0)
    union = split.matrix(("train", "valid", "test"))
    assert union.nnz == len(synthetic.interactions) == len(split.train) + len(split.valid) + len(split.test)
    assert np.all(np.diff(split.matrix().indptr) >= 1), "a user lost all training items"
    assert split.valid["user"].is_unique and split.test["user"].is_unique


def test_small_users_stay_in_training():
    raw = pd.DataFrame({"user_id": [1, 1, 2, 2, 2, 3], "item_id": [1, 2, 1, 2, 3, 3]})
    ds = build_dataset("toy", raw, pd.DataFrame({"title": list("abc")}, index=[1, 2, 3]), None, {})
    split = leave_one_out(ds, "random", seed=0)
    assert split.test["user"].tolist() == [1] and split.valid["user"].tolist() == [1]  # only user 2 (index 1) has 3
    assert len(split.train) == 4


def test_temporal_split_holds_out_the_latest(synthetic):
    split = leave_one_out(synthetic, "temporal", seed=0)
    inter = synthetic.interactions.set_index(["user", "item"])["timestamp"]
    latest = synthetic.interactions.groupby("user")["timestamp"].max()
    test_times = inter.loc[list(zip(split.test["user"], split.test["item"], strict=True))].to_numpy()
    assert np.array_equal(test_times, latest.loc[split.test["user"]].to_numpy())


def test_temporal_split_needs_timestamps():
    raw = pd.DataFrame({"user_id": [1, 1, 1], "item_id": [1, 2, 3]})
    ds = build_dataset("toy", raw, pd.DataFrame({"title": list("abc")}, index=[1, 2, 3]), None, {"source": "x"})
    with pytest.raises(ValueError, match="no timestamps"):
        leave_one_out(ds, "temporal")
    with pytest.raises(ValueError, match="split kind"):
        leave_one_out(ds, "chronological")


def test_sampled_candidates_are_fixed_and_unseen(synthetic):
    split = leave_one_out(synthetic, "random", seed=0)
    users, cands = sampled_candidates(split, "test", n_negatives=30, seed=4)
    users2, cands2 = sampled_candidates(split, "test", n_negatives=30, seed=4)
    assert np.array_equal(cands, cands2) and np.array_equal(users, users2)
    seen = split.matrix(("train", "valid", "test")).toarray().astype(bool)
    assert not seen[np.repeat(users, 30), cands[:, 1:].ravel()].any()
    assert all(len(set(row)) == 31 for row in cands)
    assert np.array_equal(cands[:, 0], split.test.set_index("user").loc[users, "item"].to_numpy())


def test_negative_sampler_avoids_history(synthetic):
    split = leave_one_out(synthetic, "random", seed=0)
    hist = split.matrix()
    users = np.repeat(np.arange(synthetic.n_users), 3)
    neg = sample_negatives(hist, users, 5, np.random.default_rng(0))
    assert neg.shape == (len(users), 5)
    assert not hist.toarray().astype(bool)[np.repeat(users, 5), neg.ravel()].any()


def test_sequences_are_left_padded_and_chronological(synthetic):
    split = leave_one_out(synthetic, "temporal", seed=0)
    users, seqs = sequence_matrix(split, "valid", max_len=15)
    u = users[0]
    hist = split.train.loc[split.train["user"] == u]
    expected = hist.sort_values("timestamp")["item"].to_numpy()[-15:] + 1
    assert np.array_equal(seqs[0][seqs[0] > 0], expected)
    assert np.all(seqs[:, -1] > 0)
    _, test_seqs = sequence_matrix(split, "test", max_len=15)
    assert np.array_equal(test_seqs[:, -1] - 1, split.valid.set_index("user").loc[users, "item"].to_numpy())


def test_synthetic_is_reproducible_and_planted():
    a, b = make_synthetic(seed=9, n_users=50, n_items=40, per_user=5), make_synthetic(seed=9, n_users=50, n_items=40, per_user=5)
    assert a.interactions.equals(b.interactions) and a.fingerprint == b.fingerprint
    assert a.fingerprint != make_synthetic(seed=10, n_users=50, n_items=40, per_user=5).fingerprint
    assert a.item_concepts.columns[0] == "planted:c0" and a.item_concepts.to_numpy().sum(axis=1).min() >= 1


def test_fingerprint_is_order_free():
    assert interaction_fingerprint([1, 2, 3], [4, 5, 6]) == interaction_fingerprint([3, 1, 2], [6, 4, 5])
    assert interaction_fingerprint([1, 2], [4, 5]) != interaction_fingerprint([1, 2], [4, 6])


# ---------------------------------------------------------------- bad input
def test_offline_without_files_names_url_folder_and_files(tmp_path):
    with pytest.raises(DataError) as err:
        locate_dataset("lastfm", root=tmp_path, offline=True)
    msg = str(err.value)
    assert DATASETS["lastfm"].url in msg and str(tmp_path / "lastfm") in msg and "user_artists.dat" in msg
    assert not any(tmp_path.iterdir()), "nothing may be written"


def test_unknown_dataset():
    with pytest.raises(KeyError, match="unknown dataset"):
        locate_dataset("netflix", offline=True)


def test_malformed_file_names_file_and_line(tmp_path):
    path = tmp_path / "u.data"
    path.write_text("1\t2\t3\t4\n5\t6\t7\n")
    with pytest.raises(DataError, match=r"u\.data, line 2: expected 4 fields"):
        read_table(path, "\t", ["user_id", "item_id", "rating", "timestamp"], ["user_id"])
    path.write_text("1\t2\t3\t4\n5\tx\t7\t8\n")
    with pytest.raises(DataError, match=r"line 2: column 'item_id' should be an integer"):
        read_table(path, "\t", ["user_id", "item_id", "rating", "timestamp"], ["user_id", "item_id"])
    path.write_text("")
    with pytest.raises(DataError, match="empty or truncated"):
        read_table(path, "\t", ["a", "b"], [])


def _fake_ml100k(folder: Path, rows: int = 40) -> None:
    """A tiny dataset folder laid out like ML-100k (contents are not the official ones)."""
    folder.mkdir(parents=True)
    (folder / "u.data").write_text("".join(f"{1 + i % 5}\t{1 + i % 8}\t3\t{1000 + i}\n" for i in range(rows)))
    for name in ("u.item", "u.user", "u.genre", "u.occupation"):
        (folder / name).write_text("x\n")


def test_checksum_mismatch_of_files_in_place(tmp_path):
    _fake_ml100k(tmp_path / "ml-100k")
    with pytest.raises(DataError, match=r"u\.data: checksum sha256:[0-9a-f]+ does not match"):
        locate_dataset("ml-100k", root=tmp_path, offline=True)


@pytest.mark.realdata
def test_truncated_real_file_is_refused(tmp_path, data_root):
    src = data_root / "ml-100k"
    if not src.is_dir():
        pytest.skip("ml-100k not in the real-data folder")
    dst = tmp_path / "ml-100k"
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    data = (dst / "u.data").read_bytes()
    (dst / "u.data").write_bytes(data[: len(data) // 2])  # cut mid-file
    with pytest.raises(DataError, match=r"u\.data: checksum"):
        load_dataset("ml-100k", root=tmp_path, offline=True)
    with pytest.raises(DataError, match=r"u\.data(, line \d+: expected 4 fields|: parsed .* expected)"):
        load_dataset("ml-100k", root=tmp_path, offline=True, verify=False)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture()
def local_server(tmp_path):
    """A loopback HTTP server over tmp_path/www (the only network the download tests touch)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = lambda *a, **k: _Quiet(*a, directory=str(www), **k)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _zip_of(files: dict, root: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(f"{root}/{name}" if root else name, data)
    return buf.getvalue()


def _spec_for(archive: bytes, url: str, files: dict):
    return dataclasses.replace(
        DATASETS["ml-100k"], key="tiny", url=url, archive_sha256=hashlib.sha256(archive).hexdigest(),
        archive_root="tiny", folder_names=("tiny",),
        files={n: "sha256:" + hashlib.sha256(d).hexdigest() for n, d in files.items()}, alternatives=())


def test_download_verifies_extracts_and_renames(tmp_path, local_server):
    www, base = local_server
    files = {"a.txt": b"hello\n", "b.txt": b"world\n"}
    archive = _zip_of(files, "tiny")
    (www / "tiny.zip").write_bytes(archive)
    root = tmp_path / "data"
    folder = locate_dataset("tiny", root=root, offline=False, spec=_spec_for(archive, f"{base}/tiny.zip", files))
    assert folder == root / "tiny" and (folder / "a.txt").read_bytes() == b"hello\n"
    assert sorted(p.name for p in root.iterdir()) == ["tiny"], "no temporary files left behind"
    # second call: files in place, no network needed
    assert locate_dataset("tiny", root=root, offline=True, spec=_spec_for(archive, f"{base}/gone.zip", files)) == folder


def test_download_checksum_mismatch_leaves_nothing(tmp_path, local_server):
    www, base = local_server
    files = {"a.txt": b"hello\n"}
    archive = _zip_of(files, "tiny")
    (www / "tiny.zip").write_bytes(archive + b"tampered")
    root = tmp_path / "data"
    with pytest.raises(DataError, match="checksum"):
        locate_dataset("tiny", root=root, offline=False, spec=_spec_for(archive, f"{base}/tiny.zip", files))
    assert not (root / "tiny").exists() and not any(root.iterdir())


def test_download_unreachable_names_url(tmp_path, local_server):
    _, base = local_server
    files = {"a.txt": b"hello\n"}
    archive = _zip_of(files, "tiny")
    with pytest.raises(DataError, match=r"could not download .*/missing\.zip"):
        locate_dataset("tiny", root=tmp_path / "data", offline=False, spec=_spec_for(archive, f"{base}/missing.zip", files))
    assert not (tmp_path / "data" / "tiny").exists()


# ---------------------------------------------------------------- real data
def _load(key, data_root, **kw):
    try:
        return load_dataset(key, root=data_root, offline=True, **kw)
    except DataError as e:
        if "not available offline" in str(e):
            pytest.skip(f"{key} not in {data_root}")
        raise


@pytest.mark.realdata
def test_ml100k_counts(data_root):
    ds = _load("ml-100k", data_root)
    assert (len(ds.interactions), ds.n_users, ds.n_items) == (100_000, 943, 1_682)
    assert ds.has_timestamps and ds.meta["checksums_verified"]
    assert ds.item_concepts.filter(like="genre:").shape[1] == 18
    assert set(ds.user_concepts.filter(like="gender:").columns) == {"gender:F", "gender:M"}


@pytest.mark.realdata
def test_lastfm_counts(data_root):
    ds = _load("lastfm", data_root)
    assert (len(ds.interactions), ds.n_users, ds.n_items) == (92_834, 1_892, 17_632)
    styles = ds.item_concepts.filter(like="style:")
    assert styles.shape[1] >= 15 and styles.sum().min() >= 100  # every style covers a real share of artists
    assert "weight" in ds.interactions.columns


@pytest.mark.realdata
def test_ml1m_counts(data_root):
    ds = _load("ml-1m", data_root)
    if "ratings_notime" in ds.meta["source"]:
        assert (len(ds.interactions), ds.n_users, ds.n_items) == (1_000_043, 6_040, 3_657)
        assert not ds.has_timestamps
    else:
        assert (len(ds.interactions), ds.n_users, ds.n_items) == (1_000_209, 6_040, 3_706)
    genres = ds.item_concepts.filter(like="genre:")
    assert genres.shape[1] == 18
    assert ds.user_concepts.filter(like="age:").shape[1] == 7 and ds.user_concepts.filter(like="occupation:").shape[1] == 21


@pytest.mark.realdata
def test_ml1m_movies_file(data_root):
    from ipynb.fs.defs.data_processing import ML_GENRES, _movies_table

    folder = data_root / "ml-1m"
    if not folder.is_dir():
        pytest.skip("ml-1m not in the real-data folder")
    movies = _movies_table(folder / "movies.dat", "::", ML_GENRES, "pipe", "latin-1")
    assert len(movies) == 3_883 and movies.filter(like="genre:").shape[1] == 18
    assert movies.loc[1, "title"] == "Toy Story (1995)" and movies.loc[1, "year"] == 1995


@pytest.mark.realdata
def test_ml1m_random_split_is_complete(data_root):
    ds = _load("ml-1m", data_root)
    split = leave_one_out(ds, "random", seed=0)
    assert len(split.test) == len(split.valid) == 6_040
    assert len(split.train) == len(ds.interactions) - 2 * 6_040


def test_make_planted_has_the_structure_it_promises():
    from ipynb.fs.defs.data_processing import make_planted

    ds = make_planted(n_users=300, n_items=200, n_concepts=20, correlated_pairs=3, per_user=12, seed=1)
    concepts = ds.item_concepts.to_numpy()
    assert concepts.shape[1] == 20 and concepts.sum(1).min() >= 1
    assert concepts[:, 0].sum() > concepts[:, 19].sum()  # Zipf frequencies
    for pair in range(3):  # the partner of a paired concept is far more likely with it than without it
        assert concepts[concepts[:, 2 * pair] == 1, 2 * pair + 1].mean() > concepts[concepts[:, 2 * pair] == 0, 2 * pair + 1].mean()
    users = ds.user_concepts.to_numpy()
    assert users.sum(1).min() >= 2 and users.sum(1).max() <= 4
    assert (ds.interactions.groupby("user").size() == 12).all()
    same = make_planted(n_users=300, n_items=200, n_concepts=20, correlated_pairs=3, per_user=12, seed=1)
    assert same.fingerprint == ds.fingerprint
    with pytest.raises(ValueError, match="concepts_per_item"):
        make_planted(n_concepts=4, concepts_per_item=(1, 5))
