"""ntknas: training-free neural architecture search scored by the finite-width NTK.

``import ntknas`` is light: the NTK engine (``ntknas.ntk``) needs only jax and numpy, and the
search (optuna, flax, pandas) is imported on first use.
"""

__version__ = "0.1.0"
