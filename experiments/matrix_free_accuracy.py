"""Matrix-free proxies against the formed kernel's, side by side in one run.

For each case, scores the same config twice with ``ntknas.score``: the kernel formed and
diagonalized (``matrix_free_above=None``) and matrix-free (Lanczos, deflated Hutchinson trace,
SLQ; :func:`ntknas.proxies.operator_proxies`), and prints the relative error of each proxy and the
seconds of each (compile, kernel incl. the spectrum).

Run: ``python experiments/matrix_free_accuracy.py`` (about 3 min on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import math

CASES = [
    ("mlp", {"depth": 2, "width": 64, "activation": "relu"}),
    ("mlp", {"depth": 4, "width": 256, "activation": "gelu"}),
    (
        "mlp-mixer",
        {
            "patch_size": 4,
            "depth": 2,
            "hidden_dim": 128,
            "tokens_mlp_dim": 64,
            "channels_mlp_dim": 256,
        },
    ),
]
PROXIES = ("ntk_eig_max", "ntk_trace", "ntk_eff_rank", "ntk_top_share", "ntk_eig_min", "ntk_cond")


def main() -> None:
    import ntknas

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--input-size", type=int, default=16)
    args = p.parse_args()
    rows = args.batch * args.classes
    print(f"N={args.batch}, O={args.classes}: {rows}x{rows} kernel matrix, {args.input_size}px")
    head = ["case", "formed s", "matrix-free s"] + [f"{n} err" for n in PROXIES]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for name, config in CASES:
        opts = dict(
            batch=args.batch,
            num_classes=args.classes,
            input_shape=(args.input_size, args.input_size, 3),
            bn="train",
        )
        exact = ntknas.score(name, config, matrix_free_above=None, **opts)
        free = ntknas.score(name, config, matrix_free_above=1, **opts)
        errs = []
        for proxy in PROXIES:
            a, b = free[proxy], exact[proxy]
            errs.append(
                "inf" if not math.isfinite(a) or not math.isfinite(b) else f"{a / b - 1:+.3f}"
            )
        t_exact = f"{exact.compile_seconds:.1f}+{exact.kernel_seconds:.1f}"
        t_free = f"{free.compile_seconds:.1f}+{free.kernel_seconds:.1f}"
        print(f"| {exact.description} | {t_exact} | {t_free} | " + " | ".join(errs) + " |")
    print(f"\n{free.spectrum}")


if __name__ == "__main__":
    main()
