import os
import subprocess
import sys

# XLA's CPU backend compiles at LLVM's lowest optimization level: the suite's programs are small,
# so its time goes to compiling them, not running them. The programs (their HLO), and so what the
# tests check, are the same; float results may differ in the last bits, which the tolerances allow.
# Set before JAX starts its backend; subprocesses (CLI, workers) and xdist workers inherit it.
# NTKNAS_TEST_XLA_OPT=1 keeps XLA's defaults.
_FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
# XLA's older fusion code generator compiles the suite's kernels in about a third of the time of
# its fusion emitters (the same HLO). A jaxlib that no longer knows the flag would abort on it, so
# a subprocess tries it first (once a session: the XLA_FLAGS set here are inherited).
_LEGACY_FUSION = "--xla_cpu_use_fusion_emitters=false"


def _xla_accepts(flag: str) -> bool:
    env = {**os.environ, "XLA_FLAGS": flag, "JAX_PLATFORMS": "cpu"}
    code = "import jax.numpy as jnp; jnp.zeros(1).block_until_ready()"
    try:
        run = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, timeout=300
        )
    except subprocess.TimeoutExpired:
        return False
    return run.returncode == 0


_flags = os.environ.get("XLA_FLAGS", "")
if os.environ.get("NTKNAS_TEST_XLA_OPT") != "1" and _FAST_COMPILE not in _flags:
    fast = f"{_FAST_COMPILE} {_LEGACY_FUSION}" if _xla_accepts(_LEGACY_FUSION) else _FAST_COMPILE
    os.environ["XLA_FLAGS"] = f"{_flags} {fast}".strip()

import jax  # noqa: E402
import pytest  # noqa: E402

# Tests never write to the user's compilation cache; the cache's own tests set a temporary one.
os.environ.setdefault("NTKNAS_COMPILE_CACHE", "0")

# Float64 references need x64; float32 tests create float32 arrays explicitly.
jax.config.update("jax_enable_x64", True)


@pytest.fixture
def small_mlp(monkeypatch):
    """mlp's space cut down (tests/_small.py)."""
    from ._small import shrink_mlp

    shrink_mlp(monkeypatch)
