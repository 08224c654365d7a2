"""Layers shared by the convolutional spaces, in the conventions of their PyTorch originals."""

from __future__ import annotations

import flax.linen as nn

# PyTorch's default for Conv2d/Linear weights, kaiming_uniform_(a=sqrt(5)), is U(±1/sqrt(fan_in)):
# variance 1 / (3 fan_in). NAS-Bench-201 networks were trained from it.
torch_default_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
# torchvision ResNets: kaiming_normal_(mode="fan_out", nonlinearity="relu").
kaiming_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def conv(
    features: int,
    kernel: int,
    stride: int = 1,
    *,
    kernel_init=torch_default_init,
    name: str | None = None,
) -> nn.Conv:
    """A bias-free square conv padded like PyTorch's ``padding=kernel // 2`` (symmetric)."""
    pad = kernel // 2
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        use_bias=False,
        kernel_init=kernel_init,
        name=name,
    )


BN_EPSILON = 1e-5  # PyTorch's BatchNorm default


def batch_norm(train: bool, name: str | None = None) -> nn.BatchNorm:
    """BatchNorm with PyTorch's defaults (momentum 0.1, eps 1e-5).

    ``train=False`` normalizes with the running statistics (mean 0 and variance 1 at init), which
    keeps examples independent; ``train=True`` uses the batch's statistics and updates
    ``batch_stats`` (the caller passes ``mutable=["batch_stats"]``).
    """
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=BN_EPSILON, name=name)


def patchify(x, features: int, patch: int, name: str):
    """Non-overlapping ``patch`` x ``patch`` patches of NHWC ``x``, embedded: (N, tokens, features).

    Call from inside a compact ``__call__``: the conv becomes a submodule ``name`` of the caller.
    """
    n, height, width, _ = x.shape
    if height % patch or width % patch:
        raise ValueError(f"input {height}x{width} is not a multiple of patch_size={patch}")
    x = nn.Conv(features, (patch, patch), strides=(patch, patch), padding="VALID", name=name)(x)
    return x.reshape(n, -1, features)
