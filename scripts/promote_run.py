#!/usr/bin/env python
"""Promote a finished run folder over the shipped checkpoints and tables (the only command that writes them).

    python scripts/promote_run.py runs/ml-100k-20260101-120000              # every dataset of the run
    python scripts/promote_run.py runs/ml-100k-20260101-120000 --dataset ml-100k --dry-run

Refuses a partial run: `run.json` missing or not `complete` (make retrain writes it last), a checkpoint without its
weights or sidecar or whose weights do not match the sidecar's sha256, no recommenders.csv / provenance.json, or a
table whose provenance does not match the run's own checkpoints. Then copies <run>/models/<dataset>/* and
<run>/res_csv/<dataset>/* over models/ and res_csv/ (each file atomically: a temporary file beside the target and
a rename; weights before sidecars), merges provenance.json, and prints every file it replaced or added. Shipped
files the run does not have are kept; any of their tables that are now stale are listed at the end.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "notebooks"))
os.environ.setdefault("MONOSEMREC_ROOT", str(ROOT))


class PartialRun(RuntimeError):
    """The run folder is not a complete, self-consistent run."""


def run_problems(run: Path, dataset: str) -> list[str]:
    """Why `run` cannot be promoted for `dataset` ([] when it can)."""
    from ipynb.fs.defs.artifacts import PROVENANCE_FILE, stale_results
    from ipynb.fs.defs.utils import Paths, file_sha256

    paths = Paths.under(run)
    problems = []
    models, results = paths.models / dataset, paths.results / dataset
    if not models.is_dir():
        return [f"no checkpoints: {models} is missing"]
    for sidecar in sorted(models.glob("*.json")):
        weights = sidecar.with_suffix(".safetensors")
        if not weights.is_file():
            problems.append(f"{sidecar.name} has no weights file {weights.name}")
            continue
        recorded = json.loads(sidecar.read_text()).get("weights_sha256")
        if recorded != file_sha256(weights):
            problems.append(f"{weights.name} does not match the sha256 in {sidecar.name}")
    for weights in sorted(models.glob("*.safetensors")):
        if not weights.with_suffix(".json").is_file():
            problems.append(f"{weights.name} has no sidecar {weights.with_suffix('.json').name}")
    for needed in ("recommenders.csv", PROVENANCE_FILE):
        if not (results / needed).is_file():
            problems.append(f"no {results / needed}")
    problems += stale_results(dataset, paths)
    return problems


def _copy_atomic(source: Path, target: Path) -> None:
    """Copy `source` to `target` through a temporary file in the target's folder and a rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def promote(run: Path, datasets: list[str] | None = None, target=None, dry_run: bool = False) -> list[str]:
    """Copy the run's checkpoints and tables of `datasets` over `target` (None = the shipped folders); returns the
    lines printed. PartialRun (nothing copied) when the run is not complete and self-consistent."""
    from ipynb.fs.defs.artifacts import PROVENANCE_FILE, stale_results
    from ipynb.fs.defs.utils import RUN_MARKER, Paths, atomic_write_bytes, file_sha256

    run = Path(run).expanduser().resolve()
    marker = run / RUN_MARKER
    if not marker.is_file():
        raise PartialRun(f"{run} has no {RUN_MARKER}: not a finished run (make retrain writes it at the end)")
    record = json.loads(marker.read_text())
    if not record.get("complete"):
        raise PartialRun(f"{run} is a partial run (stages done: {record.get('stages')}); finish it with "
                         f"make retrain DATASET={record.get('dataset')} RUN={run} or start a new one")
    source = Paths.under(run)
    datasets = datasets or sorted(p.name for p in source.models.iterdir() if p.is_dir())
    problems = {d: run_problems(run, d) for d in datasets}
    bad = {d: p for d, p in problems.items() if p}
    if bad:
        raise PartialRun("refusing to promote " + str(run) + ":\n  " + "\n  ".join(
            f"{d}: {p}" for d, ps in bad.items() for p in ps))
    target = Paths.of(target)
    lines = []
    for dataset in datasets:
        files = sorted((source.models / dataset).glob("*.safetensors")) + sorted((source.models / dataset).glob("*.json"))
        files += sorted(p for p in (source.results / dataset).iterdir() if p.is_file() and p.name != PROVENANCE_FILE)
        for path in files:
            base = target.models if path.is_relative_to(source.models) else target.results
            dest = base / path.relative_to(source.models if base == target.models else source.results)
            if dest.is_file() and file_sha256(dest) == file_sha256(path):
                lines.append(f"unchanged {dest}")
                continue
            verb = "replaced " if dest.is_file() else "added    "
            detail = f" ({file_sha256(dest)[:12]} -> {file_sha256(path)[:12]})" if dest.is_file() else ""
            if not dry_run:
                _copy_atomic(path, dest)
            lines.append(f"{verb}{dest}{detail}")
        old_file = target.results / dataset / PROVENANCE_FILE
        merged = json.loads(old_file.read_text()) if old_file.is_file() else {}
        for table, hashes in json.loads((source.results / dataset / PROVENANCE_FILE).read_text()).items():
            merged.setdefault(table, {}).update(hashes)
        if not dry_run:
            atomic_write_bytes(old_file, (json.dumps(merged, indent=2, sort_keys=True) + "\n").encode("utf-8"))
        lines.append(f"merged   {old_file}")
        if not dry_run:
            for message in stale_results(dataset, target):
                lines.append(f"STALE    {message}")
    return lines


def main(argv=None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="the run folder, e.g. runs/ml-100k-20260101-120000")
    ap.add_argument("--dataset", action="append", help="only this dataset (repeatable; default: every one in the run)")
    ap.add_argument("--to", default=None, help="promote into this folder's models/ and res_csv/ (default: the shipped ones)")
    ap.add_argument("--dry-run", action="store_true", help="check and list what would be replaced, copy nothing")
    args = ap.parse_args(argv)
    try:
        lines = promote(Path(args.run), args.dataset, target=args.to, dry_run=args.dry_run)
    except PartialRun as e:
        print(f"promote_run: {e}", file=sys.stderr)
        return 2
    for line in lines:
        print(("(dry run) " if args.dry_run else "") + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
