"""The proxy registry: one record per proxy, read by the scorer, the search and the reports.

Every proxy has a name users type (``--objective ntk_cond:min``, ``--sort ntk_trace``), a family,
a one-line description and the direction earlier work optimizes it in. Registration order is
the column order of every table (scores, leaderboards, reports), so new proxies go at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

DIRECTIONS = ("minimize", "maximize")
FAMILIES = ("ntk", "pntk", "cost", "scale-free ntk", "reference", "block ntk")


def direction_sign(direction: str) -> int:
    """+1 for ``"maximize"`` (higher is better), -1 for ``"minimize"``."""
    return 1 if direction == "maximize" else -1


@dataclass(frozen=True, kw_only=True)
class Proxy:
    """One training-free proxy.

    Attributes:
      name: what users type and the column it is stored under.
      direction: ``"minimize"`` or ``"maximize"``: what earlier work prefers, and what a search
        optimizes when the objective names the proxy without a direction.
      family: ``"ntk"`` (the full O×O kernel), ``"pntk"`` (an N×N pseudo-NTK), ``"scale-free
        ntk"`` (the full kernel without its scale), ``"cost"`` (size and FLOPs) or
        ``"reference"`` (a non-NTK proxy that ``ntknas compare`` computes).
      description: one line.
      report_direction: the direction in which the proxy is read as a predictor of accuracy in
        ``ntknas compare`` when it differs from ``direction``: params and FLOPs are minimized as
        a cost by a search but count as bigger = better there, as the zero-cost-proxy literature
        reports them.
    """

    name: str
    direction: str
    family: str
    description: str
    report_direction: str | None = None

    def __post_init__(self):
        for field in ("direction", "report_direction"):
            value = getattr(self, field)
            if value is not None and value not in DIRECTIONS:
                raise ValueError(f"{self.name}: {field} {value!r} is not one of {DIRECTIONS}")
        if self.family not in FAMILIES:
            raise ValueError(f"{self.name}: family {self.family!r} is not one of {FAMILIES}")

    @property
    def sign(self) -> int:
        """+1 if a search prefers higher values, -1 if lower."""
        return direction_sign(self.direction)

    @property
    def report_sign(self) -> int:
        """+1 if a higher value is read as predicting higher accuracy, -1 if a lower one is."""
        return direction_sign(self.report_direction or self.direction)


REGISTRY: dict[str, Proxy] = {}
# The ViT-only proxies of the proxy study (experiments/vit_proxies.py): TF-TAS's DSS (only the
# study computes it) and the per-block kernels (BLOCK_PROXIES below: the scorer computes them when
# asked, for spaces that group their parameters into blocks).
VIT_PROXIES: dict[str, Proxy] = {}


def _register(name: str, direction: str, family: str, description: str, into=None, **kw) -> None:
    into = REGISTRY if into is None else into
    if name in REGISTRY or name in VIT_PROXIES:
        raise ValueError(f"proxy {name!r} is registered twice")
    into[name] = Proxy(name=name, direction=direction, family=family, description=description, **kw)


# The full O×O NTK, as an (N·O)×(N·O) matrix.
_register("ntk_cond", "minimize", "ntk", "λmax/λmin of the full NTK (TE-NAS; inf if singular)")
_register("ntk_trace", "maximize", "ntk", "trace of the full NTK")
_register(
    "ntk_trace_per_param", "maximize", "ntk", "trace of the full NTK divided by the parameters"
)
_register("ntk_eig_min", "maximize", "ntk", "smallest eigenvalue of the full NTK")
_register("ntk_eig_max", "minimize", "ntk", "largest eigenvalue of the full NTK")
# Pseudo-NTKs (N×N) derived from the full kernel (see ntknas.ntk.pseudo_kernels).
PSEUDO_PREFIX = {"trace": "pntk_trace", "single_logit": "pntk_logit", "sum_of_logits": "pntk_sum"}
for _kind, _prefix in PSEUDO_PREFIX.items():
    _register(f"{_prefix}_cond", "minimize", "pntk", f"λmax/λmin of the {_kind} pseudo-NTK")
    _register(f"{_prefix}_trace", "maximize", "pntk", f"trace of the {_kind} pseudo-NTK")
# Model size and cost.
_register(
    "params", "minimize", "cost", "number of trainable parameters", report_direction="maximize"
)
_register(
    "flops",
    "minimize",
    "cost",
    "forward FLOPs per example (XLA cost analysis)",
    report_direction="maximize",
)
# The full NTK without its scale (see normalized.py).
_register(
    "ntk_corr_cond", "minimize", "scale-free ntk", "λmax/λmin of the full NTK's correlation matrix"
)
_register(
    "ntk_eff_rank",
    "maximize",
    "scale-free ntk",
    "effective rank exp(entropy) of the full NTK's spectrum",
)
_register("ntk_top_share", "minimize", "scale-free ntk", "λmax / trace of the full NTK")
# Non-NTK references, computed by ntknas.compare (naswot.py, synflow.py).
_register(
    "naswot",
    "maximize",
    "reference",
    "log|det| of the ReLU-code Hamming kernel (Mellor et al. 2021)",
)
_register(
    "synflow",
    "maximize",
    "reference",
    "Σ|θ ⊙ ∂R/∂θ|, |θ| weights, all-ones input (Tanaka et al. 2020)",
)

# What one kernel and the model's shapes give (the scorer, the search, the leaderboard) ...
PROXIES: dict[str, Proxy] = {n: p for n, p in REGISTRY.items() if p.family != "reference"}
# ... and the references only ntknas compare computes.
REFERENCE_PROXIES: dict[str, Proxy] = {n: p for n, p in REGISTRY.items() if p.family == "reference"}

# TF-TAS's indicator (dss.py) and the per-block kernels of a ViT (blocks.py).
_register(
    "dss",
    "maximize",
    "reference",
    "TF-TAS DSS: MSA synaptic diversity + MLP synaptic saliency (Zhou et al. 2022)",
    into=VIT_PROXIES,
)
VIT_BLOCKS = ("attention", "mlp", "embedding", "head", "norm")
BLOCK_MEASURES = {
    "trace": ("maximize", "trace of the {} block's NTK"),
    "eig_min": ("maximize", "smallest eigenvalue of the {} block's NTK"),
    "cond": ("minimize", "λmax/λmin of the {} block's NTK"),
    "eff_rank": ("maximize", "effective rank of the {} block's NTK"),
    "share": ("maximize", "the {} block's share of the NTK's trace"),
}
for _block in VIT_BLOCKS:
    for _measure, (_direction, _text) in BLOCK_MEASURES.items():
        _register(
            f"blk_{_block}_{_measure}",
            _direction,
            "block ntk",
            _text.format(_block),
            into=VIT_PROXIES,
        )
# The per-block proxies, and every proxy an objective may name (a search or score_many computes
# the per-block ones when its objective names one).
BLOCK_PROXIES: dict[str, Proxy] = {n: p for n, p in VIT_PROXIES.items() if p.family == "block ntk"}
OBJECTIVE_PROXIES: dict[str, Proxy] = {**PROXIES, **BLOCK_PROXIES}


def needs_blocks(terms) -> bool:
    """Whether any of ``terms`` (:class:`~ntknas.proxies.Term` or names) is a per-block proxy."""
    return any(getattr(t, "proxy", t) in BLOCK_PROXIES for t in terms)
