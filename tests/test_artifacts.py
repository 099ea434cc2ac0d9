"""The artifact registry: one parser of checkpoint names, and every consumer asks it.

A models folder holding every kind of name the suite writes (recommenders and their variants, default SAEs,
Matryoshka / attention / contrastive SAEs, an SAE whose recommender is missing, a file that is no checkpoint)
must be read the same way by the registry, the concepts run, the interventions run, training and the scripts.
"""
import json
import re
from pathlib import Path

import pytest
from ipynb.fs.defs.artifacts import SAE_KINDS, ArtifactName, Artifacts
from ipynb.fs.defs.concepts import available_models
from ipynb.fs.defs.experiments import (
    PRETRAINED,
    SAE_VARIANT_NAMES,
    recommender_config,
    sae_row_checkpoint,
    sae_runs,
    sae_variant_checkpoint,
    split_of,
)
from ipynb.fs.defs.interventions import run_interventions
from ipynb.fs.defs.utils import Paths

ROOT = Path(__file__).resolve().parents[1]
RECOMMENDERS = ["mf", "ncf", "sasrec", "mf_paper", "ncf_paper", "mf_temporal"]


def written_names() -> set[str]:
    """Every checkpoint name the suite's runs write: shipped recommenders, sae_fidelity checkpoints, variants."""
    names = {n for names in PRETRAINED.values() for n in names}
    for dataset, recs in PRETRAINED.items():
        for rec in recs:
            for order, (row, _) in enumerate(sae_runs(dataset, rec, 64, first_layer_width=64)):
                name = sae_row_checkpoint(rec, order, row)
                if name is not None:
                    names.add(name.checkpoint)
            names |= {sae_variant_checkpoint(rec, v) for v in SAE_VARIANT_NAMES} - {None}
    return names


@pytest.fixture
def models_folder(tmp_path) -> Paths:
    """A models folder with a sidecar for every kind of name, plus an orphan SAE and a stray file."""
    paths = Paths.under(tmp_path)
    folder = paths.models / "ml-1m"
    folder.mkdir(parents=True)
    for name in [*RECOMMENDERS, "sae_mf", "sae_mf_matryoshka", "sae_mf_attention", "sae_mf_contrastive",
                 "sae_ncf_paper", "sae_sasrec", "sae_mf_temporal_matryoshka"]:
        (folder / f"{name}.json").write_text("{}")
    (folder / "sae_gru4rec.json").write_text("{}")  # not a known family: ignored
    (folder / "notes.json").write_text("{}")  # not a checkpoint name: ignored
    (folder / "mf.safetensors").write_bytes(b"")  # weights files do not count, sidecars do
    (folder.parent / "ml-100k").mkdir()
    (folder.parent / "ml-100k" / "sae_ncf.json").write_text("{}")  # an SAE whose recommender is missing
    return paths


def test_every_written_name_round_trips():
    for name in written_names():
        parsed = ArtifactName.parse(name)
        assert parsed.checkpoint == name and str(parsed) == name
        if parsed.is_sae:
            assert ArtifactName.of_analysis(parsed.analysis) == parsed
    assert {"sae_mf_matryoshka", "sae_mf_attention", "sae_sasrec_contrastive", "sae_ncf_paper", "sae_ncf_layer1"} <= written_names()


def test_every_shipped_checkpoint_is_a_registry_name():
    for sidecar in (ROOT / "models").glob("*/*.json"):
        parsed = ArtifactName.parse(sidecar.stem)
        meta = json.loads(sidecar.read_text())
        if parsed.is_sae:
            assert meta["recommender"] == parsed.recommender, sidecar
        else:
            assert meta["model"] == parsed.family, sidecar


def test_registry_lists_what_exists(models_folder):
    arts = Artifacts.of("ml-1m", models_folder)
    assert arts.recommenders() == sorted(RECOMMENDERS)
    assert arts.analyses() == ["mf", "mf_attention", "mf_contrastive", "mf_matryoshka", "mf_temporal_matryoshka",
                               "ncf_paper", "sasrec"]
    assert arts.recommenders_with_sae() == ["mf", "ncf_paper", "sasrec"]
    assert Artifacts.of("ml-100k", models_folder).analyses() == []  # its SAE has no recommender
    assert Artifacts.of("ml-100k", models_folder).saes()[0].recommender == "ncf"


def test_consumers_agree_with_the_registry(models_folder):
    arts = Artifacts.of("ml-1m", models_folder)
    # the concepts run analyses exactly the registry's analysis names
    assert available_models("ml-1m", models_folder) == arts.analyses()
    # every analysis name resolves to its recommender, split and config the same way training does
    for analysis in arts.analyses():
        name = ArtifactName.of_analysis(analysis)
        assert name.recommender in arts.recommenders()
        config = recommender_config(name.recommender, "ml-1m", 10, 20)
        assert type(config).__name__.lower().startswith(name.family)
    # the interventions run refuses a folder without a recommender + default SAE, naming the folder
    with pytest.raises(ValueError, match="no recommender with an SAE checkpoint under"):
        run_interventions("ml-100k", paths=models_folder, ds=object())


def test_split_comes_from_the_registry():
    from ipynb.fs.defs.data_processing import make_synthetic

    ds = make_synthetic(n_users=40, n_items=30, per_user=5, seed=0)
    assert split_of(ds, "sasrec").kind == "temporal" == split_of(ds, "mf_temporal").kind
    assert split_of(ds, "mf").kind == "random" == split_of(ds, "sae_mf_matryoshka").kind


def test_bad_names_say_what_is_valid():
    with pytest.raises(ValueError, match=r"family in \[.*'mf', 'ncf', 'sasrec'"):
        ArtifactName.parse("gru4rec")
    with pytest.raises(ValueError, match="kind in"):
        ArtifactName.parse("sae_mf_topk")
    assert set(SAE_KINDS) == {"", "matryoshka", "attention", "contrastive", "layer1"}


def test_no_code_outside_the_registry_splits_or_joins_names():
    """String surgery on checkpoint names (f'sae_{...}', .replace('_paper', ...), [len('sae_'):]) lives only in
    notebooks/artifacts.ipynb."""
    q = r"""\\?["']"""  # a quote, escaped inside notebook JSON
    pattern = re.compile(rf"f{q}sae_\{{|\.replace\({q}_(paper|temporal)|len\({q}sae_|startswith\({q}sae_"
                         rf"|\.endswith\({q}_(paper|temporal|matryoshka)|\{{model\}}_(paper|matryoshka)")
    offenders = []
    for path in [*ROOT.glob("notebooks/*.ipynb"), *ROOT.glob("scripts/*.py")]:
        if path.stem == "artifacts":
            continue
        for i, line in enumerate(path.read_text().splitlines()):
            if pattern.search(line):
                offenders.append(f"{path.name}:{i + 1}: {line.strip()[:100]}")
    assert not offenders, "checkpoint names built or parsed outside the registry:\n" + "\n".join(offenders)
