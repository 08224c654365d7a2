"""Small unregistered spaces for the search tests (registering them would leak into the
search-space contract tests, which run over every registered space).

``Flaky`` draws candidates that build, that raise while building, and that give a NaN kernel.
"""

import os
import signal

import flax.linen as nn
import jax.numpy as jnp

from search_spaces import SearchSpace


class TinyMLP(nn.Module):
    width: int
    depth: int
    num_classes: int
    nan: bool = False

    @nn.compact
    def __call__(self, x, train=False):
        x = x.reshape(x.shape[0], -1)
        for _ in range(self.depth):
            x = jnp.tanh(nn.Dense(self.width)(x))
        out = nn.Dense(self.num_classes)(x)
        return out * jnp.nan if self.nan else out


class Tiny(SearchSpace):
    """width {4, 8} x depth {1, 2}: 4 architectures, each compiles in about a second."""

    name = "tiny"
    default_num_classes = 3
    default_input_shape = (2, 2, 1)
    size = 4

    def suggest(self, trial):
        return {
            "width": trial.suggest_categorical("width", [4, 8]),
            "depth": trial.suggest_int("depth", 1, 2),
        }

    def validate(self, config):
        if set(config) != {"width", "depth"}:
            raise ValueError(f"tiny: fields are width, depth; got {sorted(config)}")
        if config["width"] not in (4, 8) or config["depth"] not in (1, 2):
            raise ValueError(f"tiny: width {config['width']!r} or depth {config['depth']!r}")
        return {"width": int(config["width"]), "depth": int(config["depth"])}

    def build(self, config, num_classes=None, input_shape=None):
        c = self.validate(config)
        return TinyMLP(c["width"], c["depth"], num_classes or self.default_num_classes)

    def describe(self, config):
        return f"{config['depth']}x{config['width']}"

    def enumerate(self):
        for w in (4, 8):
            for d in (1, 2):
                yield {"width": w, "depth": d}


class Flaky(Tiny):
    """Like Tiny, plus a ``mode``: "ok", "raise" (build fails) or "nan" (NaN logits)."""

    name = "flaky"
    size = 12

    def suggest(self, trial):
        config = super().suggest(trial)
        config["mode"] = trial.suggest_categorical("mode", ["ok", "raise", "nan"])
        return config

    def validate(self, config):
        config = dict(config)
        mode = config.pop("mode", "ok")
        return {**super().validate(config), "mode": mode}

    def build(self, config, num_classes=None, input_shape=None):
        if config["mode"] == "raise":
            raise RuntimeError("this architecture does not build")
        c = super().validate({k: v for k, v in config.items() if k != "mode"})
        return TinyMLP(c["width"], c["depth"], num_classes or 3, nan=config["mode"] == "nan")


class InterruptAt(Tiny):
    """Sends this process SIGINT (a Ctrl-C) while trial ``at`` is drawn."""

    name = "interrupt"

    def __init__(self, at: int = 1):
        self.at = at

    def suggest(self, trial):
        if trial.number == self.at:
            os.kill(os.getpid(), signal.SIGINT)
        return super().suggest(trial)


class Slow(Tiny):
    """Like Tiny, but each candidate takes ``seconds`` longer after its parameters are drawn: a
    wide window to kill a worker in mid-candidate, once the trial's parameters are in the storage
    (the wait is part of the trial, so heartbeats run meanwhile)."""

    name = "slow"

    def __init__(self, seconds: float = 1.5):
        self.seconds = seconds

    def suggest(self, trial):
        import time

        config = super().suggest(trial)
        time.sleep(self.seconds)
        return config


class Poison(Tiny):
    """Like Tiny, but scoring the config width 8, depth 2 kills the process (SIGKILL) when
    ``NTKNAS_TEST_KILL=1`` is set (in a worker process), and raises otherwise (in the test's own
    process, which must survive a mistake)."""

    name = "poison"

    def build(self, config, num_classes=None, input_shape=None):
        if (config["width"], config["depth"]) == (8, 2):
            if os.environ.get("NTKNAS_TEST_KILL") == "1":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("this candidate would have killed its worker")
        return super().build(config, num_classes, input_shape)


class SlowMinute(Slow):
    """Slow(60) with no arguments, for the registry (``get_space`` takes none) of a CLI process."""

    def __init__(self):
        super().__init__(60)


class SlowHalf(Slow):
    """Slow(0.5) with no arguments, for the registry of a CLI process."""

    def __init__(self):
        super().__init__(0.5)
