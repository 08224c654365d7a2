"""Search spaces cut down for tests of what is around them (their code is the real one)."""

from search_spaces import mlp, nb201


def shrink_mlp(mp) -> None:
    """mlp's space cut to depth <= 3 and widths 64 and 128, with ``mp`` (a pytest MonkeyPatch).

    A config's own path draws the space's largest network (depth 10, width 2048: seconds per
    config at the suite's XLA optimization level) and selects its own initial values from it;
    tests of the scoring around it need no such network.
    """
    mp.setattr(mlp, "WIDTHS", (64, 128))
    mp.setattr(mlp, "MAX_DEPTH", 3)


def shrink_nb201(mp) -> None:
    """NAS-Bench-201's network cut to one cell a stage of 4, 8 and 16 channels, with ``mp``
    (compiling its cells dominates the tests that score a few)."""
    mp.setattr(nb201, "STAGE_CHANNELS", (4, 8, 16))
    mp.setattr(nb201, "CELLS_PER_STAGE", 1)
