"""Search spaces cut down for tests of what is around them (their code is the real one)."""

from search_spaces import mlp


def shrink_mlp(mp) -> None:
    """mlp's space cut to depth <= 3 and widths 64 and 128, with ``mp`` (a pytest MonkeyPatch).

    A config's own path draws the space's largest network (depth 10, width 2048: seconds per
    config at the suite's XLA optimization level) and selects its own initial values from it;
    tests of the scoring around it need no such network.
    """
    mp.setattr(mlp, "WIDTHS", (64, 128))
    mp.setattr(mlp, "MAX_DEPTH", 3)
