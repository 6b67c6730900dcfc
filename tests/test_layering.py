"""Import layering of the package, read from the source with ``ast`` (nothing is imported).

Layers, lowest first: a module may import its own layer and the ones below, never one above.
Every import counts, also those inside functions (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS = (
    ("base", {"errors", "registry", "atomic", "common", "provenance"}),
    ("core", {"models", "methods", "parallel", "data"}),
    ("api", {"api"}),
    ("training/perf", {"training", "perf", "launch"}),  # launch: torchrun runs of training
    ("report", {"report"}),
    ("studies", {"studies"}),
    ("entry points", {"cli", "__init__", "__main__"}),
)
"""(layer, top-level names under scpl/) in order; ``__init__`` is scpl/__init__.py itself."""

CORE = {"models", "methods", "parallel", "data"}
TOP = {"training", "perf", "studies", "report", "cli", "api"}


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the scpl package."""
    out = {}
    for p in sorted((SRC / "scpl").rglob("*.py")):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = _modules()


def _imports(module: str, path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, imported names) of every scpl import in a file; relative
    imports are resolved against the module's package."""
    is_pkg = path.name == "__init__.py"
    package = module if is_pkg else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            name = node.module or ""
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([name] if name else []))
            if name == "scpl" or name.startswith("scpl."):
                out.append((node.lineno, name, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "scpl" or a.name.startswith("scpl."):
                    out.append((node.lineno, a.name, []))
    return out


def _resolve(name: str) -> str | None:
    """The scpl module a dotted name refers to (its longest known prefix)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _edges() -> dict[str, dict[str, int]]:
    """module -> {imported module: line}; ``from pkg import sub`` counts as importing pkg.sub."""
    edges: dict[str, dict[str, int]] = defaultdict(dict)
    for mod, path in MODULES.items():
        for line, name, names in _imports(mod, path):
            for target in [name] + [f"{name}.{n}" for n in names]:
                r = _resolve(target)
                if r is not None and r != mod:
                    edges[mod].setdefault(r, line)
    return edges


def _rank(module: str) -> int:
    top = _top(module)
    for i, (_, names) in enumerate(LAYERS):
        if top in names:
            return i
    raise KeyError(top)


def test_every_module_has_a_layer():
    missing = sorted({_top(m) for m in MODULES} - set().union(*(n for _, n in LAYERS)))
    assert not missing, f"add {missing} to LAYERS in tests/test_layering.py"


def test_core_never_imports_the_top_layer():
    bad = [
        f"{m}:{line} imports {t}"
        for m, targets in _edges().items()
        if _top(m) in CORE
        for t, line in targets.items()
        if _top(t) in TOP
    ]
    assert not bad, "\n".join(bad)


def test_no_import_from_a_higher_layer():
    bad = [
        f"{m}:{line} ({LAYERS[_rank(m)][0]}) imports {t} ({LAYERS[_rank(t)][0]})"
        for m, targets in _edges().items()
        for t, line in targets.items()
        if _rank(t) > _rank(m)
    ]
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    edges = _edges()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for t in sorted(edges.get(m, {})):
            if state.get(t) == 1:
                cycles.append(path[path.index(t) :] + [t])
            elif t not in state:
                visit(t)
        path.pop()
        state[m] = 2

    for m in sorted(MODULES):
        if m not in state:
            visit(m)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_no_private_imports_across_modules():
    bad = [
        f"{m}:{line} imports {n} from {name}"
        for m, path in MODULES.items()
        for line, name, names in _imports(m, path)
        for n in names
        if n.startswith("_") and not n.startswith("__") and _resolve(name) != m
    ]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    "source, found",
    [
        ("from scpl.studies.bench import run_bench\n", "scpl.studies.bench"),
        ("def f():\n    from ..perf import costs\n", "scpl.perf"),
        ("import scpl.api\n", "scpl.api"),
    ],
)
def test_the_checker_sees_every_import_form(tmp_path, source, found):
    f = tmp_path / "x.py"
    f.write_text(source)
    assert found in [name for _, name, _ in _imports("scpl.models.x", f)]


MAX_MODULE_LINES = 500


def test_modules_stay_under_500_lines():
    """Modules stay readable: none over 500 lines (issue 22: targets.py had 738, dist.py 703).
    Mutant: the old single-file targets.py or dist.py back in place."""
    long = {
        str(p.relative_to(SRC)): n
        for p in sorted((SRC / "scpl").rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"split these modules along their seams: {long}"
