"""The layers of docs/ARCHITECTURE.md: imports point down, no import cycle, optim and models load without Lightning.

Imports are read from the source with ``ast`` -- including those inside functions, which a cycle
hidden behind a lazy import uses -- so the check does not depend on what happens to be imported.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from paths import REPO

PACKAGE = REPO / "wdlab"

#: A module may import modules of its own package and of lower layers only.
LAYERS = {
    "_io": 0,
    "_checks": 0,
    "_device": 0,
    "optim": 1,
    "models": 1,
    "testing": 2,  # wdlab.testing: the optimizer battery (check_optimizer), on top of optim; no Lightning
    "data": 2,
    "training": 3,
    "experiments": 4,
    "cli": 5,
    "__main__": 6,  # python -m wdlab
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The wdlab modules ``path`` imports anywhere in its source (``from a import b``: ``a.b`` if it is a module)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules)
    return {m for m in found if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, modules) for name, path in modules.items()}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_import_points_down_the_layers():
    graph = _graph()
    unknown = sorted({_package(m) for m in graph} - set(LAYERS) - {""})
    assert not unknown, f"packages without a layer in LAYERS (add them, and to docs/ARCHITECTURE.md): {unknown}"
    upward = [
        f"{module} -> {target}"
        for module, targets in graph.items()
        for target in targets
        if _package(module)
        and _package(target)
        and _package(target) != _package(module)
        and LAYERS[_package(target)] >= LAYERS[_package(module)]
    ]
    assert upward == []


def test_no_import_cycle():
    graph = _graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target):], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    # A package's __init__ re-exporting its own submodules is not a cycle unless a submodule imports it back.
    assert cycles == []


def test_the_checker_sees_an_import_inside_a_function(tmp_path, monkeypatch):
    """The cycle check would miss what it exists for if it only read module-level imports."""
    source = "def f():\n    from wdlab.cli import main\n    return main\n"
    path = tmp_path / "probe.py"
    path.write_text(source)
    modules = {**_modules(), "wdlab.training.probe": path}
    assert "wdlab.cli" in _imports(path, "wdlab.training.probe", modules)


@pytest.mark.parametrize(
    "modules", ["wdlab.optim, wdlab.models", "wdlab.testing", "wdlab.data.cifar, wdlab.data.imagenet32"]
)
def test_lower_layers_import_no_lightning(modules):
    code = (
        f"import sys; import {modules}; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"importing {modules} loaded Lightning: {result.stdout} {result.stderr[-500:]}"


def test_the_layer_table_names_every_module():
    """docs/ARCHITECTURE.md's layer table lists each package's files: a new file gets its row entry."""
    table = [line for line in (PACKAGE.parent / "docs" / "ARCHITECTURE.md").read_text().splitlines()
             if line.startswith("| ") and line.split("|")[1].strip().isdigit()]
    rows = {line.split("`wdlab/", 1)[1].split("/", 1)[0].split("`", 1)[0]: line for line in table}
    missing = [
        f"{path.relative_to(PACKAGE.parent)}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "__init__.py" and path.parent != PACKAGE
        and f"`{path.name}`" not in rows.get(path.parent.name, "")
    ]
    assert missing == []
