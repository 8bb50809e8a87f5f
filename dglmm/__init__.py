"""dglmm: multimodal graph recommenders on DGL heterographs."""

from importlib import metadata as _metadata

try:
    __version__: str = _metadata.version("dglmm")
except _metadata.PackageNotFoundError:  # a source checkout that was never installed: pyproject.toml's version
    import re as _re
    from pathlib import Path as _Path

    _pyproject = _Path(__file__).resolve().parents[1] / "pyproject.toml"
    _text = _pyproject.read_text() if _pyproject.is_file() else ""
    _found = _re.search(r'^version\s*=\s*"([^"]+)"', _text, _re.M)
    __version__ = f"{_found.group(1)}+source" if _found else "unknown"

# The public API (dglmm/api.py, docs/api.md), loaded on first use so that `import dglmm` stays cheap:
#     import dglmm
#     run = dglmm.fit("lightgcn", "synthetic")
#     run.recommend(users=["0", "1"], k=10)
#     dglmm.compare_runs(dglmm.load("runs/<baseline>"), run)
_PUBLIC = ("InputError", "Run", "build_graph", "compare_runs", "describe", "fit", "load", "load_dataset", "model_class",
           "model_names")


def __getattr__(name: str):
    if name in _PUBLIC:
        from dglmm import api

        return getattr(api, name)
    raise AttributeError(f"module 'dglmm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
