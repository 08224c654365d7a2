"""ntknas: training-free neural architecture search scored by the finite-width NTK.

``import ntknas`` is light: the NTK engine (``ntknas.ntk``) needs only jax and numpy, and the
search (optuna, flax, pandas) is imported on first use of ``ntknas.score``, ``ntknas.search`` or
``ntknas.leaderboard``.

Example:
  >>> import ntknas
  >>> study = ntknas.search("vit-small", n_trials=20)
  >>> ntknas.leaderboard(study).head()
"""

__version__ = "0.1.0"

_LAZY = {
    "score": ("ntknas.scoring", "score"),
    "search": ("ntknas.study", "search"),
    "leaderboard": ("ntknas.study", "leaderboard"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'ntknas' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])
