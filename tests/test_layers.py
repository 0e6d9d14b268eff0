"""segcore's imports go one way: each module imports only from its own layer or the layers beneath it.

Every ``import`` counts, also those inside functions (an import made late is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Bottom first. A stage package's ``cli`` module belongs to the surface, with ``segcore.cli``.
LAYERS = (
    ("base", {"catalog", "fsutil", "safetext"}),
    ("settings", {"config", "labels", "access"}),
    ("storage", {"workspace", "runfiles", "runrecord", "runs", "run_review", "data"}),
    ("model", {"losses", "metrics", "models"}),
    ("use", {"prediction", "evaluation"}),
    ("training", {"training"}),
    ("queue", {"queue"}),
    ("surface", {"visualize", "quickstart", "cliutil", "cli", "__main__", "__init__"}),
)
LAYER_OF = {unit: i for i, (_, units) in enumerate(LAYERS) for unit in units}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit_of(module: str) -> str:
    """The layer unit of a segcore module: its first part below ``segcore``; a stage's ``cli`` is ``cli``."""
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__"
    if parts[-1] == "cli":
        return "cli"
    return parts[1]


def imports_of(path: Path) -> set[str]:
    """Every segcore module ``path`` imports (a ``from X import y`` counts X, and X.y where that is a module)."""
    return imports_in(path.read_text(), module_name(path), is_package=path.name == "__init__.py")


def imports_in(source: str, name: str, is_package: bool = False) -> set[str]:
    package = name if is_package else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if _is_module(sub) else base)
    return {m for m in found if m == "segcore" or m.startswith("segcore.")}


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def segcore_modules() -> list[Path]:
    return sorted((ROOT / "segcore").rglob("*.py"))


def test_every_segcore_unit_has_a_layer():
    units = {unit_of(module_name(p)) for p in segcore_modules()}
    assert units <= set(LAYER_OF), f"put these in a layer of tests/test_layers.py: {sorted(units - set(LAYER_OF))}"


def upward(module: str, targets: set[str]) -> list[str]:
    """The imports of ``module`` that go up a layer, each as a sentence."""
    found = []
    for target in sorted(targets - {"segcore"}):  # the package itself: its version, its registrations
        mine, theirs = LAYER_OF[unit_of(module)], LAYER_OF[unit_of(target)]
        if theirs > mine:
            found.append(f"{module} ({LAYERS[mine][0]}) imports {target} ({LAYERS[theirs][0]})")
    return found


def test_no_import_goes_up_a_layer():
    found = [line for path in segcore_modules() for line in upward(module_name(path), imports_of(path))]
    assert not found, "imports going up a layer:\n" + "\n".join(found)


def test_the_catalog_imports_nothing_of_segcore_and_no_keras():
    for path in (ROOT / "segcore" / "catalog").rglob("*.py"):
        tree = ast.parse(path.read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = {a.name for n in top if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in top if isinstance(n, ast.ImportFrom)}
        assert not {m for m in names if m.split(".")[0] in ("segcore", "keras", "tensorflow", "torch", "jax")}, path


@pytest.mark.parametrize(("module", "source", "expected"), [
    ("segcore.config", "def f():\n    from segcore.queue.launcher import wake_queue\n", "segcore.queue.launcher"),
    ("segcore.prediction.run", "from segcore.visualize import images\n", "segcore.visualize.images"),
    ("segcore.models.builder", "from ..evaluation import report\n", "segcore.evaluation.report"),
])
def test_the_check_sees_an_upward_import(module, source, expected):
    """The check itself: a late, a package-level and a relative import from above are each reported."""
    found = upward(module, imports_in(source, module))
    assert len(found) == 1 and f"imports {expected} " in found[0]


def test_the_check_lets_an_import_from_beneath_pass():
    assert upward("segcore.training.trainer", imports_in("from segcore.catalog.optim import make_optimizer\n",
                                                         "segcore.training.trainer")) == []
