"""The package's shape: layers that import one way, no import cycle, a torch-free config layer.

Every import of every module is read from its source (also imports inside functions and under
TYPE_CHECKING: an import that runs later is still a dependency). The layers, left to right:

    registry, runfolder, threads → config → models → data → training → grid → results → bench → cli → api

A module may import its own layer (package) and the layers to its left, never one to its right; no
two modules may reach each other through imports. The checker itself is tested on a planted cycle
and a planted upward import, so a green run means it looked.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "vitstudy"
LAYERS = {"registry": 0, "runfolder": 0, "threads": 0, "config": 1, "models": 2, "data": 3, "training": 4, "grid": 5,
          "results": 6, "bench": 7, "cli": 8, "api": 9, "__init__": 10}


def modules(root: Path, top: str) -> dict[str, Path]:
    """Dotted module name → file, for every .py file under `root` (a package named `top`)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = (top, *path.relative_to(root).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of the package that `name` imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            # `from a import b`: the module a.b where there is one, else a (b is an attribute of it)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def layer(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def problems(root: Path = PACKAGE, top: str = "vitstudy") -> list[str]:
    """Every import against the layer order, and every import cycle, as sentences."""
    known = modules(root, top)
    graph = {name: imports(name, path, known) for name, path in known.items()}
    found = []
    for name, targets in sorted(graph.items()):
        for target in sorted(targets):
            a, b = layer(name), layer(target)
            if a not in LAYERS or b not in LAYERS:
                found.append(f"{name}: layer {a if a not in LAYERS else b!r} is not in the layer order")
            elif a != b and LAYERS[b] >= LAYERS[a]:
                found.append(f"{name} (layer {a}) imports {target} (layer {b}), which is not to its left")
    # cycles: a module is on a cycle when it reaches itself
    for start in sorted(graph):
        path, seen, stack = {}, {start}, [start]
        while stack:
            node = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    chain, at = [start], node
                    while at != start:
                        chain.insert(1, at)
                        at = path[at]
                    cycle = " -> ".join(chain + [start])
                    if min(chain) == start:  # report each cycle once, from its smallest module
                        found.append(f"import cycle: {cycle}")
                    stack.clear()
                    break
                if nxt not in seen:
                    seen.add(nxt)
                    path[nxt] = node
                    stack.append(nxt)
    return found


def test_layers_import_one_way_and_no_module_reaches_itself():
    found = problems()
    assert not found, "\n".join(found)


def plant(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_the_checker_finds_a_planted_cycle_inside_a_layer(tmp_path):
    root = plant(tmp_path, {"__init__.py": "", "results/__init__.py": "",
                            "results/report.py": "def f():\n    from pkg.results import plots\n",
                            "results/plots.py": "from pkg.results.report import f\n"})
    found = problems(root, "pkg")
    assert found == ["import cycle: pkg.results.plots -> pkg.results.report -> pkg.results.plots"]


def test_the_checker_finds_an_import_against_the_layer_order(tmp_path):
    root = plant(tmp_path, {"__init__.py": "", "config/__init__.py": "", "training/__init__.py": "",
                            "config/spec.py": "from ..training import run\n", "training/run.py": ""})
    found = problems(root, "pkg")
    assert found == ["pkg.config.spec (layer config) imports pkg.training.run (layer training), "
                     "which is not to its left"]


@pytest.mark.parametrize("module", ["vitstudy.config.manifest", "vitstudy.config.spec", "vitstudy.registry",
                                    "vitstudy.runfolder", "vitstudy.results.format",
                                    "vitstudy.grid.progress", "vitstudy.grid.live"])
def test_torch_free_modules_import_no_torch(module):
    code = f"import sys, {module}; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_no_module_of_the_config_layer_imports_torch():
    names = [n for n in modules(PACKAGE, "vitstudy") if layer(n) == "config"]
    code = f"import sys, {', '.join(names)}; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_no_source_or_test_file_is_ignored_by_git():
    """A module that .gitignore hides works here and is missing from every clone (a `data/` rule once hid
    vitstudy/data/)."""
    root = PACKAGE.parent
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(["git", "ls-files", "--others", "--ignored", "--exclude-standard", "vitstudy", "tests"],
                             cwd=root, capture_output=True, text=True, check=True).stdout.split()
    assert [p for p in ignored if p.endswith((".py", ".yaml"))] == []


def test_no_test_module_imports_another_test_file():
    """Tests share code through conftest fixtures and tests/manifests, never by importing each other
    (with --import-mode=importlib a `from tests.x import` depends on where pytest is started)."""
    tests = modules(PACKAGE.parent / "tests", "tests")
    found = {name: sorted(imports(name, path, tests)) for name, path in tests.items()}
    assert {name: targets for name, targets in found.items() if targets} == {}
