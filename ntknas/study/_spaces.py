"""What ``ntknas spaces`` shows: each registered space with its choices and size."""

from __future__ import annotations

import re
from typing import Any

from ._budget import resolve_budget
from ._samplers import probe_distributions
from ._ui import quiet_optuna


def space_summaries() -> list[dict[str, Any]]:
    """One dict per registered space: name, size, input shape, classes, default budget (as
    scored at the default input and classes) and objective, and the choices.

    Choices are read from the parameters ``suggest`` draws (see
    :func:`ntknas.study.grid_search_space`); per-layer parameters ``heads_0``, ``heads_1``, ...
    are shown once as ``heads_i`` with the number of layers that can have one.
    """
    from search_spaces import get_space, list_spaces

    rows = []
    for name in list_spaces():
        space = get_space(name)
        with quiet_optuna():
            dists = probe_distributions(space, probes=128)
        rows.append(
            {
                "name": name,
                "size": space.size,
                "input_shape": "x".join(map(str, space.default_input_shape)),
                "num_classes": space.default_num_classes,
                "budget": resolve_budget(space).range_text(),
                "objective": space.default_objective,
                "choices": _choices_text(dists),
            }
        )
    return rows


def _choices_text(dists) -> str:
    import optuna

    groups: dict[str, tuple[str, int]] = {}
    for name, d in dists.items():
        m = re.match(r"^(.*)_(\d+)$", name)
        key = f"{m.group(1)}_i" if m else name
        if isinstance(d, optuna.distributions.CategoricalDistribution):
            values = "{" + ", ".join(map(str, d.choices)) + "}"
        elif isinstance(d, optuna.distributions.IntDistribution):
            values = f"{d.low}..{d.high}" + (f" step {d.step}" if d.step != 1 else "")
        else:
            values = f"[{d.low}, {d.high}]"
        count = groups.get(key, ("", 0))[1] + 1 if m else 1
        groups[key] = (values, count)
    parts = []
    for key, (values, count) in groups.items():
        label = f"{key} (x{count} layers)" if key.endswith("_i") else key
        parts.append(f"{label} {values}")
    return "; ".join(parts)
