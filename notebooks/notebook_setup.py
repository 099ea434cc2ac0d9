"""What the first cell of every runnable notebook installs: readable tracebacks and text progress bars.

Tracebacks: code imported from notebooks with the `ipynb` package.

`ipynb.fs.defs` / `ipynb.fs.full` compile the code cells of `X.ipynb` joined into one source, under the file name
`.../X.ipynb`. A traceback then names the notebook and the function, but shows the line of the *JSON file* at that
line number. `install()` wraps both loaders so that the joined source is registered in `linecache` under the
notebook's path: tracebacks (plain Python, IPython, papermill) show the notebook's own code line.

Progress: `from tqdm.auto import tqdm` picks a notebook widget inside a kernel, which papermill and `make` show
frozen (or not at all). `install()` points `tqdm.auto.tqdm` at the plain-text bar (rate and ETA) on stderr, so
any later `from tqdm.auto import tqdm` (e.g. inside a function) gets text (utils.progress_bar is the same bar).
"""
import json
import linecache

_INSTALLED = []


def notebook_source(path: str) -> str:
    """The source `ipynb` compiles for the notebook at `path` (its code cells joined, as ipynb.utils does)."""
    from ipynb.utils import code_from_ipynb

    with open(path, encoding="utf-8") as f:
        return code_from_ipynb(json.load(f))


def register(path: str) -> None:
    """Put the compiled source of notebook `path` into linecache (mtime None: checkcache leaves it alone)."""
    source = notebook_source(path)
    linecache.cache[path] = (len(source), None, source.splitlines(True), path)


def _wrap(loader_class) -> None:
    """Make loader_class.get_code register the notebook's source in linecache."""
    original = loader_class.get_code

    def get_code(self, fullname):
        code = original(self, fullname)
        if str(self.path).endswith(".ipynb"):
            register(self.path)
        return code

    get_code.__wrapped__ = original
    loader_class.get_code = get_code


def text_progress() -> None:
    """Make `tqdm.auto.tqdm` the plain-text tqdm bar on stderr (never a widget)."""
    import sys
    from functools import partial

    import tqdm.auto
    import tqdm.std

    tqdm.auto.tqdm = partial(tqdm.std.tqdm, file=sys.stderr, ascii=True)


def install() -> bool:
    """Readable notebook tracebacks (wrap the ipynb loaders) and text progress bars, once; True when this call did it."""
    if _INSTALLED:
        return False
    text_progress()
    from ipynb.fs.defs import FilteredLoader
    from ipynb.fs.full import FullLoader

    for loader in (FilteredLoader, FullLoader):
        _wrap(loader)
    _INSTALLED.append(True)
    return True
