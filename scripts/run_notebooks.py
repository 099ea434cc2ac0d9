#!/usr/bin/env python
"""The main job: execute notebooks headless with papermill and write readable HTML reports.

    python scripts/run_notebooks.py                       # the report notebooks on the pretrained models
    python scripts/run_notebooks.py visualization_SAE_mf -p DATASET ml-1m
    python scripts/run_notebooks.py --smoke               # every report notebook on tiny synthetic data
    python scripts/run_notebooks.py -p DATASET ml-100k --run-dir runs/ml-100k-20260101-120000   # a run's reports

Executed copies and HTML go to reports/<dataset>/<notebook>.html (git-ignored; $MONOSEMREC_REPORTS_DIR moves
reports/), or with --run-dir to <run>/reports/<dataset>/ (the notebooks get -p RUN_DIR <run> and read that run's
models/ and res_csv/). The committed notebooks are never modified. Exit status is non-zero when any notebook
fails, or when a report skipped a section because a file is damaged or mismatched (the section is named;
"not computed yet" stays a message in the report); the others still run. The HTML hides the code cells and
loads nothing from the network (remote script / stylesheet tags of the template are dropped).
"""
import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
# Report notebooks in the order they are rendered; the first ones that exist are run.
REPORT_NOTEBOOKS = ["visualization_SAE_mf", "visualization_SAE_ncf", "visualization_SAE_sasrec", "lastFM_notebook"]
# Until the report notebooks exist, the definition notebooks are rendered (their check cells are the report).
FALLBACK_NOTEBOOKS = ["utils", "data_processing", "models", "training"]


def parse_value(text: str):
    """papermill-style parameter value: int, float, True/False/None, else the string."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"True": True, "False": False, "None": None}.get(text, text)


# Notebooks whose dataset is fixed (no DATASET parameter).
FIXED_DATASET = {"lastFM_notebook": "lastfm"}


def report_dataset(name: str, parameters: dict) -> str:
    """The dataset a report notebook will show: SMOKE -> synthetic, else DATASET (given, or its parameters cell)."""
    if parameters.get("SMOKE"):
        return "synthetic"
    if "DATASET" in parameters:
        return str(parameters["DATASET"])
    if name in FIXED_DATASET:
        return FIXED_DATASET[name]
    source = NOTEBOOKS / f"{name}.ipynb"
    if source.is_file():
        for cell in json.loads(source.read_text())["cells"]:
            if "parameters" in cell.get("metadata", {}).get("tags", []):
                for line in "".join(cell["source"]).splitlines():
                    if line.replace(" ", "").startswith("DATASET="):
                        return line.split("=", 1)[1].strip().strip("\"'")
    return "all"


def render(name: str, parameters: dict, out_dir: Path, timeout: int) -> float:
    """Execute notebooks/<name>.ipynb into out_dir/<name>.ipynb and export out_dir/<name>.html; returns seconds."""
    import nbformat
    import papermill as pm
    from nbconvert import HTMLExporter

    source = NOTEBOOKS / f"{name}.ipynb"
    if not source.is_file():
        raise FileNotFoundError(f"no notebook {source}")
    executed = out_dir / f"{name}.ipynb"
    start = time.perf_counter()
    pm.execute_notebook(str(source), str(executed), parameters=parameters, cwd=str(NOTEBOOKS),
                        kernel_name="python3", progress_bar=False, execution_timeout=timeout)
    node = nbformat.read(executed, as_version=4)
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    html, _ = exporter.from_notebook_node(node)
    (out_dir / f"{name}.html").write_text(offline_html(html), encoding="utf-8")
    damaged = damaged_sections(node)
    if damaged:
        raise DamagedSectionsError(damaged)
    return time.perf_counter() - start


# <script src="http(s)://..."></script> (require.js, MathJax from a CDN) and <link href="http(s)://..."> tags.
REMOTE_TAG = re.compile(r'<script\b[^>]*\bsrc=["\']https?://[^"\']*["\'][^>]*>\s*</script>'
                        r'|<link\b[^>]*\bhref=["\']https?://[^"\']*["\'][^>]*/?>', re.IGNORECASE)


def offline_html(html: str) -> str:
    """The exported HTML without any tag that loads a remote script or stylesheet: the report makes no request
    (code cells are already hidden; plotly.js is embedded once by the notebooks' 'notebook' renderer)."""
    return REMOTE_TAG.sub("", html)


class DamagedSectionsError(RuntimeError):
    """A report rendered, but skipped sections because a file is damaged or does not match."""

    def __init__(self, sections: list):
        self.sections = sections
        super().__init__("; ".join(f"section '{title}' skipped: {message}" for title, message in sections))


def damaged_sections(node) -> list:
    """[(section title, message)] of the report's sections skipped for a damaged or mismatched file
    (plots.DAMAGED_MARKER in a displayed message; the title is the heading displayed just before it)."""
    from ipynb.fs.defs.plots import DAMAGED_MARKER

    found, heading = [], "?"
    for cell in node.cells:
        for output in cell.get("outputs", []):
            text = output.get("data", {}).get("text/markdown") or output.get("text") or ""
            text = "".join(text) if isinstance(text, list) else str(text)
            if text.lstrip().startswith("#"):
                heading = text.lstrip("# ").splitlines()[0].strip()
            elif DAMAGED_MARKER in text:
                found.append((heading, text.strip().lstrip("> ").splitlines()[0]))
    return found


def failure_message(error: Exception) -> str:
    """One line saying what went wrong: the notebook's own exception (papermill's ename/evalue) when there is one."""
    name, value = getattr(error, "ename", None), getattr(error, "evalue", None)
    if name:
        text = str(value or "").strip()
        return f"{name}: {text.splitlines()[0] if text else ''}"
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def main(argv=None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="*", help="notebook names (default: the report notebooks)")
    ap.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                    help="papermill parameter, e.g. -p DATASET ml-1m (repeatable)")
    ap.add_argument("--smoke", action="store_true", help="pass SMOKE=True: tiny synthetic runs, for tests")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds a single cell may take")
    ap.add_argument("--run-dir", default=None, help="a run folder: pass -p RUN_DIR and write <run>/reports/<dataset>/")
    args = ap.parse_args(argv)

    sys.path.insert(0, str(NOTEBOOKS))
    os.environ.setdefault("MONOSEMREC_ROOT", str(ROOT))
    from ipynb.fs.defs.utils import reports_dir

    names = args.notebooks or [n for n in REPORT_NOTEBOOKS if (NOTEBOOKS / f"{n}.ipynb").is_file()]
    if not names:
        names = [n for n in FALLBACK_NOTEBOOKS if (NOTEBOOKS / f"{n}.ipynb").is_file()]
        print("no report notebooks yet; rendering the definition notebooks:", ", ".join(names))
    parameters = {k: parse_value(v) for k, v in args.parameter}
    if args.smoke:
        parameters["SMOKE"] = True
    if args.run_dir:
        run = Path(args.run_dir).expanduser().resolve()
        parameters["RUN_DIR"] = str(run)
        reports_root = run / "reports"
    else:
        reports_root = reports_dir()
    failed = []
    for name in names:
        out_dir = reports_root / report_dataset(name, parameters)  # datasets never overwrite each other
        out_dir.mkdir(parents=True, exist_ok=True)
        try:
            seconds = render(name, parameters, out_dir, args.timeout)
            print(f"ok      {name:28s} {seconds:7.1f} s -> {out_dir / (name + '.html')}")
        except Exception as e:  # keep going: one broken report should not hide the others
            failed.append(name)
            print(f"FAILED  {name:28s} {failure_message(e)}")
            if isinstance(e, DamagedSectionsError):
                print(f"        the report was written but is incomplete: {out_dir / (name + '.html')}")
            if getattr(e, "ename", None):  # an error inside the notebook: the executed copy shows where
                print(f"        the executed notebook with the traceback: {out_dir / (name + '.ipynb')}")
    print(f"{len(names) - len(failed)} rendered, {len(failed)} failed; reports in {reports_root}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
