"""Readable tracebacks for code imported from notebooks with the `ipynb` package.

`ipynb.fs.defs` / `ipynb.fs.full` compile the code cells of `X.ipynb` joined into one source, under the file name
`.../X.ipynb`. A traceback then names the notebook and the function, but shows the line of the *JSON file* at that
line number. `install()` wraps both loaders so that the joined source is registered in `linecache` under the
notebook's path: tracebacks (plain Python, IPython, papermill) show the notebook's own code line.
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


def install() -> bool:
    """Wrap the ipynb.fs.defs and ipynb.fs.full loaders (once); True when this call installed them."""
    if _INSTALLED:
        return False
    from ipynb.fs.defs import FilteredLoader
    from ipynb.fs.full import FullLoader

    for loader in (FilteredLoader, FullLoader):
        _wrap(loader)
    _INSTALLED.append(True)
    return True
