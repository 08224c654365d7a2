"""Lint as a test, so CI's single test command also keeps the tree clean (and JAX internals out)."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is installed by the test extras")
def test_ruff_check_passes():
    r = subprocess.run(["ruff", "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_jax_internals_only_in_compat_module():
    banned = ("jax._src", "jax.core", "jax.extend", "jax.interpreters")
    offenders = []
    for path in list((ROOT / "ntknas").rglob("*.py")) + list(
        (ROOT / "search_spaces").rglob("*.py")
    ):
        if path.name == "_jax_compat.py":
            continue
        for line in path.read_text().splitlines():
            s = line.strip()
            if s.startswith(("import ", "from ")) and any(b in s.split("#")[0] for b in banned):
                offenders.append(f"{path.relative_to(ROOT)}: {s}")
    assert not offenders, offenders


# What each import may not pull in: the engine needs jax and numpy only; the library loads
# optuna, flax, pandas and plotting on first use of a search, a score or a report.
_LIGHT_IMPORTS = {
    "ntknas.ntk": ("flax", "optuna", "pandas", "scipy", "rich", "matplotlib", "search_spaces"),
    "ntknas, ntknas.proxies, ntknas.scoring, ntknas.compare, ntknas.study, ntknas.configs": (
        "flax",
        "optuna",
        "pandas",
        "rich",
        "matplotlib",
    ),
}


@pytest.mark.parametrize("modules", sorted(_LIGHT_IMPORTS))
def test_imports_stay_light(modules):
    banned = _LIGHT_IMPORTS[modules]
    code = (
        f"import sys, ntknas, {modules}; "
        f"bad = [m for m in {banned!r} if m in sys.modules]; "
        "assert callable(ntknas.search) and callable(ntknas.score), 'lazy entry points'; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


# Layers, lowest first: a module may import its own layer's group and the layers below it.
_LAYERS = {
    "ntknas.ntk": 0,
    "ntknas.data": 0,
    "ntknas.configs": 0,
    "search_spaces": 1,
    "ntknas.proxies": 2,
    "ntknas.scoring": 3,
    "ntknas.bench": 3,
    "ntknas.compare": 4,
    "ntknas.study": 4,
    "cli": 5,
}


def _import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports, imports inside functions included."""
    files = [*ROOT.glob("ntknas/**/*.py"), *ROOT.glob("search_spaces/**/*.py"), ROOT / "cli.py"]

    def name_of(path: Path) -> str:
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    modules = {name_of(p): p for p in files}

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join(base) if node.level else ""
                full = ".".join(p for p in (origin, node.module or "") if p)
                subs = {f"{full}.{a.name}" for a in node.names} & set(modules)
                targets = subs or {full}  # `from pkg import submodule` imports the submodule
            elif isinstance(node, ast.Import):
                targets = {a.name for a in node.names}
            else:
                continue
            edges |= {t for t in map(resolve, targets) if t and t != name}
        graph[name] = edges
    return graph


def _group(module: str) -> str:
    return next(g for g in sorted(_LAYERS, key=len, reverse=True) if module.startswith(g))


def test_project_imports_have_no_cycle_and_run_down_the_layers():
    graph = _import_graph()
    assert "ntknas.ntk._kernel" in graph["ntknas.ntk._api"]  # the walk sees the imports

    def reaches(start, goal, seen):
        return any(t == goal or reaches(t, goal, seen | {t}) for t in graph[start] - seen)

    cycles = sorted(n for n in graph if reaches(n, n, set()))
    assert not cycles, {n: sorted(graph[n]) for n in cycles}
    upward = [
        f"{a} -> {b}"
        for a, targets in graph.items()
        if a != "ntknas"  # the root package's entry points are lazy names, not imports
        for b in targets
        if b != "ntknas" and _group(a) != _group(b) and _LAYERS[_group(b)] >= _LAYERS[_group(a)]
    ]
    assert not upward, upward
