"""The package is built in floors: a module imports only from its own package or from lower floors, so that
models never reach up into the trainer (their samplers live in ``dglmm.data``) and ``nn`` blocks never into the
models.  Every ``import`` counts, those inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

import dglmm

#: package (or top-level module) -> floor; imports go down (or stay in the package), never up or sideways
FLOORS = {
    "errors": 0, "metric_keys": 0, "interrupts": 0,
    "options": 1, "io": 1, "plots": 1,
    "data": 2,
    "graph": 3,
    "config": 3.5,
    "nn": 4,
    "models": 5,
    "train": 6,
    "tune": 7, "recommend": 7, "compare": 7, "report": 7, "recipe": 8, "api": 8, "leaderboard": 8,
    "cli": 9, "__main__": 10, "configs": 0,
}
ROOT = Path(dglmm.__file__).parent


def unit(module: str) -> str:
    """``dglmm.graph.build`` -> ``graph``."""
    return module.split(".")[1] if module.count(".") else ""


def imports(root: Path = ROOT) -> list[tuple[str, str, int]]:
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        module = ".".join(rel.parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            found += [(module, name, node.lineno) for name in names if name.startswith("dglmm.")]
    return found


def test_every_unit_has_a_floor():
    units = {unit(m) for m, _, _ in imports()} | {unit(t) for _, t, _ in imports()}
    assert units - {""} <= set(FLOORS), sorted(units - set(FLOORS))


def upward(root: Path = ROOT) -> list[str]:
    return [f"{m}:{line} imports {target}" for m, target, line in imports(root)
            if unit(m) and unit(target) != unit(m) and FLOORS[unit(target)] >= FLOORS[unit(m)]]


def test_no_import_runs_up_a_floor():
    assert not upward(), "\n".join(upward())


def test_the_checker_sees_an_upward_import_even_inside_a_function(tmp_path):
    package = tmp_path / "dglmm"
    (package / "models").mkdir(parents=True)
    (package / "models" / "m.py").write_text("def f():\n    from dglmm.train.sampler import BPRSampler\n")
    (package / "nn").mkdir()
    (package / "nn" / "b.py").write_text("import dglmm.graph.knn\n")
    assert upward(package) == ["dglmm.models.m:2 imports dglmm.train.sampler"]
