"""ntknas against the reference implementation (neural-tangents' empirical NTK), side by side.

Each (implementation, case) runs in its own process, alternating ntknas and the reference, for
``--rounds`` rounds; a process compiles each method (``jax.jit(...).lower(...).compile()``),
reads XLA's compiled peak (``memory_analysis()``) and times the median of ``--repeats`` runs
(``block_until_ready``, compile excluded). Cases whose compiled peak exceeds ``--mem-limit-gb``
are not run. The kernels of the two implementations are compared (max |a - b| / max |b|).

The reference needs its own environment (neural-tangents 0.6.5 pins an old jax), e.g.::

    python -m venv /tmp/ntref
    /tmp/ntref/bin/pip install jax==0.4.25 jaxlib==0.4.25 neural-tangents==0.6.5 'numpy<2'
    python experiments/reference_compare.py --reference-python /tmp/ntref/bin/python

The cases are built from numpy's generator (the same parameters in both jax versions): the
paper's Figure 1 FCN (ReLU, no bias, input size 3), 3x3-conv CNNs on 32x32 inputs with global
average pooling, and a small ViT (``bench_nets.vit_apply``: 4x4 patches of 32x32 images, width
64, 4 heads, 2 blocks, 74K parameters); N=8, float32, ``vmap_axes=0``, the full (N, N, O, O)
kernel.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

METHODS = ("jacobian_contraction", "ntk_vector_products", "structured_derivatives", "auto")
CASES = {
    "fcn W=64 O=16": ("fcn", 64, 16),
    "fcn W=256 O=128": ("fcn", 256, 128),
    "fcn W=1024 O=16": ("fcn", 1024, 16),
    "fcn W=1024 O=128": ("fcn", 1024, 128),
    "cnn W=32 O=10": ("cnn", 32, 10),
    "cnn W=64 O=10": ("cnn", 64, 10),
    "vit D=64 O=10": ("vit", 64, 10),
}


def build(case: str, n: int = 8):
    """``(f, params, x)`` of a case, from numpy's generator (seed 0)."""
    import jax.numpy as jnp

    from ntknas.bench_nets import cnn_apply, fcn_apply, vit_apply  # jax only: either environment

    kind, width, o = CASES[case]
    rng = np.random.default_rng(0)
    if kind == "fcn":
        dims = [3] + [width] * 9 + [o]
        params = [
            jnp.asarray(rng.standard_normal((a, b)) / np.sqrt(a), jnp.float32)
            for a, b in zip(dims[:-1], dims[1:], strict=True)
        ]
        x = jnp.asarray(rng.standard_normal((n, 3)), jnp.float32)
        return fcn_apply, params, x
    if kind == "vit":
        return vit_apply, _vit_params(rng, width, o), _images(rng, n)
    chans = [3, width, width, width]
    params = {
        "convs": [
            jnp.asarray(rng.standard_normal((3, 3, a, b)) / np.sqrt(9 * a), jnp.float32)
            for a, b in zip(chans[:-1], chans[1:], strict=True)
        ],
        "head": jnp.asarray(rng.standard_normal((width, o)) / np.sqrt(width), jnp.float32),
    }
    return cnn_apply, params, _images(rng, n)


def _images(rng, n: int):
    import jax.numpy as jnp

    return jnp.asarray(rng.standard_normal((n, 32, 32, 3)), jnp.float32)


def _vit_params(rng, d: int, o: int, depth: int = 2, heads: int = 4, mlp: int = 2):
    """Parameters of ``bench_nets.vit_apply`` on 32x32x3 images (4x4 patches: 65 tokens)."""
    import jax.numpy as jnp

    def normal(*shape, fan_in=None):
        scale = 1 / np.sqrt(shape[0] if fan_in is None else fan_in)
        return jnp.asarray(rng.standard_normal(shape) * scale, jnp.float32)

    def norm():  # scale and bias away from 1 and 0, so that no term vanishes
        return 1 + 0.1 * normal(d, fan_in=1), 0.1 * normal(d, fan_in=1)

    def block():
        return {
            "norm1": norm(),
            "qkv": normal(d, 3, heads, d // heads),
            "out": normal(heads, d // heads, d, fan_in=d),
            "norm2": norm(),
            "fc1": normal(d, mlp * d),
            "b1": 0.1 * normal(mlp * d, fan_in=1),
            "fc2": normal(mlp * d, d),
            "b2": 0.1 * normal(d, fan_in=1),
        }

    return {
        "embed": normal(48, d),
        "cls": normal(1, 1, d, fan_in=1),
        "pos": normal(1, 65, d, fan_in=d),
        "blocks": [block() for _ in range(depth)],
        "norm": norm(),
        "head": normal(d, o),
    }


def kernel_fn(impl: str, f, method: str):
    """A jittable ``k(x, params)`` of the full kernel by ``method`` in ``impl``."""
    if impl == "nt":
        import neural_tangents as nt

        kinds = {
            "jacobian_contraction": nt.NtkImplementation.JACOBIAN_CONTRACTION,
            "ntk_vector_products": nt.NtkImplementation.NTK_VECTOR_PRODUCTS,
            "structured_derivatives": nt.NtkImplementation.STRUCTURED_DERIVATIVES,
            "auto": nt.NtkImplementation.AUTO,
        }
        fn = nt.empirical_ntk_fn(f, trace_axes=(), vmap_axes=0, implementation=kinds[method])
        return lambda x, p: fn(x, None, p)
    from ntknas import ntk

    fn = ntk.ntk_fn(f, method=method, vmap_axes=0)
    return lambda x, p: fn(x, None, p)


def worker(
    impl: str, case: str, repeats: int, mem_limit: float, out_dir: str, methods=METHODS
) -> list[dict]:
    """The methods of one case in this process: compile, peak, median time; kernels saved."""
    import jax

    f, params, x = build(case)
    rows = []
    for method in methods:
        row = {"impl": impl, "case": case, "method": method}
        try:
            if impl == "ntknas" and method == "auto":
                from ntknas import ntk

                t0 = time.perf_counter()
                k = ntk.ntk_fn(f, method="auto", vmap_axes=0)
                exe = k.compile(x, None, params)
                row["compile_s"] = time.perf_counter() - t0
                row["picked"] = ntk.explain(f, x, None, params, vmap_axes=0).method

                def run(exe=exe):
                    return exe(x, None, params)
            else:
                t0 = time.perf_counter()
                exe = jax.jit(kernel_fn(impl, f, method)).lower(x, params).compile()
                row["compile_s"] = time.perf_counter() - t0

                def run(exe=exe):
                    return exe(x, params)

            m = exe.memory_analysis()
            row["peak_gb"] = (
                m.argument_size_in_bytes
                + m.output_size_in_bytes
                + m.temp_size_in_bytes
                - m.alias_size_in_bytes
            ) / 1e9
        except Exception as e:  # an implementation that cannot compile a case: report it
            rows.append({**row, "status": f"failed: {type(e).__name__}: {str(e)[:100]}"})
            continue
        if row["peak_gb"] * 1e9 > mem_limit:
            rows.append({**row, "status": "skipped: memory"})
            continue
        kernel = np.asarray(jax.block_until_ready(run()))
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            jax.block_until_ready(run())
            times.append(time.perf_counter() - t)
        row["seconds"] = statistics.median(times)
        row["status"] = "ok"
        np.save(os.path.join(out_dir, f"{impl}-{case}-{method}.npy".replace(" ", "_")), kernel)
        rows.append(row)
    return rows


def driver(args) -> int:
    pythons = {"nt": args.reference_python, "ntknas": sys.executable}
    out_dir = tempfile.mkdtemp(prefix="refcmp-")
    rows = []
    for r in range(args.rounds):
        for case in args.cases:
            order = ("nt", "ntknas") if r % 2 == 0 else ("ntknas", "nt")
            for impl in order:
                cmd = [pythons[impl], __file__, "--worker", impl, "--case", case, "--out", out_dir]
                cmd += ["--repeats", str(args.repeats), "--mem-limit-gb", str(args.mem_limit_gb)]
                cmd += ["--methods", *args.methods]
                proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
                if proc.returncode or not lines:
                    print(f"{impl} {case}: worker failed: {proc.stderr.strip()[-300:]}", flush=True)
                    continue
                for ln in lines:
                    row = json.loads(ln)
                    row["round"] = r
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    print(table(rows, out_dir))
    return 0


def table(rows: list[dict], out_dir: str) -> str:
    """Per case and method: each implementation's median over rounds, the ratio, the agreement."""
    lines = [
        "| case | method | reference (XLA peak) | ntknas (XLA peak) | reference/ntknas | "
        "kernels' max rel diff |",
        "|---|---|---|---|---|---|",
    ]
    for case in dict.fromkeys(r["case"] for r in rows):
        for method in dict.fromkeys(r["method"] for r in rows if r["case"] == case):
            cells, secs = [], {}
            for impl in ("nt", "ntknas"):
                key = (case, method, impl)
                got = [r for r in rows if (r["case"], r["method"], r["impl"]) == key]
                ok = [r for r in got if r["status"] == "ok"]
                if not ok:
                    cells.append(got[0]["status"] if got else "not run")
                    continue
                secs[impl] = statistics.median(r["seconds"] for r in ok)
                extra = f", picks {ok[0]['picked']}" if "picked" in ok[0] else ""
                peak = ok[0]["peak_gb"]  # jax 0.4.25's CPU client reports no analysis (0)
                peak = f"{peak:.3g} GB" if peak > 0 else "no memory analysis"
                cells.append(f"{secs[impl]:.4g} s ({peak}{extra})")
            ratio = f"{secs['nt'] / secs['ntknas']:.2f}" if len(secs) == 2 else "-"
            diff = "-"
            paths = [
                os.path.join(out_dir, f"{i}-{case}-{method}.npy".replace(" ", "_"))
                for i in ("nt", "ntknas")
            ]
            if all(os.path.exists(p) for p in paths):
                a, b = (np.load(p).astype(np.float64) for p in paths)
                diff = f"{np.abs(a - b).max() / np.abs(a).max():.1e}"
            lines.append(f"| {case} | {method} | {cells[0]} | {cells[1]} | {ratio} | {diff} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference-python", help="python of an environment with neural-tangents")
    ap.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    ap.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--mem-limit-gb", type=float, default=8.0)
    ap.add_argument("--worker", choices=["nt", "ntknas"], help=argparse.SUPPRESS)
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        rows = worker(
            args.worker, args.case, args.repeats, args.mem_limit_gb * 1e9, args.out, args.methods
        )
        for row in rows:
            print(json.dumps(row), flush=True)
        return 0
    if not args.reference_python:
        print("reference_compare: --reference-python is required", file=sys.stderr)
        return 2
    return driver(args)


if __name__ == "__main__":
    sys.exit(main())
