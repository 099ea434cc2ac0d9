#!/usr/bin/env python
"""One-off: record which checkpoints the shipped tables and SAEs came from (run once; idempotent).

    python scripts/backfill_provenance.py [--check]

1. Every shipped SAE sidecar models/<dataset>/sae_*.json without `recommender_weights_sha256` gets the
   `weights_sha256` of its recommender's sidecar as shipped now. Only the JSON sidecar is rewritten (same
   format as utils.save_checkpoint); the .safetensors file and the sidecar's own `weights_sha256` are untouched,
   and each SAE is loaded back with utils.load_checkpoint to prove it.
2. Every res_csv/<dataset>/ gets provenance.json: for each shipped table, the weights_sha256 of the checkpoints
   its rows name (recommenders.csv: its models; sae_fidelity / sae_prefix_fve: each model with its default and
   Matryoshka SAEs; sae_variants.csv: each model with all its SAEs; concept tables and neuron dictionaries: each
   analysis name's SAE and recommender; interventions.csv: each model with its default SAE; the tables of scripts/
   (ncf_first_layer, probe_ceiling, protocol_bounds, sae_pool_quality, sae_concepts: the checkpoints their rows
   name; playground_agreement: MF and its default SAE)). This asserts that
   the committed tables were computed from the committed checkpoints (true of this commit; from now on every run
   records it itself).

--check only reports what is missing (exit 1 if anything is).
"""
import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "notebooks"))
os.environ.setdefault("MONOSEMREC_ROOT", str(ROOT))


def backfill_sidecars(paths, dataset: str, check: bool) -> list[str]:
    """Add recommender_weights_sha256 to SAE sidecars of `dataset` lacking it; returns what was (or would be) done."""
    from ipynb.fs.defs.artifacts import Artifacts
    from ipynb.fs.defs.utils import load_checkpoint, read_checkpoint_meta

    arts, done = Artifacts.of(dataset, paths), []
    for sae in arts.saes():
        sidecar = Path(f"{arts.path(sae)}.json")
        meta = read_checkpoint_meta(sidecar)
        if meta.get("recommender_weights_sha256") or not arts.exists(sae.recommender_name()):
            continue
        rec_sha = read_checkpoint_meta(arts.path(sae.recommender_name()))["weights_sha256"]
        done.append(f"{sidecar}: recommender_weights_sha256 = {rec_sha[:12]}… ({sae.recommender})")
        if check:
            continue
        meta["recommender_weights_sha256"] = rec_sha
        sidecar.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        load_checkpoint(arts.path(sae), dataset=dataset)  # the SAE's own weights_sha256 still matches its file
    return done


def backfill_tables(paths, dataset: str, check: bool) -> list[str]:
    """Write provenance.json for the shipped tables of `dataset` that have no record yet."""
    import pandas as pd
    from ipynb.fs.defs.artifacts import (
        PROVENANCE_FILE,
        ArtifactName,
        analysis_checkpoints,
        record_provenance,
        record_sae_provenance,
    )

    folder = paths.results / dataset
    record = json.loads((folder / PROVENANCE_FILE).read_text()) if (folder / PROVENANCE_FILE).is_file() else {}
    done = []

    def models_of(table: str) -> list[str]:
        return sorted(set(pd.read_csv(folder / table)["model"].astype(str)) - {"itempop"})

    def todo(table: str) -> bool:
        return (folder / table).is_file() and table not in record

    if todo("recommenders.csv"):
        done.append(f"{folder / 'recommenders.csv'}: {models_of('recommenders.csv')}")
        check or record_provenance(dataset, ["recommenders.csv"], models_of("recommenders.csv"), paths)
    for table in ("sae_fidelity.csv", "sae_prefix_fve.csv"):
        if todo(table):
            done.append(f"{folder / table}: {models_of(table)} with their default / Matryoshka SAEs")
            check or record_sae_provenance(dataset, models_of(table), paths, tables=[table])
    if todo("sae_variants.csv"):
        done.append(f"{folder / 'sae_variants.csv'}: {models_of('sae_variants.csv')} with all their SAEs")
        check or record_sae_provenance(dataset, models_of("sae_variants.csv"), paths, tables=["sae_variants.csv"],
                                       kinds=None)
    for table in ("concept_purity.csv", "concept_summary.csv"):
        if todo(table):
            done.append(f"{folder / table}: analyses {models_of(table)}")
            check or record_provenance(dataset, [table], analysis_checkpoints(models_of(table)), paths)
    for dictionary in sorted(folder.glob("neuron_dictionary_*.csv")):
        analysis = dictionary.stem[len("neuron_dictionary_"):]
        if todo(dictionary.name):
            done.append(f"{dictionary}: analysis {analysis}")
            check or record_provenance(dataset, [dictionary.name], analysis_checkpoints([analysis]), paths)
    if todo("interventions.csv"):
        models = models_of("interventions.csv")
        done.append(f"{folder / 'interventions.csv'}: {models} with their default SAEs")
        names = [*models, *(ArtifactName.parse(m).sae("").checkpoint for m in models)]
        check or record_provenance(dataset, ["interventions.csv"], names, paths)
    for table, names in script_tables(folder).items():
        if todo(table):
            done.append(f"{folder / table}: {names}")
            check or record_provenance(dataset, [table], names, paths)
    return done


def script_tables(folder: Path) -> dict:
    """{table: checkpoints its rows came from} of the tables the scripts/ write into `folder` (those present)."""
    import pandas as pd
    from ipynb.fs.defs.artifacts import ArtifactName, analysis_checkpoints

    def column(table: str, name: str) -> list[str]:
        return sorted(set(pd.read_csv(folder / table)[name].astype(str)))

    out = {}
    if (folder / "ncf_first_layer.csv").is_file():
        df = pd.read_csv(folder / "ncf_first_layer.csv")
        out["ncf_first_layer.csv"] = sorted({*df["model"].astype(str), *df["sae"].astype(str)})
    for table in ("probe_ceiling.csv", "protocol_bounds.csv", "sae_pool_quality.csv", "sae_concepts.csv"):
        if (folder / table).is_file():
            out[table] = column(table, "model")
    if (folder / "playground_agreement.csv").is_file():  # written for the default SAE of MF (the playground)
        out["playground_agreement.csv"] = analysis_checkpoints([ArtifactName.parse("mf").recommender])
    return out


def main(argv=None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only list what is missing; exit 1 if anything is")
    ap.add_argument("--root", default=None, help="a folder with models/ and res_csv/ (default: the shipped ones)")
    args = ap.parse_args(argv)
    from ipynb.fs.defs.utils import Paths

    paths = Paths.of(args.root)
    lines = []
    for folder in sorted(p for p in paths.models.iterdir() if p.is_dir()):
        lines += backfill_sidecars(paths, folder.name, args.check)
        lines += backfill_tables(paths, folder.name, args.check)
    for line in lines:
        print(("missing: " if args.check else "recorded: ") + line)
    print(f"{len(lines)} item(s) {'missing' if args.check else 'recorded'}")
    return 1 if args.check and lines else 0


if __name__ == "__main__":
    sys.exit(main())
