"""Lint as a test, so CI's single test command also keeps the tree clean (and JAX internals out)."""

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
