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
