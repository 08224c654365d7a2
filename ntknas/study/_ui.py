"""The terminal side of a search: the progress bar, Ctrl-C and SIGTERM, and Optuna's log kept
quiet."""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time


@contextlib.contextmanager
def quiet_optuna():
    """Optuna logs errors only inside the block (no line per trial)."""
    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


class Terminated(BaseException):
    """The process got SIGTERM (a scheduler, a container stop, a preemption notice).

    Raised at once, wherever the search is: the running trial is failed and re-queued for another
    worker (SIGKILL usually follows within seconds, so the candidate is not finished first). Like
    ``KeyboardInterrupt`` it is not an ``Exception``, so no ``except Exception`` swallows it.
    """

    exit_code = 128 + signal.SIGTERM


class StopOnSigint:
    """First Ctrl-C: ask the study to stop after the running trial. Second: interrupt now.
    SIGTERM: call ``on_term`` (a parent passes it on to its workers), then raise
    :class:`Terminated`."""

    def __init__(self, announce: bool = True, on_first=None, on_term=None):
        self.requested = self.terminated = False
        self._previous = None
        self._previous_term = None
        self.announce, self.on_first, self.on_term = announce, on_first, on_term

    def _term(self, signum, frame):
        if self.terminated:  # sent twice (to the process and its group): already stopping
            return
        self.requested = self.terminated = True
        if self.on_term is not None:
            self.on_term()
        raise Terminated

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self.announce:
            print("\nstopping after the running candidate (Ctrl-C again to abort it)", flush=True)
        if self.on_first is not None:
            self.on_first()

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
            self._previous_term = signal.signal(signal.SIGTERM, self._term)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        if self._previous_term is not None:
            signal.signal(signal.SIGTERM, self._previous_term)
        return False


class Progress:
    """A rich progress bar: trials done, best so far, seconds per candidate."""

    def __init__(self, enabled: bool, total: int, console=None):
        self.enabled, self.total, self.console = enabled, total, console
        self._start = time.perf_counter()
        self._done = 0

    def __enter__(self):
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("[bold]search"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("best {task.fields[best]}"),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                console=self.console,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("search", total=self.total, best="-", rate="")
        return self

    def update(self, study, trial, messages: list[str]) -> None:
        self._done += 1
        if not self.enabled:
            messages.clear()
            return
        for m in messages:
            self._bar.console.print(f"[yellow]{m}")
        messages.clear()
        per = (time.perf_counter() - self._start) / self._done
        self._bar.update(self._task, advance=1, best=best_text(study), rate=f"{per:.2f} s/cand")

    def advance_to(self, study, done: int) -> None:
        """For a bar fed by polling the storage (``--jobs``): ``done`` trials of the run so far."""
        if not self.enabled or done <= self._done:
            return
        self._done = done
        rate = f"{(time.perf_counter() - self._start) / done:.2f} s/cand"
        self._bar.update(self._task, completed=done, best=best_text(study), rate=rate)

    def __exit__(self, *exc):
        if self.enabled:
            self._bar.__exit__(*exc)
        return False


def best_text(study) -> str:
    """The bar's "best": the best value, or the size of the Pareto front."""
    try:
        if len(study.directions) == 1:
            v = study.best_value
            return f"{v:.4g}" if math.isfinite(v) else str(v)
        return f"{len(study.best_trials)} on the Pareto front"
    except ValueError:  # no completed trial yet
        return "-"
